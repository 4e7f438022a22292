"""The latency waterfall against a real emulator: its numbers are the protocol fold's, live and replayed."""

from __future__ import annotations

import numpy as np
import pytest

from amigo_lab.protocol.fold import LATENCIES
from amigo_lab.widgets import LatencyWaterfall, replay_fold


def _completed(waterfall):
    return [t for t in waterfall.turns if t["status"] == "completed"]


def test_live_rows_equal_a_replay_of_the_log(front_end, session, wait_until):
    waterfall = LatencyWaterfall(session)
    assert [t["kind"] for t in waterfall.turns] == ["greeting"]          # replayed from the log
    for text in ("what are your opening hours", "where are you located"):
        session.say(text).result(timeout=60)
    wait_until(lambda: len(_completed(waterfall)) == 3, what="three completed rows")
    replayed = LatencyWaterfall()
    for event in replay_fold(session.frames, response_format="voice"):
        replayed.apply(event)
    assert replayed.turns == waterfall.turns
    assert replayed.summary == waterfall.summary


def test_rows_carry_the_fold_names_and_offsets(front_end, session, wait_until):
    waterfall = LatencyWaterfall(session)
    session.say("what are your opening hours").result(timeout=60)
    turn = wait_until(lambda: [t for t in _completed(waterfall) if t["kind"] == "text"], what="the text turn")[0]
    assert set(turn["latencies"]) == set(LATENCIES)
    assert turn["user_text"] == "what are your opening hours"
    first_audio = turn["latencies"]["latency_first_audio_ms"]
    assert first_audio is not None and first_audio > 0
    assert turn["offsets"]["first_audio"] == pytest.approx(first_audio, abs=0.01)
    assert turn["offsets"]["vad_end"] is None                       # a text turn has no server VAD
    assert set(waterfall.definitions) == set(LATENCIES)
    assert waterfall.definitions["latency_first_audio_ms"]["definition"] == LATENCIES["latency_first_audio_ms"][2]


def test_running_percentiles_leave_the_greeting_out(front_end, session, wait_until):
    waterfall = LatencyWaterfall(session)
    for _ in range(3):
        session.say("what are your opening hours").result(timeout=60)
    wait_until(lambda: len(_completed(waterfall)) == 4, what="four completed rows")
    values = [t["latencies"]["latency_first_audio_ms"] for t in _completed(waterfall) if t["kind"] != "greeting"]
    stats = waterfall.summary["latency_first_audio_ms"]
    assert stats["n"] == 3
    assert stats["p50"] == pytest.approx(np.percentile(values, 50), abs=0.01)
    assert stats["p90"] == pytest.approx(np.percentile(values, 90), abs=0.01)
    waterfall.include_greeting = True
    assert waterfall.summary["latency_first_audio_ms"]["n"] == 4


def test_live_numbers_are_the_sessions_own(front_end, session, wait_until):
    waterfall = LatencyWaterfall(session)
    reply = session.say("where are you located").result(timeout=60)
    turn = wait_until(lambda: [t for t in _completed(waterfall) if t["user_text"] == "where are you located"],
                      what="the turn")[0]
    for name in LATENCIES:
        mine, theirs = turn["latencies"][name], reply.timings.get(name)
        assert (mine is None and theirs is None) or mine == pytest.approx(theirs, abs=0.001), name
    assert len([t for t in waterfall.turns if t["user_text"] == "where are you located"]) == 1
