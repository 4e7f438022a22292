"""The frame log: schema, one entry per frame type, durability, reload, parquet, audio tracks, redaction."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pytest

from amigo_lab import audio
from amigo_lab.framelog import (
    COLUMNS,
    FrameLog,
    FrameLogError,
    default_sessions_dir,
    load_session,
    read_parquet,
)
from amigo_lab.protocol import (
    ConversationCreated,
    CurrentAgentAction,
    InteractionComplete,
    NewAudioMessage,
    NewMessage,
    NewTextMessage,
    ServerError,
    StartConversation,
    UserMessageAvailable,
    VadSpeechEnded,
    parse,
    serialize,
)

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0LXVzZXIifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"

EXPECTED_DTYPES = {
    "seq": "int64", "t": "float64", "wall": "datetime64[ns, UTC]", "direction": "string", "type": "string",
    "conversation_id": "string", "interaction_id": "string", "message_id": "string",
    "sequence_number": "Int64", "stop": "boolean", "size": "int64", "text": "string",
    "message_type": "string", "audio_format": "string", "audio_offset": "Int64", "audio_bytes": "Int64",
    "audio_ms": "Float64", "vad_ms": "Float64", "vad_mode_on": "boolean", "action_type": "string",
    "action": "string", "http_error_code": "Int64", "error_description": "string", "close_code": "Int64",
    "close_reason": "string", "conversation_completed": "boolean", "played_ms": "Float64",
    "alignment": "string", "extra": "string", "flags": "string", "wire": "string",
}


def tone(ms: float, freq: float = 440.0) -> np.ndarray:
    n = int(16000 * ms / 1000)
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / 16000)).astype(np.float32)


def sent(log: FrameLog, frame, **kwargs):
    return log.record("sent", frame, raw_size=len(serialize(frame)), **kwargs)


def received(log: FrameLog, frame, **kwargs):
    return log.record("received", frame, raw_size=len(serialize(frame)), **kwargs)


def a_conversation(log: FrameLog) -> None:
    """A small session touching every kind of entry."""
    log.record_local("connection.opened", extra={"url": "ws://127.0.0.1:1/v1/org/conversation/converse_realtime"})
    sent(log, StartConversation(service_id="6650a1b2c3d4e5f6a7b8c9d0"))
    received(log, ConversationCreated(conversation_id="c" * 24))
    sent(log, NewTextMessage(text="hello there"))
    pcm = audio.float_to_pcm16(tone(40))
    sent(log, NewAudioMessage.from_bytes(pcm), audio_bytes=pcm, audio_format="pcm")
    sent(log, NewAudioMessage(audio=None))
    received(log, VadSpeechEnded(audio_ms=1230.5))
    received(log, UserMessageAvailable(message_id="u1", user_message="hello there"))
    received(log, CurrentAgentAction(action={"type": "tool-call-started", "tool_name": "calendar"}))
    piece = audio.float_to_pcm16(tone(160, 220))
    received(log, NewMessage.audio_piece(piece, stop=True, sequence_number=0, message_id="m1",
                                         transcript_alignment=((0.0, "H"), (80.0, "i"))),
             audio_bytes=piece, audio_format="pcm")
    received(log, InteractionComplete(message_id="m1", interaction_id="i1", full_message="Hi",
                                      conversation_completed=False))
    received(log, ServerError(http_error_code=400, error_description="bad frame"))
    received(log, parse('{"type":"server.brand-new","colour":"blue"}'))
    log.record_local("playback.progress", message_id="m1", played_ms=80.0)
    log.record_local("connection.closed", close_code=1000, close_reason="bye", text="bye")


@pytest.fixture
def log(tmp_path):
    log = FrameLog(tmp_path / "session", secrets=[TOKEN])
    yield log
    log.close()


def test_schema_is_pinned_even_when_empty(log):
    frame = log.to_dataframe()
    assert list(frame.columns) == list(EXPECTED_DTYPES)
    assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED_DTYPES
    assert list(COLUMNS) == list(EXPECTED_DTYPES)


def test_entries_fill_their_columns(log):
    a_conversation(log)
    df = log.to_dataframe()
    assert {c: str(t) for c, t in df.dtypes.items()} == EXPECTED_DTYPES
    assert list(df["seq"]) == list(range(len(df)))
    assert df["t"].is_monotonic_increasing and df["t"].iloc[0] >= 0
    assert (df["wall"].dt.tz is not None) and df["wall"].is_monotonic_increasing
    by_type = {row["type"]: row for _, row in df.iterrows()}

    start = by_type["client.start-conversation"]
    assert json.loads(start["extra"]) == {"service_id": "6650a1b2c3d4e5f6a7b8c9d0",
                                          "service_version_set_name": "release"}
    assert start["size"] == len(serialize(StartConversation(service_id="6650a1b2c3d4e5f6a7b8c9d0")))
    text = by_type["client.new-text-message"]
    assert (text["text"], text["message_type"], text["direction"]) == ("hello there", "user-message", "sent")
    assert text["conversation_id"] == "c" * 24  # filled forward once known
    chunk = df[(df["type"] == "client.new-audio-message") & df["audio_bytes"].gt(0)].iloc[0]
    assert (chunk["audio_format"], chunk["audio_offset"], chunk["audio_bytes"]) == ("pcm", 0, 1280)
    assert chunk["audio_ms"] == pytest.approx(40.0)
    end = df[(df["type"] == "client.new-audio-message") & df["audio_bytes"].eq(0)].iloc[0]
    assert bool(end["stop"]) and pd.isna(end["audio_offset"])
    assert by_type["server.vad-speech-ended"]["vad_ms"] == pytest.approx(1230.5)
    assert by_type["server.user-message-available"]["text"] == "hello there"
    action = by_type["server.current-agent-action"]
    assert action["action_type"] == "tool-call-started"
    assert json.loads(action["action"]) == {"type": "tool-call-started", "tool_name": "calendar"}
    piece = by_type["server.new-message"]
    assert (piece["message_id"], piece["sequence_number"], bool(piece["stop"])) == ("m1", 0, True)
    assert piece["audio_ms"] == pytest.approx(160.0) and pd.isna(piece["text"])
    assert json.loads(piece["alignment"]) == [[0.0, "H"], [80.0, "i"]]
    complete = by_type["server.interaction-complete"]
    assert (complete["interaction_id"], complete["text"], bool(complete["conversation_completed"])) == \
        ("i1", "Hi", False)
    error = by_type["server.error"]
    assert (error["http_error_code"], error["error_description"]) == (400, "bad frame")
    assert json.loads(by_type["server.brand-new"]["extra"]) == {"colour": "blue"}
    progress = by_type["playback.progress"]
    assert (progress["direction"], progress["size"], progress["played_ms"]) == ("local", 0, 80.0)
    closed = by_type["connection.closed"]
    assert (closed["close_code"], closed["close_reason"]) == (1000, "bye")
    # Null where a column does not apply.
    assert pd.isna(text["audio_bytes"]) and pd.isna(text["close_code"]) and pd.isna(text["extra"])


def test_text_pieces_land_in_text(log):
    received(log, NewMessage(message="Hello", stop=False, sequence_number=0, message_id="m"))
    row = log.to_dataframe().iloc[0]
    assert row["text"] == "Hello" and pd.isna(row["audio_bytes"])


def test_reload_equals_live_and_parquet_round_trips(log):
    a_conversation(log)
    live = log.to_dataframe()
    pd.testing.assert_frame_equal(load_session(log.path).frames, live)
    out = log.export_parquet(log.path / "copy.parquet")
    pd.testing.assert_frame_equal(read_parquet(out), live)
    log.close()
    pd.testing.assert_frame_equal(read_parquet(log.path / "frames.parquet"), live)
    (log.path / "frames.jsonl").unlink()  # parquet alone still loads
    pd.testing.assert_frame_equal(load_session(log.path).frames, live)


def test_meta_describes_the_session(tmp_path):
    log = FrameLog(tmp_path / "s", meta={"url": "ws://127.0.0.1:9/x", "organization": "org", "audio_format": "pcm"})
    log.update_meta(conversation_id="c" * 24)
    log.close()
    meta = load_session(tmp_path / "s").meta
    assert meta["organization"] == "org" and meta["conversation_id"] == "c" * 24
    assert meta["started_at"].endswith("+00:00") and "monotonic" in meta["clock"]
    assert meta["lab_version"]


@pytest.mark.parametrize("token", [TOKEN, "plain-secret-value-0123456789"])
def test_token_never_reaches_a_file(tmp_path, token):
    TOKEN = token
    log = FrameLog(tmp_path / "s", secrets=[TOKEN], meta={"url": f"wss://h/x?t={TOKEN}", "note": f"Bearer {TOKEN}"})
    log.record_local("connection.opened", extra={"subprotocol": f"bearer.authorization.amigo.ai.{TOKEN}"})
    sent(log, NewTextMessage(text=f"my token is {TOKEN}"))
    received(log, ServerError(http_error_code=401, error_description=f"token {TOKEN} expired"))
    log.record_local("connection.closed", close_code=4401, close_reason=f"bad {TOKEN}")
    assert TOKEN not in repr(log) and TOKEN not in log.to_dataframe().to_string()
    assert TOKEN not in log.to_dataframe().to_json(date_format="iso")
    log.close()
    files = list((tmp_path / "s").iterdir())
    assert {f.name for f in files} >= {"meta.json", "frames.jsonl", "frames.parquet", "audio-sent.bin",
                                       "audio-received.bin"}
    for file in files:
        assert TOKEN.encode() not in file.read_bytes(), file.name
        assert TOKEN[:20].encode() not in file.read_bytes(), file.name


def test_audio_track_places_frames_on_the_session_clock(tmp_path):
    log = FrameLog(tmp_path / "s")
    first, second = tone(100, 300), tone(100, 600)
    for samples in (first, second):
        pcm = audio.float_to_pcm16(samples)
        sent(log, NewAudioMessage.from_bytes(pcm), audio_bytes=pcm, audio_format="pcm")
        time.sleep(0.3)
    # Agent audio arrives faster than real time: its pieces are laid end to end, not on top of each other.
    pieces = [audio.float_to_pcm16(tone(200, f)) for f in (200, 400, 800)]
    for number, piece in enumerate(pieces):
        received(log, NewMessage.audio_piece(piece, stop=number == 2, sequence_number=number, message_id="m"),
                 audio_bytes=piece, audio_format="pcm")
    log.close()
    recorded = load_session(tmp_path / "s")
    df = recorded.frames
    track = recorded.audio_track("sent")
    starts = [int(round(t * 16000)) for t in df[df["direction"] == "sent"]["t"]]
    assert track.dtype == np.float32 and len(track) == starts[1] + len(second)
    np.testing.assert_allclose(track[starts[0]: starts[0] + len(first)], first, atol=1 / 32768)
    np.testing.assert_allclose(track[starts[1]: starts[1] + len(second)], second, atol=1 / 32768)
    assert not track[starts[0] + len(first): starts[1]].any()  # the gap is silent
    agent = recorded.audio_track("received")
    t0 = int(round(df[df["direction"] == "received"]["t"].iloc[0] * 16000))
    expected = np.concatenate([audio.pcm16_to_float(p) for p in pieces])
    np.testing.assert_array_equal(agent[t0: t0 + len(expected)], expected)
    np.testing.assert_array_equal(recorded.message_audio("m"), expected)
    assert recorded.message_audio("nope").size == 0
    half = recorded.audio_track("received", sr=8000)
    assert abs(len(half) - len(agent) / 2) <= 2


def test_mp3_audio_is_measured_by_decoding(tmp_path):
    log = FrameLog(tmp_path / "s")
    data = audio.encode_mp3(tone(300))
    entry = received(log, NewMessage.audio_piece(data, stop=True, sequence_number=0, message_id="m"),
                     audio_bytes=data, audio_format="mp3")
    assert entry["audio_ms"] == pytest.approx(300.0, abs=1.0)
    assert log.audio("received") == data
    log.close()
    assert load_session(tmp_path / "s").message_audio("m").size == pytest.approx(4800, abs=16)


def test_listeners_see_every_entry_and_cannot_break_the_log(log, caplog):
    seen = []
    remove = log.subscribe(lambda entry, frame: seen.append((entry["type"], frame)))
    log.subscribe(lambda entry, frame: 1 / 0)
    text = NewTextMessage(text="hi")
    with caplog.at_level(logging.ERROR, logger="amigo_lab.framelog"):
        sent(log, text)
        log.record_local("playback.finished", message_id="m")
    assert seen == [("client.new-text-message", text), ("playback.finished", None)]
    assert "listener failed" in caplog.text
    remove()
    log.record_local("playback.flushed")
    assert len(seen) == 2


def test_record_rejects_what_has_no_column(log):
    with pytest.raises(FrameLogError, match="unknown columns"):
        log.record_local("playback.progress", loudness=3)
    with pytest.raises(FrameLogError, match="direction"):
        log.record("sideways", NewTextMessage(text="x"), raw_size=1)


def test_a_folder_holds_one_session(log):
    with pytest.raises(FrameLogError, match="already holds a recorded session"):
        FrameLog(log.path)


def test_default_folder_is_fresh_and_quiet(capsys):
    one, two = FrameLog(), FrameLog()
    try:
        assert one.path.parent == default_sessions_dir() == two.path.parent and one.path != two.path
        assert capsys.readouterr() == ("", "")
    finally:
        for log in (one, two):
            log.close()
            shutil.rmtree(log.path)


def test_recording_after_close_appends(log):
    log.record_local("connection.opened")
    log.close()
    log.record_local("connection.opened")
    log.close()
    assert list(load_session(log.path).frames["seq"]) == [0, 1]


def test_concurrent_writers_get_unique_sequence_numbers(log):
    def write(n):
        for i in range(200):
            log.record_local("playback.progress", played_ms=float(i), message_id=str(n))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    frames = load_session(log.path).frames
    assert list(frames["seq"]) == list(range(800))
    pd.testing.assert_frame_equal(frames, log.to_dataframe())


def test_a_partial_last_line_is_ignored(log):
    a_conversation(log)
    n = len(log)
    log.close()
    with open(log.path / "frames.jsonl", "a", encoding="utf-8") as f:
        f.write('{"seq": 99, "t": 1.5, "wall": "20')
    assert len(load_session(log.path).frames) == n


def test_a_damaged_middle_line_is_an_error(log):
    log.record_local("connection.opened")
    log.close()
    path = log.path / "frames.jsonl"
    path.write_text("garbage\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(FrameLogError, match="line 1"):
        load_session(log.path)


def test_missing_session_is_a_clear_error(tmp_path):
    with pytest.raises(FrameLogError, match="no recorded session"):
        load_session(tmp_path / "nowhere")
    with pytest.raises(FrameLogError, match="neither"):
        load_session(tmp_path)


WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from amigo_lab.framelog import FrameLog
    from amigo_lab.protocol import NewAudioMessage, NewTextMessage
    log = FrameLog(sys.argv[1])
    pcm = (np.arange(320, dtype="<i2") * 50).tobytes()
    for i in range(int(sys.argv[2])):
        log.record("sent", NewAudioMessage.from_bytes(pcm), raw_size=900, audio_bytes=pcm, audio_format="pcm")
        log.record("sent", NewTextMessage(text=f"turn {i}"), raw_size=60)
    print("written", flush=True)
    while True:
        log.record_local("playback.progress", played_ms=1.0)
        time.sleep(0.001)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_killed_writer_leaves_a_loadable_session(tmp_path):
    folder = tmp_path / "crashed"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), "50"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
        time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    recorded = load_session(folder)
    frames = recorded.frames
    assert not (folder / "frames.parquet").exists()
    assert len(frames) >= 100 and list(frames["seq"]) == list(range(len(frames)))
    texts = frames[frames["type"] == "client.new-text-message"]["text"]
    assert list(texts) == [f"turn {i}" for i in range(50)]
    assert recorded.audio_track("sent").size > 0
    assert len(recorded.audio("sent")) == 50 * 640
