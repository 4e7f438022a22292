"""A session against the real emulator on loopback: greeting, text, voice, audio files, events, actions."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from amigo_lab import audio
from amigo_lab.framelog import load_session
from amigo_lab.session import Reply, SessionError, Turn

HOURS = "what are your opening hours"
BOOK = "i would like to book an appointment"


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    """A WAV file of synthesized English speech asking for the opening hours (22.05 kHz, to be resampled)."""
    from amigo_lab.speech import Synthesizer

    speech = Synthesizer().synthesize(HOURS)
    samples = audio.pcm16_to_float(speech.pcm)
    path = tmp_path_factory.mktemp("audio") / "hours.wav"
    audio.write_wav(path, audio.resample(samples, sr_in=16000, sr_out=22050), sr=22050)
    return path


def assert_stamps_in_order(reply: Reply) -> None:
    stamps = [reply.timings[k] for k in ("sent", "user_message", "first_piece", "complete") if reply.timings[k]]
    assert [s["t"] for s in stamps] == sorted(s["t"] for s in stamps)
    assert all(s["wall"].tzinfo is not None for s in stamps)


def test_greeting_arrives_as_a_voice_turn(open_session):
    session = open_session()
    assert session.state == "active" and len(session.conversation_id) == 24
    greeting = session.greeting.result(10)
    assert isinstance(session.greeting, Turn) and session.greeting.kind == "greeting"
    assert greeting.text.startswith("Hello, this is Riverside Clinic")
    assert greeting.user_text is None
    assert greeting.sr == 16000 and greeting.audio.dtype == np.float32
    assert greeting.audio.size > 16000 * 0.5  # more than half a second of speech
    assert np.abs(greeting.audio).max() > 0.01
    assert greeting.timings["latency_first_audio_ms"] is not None and greeting.timings["latency_first_audio_ms"] >= 0
    # The reply's audio is exactly what the log recorded for that message.
    session.close()
    recorded = load_session(session.log.path)
    np.testing.assert_array_equal(recorded.message_audio(greeting.message_id), greeting.audio)


def test_text_turn(open_session):
    session = open_session()
    session.greeting.result(10)
    turn = session.say("What are your opening hours?")
    reply = turn.result(10)
    assert turn.done() and turn.kind == "text"
    assert reply.user_text == "What are your opening hours?"
    assert "eight in the morning" in reply.text
    assert len(reply.interaction_id) == 24 and len(reply.message_id) == 24
    assert reply.audio.size > 0 and not reply.interrupted and not reply.conversation_completed
    assert reply.timings["end_of_turn"] == reply.timings["sent"]
    assert reply.timings["latency_first_audio_ms"] == pytest.approx(
        (reply.timings["first_audio"]["t"] - reply.timings["sent"]["t"]) * 1000, abs=0.01)
    assert_stamps_in_order(reply)
    frames = session.frames
    complete = frames[frames["type"] == "server.interaction-complete"]
    assert reply.interaction_id in set(complete["interaction_id"])
    assert "eight in the morning" in repr(reply) and "<audio" in reply._repr_html_()
    assert session.turns[:2] == [session.greeting, turn]


def test_text_responses_have_no_audio(open_session):
    session = open_session(response_format="text")
    assert session.greeting.result(10).audio.size == 0
    reply = session.say("where are you located").result(10)
    assert "River Street" in reply.text and reply.audio.size == 0
    pieces = session.frames.query("type == 'server.new-message'")
    assert pieces["text"].notna().all() and pieces["audio_bytes"].isna().all()


def test_await_a_turn_from_another_event_loop(open_session):
    session = open_session()

    async def talk():
        greeting = await session.greeting
        reply = await session.say("do you accept insurance")
        return greeting, reply

    greeting, reply = asyncio.run(talk())
    assert greeting.text and "insurance" in reply.text


def test_slow_tool_brings_actions_and_a_filler(open_session):
    session = open_session()
    session.greeting.result(10)
    reply = session.say(BOOK).result(15)
    types = [a["type"] for a in reply.actions]
    assert types == ["tool-call-started", "action-too-long", "tool-call-ended"]
    assert reply.filler_text == "One moment while I check the calendar."
    assert "Doctor Lee" in reply.text
    # The answer's audio excludes the filler, which came under its own message id.
    recorded_pieces = session.frames.query("type == 'server.new-message'")
    filler_ids = set(recorded_pieces["message_id"]) - {reply.message_id, session.greeting.result().message_id}
    assert len(filler_ids) == 1
    answer_ms = recorded_pieces[recorded_pieces["message_id"] == reply.message_id]["audio_ms"].sum()
    assert reply.audio.size == pytest.approx(answer_ms * 16, abs=1)
    # The first audio is the filler's; the first answer audio comes after the slow tool.
    assert reply.timings["latency_first_audio_ms"] < reply.timings["latency_first_answer_audio_ms"]
    assert reply.timings["latency_first_answer_audio_ms"] >= 900


def test_no_actions_when_none_are_asked_for(open_session):
    session = open_session(agent_actions=None)
    session.greeting.result(10)
    reply = session.say(BOOK).result(15)
    assert reply.actions == () and "Doctor Lee" in reply.text


def test_send_audio_file_push_to_talk(open_session, speech_wav):
    session = open_session()
    session.greeting.result(10)
    turn = session.send_audio(speech_wav, realtime=False)
    reply = turn.result(20)
    assert turn.kind == "audio" and turn.request == str(speech_wav)
    assert reply.user_text == HOURS
    assert "eight in the morning" in reply.text
    frames = session.frames
    chunks = frames[(frames["type"] == "client.new-audio-message")]
    assert chunks["audio_bytes"].iloc[-1] == 0 and bool(chunks["stop"].iloc[-1])  # ended with audio: null
    duration, _ = audio.load_audio(speech_wav)
    assert chunks["audio_ms"].sum() == pytest.approx(duration.size / 16, abs=1)
    assert (chunks["audio_ms"].iloc[:-2] == 20.0).all()
    # Latency counts from the end of the user's audio.
    assert reply.timings["end_of_turn"]["t"] == pytest.approx(chunks["t"].iloc[-1])


def test_send_audio_paced_in_real_time(open_session):
    session = open_session()
    session.greeting.result(10)
    samples = np.zeros(16000 * 6 // 10, dtype=np.float32)  # 600 ms of silence: nothing to transcribe
    session.send_audio(samples, chunk_ms=100, end=False)
    deadline = time.monotonic() + 5
    while len(session.frames.query("type == 'client.new-audio-message'")) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    sent = session.frames.query("type == 'client.new-audio-message'")
    assert len(sent) == 6
    assert sent["t"].iloc[-1] - sent["t"].iloc[0] == pytest.approx(0.5, abs=0.15)


def test_send_audio_with_vad(open_session, speech_wav):
    session = open_session()
    session.greeting.result(10)
    session.vad(True)
    assert session.vad_on
    reply = session.send_audio(speech_wav, realtime=False).result(20)
    assert reply.user_text == HOURS
    frames = session.frames
    types = list(frames["type"])
    assert "server.vad-speech-started" in types and "server.vad-speech-ended" in types
    sent = frames[frames["type"] == "client.new-audio-message"]
    assert (sent["audio_bytes"] > 0).all()  # no audio: null with VAD on
    ended = frames[frames["type"] == "server.vad-speech-ended"].iloc[0]
    # The user's end of speech is where vad-speech-ended puts it on the audio sent, at or before its arrival.
    assert reply.timings["stamps"]["vad_end"] == pytest.approx(ended["t"])
    assert reply.timings["end_of_turn"]["t"] <= ended["t"]
    assert reply.timings["latency_first_audio_ms"] >= 0
    switched = frames[frames["type"] == "server.vad-mode-switched"]
    assert bool(switched["vad_mode_on"].iloc[0])


def test_vad_needs_pcm(open_session, speech_wav):
    session = open_session(audio_format="mp3")
    with pytest.raises(SessionError, match="pcm"):
        session.vad(True)


def test_send_audio_as_mp3(open_session, speech_wav):
    session = open_session(audio_format="mp3")
    greeting = session.greeting.result(10)
    assert greeting.audio.size > 8000  # mp3 pieces decoded
    reply = session.send_audio(speech_wav, realtime=False, chunk_ms=200).result(30)
    assert reply.user_text == HOURS
    sent = session.frames.query("type == 'client.new-audio-message' and audio_bytes > 0")
    assert (sent["audio_format"] == "mp3").all()
    assert sent["audio_ms"].sum() == pytest.approx(audio.load_audio(speech_wav)[0].size / 16, abs=30)


def test_live_microphone_chunks_from_another_thread(open_session, speech_wav):
    session = open_session()
    session.greeting.result(10)
    pcm = audio.float_to_pcm16(audio.load_audio(speech_wav)[0])
    result = {}

    def microphone():
        for piece in audio.chunk_pcm16(pcm, ms=20):
            session.send_chunk(piece)
        result["turn"] = session.end_audio()

    thread = threading.Thread(target=microphone)
    thread.start()
    thread.join()
    reply = result["turn"].result(20)
    assert reply.user_text == HOURS and "eight in the morning" in reply.text


def test_external_event_alone_starts_an_interaction(open_session):
    session = open_session()
    session.greeting.result(10)
    turn = session.event("The patient's appointment was moved to Friday")
    reply = turn.result(10)
    assert turn.kind == "event" and reply.user_text is None
    assert reply.text.startswith("I see that")
    sent = session.frames.query("type == 'client.new-text-message'")
    assert sent["message_type"].iloc[-1] == "external-event"


def test_event_sent_during_a_turn_joins_the_next_interaction(open_session):
    session = open_session()
    session.greeting.result(10)
    first = session.say(BOOK)  # a 2 s tool: the event arrives while this interaction runs
    deadline = time.monotonic() + 5
    while "server.current-agent-action" not in set(session.frames["type"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    event = session.event("The patient has arrived at the front desk")
    first_reply = first.result(15)
    event_reply = event.result(15)
    assert event_reply.interaction_id != first_reply.interaction_id
    assert event_reply.text.startswith("I see that")


def test_turns_from_four_threads_get_their_own_replies(open_session):
    session = open_session()
    session.greeting.result(10)
    questions = [HOURS, "where are you located", "do you accept insurance", "hello"]
    replies: dict[str, Reply] = {}
    errors = []

    def ask(question):
        try:
            replies[question] = session.say(question).result(30)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(q,)) for q in questions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert {q: r.user_text for q, r in replies.items()} == {q: q for q in questions}
    assert "eight in the morning" in replies[HOURS].text and "River Street" in replies["where are you located"].text
    assert len({r.interaction_id for r in replies.values()}) == 4


def test_cancel_stops_streaming_audio(open_session):
    session = open_session()
    session.greeting.result(10)
    turn = session.send_audio(np.zeros(16000 * 3, dtype=np.float32), chunk_ms=20)  # 150 chunks over 3 s
    time.sleep(0.3)
    assert turn.cancel() and turn.cancelled()
    time.sleep(0.3)
    sent = len(session.frames.query("type == 'client.new-audio-message'"))
    assert 5 <= sent < 60


def test_send_audio_rejects_bad_input(open_session):
    session = open_session()
    with pytest.raises(SessionError, match="chunk_ms"):
        session.send_audio(np.zeros(320, np.float32), chunk_ms=5000)
    with pytest.raises(SessionError, match="array"):
        session.send_audio(np.zeros(320, dtype=np.int64))
    with pytest.raises(audio.AudioError, match="no such audio file"):
        session.send_audio("/no/such/file.wav")
    with pytest.raises(SessionError, match="2-byte"):
        session.send_chunk(b"\x00\x01\x02")


def test_send_audio_with_vad_sends_the_whole_file_when_the_server_answers_early(open_session):
    """Two questions in one file, a long pause between: the server's VAD ends the first turn mid-file. The
    rest of the file still goes out, and the second question becomes a turn of its own."""
    from amigo_lab.speech import Synthesizer

    synth = Synthesizer()
    first, second = (audio.pcm16_to_float(synth.synthesize(text).pcm) for text in (HOURS, BOOK))
    samples = np.concatenate([first, audio.silence(1500), second])
    session = open_session()
    session.greeting.result(10)
    session.vad(True)
    turn = session.send_audio(samples, realtime=True)
    assert turn.result(20).user_text == HOURS
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(t.done() and t.kind == "voice" for t in session.turns):
        time.sleep(0.1)
    voice = [t for t in session.turns if t.kind == "voice" and t.done()]
    assert voice and voice[0].result().user_text == BOOK
    sent = session.frames.query("type == 'client.new-audio-message'")
    from amigo_lab.session.client import VAD_TRAILING_SILENCE_MS
    expected = audio.chunk(np.concatenate([samples, audio.silence(VAD_TRAILING_SILENCE_MS)]), sr=16000, ms=20)
    assert int(sent["audio_bytes"].sum()) == sum(piece.size for piece in expected) * 2
