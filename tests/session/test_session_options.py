"""Connect options and calling styles: explicit plain ws:// and TLS choices, awaitable twins, ``async with``,
fold events, refused text, bad settings."""

from __future__ import annotations

import asyncio

import pytest

from amigo_lab import connect
from amigo_lab.protocol.fold import LATENCIES, InteractionCompleted, InteractionStarted
from amigo_lab.session import SessionError


def test_plain_ws_to_a_host_that_is_not_loopback_only_on_purpose(tmp_path):
    # Nothing listens on these hosts: what matters is the URL the session would have used.
    with pytest.raises(SessionError, match=r"wss://staging.invalid"):
        connect("org", "tok", host="staging.invalid:9", start=False, log_dir=tmp_path / "a", timeout=2)
    with pytest.raises(SessionError, match=r"ws://staging.invalid"):
        connect("org", "tok", host="staging.invalid:9", secure=False, start=False, log_dir=tmp_path / "b",
                timeout=2)


def test_tls_options_need_tls(tmp_path):
    with pytest.raises(SessionError, match="wss:// only"):
        connect("org", "tok", host="staging.invalid:9", secure=False, verify_tls=False, start=False,
                log_dir=tmp_path / "c", timeout=2)


def test_bad_settings_are_refused_in_the_callers_terms(emulator, token, tmp_path):
    with pytest.raises(SessionError, match="agent_sample_rate"):
        connect(emulator=emulator, token=token, agent_sample_rate=0, log_dir=tmp_path / "d")
    with pytest.raises(SessionError, match="response_timeout"):
        connect(emulator=emulator, token=token, response_timeout=-1, log_dir=tmp_path / "e")


def test_text_with_a_lone_surrogate_is_refused_before_sending(open_session):
    session = open_session()
    session.greeting.result(10)
    sent_before = int((session.frames["direction"] == "sent").sum())
    with pytest.raises(SessionError, match="lone UTF-16 surrogate"):
        session.say("half an emoji \ud83d")
    with pytest.raises(SessionError, match="lone UTF-16 surrogate"):
        session.event("\udc00")
    assert int((session.frames["direction"] == "sent").sum()) == sent_before
    assert session.say("where are you located").result(10).text  # the session is unharmed


def test_awaitable_twins_and_async_with(open_session):
    session = open_session()

    async def main() -> tuple[str, str]:
        async with session:
            greeting = await session.greeting
            reply = await session.say("where are you located")
            await session.avad(False)
            await session.areconnect()
            again = await session.say("what are your opening hours")
            return greeting.text, reply.text + again.text
        # leaving the block finished the conversation

    greeting, replies = asyncio.run(main())
    assert greeting and "River Street" in replies
    assert session.state == "closed"


def test_on_event_delivers_the_folds_account(open_session):
    session = open_session()
    seen = []
    remove = session.on_event(seen.append)
    session.greeting.result(10)
    turn = session.say("what are your opening hours")
    reply = turn.result(10)
    started = [e for e in seen if isinstance(e, InteractionStarted) and turn.id in e.keys]
    completed = [e for e in seen if isinstance(e, InteractionCompleted) and turn.id in e.keys]
    assert len(started) == 1 and len(completed) == 1
    record = completed[0].record
    assert record.reply_text == reply.text and record.answer_message_id == reply.message_id
    # Reply.timings carry the fold's latencies under its names, the same numbers.
    assert {name: reply.timings[name] for name in LATENCIES} == dict(record.latencies)
    remove()
    count = len(seen)
    session.say("where are you located").result(10)
    assert len(seen) == count


def test_a_failed_resume_leaves_a_clear_state(open_session):
    from amigo_lab.session import ConnectionClosedError

    session = open_session(start=False)
    with pytest.raises(ConnectionClosedError) as caught:
        session.resume("0123456789abcdef01234567")  # no such conversation: the emulator closes with 4404
    assert caught.value.code == 4404 and "not found" in str(caught.value)
    assert session.state == "failed"
    with pytest.raises(SessionError):
        session.say("hello")  # no conversation: a clear error, not a hang
    greeting = session.start()  # and the session can start a new one
    assert greeting.result(10).text and session.state == "active"


def test_a_background_task_that_fails_says_so_and_the_session_recovers(open_session, caplog):
    import logging

    from amigo_lab.session import Backoff, open_websocket

    class Failing:
        """A transport whose send fails in a way no socket error looks like (a bug in a wrapper)."""

        def __init__(self, inner):
            self.inner = inner

        async def send(self, text):
            if "FAIL-HERE" in text:
                raise ValueError("the wrapper could not encode this frame")
            await self.inner.send(text)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    async def factory(url, **kwargs):
        return Failing(await open_websocket(url, **kwargs))

    caplog.set_level(logging.ERROR, logger="amigo_lab.session")
    session = open_session(transport_factory=factory, backoff=Backoff(initial=0.05, maximum=0.3, attempts=6))
    session.greeting.result(10)
    with pytest.raises(SessionError, match=r"sender task failed.*ValueError"):
        session.say("FAIL-HERE please").result(10)
    assert any("sender task failed" in r.getMessage() for r in caplog.records)
    # The connection was reset; the session reconnects and the next turn goes through.
    assert "River Street" in session.say("where are you located").result(15).text
