"""A panel attached to a session with a long log already behind it: one read, one replay, the same account."""

from __future__ import annotations

import math

import pytest

from amigo_lab import analysis
from amigo_lab.protocol import parse
from amigo_lab.protocol.fold import Fold
from amigo_lab.widgets import EventInspector, SessionPanel, replay_fold
from amigo_lab.widgets._fold_feed import log_records


def _none(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def test_attaching_to_a_long_log_shows_the_turns_of_analysis_turns(front_end, long_log, long_session):
    turns = analysis.turns(long_log.to_dataframe())
    spoken = turns[turns["user_kind"] == "voice"]
    assert len(spoken) == 30 and (turns["status"] == "complete").all()
    panel = SessionPanel(long_session)
    try:
        assert sorted(panel.view.records) == list(range(len(turns)))
        waterfall = {row["index"]: row for row in panel.waterfall.turns}
        for index, row in turns.iterrows():
            shown = waterfall[index]["latencies"]
            for name in ("latency_first_audio_ms", "latency_first_text_ms", "latency_first_heard_ms"):
                want = _none(float(row[name]))
                assert shown[name] == (None if want is None else pytest.approx(want, abs=0.001)), (index, name)
        agent = {ln["message_id"]: ln for ln in panel.view.transcript if ln["role"] == "agent"}
        user = [ln["text"] for ln in panel.view.transcript if ln["role"] == "user"]
        assert user == list(spoken["transcript"])
        for _, row in spoken.iterrows():
            line = agent[row["answer_message_id"]]
            assert line["text"] == row["reply_text"]
            assert line["latency_ms"] == pytest.approx(row["latency_first_audio_ms"], abs=0.001)
        assert panel.view.latency_ms == pytest.approx(spoken["latency_first_audio_ms"].iloc[-1], abs=0.001)
    finally:
        panel.close()


def test_rebuilt_audio_frames_fold_as_the_parsed_wire_does(long_log):
    frames = long_log.to_dataframe()
    fold = Fold(response_format="voice", audio_format="pcm")
    parsed = []
    for entry in frames.to_dict("records"):
        if entry["direction"] == "local":
            fold.feed_local(entry["type"], entry["t"], **{k: v for k in ("message_id", "played_ms")
                                                           if (v := _none(entry[k])) is not None})
        else:
            fold.feed(entry["direction"], parse(entry["wire"]), entry["t"], audio_ms=_none(entry["audio_ms"]))
        parsed.extend(fold.events_received())
    rebuilt = replay_fold(frames, response_format="voice")
    assert [type(e).__name__ for e in rebuilt] == [type(e).__name__ for e in parsed]
    assert rebuilt == parsed


def test_replayed_entries_keep_wire_text_only_where_it_is_read(long_log):
    frames = long_log.to_dataframe()
    records = log_records(frames, wire_tail=50)
    assert len(records) == len(frames)
    with_wire = [r for r in records if r.get("wire") is not None]
    head = records[:-50]
    assert all(r.get("wire") is None for r in head if r["audio_bytes"])           # audio: rebuilt, not parsed
    assert all(r.get("wire") is not None for r in head if r["direction"] != "local" and not r["audio_bytes"])
    assert all(r.get("wire") is not None for r in records[-50:] if r["direction"] != "local")
    assert len(with_wire) < len(records) / 5
    assert all(v is None or not (isinstance(v, float) and math.isnan(v)) for r in records for v in r.values())


def test_the_inspector_of_an_attached_panel_shows_every_row_and_expands_old_ones(front_end, long_log, long_session):
    alone = EventInspector()
    for entry in long_log.to_dataframe().to_dict("records"):         # every entry fed as a live one
        alone.feed(entry)
    panel = SessionPanel(long_session)
    try:
        assert panel.inspector.rows() == alone.rows()
        first_chunk = next(r for r in panel.inspector.rows() if r["type"] == "client.new-audio-message")
        wire = panel.inspector.wire_json(first_chunk["seq"])        # older than the wire kept at hand
        assert wire is not None and parse(wire).type == "client.new-audio-message"
    finally:
        panel.close()


def test_the_strip_replays_the_audio_the_browser_keeps(front_end, long_log, long_session, monkeypatch):
    from amigo_lab.widgets import LiveTimeline, timeline

    monkeypatch.setattr(timeline, "REPLAY_WINDOW_S", 60.0)
    strip = LiveTimeline(long_session)
    frames = long_log.to_dataframe()
    end = float(frames["t"].max())
    agent = [s for s in strip.segments() if s["lane"] == "agent"]
    user = [s for s in strip.segments() if s["lane"] == "user"]
    assert agent and all(s["t0"] >= end - 60.0 for s in agent + user)
    recent = frames[(frames["type"] == "server.new-message") & (frames["t"] >= end - 60.0)]
    assert {s["seq0"] for s in agent} == set(recent.groupby("message_id")["seq"].min())
    assert all(s["role"] == "answer" for s in agent)                 # meaning still from the fold's replay
    vad = [s for s in strip.segments() if s["lane"] == "vad"]
    assert len(vad) == 30                                            # entries other than audio: all of them
    strip.close()
