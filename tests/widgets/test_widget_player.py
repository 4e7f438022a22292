"""The player against a real emulator: agent audio reaches the browser, reports reach the frame log,
barge-in flushes."""

import threading
import time

import numpy as np
import pytest

from amigo_lab.audio import chunk_pcm16, float_to_pcm16
from amigo_lab.widgets import Player


def _local(session, kind):
    frames = session.frames
    return frames[(frames["direction"] == "local") & (frames["type"] == kind)]


def test_agent_audio_reaches_the_browser_in_order(front_end, session):
    player = Player(session)
    front_end.custom(player, {"kind": "ready"})

    reply = session.say("what are your opening hours").result(timeout=60)

    pieces = [(c, b) for c, b in front_end.sent(player, "audio") if c["message_id"] == reply.message_id]
    assert pieces and all(c["format"] == "pcm" for c, _ in pieces)
    played = b"".join(b[0] for _, b in pieces)
    assert played == float_to_pcm16(reply.audio)
    ends = [c for c, _ in front_end.sent(player, "end") if c["message_id"] == reply.message_id]
    assert len(ends) == 1


def test_audio_before_the_browser_is_ready_is_kept(front_end, session):
    player = Player(session)
    reply = session.say("what are your opening hours").result(timeout=60)
    assert front_end.sent(player) == []

    front_end.custom(player, {"kind": "ready"})

    played = b"".join(b[0] for c, b in front_end.sent(player, "audio") if c["message_id"] == reply.message_id)
    assert played == float_to_pcm16(reply.audio)


@pytest.mark.parametrize("kind", ["progress", "flushed", "finished"])
def test_playback_reports_from_another_thread_land_in_the_frame_log(front_end, session, kind, wait_until):
    player = Player(session)
    report = {"kind": kind, "message_id": "a1b2c3", "played_ms": 1234.5}
    worker = threading.Thread(target=front_end.custom, args=(player, report))
    worker.start()
    worker.join(10)

    wait_until(lambda: len(_local(session, f"playback.{kind}")), what=f"a playback.{kind} entry")
    rows = _local(session, f"playback.{kind}")
    assert rows["message_id"].tolist() == ["a1b2c3"]
    assert rows["played_ms"].tolist() == [1234.5]
    assert (player.last_event, player.message_id, player.played_ms) == (kind, "a1b2c3", 1234.5)


def _live_microphone(session, pcm: bytes, *, until, timeout: float = 60.0) -> None:
    """Stream like a browser microphone in VAD mode: ``pcm`` in 20 ms chunks at real-time pace, then
    silence until ``until()`` is true."""
    chunks = chunk_pcm16(pcm + bytes(-len(pcm) % 640), sr=16000, ms=20)
    start = time.monotonic()
    sent = 0

    def pace():
        nonlocal sent
        sent += 1
        time.sleep(max(0.0, start + sent * 0.02 - time.monotonic()))

    for chunk in chunks:
        session.send_chunk(chunk)
        pace()
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "the condition never came while the microphone streamed silence"
        session.send_chunk(bytes(640))
        pace()


def test_barge_in_flushes_the_interrupted_message(front_end, paced_session, question_pcm, wait_until):
    session = paced_session
    player = Player(session)
    front_end.custom(player, {"kind": "ready"})
    session.vad(True)

    # Ask, keep the line open until the answer streams, then ask again: the server stops the answer at
    # the new speech, and the player must flush it.
    _live_microphone(session, question_pcm, until=lambda: front_end.sent(player, "audio"))
    answering = front_end.sent(player, "audio")[0][0]["message_id"]
    def flushed():
        return [c for c, _ in front_end.sent(player, "flush") if answering in c["message_ids"]]

    _live_microphone(session, question_pcm, until=flushed, timeout=30)
    frames = session.frames
    assert (frames["type"] == "server.vad-speech-started").sum() >= 2
    pieces = frames[(frames["type"] == "server.new-message") & (frames["message_id"] == answering)]
    wait_until(lambda: bool(session.frames.query("type == 'server.interaction-complete'")["message_id"]
                            .eq(answering).any()), what="the interrupted interaction to complete")
    assert not pieces.empty


def test_mp3_sessions_send_mp3_pieces(front_end, emulator):
    from amigo_lab._connect import connect
    from amigo_lab.audio import decode_mp3

    session = connect(emulator=emulator, audio_format="mp3")
    try:
        player = Player(session)
        front_end.custom(player, {"kind": "ready"})
        reply = session.say("what are your opening hours").result(timeout=60)
        pieces = [(c, b) for c, b in front_end.sent(player, "audio") if c["message_id"] == reply.message_id]
        assert pieces and {c["format"] for c, _ in pieces} == {"mp3"}
        decoded = sum(len(decode_mp3(b[0], sr=16000)) for _, b in pieces)
        assert decoded == pytest.approx(len(reply.audio), rel=0.1)
    finally:
        session.finish()


def test_text_sessions_play_nothing(front_end, emulator):
    from amigo_lab._connect import connect

    session = connect(emulator=emulator, response_format="text")
    try:
        player = Player(session)
        front_end.custom(player, {"kind": "ready"})
        reply = session.say("what are your opening hours").result(timeout=60)
        assert reply.text
        assert front_end.sent(player) == []
    finally:
        session.finish()


def test_detach_stops_following(front_end, session):
    player = Player(session)
    front_end.custom(player, {"kind": "ready"})
    player.detach()
    session.say("what are your opening hours").result(timeout=60)
    assert front_end.sent(player) == []
    assert np.isfinite(player.played_ms)
