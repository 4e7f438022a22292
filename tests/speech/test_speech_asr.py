"""pocketsphinx recognition: phrase-restricted round trips through eSpeak, streaming and pooling."""

import logging
import random
import threading

import pytest

from amigo_lab.speech import RecognitionStream, Recognizer, SpeechError, Synthesizer

PHRASES = [
    "what are your opening hours",
    "i would like to book an appointment",
    "check my order status",
    "goodbye",
    "i want to speak to a human",
    "cancel my subscription",
    "where is my package",
    "yes please",
    "no thank you",
    "can you repeat that",
]

SILENCE_300MS = b"\x00\x00" * 4800


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer(PHRASES)


@pytest.fixture(scope="module")
def utterances() -> dict[str, bytes]:
    synthesizer = Synthesizer()
    return {phrase: SILENCE_300MS + synthesizer.synthesize(phrase).pcm + SILENCE_300MS for phrase in PHRASES}


@pytest.mark.parametrize("phrase", PHRASES)
def test_synthesized_phrase_is_recognized_exactly(recognizer, utterances, phrase):
    assert recognizer.transcribe(utterances[phrase]) == phrase


@pytest.mark.parametrize("rate_wpm", [140, 220])
def test_recognition_holds_at_other_speaking_rates(recognizer, rate_wpm):
    synthesizer = Synthesizer()
    for phrase in ("check my order status", "goodbye", "i would like to book an appointment"):
        pcm = SILENCE_300MS + synthesizer.synthesize(phrase, rate_wpm=rate_wpm).pcm + SILENCE_300MS
        assert recognizer.transcribe(pcm) == phrase


def test_streaming_in_random_chunks_matches_transcribe(recognizer, utterances):
    rng = random.Random(7)
    for phrase in ("what are your opening hours", "yes please", "cancel my subscription"):
        pcm = utterances[phrase]
        stream = recognizer.stream()
        position = 0
        while position < len(pcm):
            size = 2 * rng.randint(1, 4000)
            stream.feed(pcm[position : position + size])
            position += size
        assert stream.finish() == recognizer.transcribe(pcm) == phrase


def test_partial_hypothesis_grows_during_speech(recognizer, utterances):
    pcm = utterances["i would like to book an appointment"]
    with recognizer.stream() as stream:
        stream.feed(pcm[: len(pcm) // 2])
        early = stream.partial()
        stream.feed(pcm[len(pcm) // 2 :])
        assert stream.finish() == "i would like to book an appointment"
    assert early and len(early.split()) < 6


def test_phrases_are_normalized_and_unknown_words_dropped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="amigo_lab.speech"):
        recognizer = Recognizer(["Goodbye!", "Check my ORDER status.", "book with zorblaxian", "zorblaxian"])
    assert recognizer.phrases == ("book with", "check my order status", "goodbye")
    assert recognizer.skipped_words == ("zorblaxian",)
    assert "zorblaxian" in caplog.text


def test_phrase_list_without_known_words_is_an_error():
    with pytest.raises(SpeechError):
        Recognizer(["zorblaxian qwxyzz"])
    with pytest.raises(SpeechError):
        Recognizer("goodbye")  # a bare string is not a phrase list


def test_finished_stream_refuses_more_audio_and_cancel_is_idempotent(recognizer, utterances):
    stream = recognizer.stream()
    stream.feed(utterances["goodbye"])
    assert stream.finish() == "goodbye"
    assert stream.closed
    with pytest.raises(SpeechError):
        stream.feed(b"\x00\x00")
    with pytest.raises(SpeechError):
        stream.finish()
    stream.cancel()


def test_whole_utterance_with_half_a_sample_is_rejected(recognizer):
    with pytest.raises(SpeechError, match="even"):
        recognizer.transcribe(b"\x00\x00\x00")


def test_stream_chunks_may_split_samples(recognizer, utterances):
    pcm = utterances["where is my package"]
    with recognizer.stream() as stream:
        for start in range(0, len(pcm), 1001):
            stream.feed(pcm[start : start + 1001])
        assert stream.finish() == "where is my package"


def test_cancelled_and_finished_streams_return_decoders_to_the_pool(utterances):
    recognizer = Recognizer(["yes please", "no thank you"])
    streams: list[RecognitionStream] = [recognizer.stream() for _ in range(3)]
    for stream in streams:
        stream.feed(utterances["yes please"][:8000])
    streams[0].cancel()
    streams[1].finish()
    with streams[2]:
        pass
    pool = recognizer.pool
    assert pool.created_count == 3 and pool.idle_count == 3
    assert recognizer.transcribe(utterances["no thank you"]) == "no thank you"
    assert pool.created_count == 3


def test_concurrent_streams_in_threads_recognize_independently(recognizer, utterances):
    phrases = ["goodbye", "where is my package", "no thank you", "check my order status"]
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def run(phrase: str) -> None:
        try:
            stream = recognizer.stream()
            pcm = utterances[phrase]
            for start in range(0, len(pcm), 640):
                stream.feed(pcm[start : start + 640])
            results[phrase] = stream.finish()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(phrase,)) for phrase in phrases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results == {phrase: phrase for phrase in phrases}


def test_open_vocabulary_recognizer_returns_normalized_english(utterances):
    transcript = Recognizer().transcribe(utterances["check my order status"])
    assert transcript == transcript.lower()
    assert all(word.replace("'", "").isalnum() for word in transcript.split())


def test_vad_driven_streaming_recognition(recognizer, utterances):
    from amigo_lab.speech import SPEECH_ENDED, SPEECH_STARTED, VoiceActivityDetector

    audio = b"\x00\x00" * 8000 + utterances["where is my package"] + b"\x00\x00" * 16000
    detector = VoiceActivityDetector()
    transcripts: list[str] = []
    stream = None
    fed = 0
    for start in range(0, len(audio), 640):  # 20 ms network packets
        for event in detector.feed(audio[start : start + 640]):
            if event.kind == SPEECH_STARTED:
                stream, fed = recognizer.stream(), len(event.audio)
                stream.feed(event.audio)
            elif event.kind == SPEECH_ENDED:
                stream.feed(event.audio[fed:])
                transcripts.append(stream.finish())
        if detector.in_speech:
            chunk = detector.take_speech_audio()
            stream.feed(chunk)
            fed += len(chunk)
    assert transcripts == ["where is my package"]
