"""The session keeps nothing per frame: memory held by its own code stays flat as a microphone streams."""

from __future__ import annotations

import gc
import time
import tracemalloc

from amigo_lab import audio

#: Bytes the session's own code may hold more after the second batch of frames than after the first.
SLACK_BYTES = 64 * 1024
BATCH = 150


def _held_by_the_client() -> int:
    snapshot = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(True, "*amigo_lab/session/*"),
        tracemalloc.Filter(True, "*amigo_lab/protocol/*"),
        tracemalloc.Filter(True, "*amigo_lab/framelog/*"),
    ])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def _stream(session, n: int) -> None:
    chunk = audio.float_to_pcm16(audio.silence(100))
    before = int((session.frames["type"] == "client.new-audio-message").sum())
    for _ in range(n):
        session.send_chunk(chunk)
    deadline = time.monotonic() + 30
    while int((session.frames["type"] == "client.new-audio-message").sum()) < before + n:
        assert time.monotonic() < deadline, "the chunks did not leave"
        time.sleep(0.05)


def test_streaming_audio_holds_no_memory_per_frame(open_session):
    session = open_session()
    session.greeting.result(10)
    session.vad(True)  # a continuous microphone stream: the server's VAD hears silence, no turn
    tracemalloc.start(1)
    try:
        _stream(session, BATCH)  # warm up: caches, first allocations
        gc.collect()
        first = _held_by_the_client()
        _stream(session, BATCH)
        gc.collect()
        second = _held_by_the_client()
    finally:
        tracemalloc.stop()
    assert second - first < SLACK_BYTES, f"{second - first} bytes more after {BATCH} more frames"
    assert session.say("where are you located").result(10).text
