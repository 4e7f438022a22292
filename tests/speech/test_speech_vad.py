"""webrtcvad-based detection of speech start, end and too-short bursts."""

import random

import numpy as np
import pytest

from amigo_lab.speech import (
    SPEECH_ENDED,
    SPEECH_RESET_ZERO,
    SPEECH_STARTED,
    SpeechError,
    Synthesizer,
    VadEvent,
    VoiceActivityDetector,
)


def _silence(ms: int) -> bytes:
    return b"\x00\x00" * (16 * ms)


@pytest.fixture(scope="module")
def speech_pcm() -> bytes:
    return Synthesizer().synthesize("i would like to book an appointment for tomorrow").pcm


def _onset_ms(pcm: bytes) -> float:
    samples = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))
    return float(np.flatnonzero(samples > 500)[0]) / 16


def _feed_in_chunks(detector: VoiceActivityDetector, pcm: bytes, rng: random.Random) -> list[VadEvent]:
    events: list[VadEvent] = []
    position = 0
    while position < len(pcm):
        size = rng.randint(0, 5000)  # odd sizes too: a chunk may split a sample
        events += detector.feed(pcm[position : position + size])
        position += size
    return events


def test_event_kinds_are_the_protocol_strings():
    assert (SPEECH_STARTED, SPEECH_ENDED, SPEECH_RESET_ZERO) == (
        "speech-started",
        "speech-ended",
        "speech-reset-zero",
    )


def test_silence_gives_no_events():
    detector = VoiceActivityDetector()
    assert detector.feed(_silence(3000)) == []
    assert not detector.in_speech
    assert detector.position_ms == 3000


def test_utterance_between_silences_starts_near_onset_then_ends(speech_pcm):
    detector = VoiceActivityDetector()
    stream = _silence(300) + speech_pcm + _silence(800)
    events = detector.feed(stream)

    assert [event.kind for event in events] == [SPEECH_STARTED, SPEECH_ENDED]
    started, ended = events
    onset_ms = 300 + _onset_ms(speech_pcm)
    speech_end_ms = 300 + len(speech_pcm) / 32
    assert abs(started.audio_ms - onset_ms) <= 100
    assert speech_end_ms - 100 <= ended.audio_ms <= speech_end_ms + 200
    # The started event carries the preroll and the voiced run that confirmed speech.
    preroll_start_ms = max(0.0, started.audio_ms - 300)
    assert started.audio == stream[int(preroll_start_ms * 32) : int(preroll_start_ms * 32) + len(started.audio)]
    assert len(started.audio) / 32 >= started.audio_ms - preroll_start_ms + 60
    # The ended event carries the whole utterance, through the silence that confirmed the end.
    assert ended.audio.startswith(started.audio)
    assert ended.audio == stream[int(preroll_start_ms * 32) : int((ended.audio_ms + 500) * 32)]
    assert not detector.in_speech
    assert detector.position_ms == pytest.approx(len(stream) / 32)


def test_short_burst_is_reset_to_zero(speech_pcm):
    onset = int(_onset_ms(speech_pcm) * 32) // 2 * 2
    burst = speech_pcm[onset + 16000 : onset + 16000 + 100 * 32]  # 100 ms from inside a word
    events = VoiceActivityDetector().feed(_silence(300) + burst + _silence(800))
    assert [event.kind for event in events] == [SPEECH_STARTED, SPEECH_RESET_ZERO]
    assert events[1].audio is None
    assert 300 < events[1].audio_ms < 500


def test_any_chunking_gives_identical_events(speech_pcm):
    stream = _silence(300) + speech_pcm + _silence(700) + speech_pcm[:3200] + _silence(900) + speech_pcm
    stream += _silence(800)
    expected = VoiceActivityDetector().feed(stream)
    assert [event.kind for event in expected] == [
        SPEECH_STARTED, SPEECH_ENDED, SPEECH_STARTED, SPEECH_RESET_ZERO, SPEECH_STARTED, SPEECH_ENDED,
    ]
    rng = random.Random(3)
    for _ in range(5):
        assert _feed_in_chunks(VoiceActivityDetector(), stream, rng) == expected


def test_streamed_speech_audio_adds_up_to_the_utterance(speech_pcm):
    stream = _silence(300) + speech_pcm + _silence(800) + speech_pcm + _silence(800)
    detector = VoiceActivityDetector()
    rng = random.Random(11)
    received = bytearray()
    utterances: list[tuple[bytes, bytes]] = []
    position = 0
    while position < len(stream):
        size = 2 * rng.randint(1, 2000)
        for event in detector.feed(stream[position : position + size]):
            if event.kind == SPEECH_STARTED:
                received = bytearray(event.audio)
            elif event.kind == SPEECH_ENDED:
                received += event.audio[len(received) :]
                utterances.append((bytes(received), event.audio))
        received += detector.take_speech_audio()
        position += size
    assert len(utterances) == 2
    assert all(streamed == whole for streamed, whole in utterances)


def test_take_speech_audio_is_empty_outside_speech(speech_pcm):
    detector = VoiceActivityDetector()
    detector.feed(_silence(500))
    assert detector.take_speech_audio() == b""
    detector.feed(speech_pcm[:16000])
    assert detector.in_speech
    assert len(detector.take_speech_audio()) > 0
    assert detector.take_speech_audio() == b""


def test_reset_starts_a_new_stream(speech_pcm):
    detector = VoiceActivityDetector()
    detector.feed(_silence(200) + speech_pcm[:16000])
    assert detector.in_speech
    detector.reset()
    assert not detector.in_speech and detector.position_ms == 0
    assert detector.feed(_silence(300) + speech_pcm + _silence(800))[0].kind == SPEECH_STARTED


@pytest.mark.parametrize(
    "settings", [{"frame_ms": 25}, {"aggressiveness": 4}, {"end_silence_ms": -1}]
)
def test_invalid_settings_are_rejected(settings):
    with pytest.raises(SpeechError):
        VoiceActivityDetector(**settings)
