"""The wire text kept whole, typed local kinds, binary and unparsed messages, lone surrogates, torn lines,
finding a session folder, the Parquet on close, and bounded memory."""

from __future__ import annotations

import asyncio
import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from amigo_lab import audio
from amigo_lab.framelog import (
    BINARY_FRAME,
    FLAG_INVALID_UNICODE,
    INVALID_FRAME,
    LOCAL_KINDS,
    FrameLog,
    FrameLogError,
    load_session,
    read_parquet,
    register_local_kind,
)
from amigo_lab.protocol import NewAudioMessage, NewMessage, NewTextMessage, parse, serialize

SURROGATE_PIECE = ('{"type":"server.new-message","message":"Hi \\ud83d","stop":false,"sequence_number":0,'
                   '"message_id":"m"}')


def test_the_wire_text_is_kept_verbatim_next_to_its_columns(tmp_path):
    log = FrameLog(tmp_path / "s")
    # Spacing, key order and an unknown key as a real server might send them: kept exactly.
    text = '{ "message_id":"m1", "type":"server.new-message","message":"Hello", "stop":true,"sequence_number":0,"x":1}'
    log.record("received", parse(text), raw=text)
    sent = NewTextMessage(text="hi")
    log.record("sent", sent, raw_size=len(serialize(sent)))  # no raw: serialised again, and flagged so
    log.close()
    frames = load_session(tmp_path / "s").frames
    assert frames["wire"].iloc[0] == text
    assert frames["size"].iloc[0] == len(text)
    assert (frames["text"].iloc[0], frames["message_id"].iloc[0], bool(frames["stop"].iloc[0])) == ("Hello", "m1", True)
    assert json.loads(frames["extra"].iloc[0]) == {"x": 1}
    assert pd.isna(frames["flags"].iloc[0])
    assert json.loads(frames["wire"].iloc[1]) == sent.to_dict() and frames["flags"].iloc[1] == "reserialized"


def test_a_message_that_does_not_parse_is_logged_whole(tmp_path):
    log = FrameLog(tmp_path / "s")
    huge = '{"type":"server.new-message","message":"' + "x" * 600_000 + '","stop":"maybe"'  # cut, and too big
    log.record("received", None, raw=huge, error_description="not JSON")
    # The older call shape, with the text in extra["raw"], keeps it whole in wire as well.
    log.record_local(INVALID_FRAME, error_description="not JSON", extra={"raw": huge, "bytes": len(huge)})
    log.close()
    frames = load_session(tmp_path / "s").frames
    assert list(frames["type"]) == [INVALID_FRAME, INVALID_FRAME]
    assert list(frames["wire"]) == [huge, huge]
    assert frames["direction"].iloc[0] == "received" and frames["size"].iloc[0] == len(huge)
    assert frames["flags"].iloc[0] == "unparsed"
    assert json.loads(frames["extra"].iloc[1]) == {"bytes": len(huge)}


def test_a_binary_message_keeps_its_bytes_as_audio(tmp_path):
    log = FrameLog(tmp_path / "s")
    pcm = audio.float_to_pcm16(np.linspace(-0.5, 0.5, 1600, dtype=np.float32))
    log.record("received", None, raw=pcm, message_id="m7")
    log.close()
    recorded = load_session(tmp_path / "s")
    row = recorded.frames.iloc[0]
    assert (row["type"], row["flags"], row["audio_bytes"], row["size"]) == (BINARY_FRAME, "binary", len(pcm), len(pcm))
    assert row["audio_ms"] == pytest.approx(100.0)
    assert recorded.audio("received") == pcm
    np.testing.assert_array_equal(recorded.message_audio("m7"), audio.pcm16_to_float(pcm))


def test_a_lone_surrogate_is_logged_and_flagged_never_dropped(tmp_path):
    log = FrameLog(tmp_path / "s")
    frame = parse(SURROGATE_PIECE)  # the protocol mends the half character and notes it
    assert frame.message.endswith("\ufffd") and frame.problems
    entry = log.record("received", frame, raw=SURROGATE_PIECE)
    after = NewMessage(message="after", stop=True, sequence_number=1, message_id="m")
    log.record("received", after, raw=serialize(after))
    assert entry["flags"] == FLAG_INVALID_UNICODE and entry["text"] == "Hi \ufffd"
    live = log.to_dataframe()
    log.close()
    for frames in (live, load_session(tmp_path / "s").frames, read_parquet(tmp_path / "s" / "frames.parquet")):
        assert list(frames["text"]) == ["Hi \ufffd", "after"]
        assert frames["wire"].iloc[0] == SURROGATE_PIECE  # the escape exactly as the wire sent it
        assert frames["flags"].iloc[0] == FLAG_INVALID_UNICODE and pd.isna(frames["flags"].iloc[1])


def test_local_entries_are_typed(tmp_path):
    log = FrameLog(tmp_path / "s")
    with pytest.raises(FrameLogError, match=r"unknown local kind 'playback.exploded'.*register_local_kind"):
        log.record_local("playback.exploded")
    with pytest.raises(FrameLogError, match=r"for local kind 'playback.progress'"):
        log.record_local("playback.progress", close_code=1000)
    kind = register_local_kind("test.marker", ("message_id",), "a marker a test drops in the log")
    assert LOCAL_KINDS["test.marker"] is kind and "message_id" in kind.fields
    log.record_local("test.marker", message_id="x")
    with pytest.raises(FrameLogError, match="unknown columns"):
        register_local_kind("test.other", ("loudness",), "no such column")
    log.close()
    assert list(load_session(tmp_path / "s").frames["type"]) == ["test.marker"]


def test_a_torn_last_line_inside_a_multibyte_character_loses_only_that_line(tmp_path):
    log = FrameLog(tmp_path / "s")
    log.record("sent", NewTextMessage(text="¿qué hora es? 🙂"))
    log.record("sent", NewTextMessage(text="otra"))
    log.close(wait=True)
    jsonl = tmp_path / "s" / "frames.jsonl"
    whole = jsonl.read_bytes()
    line = json.dumps({"seq": 2, "t": 9.0, "type": "client.new-text-message", "text": "日本語"},
                      ensure_ascii=False).encode("utf-8")
    torn = line[: line.index("本".encode()) + 1]  # stops one byte into a three-byte character
    jsonl.write_bytes(whole + torn)
    frames = load_session(tmp_path / "s").frames
    assert list(frames["text"]) == ["¿qué hora es? 🙂", "otra"]


def test_fsync_is_an_option_and_meta_says_which_durability(tmp_path):
    log = FrameLog(tmp_path / "s", fsync=True)
    log.record("sent", NewTextMessage(text="durable"))
    assert "fsync" in log.meta["durability"]
    log.close()
    assert load_session(tmp_path / "s").frames["text"].iloc[0] == "durable"
    plain = FrameLog(tmp_path / "p")
    assert plain.meta["durability"] == "flushed per entry, not fsynced"
    plain.close()


def test_a_folder_holding_one_session_loads_it_and_several_are_named(tmp_path):
    demo_out = tmp_path / "demo-out"
    log = FrameLog(demo_out / "session")
    log.record("sent", NewTextMessage(text="hello"))
    log.close()
    (demo_out / "report.html").write_text("<html></html>")
    recorded = load_session(demo_out)
    assert recorded.path == demo_out / "session" and recorded.frames["text"].iloc[0] == "hello"
    FrameLog(demo_out / "second").close()
    with pytest.raises(FrameLogError, match=r"holds 2 recorded sessions.*second.*session"):
        load_session(demo_out)


def test_entries_after_close_are_not_hidden_by_the_older_parquet(tmp_path):
    log = FrameLog(tmp_path / "s")
    log.record("sent", NewTextMessage(text="one"))
    log.close()
    log.record("sent", NewTextMessage(text="two"))  # reopens and appends; the Parquet is now behind
    assert list(load_session(tmp_path / "s").frames["text"]) == ["one", "two"]
    log.close()
    assert list(read_parquet(tmp_path / "s" / "frames.parquet")["text"]) == ["one", "two"]


def test_closing_on_an_event_loop_writes_the_parquet_off_the_loop(tmp_path):
    log = FrameLog(tmp_path / "s")
    for i in range(2000):
        log.record("sent", NewTextMessage(text=f"turn {i}"))

    async def close_on_the_loop() -> str:
        log.close()
        return __import__("threading").current_thread().name

    loop_thread = asyncio.run(close_on_the_loop())
    assert log.wait_closed(timeout=60)
    assert loop_thread == "MainThread"
    assert len(read_parquet(tmp_path / "s" / "frames.parquet")) == 2000
    assert load_session(tmp_path / "s").meta["parquet"]["rows"] == 2000


def test_memory_does_not_grow_with_every_entry(tmp_path):
    log = FrameLog(tmp_path / "s")
    chunk = audio.float_to_pcm16(np.zeros(320, dtype=np.float32))
    frame = parse(serialize(NewTextMessage(text="warm up")))
    log.record("sent", frame)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(20_000):
        log.record_local("playback.progress", message_id="m", played_ms=20.0)
        log.record("sent", NewTextMessage(text="x"), audio_bytes=chunk, audio_format="pcm")
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    log.close()
    assert grown < 1_000_000, f"{grown} bytes kept for 40,000 entries"
    assert len(load_session(tmp_path / "s").frames) == 40_001


def test_tokens_are_redacted_in_the_wire_text_of_audio_frames_too(tmp_path):
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXNlY3JldA"
    plain = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # a secret spelled in base64 characters
    pcm = bytes(2048)
    log = FrameLog(tmp_path / "s", secrets=[jwt, plain])
    piece = NewMessage.audio_piece(pcm, stop=False, sequence_number=0, message_id="m")
    wire = serialize(piece)
    leaky = wire[:-1] + f',"note":"Bearer {jwt}"}}'
    log.record("received", parse(leaky), raw=leaky, audio_bytes=pcm, audio_format="pcm")
    hidden = wire.replace('"message":"', f'"message":"{plain}', 1)
    log.record("received", parse(hidden), raw=hidden, audio_bytes=pcm, audio_format="pcm")
    log.record("received", parse(wire), raw=wire, audio_bytes=pcm, audio_format="pcm")
    log.close()
    frames = load_session(tmp_path / "s").frames
    text = (tmp_path / "s" / "frames.jsonl").read_text(encoding="utf-8")
    assert jwt not in text and plain not in text and "c2lnbmF0dXJlLXNlY3JldA" not in text
    assert frames["wire"].iloc[2] == wire  # nothing to hide: verbatim


def test_pieces_are_laid_on_the_clock_or_end_to_end_however_many(tmp_path):
    rng = np.random.default_rng(3)
    now = [0.0]
    log = FrameLog(tmp_path / "s", clock=lambda: now[0])
    expected_starts, pieces, end = [], [], 0
    for _ in range(300):
        now[0] += float(rng.choice([0.0, 0.005, 0.02, 0.3]))  # bursts (overlapping) and gaps
        piece = audio.float_to_pcm16((rng.uniform(-0.5, 0.5, int(rng.integers(1, 800)))).astype(np.float32))
        log.record("received", None, raw=piece)
        start = max(int(round(now[0] * 16000)), end)
        expected_starts.append(start)
        pieces.append(audio.pcm16_to_float(piece))
        end = start + len(pieces[-1])
    log.close()
    track = load_session(tmp_path / "s").audio_track("received")
    expected = np.zeros(end, dtype=np.float32)
    for start, samples in zip(expected_starts, pieces, strict=True):
        expected[start: start + len(samples)] = samples
    np.testing.assert_array_equal(track, expected)


def test_audio_the_writer_had_not_flushed_is_rebuilt_from_the_wire_text(tmp_path):
    log = FrameLog(tmp_path / "live")
    pcm = audio.float_to_pcm16(np.linspace(-0.3, 0.3, 320, dtype=np.float32))
    for _ in range(20):  # 12.8 kB: still in the audio file's buffer
        chunk = NewAudioMessage.from_bytes(pcm)
        log.record("sent", chunk, raw=serialize(chunk), audio_bytes=pcm, audio_format="pcm")
    # What a crash at this instant leaves on disk: the flushed JSONL, the audio file as far as it was written.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for name in ("meta.json", "frames.jsonl", "audio-sent.bin", "audio-received.bin"):
        (crashed / name).write_bytes((tmp_path / "live" / name).read_bytes())
    log.close()
    assert len((crashed / "audio-sent.bin").read_bytes()) < 20 * len(pcm)
    recorded = load_session(crashed)
    assert recorded.audio("sent") == pcm * 20
    assert len(recorded.audio_track("sent")) >= 20 * 320


def test_closes_in_a_row_on_the_loop_leave_the_newest_parquet(tmp_path):
    log = FrameLog(tmp_path / "s")

    async def session() -> None:
        for round_ in range(3):
            for i in range(500):
                log.record("sent", NewTextMessage(text=f"{round_}-{i}"))
            log.close()  # returns at once; each Parquet is written after the one before

    asyncio.run(session())
    assert log.wait_closed(timeout=60)
    frames = read_parquet(tmp_path / "s" / "frames.parquet")
    assert len(frames) == 1500 and frames["text"].iloc[-1] == "2-499"
    assert load_session(tmp_path / "s").meta["parquet"]["rows"] == 1500
    assert not list((tmp_path / "s").glob("*.tmp"))


def test_a_message_longer_than_a_read_block_loads_whole(tmp_path):
    log = FrameLog(tmp_path / "s")
    log.record("sent", NewTextMessage(text="before"))
    huge = '{"type":"server.new-message","message":"' + "y" * (17 << 20) + '"'  # 17 MB, unparsable
    log.record("received", None, raw=huge, error_description="cut")
    log.record("sent", NewTextMessage(text="after"))
    frames = log.to_dataframe()
    log.close()
    assert list(frames["type"])[1] == INVALID_FRAME and frames["wire"].iloc[1] == huge
    assert list(load_session(tmp_path / "s").frames["text"].iloc[[0, 2]]) == ["before", "after"]
