"""The session against every deviation of the deviation server: no hang, no crash, no lost frame or audio.

Each test runs one scenario over real loopback sockets and checks that every Turn ended (resolved with the
server's text and all of its audio, or failed with an error that says what happened), that the frame log
holds every frame and every byte of agent audio the server sent, and that the token appears nowhere.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re
import time

import numpy as np
import pandas as pd
import pytest

from amigo_lab import analysis, connect
from amigo_lab.framelog import load_session
from amigo_lab.protocol.fold import InteractionCompleted
from amigo_lab.session import Backoff
from deviation.deviations import DEVIATION_LIST
from deviation.server import ORG, SERVICE_ID, TOKEN, DeviationServer, reply_text

FAST = Backoff(initial=0.05, maximum=0.3, attempts=6)
#: Seconds a test waits for any one turn; a turn still pending then has hung.
TURN_WAIT = 20.0
SESSION_TIMEOUT = 5.0


def _norm(text: str) -> str:
    # A lone surrogate may reach the user as itself or as U+FFFD; the rest of the text must be intact.
    return re.sub("\\s*[\ud83d\ufffd]", "", text)


def _tone(ms: float) -> np.ndarray:
    n = int(16_000 * ms / 1000)
    return (0.3 * np.sin(2 * np.pi * 220.0 * np.arange(n) / 16_000)).astype(np.float32)


def _outcome(turn):
    """('ok', reply) or ('failed', error); a turn still pending after TURN_WAIT fails the test as a hang."""
    try:
        return "ok", turn.result(TURN_WAIT)
    except Exception as exc:  # the turn ended with an error: the test checks that it was expected
        if not turn.done():
            pytest.fail(f"{turn!r} hung: no reply and no error after {TURN_WAIT:.0f} s")
        return "failed", exc


def _run(session, scenario: str) -> dict:
    turns = {"greeting": session.greeting}
    if scenario in ("basic", "text", "finish"):
        turns["say1"] = session.say("hello there")
        _outcome(turns["say1"])
    if scenario in ("basic", "text"):
        turns["say2"] = session.say("what time is it")
        _outcome(turns["say2"])
    if scenario == "basic":
        turns["audio"] = session.send_audio(_tone(400), realtime=False)
        _outcome(turns["audio"])
    if scenario == "vad":
        _outcome(turns["greeting"])
        session.vad(True)
        turns["voice"] = session.send_audio(_tone(600), realtime=False)
        _outcome(turns["voice"])
        session.vad(False)
    if scenario == "reconnect":
        _outcome(turns["greeting"])
        turns["say1"] = session.say("hello there")
        _outcome(turns["say1"])
        turns["say2"] = session.say("what time is it")
        _outcome(turns["say2"])
    return turns


def _expected(server: DeviationServer, name: str, turn) -> dict | None:
    if name == "greeting":
        return next((i for i in server.interactions if i["kind"] == "greeting"), None)
    user_text = turn.request if turn.kind == "text" else None
    for interaction in server.interactions:
        if user_text is not None and _norm(interaction["text"]) == _norm(reply_text(user_text)):
            return interaction
        if user_text is None and interaction["kind"] in ("audio", "voice"):
            return interaction
    return None


@pytest.mark.timeout(90)
@pytest.mark.parametrize("deviation", DEVIATION_LIST, ids=lambda d: d.name)
def test_session_survives(deviation, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    options = {"timeout": SESSION_TIMEOUT, "backoff": FAST, **deviation.connect_options}
    with DeviationServer(deviation) as server:
        session = connect(ORG, TOKEN, host=server.address, service_id=SERVICE_ID, log_dir=tmp_path / "log",
                          start=False, **options)
        live = []
        session.on_event(lambda e: live.append(e.record) if isinstance(e, InteractionCompleted) else None)
        session.start()
        try:
            turns = _run(session, deviation.scenario)
            started = time.monotonic()
            session.finish()
            finish_s = time.monotonic() - started
        finally:
            if session.state not in ("closed", "failed"):
                session._discard()

        failures = dict(deviation.expect_fail)
        for name, turn in turns.items():
            status, value = _outcome(turn)
            if name in failures:
                assert status == "failed", f"{name} should have failed ({failures[name]}), got {value!r}"
                assert failures[name] in str(value), f"{name} failed without saying {failures[name]!r}: {value}"
                assert TOKEN not in str(value)
                continue
            assert status == "ok", f"{name} failed: {value!r}"
            reply = value
            if name == "greeting" and deviation.greeting_empty:
                assert reply.text == "" and reply.audio.size == 0
                continue
            expected = _expected(server, name, turn)
            assert expected is not None, f"the server never answered {name}"
            if deviation.check_text:
                assert _norm(reply.text) == _norm(expected["text"]), f"{name} got another interaction's reply"
            if deviation.check_reply_audio and expected["audio_ms"]:
                got_ms = reply.audio.size * 1000.0 / reply.sr
                slack = 40.0 if session.audio_format == "mp3" else 2.0
                assert abs(got_ms - expected["audio_ms"]) <= slack, (
                    f"{name}: {got_ms:.0f} ms of agent audio, the server sent {expected['audio_ms']:.0f} ms")

        frames = session.frames
        heard = int((frames["direction"] == "received").sum())
        assert heard >= server.frames_sent, f"the log holds {heard} received frames of {server.frames_sent} sent"
        assert len(session.log.audio("received")) == server.audio_bytes_sent, "agent audio missing from the log"
        if deviation.scenario == "finish":
            assert finish_s < SESSION_TIMEOUT, f"finish() waited {finish_s:.1f} s on a server that never closed"
        # The same account offline: the saved log replayed by the analysis gives the live interactions.
        table = analysis.turns(load_session(session.log.path).frames)
        offline = table[table["status"] == "complete"]
        assert len(offline) == len(live), f"{len(live)} interactions live, {len(offline)} replayed from the log"
        for (_, row), record in zip(offline.iterrows(), live, strict=True):
            assert _norm(str(row["reply_text"] or "")) == _norm(record.reply_text or "")
            for name, value in record.latencies.items():
                replayed = row[name]
                if value is None:
                    assert replayed is None or pd.isna(replayed), name
                else:
                    assert replayed == pytest.approx(value, abs=0.01), name
        # And the report of the same log: every section renders, the reply's text and audio players in it.
        report = analysis.write_report(session.log.path, tmp_path / "report.html", progress=False)
        page = report.read_text(encoding="utf-8")
        for record in live:
            if record.reply_text and record.reply_text.strip():
                shown = html.escape(" ".join(record.reply_text.split())[:40])
                assert shown in " ".join(page.split()), f"{deviation.name}: the report lacks the reply {shown!r}"
        if deviation.expect_warning:
            said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            said += [str(v) for v in frames["error_description"].dropna()]
            assert any(deviation.expect_warning in s for s in said), f"no warning about {deviation.expect_warning}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["error-repeats-token", "close-1012"])
def test_the_token_reaches_no_log_record_at_debug(name, tmp_path, caplog):
    from deviation.deviations import DEVIATIONS

    caplog.set_level(logging.DEBUG)
    deviation = DEVIATIONS[name]
    with DeviationServer(deviation) as server:
        session = connect(ORG, TOKEN, host=server.address, service_id=SERVICE_ID, log_dir=tmp_path / "log",
                          timeout=SESSION_TIMEOUT, backoff=FAST)
        try:
            turns = _run(session, deviation.scenario)
            session.finish()
        finally:
            if session.state not in ("closed", "failed"):
                session._discard()
    for turn in turns.values():
        _status, value = _outcome(turn)
        assert TOKEN not in repr(value) and TOKEN not in str(value)
    assert TOKEN not in repr(session)
    client_records = [r for r in caplog.records if not r.name.startswith("websockets.server")]
    assert any(r.name.startswith("websockets.client") for r in client_records), "the library logged nothing"
    for record in client_records:  # the test server's own log is not the client's
        assert TOKEN not in record.getMessage(), f"the token reached a log record of {record.name}"
    for path in session.log.path.iterdir():
        assert TOKEN.encode() not in path.read_bytes(), f"the token reached {path.name}"


@contextlib.contextmanager
def _session_against(name: str, tmp_path):
    """A session connected to the deviation server playing ``name``; finished (or dropped) on the way out."""
    from deviation.deviations import DEVIATIONS

    with DeviationServer(DEVIATIONS[name]) as server:
        session = connect(ORG, TOKEN, host=server.address, service_id=SERVICE_ID, log_dir=tmp_path / "log",
                          timeout=SESSION_TIMEOUT, backoff=FAST)
        try:
            yield session
            session.finish()
        finally:
            if session.state not in ("closed", "failed"):
                session._discard()


def _notes(frames: pd.DataFrame) -> pd.Series:
    """The descriptions of the log's client.protocol-violation entries."""
    return frames.loc[frames["type"] == "client.protocol-violation", "error_description"].dropna()


@pytest.mark.timeout(60)
def test_after_a_normal_close_it_did_not_announce_the_conversation_continues_with_reconnect(tmp_path):
    with _session_against("close-1000", tmp_path) as session:
        assert _outcome(session.say("hello there"))[0] == "ok"
        status, error = _outcome(session.say("what time is it"))
        assert status == "failed" and "no conversation_completed" in str(error)
        assert "nothing to do" not in str(error)  # the code's own advice would be wrong here
        conversation = session.conversation_id
        session.reconnect()
        status, reply = _outcome(session.say("what time is it"))
        assert status == "ok" and _norm(reply.text) == _norm(reply_text("what time is it"))
        assert session.conversation_id == conversation


@pytest.mark.timeout(60)
def test_a_type_name_in_another_spelling_is_noted_once_per_name_not_per_frame(tmp_path):
    with _session_against("types-snake-case", tmp_path) as session:
        _run(session, "basic")
    frames = session.frames
    spellings = [note for note in _notes(frames) if "another spelling" in note]
    received = frames[frames["direction"] == "received"]
    pieces = int((received["type"] == "server.new-message").sum())
    assert pieces > 3 and len(spellings) == len(set(spellings)) == received["type"].nunique()
    assert any("'server.new_message' read as 'server.new-message'" in note for note in spellings)


@pytest.mark.timeout(60)
def test_each_mended_frame_is_noted_once_in_the_log(tmp_path):
    from amigo_lab.protocol.frames import LONE_SURROGATE_PROBLEM

    with _session_against("lone-surrogate", tmp_path) as session:
        _run(session, "basic")
    frames = session.frames
    mended = int(frames["wire"].fillna("").str.contains("\\ud83d", regex=False).sum())
    assert mended > 0 and int(_notes(frames).str.contains(LONE_SURROGATE_PROBLEM, regex=False).sum()) == mended
