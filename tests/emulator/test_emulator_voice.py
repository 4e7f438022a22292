"""Voice with the emulator over loopback: agent audio pieces, push-to-talk, VAD, barge-in, pacing."""

from __future__ import annotations

import base64
import time

import numpy as np
import pytest
from emulator_wire import BYTES_PER_MS, WireClient, of_type, pieces, silence, words

from amigo_lab.audio import decode_mp3, encode_mp3
from amigo_lab.emulator import Emulator
from amigo_lab.protocol.constants import AGENT_MAX_LEAD_MS

QUESTION = "what time do you open"


def audio_of(piece: dict) -> bytes:
    return base64.b64decode(piece["message"], validate=True)


def test_voice_pcm_pieces_last_100_to_200_ms_and_carry_their_characters(connect):
    client = connect("response_format=voice&audio_format=pcm")
    client.start()
    frames = client.interaction()
    complete = frames[-1]
    group = pieces(frames, complete["message_id"])
    durations = [len(audio_of(p)) / BYTES_PER_MS for p in group]
    assert all(100 <= d <= 200 for d in durations[:-1]) and 0 < durations[-1] <= 200
    assert sum(durations) > 2000  # the greeting is a few seconds of speech
    assert np.abs(np.frombuffer(b"".join(audio_of(p) for p in group), "<i2")).max() > 1000
    assert "".join(ch for p in group for _, ch in p["transcript_alignment"]) == complete["full_message"]
    # Alignment times run from the message start and fall inside (or after) their own piece.
    times = [ms for p in group for ms, _ in p["transcript_alignment"]]
    assert times == sorted(times) and times[0] < 200 and times[-1] < sum(durations)
    for number, piece in enumerate(group[:-1]):
        start = sum(durations[:number])
        assert all(start <= ms < start + durations[number] for ms, _ in piece["transcript_alignment"])


def test_voice_mp3_pieces_each_decode_on_their_own(connect):
    client = connect("response_format=voice&audio_format=mp3")
    client.start()
    frames = client.interaction()
    group = pieces(frames, frames[-1]["message_id"])
    decoded = [decode_mp3(audio_of(p), sr=16000) for p in group]
    lengths_ms = [len(x) / 16 for x in decoded]
    assert all(100 <= ms <= 200 for ms in lengths_ms[:-1])
    assert max(float(np.abs(x).max()) for x in decoded) > 0.05


def test_a_spanish_reply_is_spoken_with_spanish_text_alignment(connect):
    client = connect("response_format=voice&audio_format=pcm")
    client.start()
    client.interaction()
    client.say("hola, ¿a qué hora abren?")
    frames = client.interaction()
    group = pieces(frames, frames[-1]["message_id"])
    spoken = "".join(ch for p in group for _, ch in p["transcript_alignment"])
    assert spoken == frames[-1]["full_message"] and spoken.startswith("Abrimos")


@pytest.mark.parametrize("audio_format", ["pcm", "mp3"])
def test_push_to_talk_speech_is_transcribed_and_answered(connect, speak, audio_format):
    client = connect(f"response_format=text&audio_format={audio_format}")
    client.start()
    client.interaction()
    pcm = silence(200) + speak(QUESTION) + silence(200)
    if audio_format == "pcm":
        client.send_audio(pcm, chunk_ms=200)
    else:
        step = 200 * BYTES_PER_MS
        for start in range(0, len(pcm), step):
            piece = encode_mp3(pcm[start:start + step])
            client.send("client.new-audio-message", audio=base64.b64encode(piece).decode())
    client.send("client.new-audio-message", audio=None)
    frames = client.interaction()
    assert frames[0]["type"] == "server.user-message-available"
    assert frames[0]["user_message"] == QUESTION
    assert frames[-1]["full_message"].startswith("We are open")


def test_vad_reports_speech_start_and_end_at_plausible_positions(connect, speak):
    client = connect("response_format=text&audio_format=pcm")
    client.start()
    client.interaction()
    client.send("client.switch-vad-mode", vad_mode_on=True)
    assert client.recv_until("server.vad-mode-switched")[-1]["vad_mode_on"] is True
    speech = speak("do you take my insurance")
    speech_ms = len(speech) / BYTES_PER_MS
    client.send_audio(silence(600) + speech + silence(800), chunk_ms=100)
    frames = client.interaction()
    kinds = client.kinds(frames)
    assert kinds[:3] == ["vad-speech-started", "vad-speech-ended", "user-message-available"]
    started, ended = frames[0]["audio_ms"], frames[1]["audio_ms"]
    assert 500 <= started <= 900
    assert 600 + speech_ms - 400 <= ended <= 600 + speech_ms + 200
    assert frames[2]["user_message"] == "do you take my insurance"
    assert "insurance plans" in frames[-1]["full_message"]


def test_vad_discards_a_short_burst_with_reset_zero(connect, speak):
    client = connect("response_format=text&audio_format=pcm")
    client.start()
    client.interaction()
    client.send("client.switch-vad-mode", vad_mode_on=True)
    client.recv_until("server.vad-mode-switched")
    speech = np.frombuffer(speak("hello"), "<i2")
    first_voiced = int(np.flatnonzero(np.abs(speech) > 2000)[0])
    burst = speech[first_voiced:first_voiced + 16 * 120].tobytes()  # 120 ms: under the 200 ms minimum
    client.send_audio(silence(400) + burst + silence(800), chunk_ms=100)
    frames = client.quiet_for(1.0)
    assert client.kinds(frames) == ["vad-speech-started", "vad-speech-reset-zero"]
    assert frames[0]["audio_ms"] < frames[1]["audio_ms"] < 400 + 120 + 100


def test_vad_needs_pcm_and_undecodable_audio_is_4415(connect):
    mp3 = connect("response_format=voice&audio_format=mp3")
    mp3.start()
    mp3.send("client.switch-vad-mode", vad_mode_on=True)
    assert mp3.expect_close()[0] == 4415

    garbage = connect("response_format=text&audio_format=mp3")
    garbage.start(service_id="6650a1b2c3d4e5f6a7b8c9d1")
    garbage.send("client.new-audio-message", audio=base64.b64encode(b"definitely not mpeg audio").decode())
    code, reason, _ = garbage.expect_close()
    assert code == 4415 and "mp3" in reason


def test_barge_in_stops_the_agent_message_and_keeps_what_was_sent(speak):
    with Emulator(realtime=True) as emu:
        client = WireClient(emu.port, query="response_format=voice&audio_format=pcm")
        client.start()
        client.send("client.switch-vad-mode", vad_mode_on=True)
        greeting_id = client.recv_until("server.new-message")[-1]["message_id"]
        client.send_audio(silence(200) + speak(QUESTION) + silence(800), chunk_ms=100, frames_per_s=30)
        frames = client.recv_until("server.user-message-available")
        stats = emu.stats()
        client.close()
    kinds = client.kinds(frames)
    barge = kinds.index("vad-speech-started")
    greeting = pieces(client.frames, greeting_id)
    stop = next(p for p in frames[barge:] if p["type"] == "server.new-message" and p["message_id"] == greeting_id)
    assert stop["stop"] is True and stop is greeting[-1]
    complete = next(f for f in frames if f["type"] == "server.interaction-complete")
    assert complete["message_id"] == greeting_id and complete["conversation_completed"] is False
    said = "".join(ch for p in greeting for _, ch in (p["transcript_alignment"] or ()))
    assert complete["full_message"] == said
    assert 0 < len(said) < len("Hello, this is Riverside Clinic. How can I help you today?")
    user = of_type(frames, "server.user-message-available")[0]
    assert frames.index(complete) < frames.index(user) and words(user["user_message"]) == QUESTION
    assert stats["barge_ins"] == 1


def test_realtime_audio_runs_at_most_a_second_ahead_of_playback():
    with Emulator(realtime=True) as emu:
        client = WireClient(emu.port, query="response_format=voice&audio_format=pcm")
        client.start()
        arrivals: list[tuple[float, float]] = []  # (arrival time, audio ms sent before this piece)
        sent_ms = 0.0
        while True:
            frame = client.recv()
            if frame["type"] == "server.interaction-complete":
                break
            arrivals.append((time.monotonic(), sent_ms))
            sent_ms += len(audio_of(frame)) / BYTES_PER_MS
        client.close()
    first = arrivals[0][0]
    assert sent_ms > 3000
    for arrived, before_ms in arrivals:
        # A piece starting at before_ms may leave no earlier than AGENT_MAX_LEAD_MS ahead of playback.
        assert arrived - first >= (before_ms - AGENT_MAX_LEAD_MS) / 1000 - 0.05

