"""The event inspector against a real emulator: rows follow the frame log, audio runs fold, batches stay few,
rows expand to the exact wire JSON."""

from __future__ import annotations

import json

import pytest

from amigo_lab.widgets import EventInspector
from amigo_lab.widgets.inspector import ROW_FIELDS, summarize


def _rows_by_type(inspector, kind):
    return [row for row in inspector.rows() if row["type"] == kind]


def test_replays_then_follows_and_folds_agent_audio(front_end, session, wait_until, opening_hours_answer):
    inspector = EventInspector(session)
    greeting_rows = _rows_by_type(inspector, "server.new-message")
    assert len(greeting_rows) == 1 and greeting_rows[0]["n"] > 1      # the greeting's pieces: one row
    reply = session.say("what are your opening hours").result(timeout=60)
    answer = wait_until(lambda: [r for r in _rows_by_type(inspector, "server.new-message")
                                 if r["seq"] > greeting_rows[0]["last_seq"]], what="the answer's row")
    frames = session.frames
    pieces = frames[(frames["type"] == "server.new-message") & (frames["message_id"] == reply.message_id)]
    assert len(answer) == 1
    assert answer[0]["n"] == len(pieces)
    assert answer[0]["audio_ms"] == pytest.approx(pieces["audio_ms"].sum(), abs=0.001)   # kept to the µs
    assert answer[0]["summary"].startswith(f"audio ×{len(pieces)}, ")
    assert opening_hours_answer[:40] in answer[0]["summary"]
    said = _rows_by_type(inspector, "client.new-text-message")
    assert said[-1]["summary"] == "“what are your opening hours”" and said[-1]["n"] == 1
    def every_frame_in_some_row():
        # The log is on disk before its listeners run: a frame may be read here a moment before it is fed.
        shown = set()
        for row in inspector.rows():
            shown.update(range(row["seq"], row["last_seq"] + 1))
        return set(session.frames["seq"]) <= shown

    wait_until(every_frame_in_some_row, what="every logged frame in a row")


def test_microphone_audio_is_one_row_per_stretch(front_end, session, wait_until):
    inspector = EventInspector(session)
    for _ in range(50):
        session.send_chunk(b"\0" * 640)
    session.end_audio()
    wait_until(lambda: _rows_by_type(inspector, "client.new-audio-message")
               and _rows_by_type(inspector, "client.new-audio-message")[-1]["summary"] == "end of audio (null)",
               what="the end of the audio")
    sent = _rows_by_type(inspector, "client.new-audio-message")
    assert sent[0]["n"] == 50 and sent[0]["audio_ms"] == 1000.0
    assert sent[0]["summary"] == "audio ×50, 1.0 s"


def test_rows_reach_the_browser_in_batches(front_end, session, wait_until):
    inspector = EventInspector(session)
    for _ in range(100):
        session.send_chunk(b"\0" * 640)
    session.say("what are your opening hours").result(timeout=60)
    entries = len(session.frames)
    wait_until(lambda: front_end.sent(inspector, "rows") and
               front_end.sent(inspector, "rows")[-1][0]["entries"] == entries, what="the last batch")
    batches = front_end.sent(inspector, "rows")
    assert len(batches) < entries / 5                              # batched, not a message per frame
    latest = {}
    for content, _ in batches:
        for row in content["rows"]:
            assert len(row) == len(ROW_FIELDS)
            latest[row[0]] = row
    assert {r[0]: r for r in latest.values()} == {r["id"]: list(r.values()) for r in inspector.rows()}


def test_a_new_view_gets_the_whole_window(front_end, session):
    inspector = EventInspector(session)
    front_end.custom(inspector, {"kind": "hello"})
    reset, rows = front_end.sent(inspector)[-2:]
    assert reset[0]["kind"] == "reset" and rows[0]["kind"] == "rows"
    assert [row[0] for row in rows[0]["rows"]] == [r["id"] for r in inspector.rows()]


def test_a_row_expands_to_its_exact_wire_json(front_end, session):
    inspector = EventInspector(session)
    frames = session.frames
    created = frames[frames["type"] == "server.conversation-created"].iloc[0]
    piece = frames[frames["type"] == "server.new-message"].iloc[3]
    front_end.custom(inspector, {"kind": "detail", "id": 7, "seqs": [int(created["seq"]), int(piece["seq"])]})
    content, _ = front_end.sent(inspector, "detail")[-1]
    assert content["id"] == 7
    assert [f["wire"] for f in content["frames"]] == [created["wire"], piece["wire"]]
    assert json.loads(content["frames"][1]["wire"])["sequence_number"] == 3


def test_older_wire_json_comes_from_the_log(front_end, session, monkeypatch):
    from amigo_lab.widgets import inspector as module

    monkeypatch.setattr(module, "DETAIL_WINDOW", 3)
    inspector = EventInspector(session)
    frames = session.frames
    first = frames[frames["wire"].notna()].iloc[0]
    assert inspector.wire_json(int(first["seq"])) == first["wire"]


def test_the_window_is_bounded(front_end):
    inspector = EventInspector(window=200)
    for seq in range(5000):
        inspector.feed({"seq": seq, "t": seq * 0.02, "direction": "received", "type": "server.vad-speech-started"})
    rows = inspector.rows()
    assert len(rows) == 200 and rows[-1]["seq"] == 4999
    inspector.close()


def test_summaries_are_short_and_say_what_matters():
    assert summarize({"type": "server.error", "http_error_code": 400, "error_description": "bad"}) == "error 400 bad"
    assert summarize({"type": "client.switch-vad-mode", "vad_mode_on": True}) == "VAD on"
    assert summarize({"type": "server.vad-speech-ended", "vad_ms": 1234.4}) == "at 1234 ms"
    assert summarize({"type": "connection.closed", "close_code": 4408, "close_reason": "idle"}) == "close 4408 idle"
    long = summarize({"type": "client.new-text-message", "text": "x" * 500})
    assert len(long) < 130
