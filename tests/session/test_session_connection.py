"""A session's connection life: finish, close, resume, close codes, faults, reconnects, threads, tokens."""

from __future__ import annotations

import json
import logging
import time

import pytest

from amigo_lab import connect
from amigo_lab.framelog import load_session
from amigo_lab.protocol import CloseCode
from amigo_lab.session import (
    Backoff,
    ConnectionClosedError,
    SessionError,
    TurnError,
    open_websocket,
)

FAST = Backoff(initial=0.05, maximum=0.5, attempts=6)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_finish_ends_the_conversation_for_good(open_session):
    session = open_session()
    session.greeting.result(10)
    conversation = session.conversation_id
    session.finish()
    assert session.state == "closed"
    with pytest.raises(ConnectionClosedError) as caught:
        session.say("hello")
    assert caught.value.code == 1000 and "start" in caught.value.hint
    with pytest.raises(ConnectionClosedError) as caught:
        session.resume(conversation)
    assert caught.value.code == CloseCode.CONFLICT and "already finished" in caught.value.reason
    # finish() also wrote the parquet file of the recorded session
    assert (session.log.path / "frames.parquet").exists()


def test_close_then_reconnect_continues_the_conversation(open_session):
    session = open_session()
    session.greeting.result(10)
    conversation = session.conversation_id
    session.close()
    assert session.state == "closed"
    with pytest.raises(ConnectionClosedError, match="reconnect"):
        session.say("hello")
    session.reconnect()
    assert session.state == "active" and session.conversation_id == conversation
    assert "River Street" in session.say("where are you located").result(10).text
    types = list(session.frames["type"])
    assert types.count("connection.opened") == 2 and "client.continue-conversation" in types
    assert "server.conversation-continued" in types


def test_connect_with_a_conversation_id_resumes_it(open_session):
    first = open_session()
    first.greeting.result(10)
    conversation = first.conversation_id
    first.close()
    second = open_session(conversation_id=conversation)
    assert second.conversation_id == conversation and second.greeting is None
    assert second.say("hello").result(10).text


def test_starting_twice_is_refused_clearly(open_session):
    session = open_session()
    with pytest.raises(SessionError, match="already active"):
        session.start()


def test_talking_before_starting_is_refused_clearly(open_session):
    session = open_session(start=False)
    assert session.state == "connected"
    with pytest.raises(SessionError, match="start"):
        session.say("hello")
    greeting = session.start()
    assert greeting.result(10).text


def test_bad_token_closes_with_4401_and_a_hint(emulator, tmp_path):
    with pytest.raises(ConnectionClosedError) as caught:
        connect(emulator=emulator, token="not-a-valid-token", log_dir=tmp_path / "s")
    error = caught.value
    assert error.code == 4401 and error.hint == "get a new token"
    assert "unauthorized" in str(error) and "get a new token" in str(error)
    assert "not-a-valid-token" not in str(error) + repr(error) + error.reason
    frames = load_session(tmp_path / "s").frames
    closed = frames[frames["type"] == "connection.closed"].iloc[-1]
    assert closed["close_code"] == 4401


def test_unknown_service_closes_with_4404(open_session):
    with pytest.raises(ConnectionClosedError) as caught:
        open_session(service_id="0" * 24)
    assert caught.value.code == 4404 and "region" in caught.value.hint


def test_server_error_fails_the_turn_and_the_session_goes_on(open_session):
    """A transport wrapper corrupts one frame on its way out; the server answers 400, keeps the socket."""

    class Corrupting:
        def __init__(self, inner):
            self.inner = inner

        async def send(self, text):
            if "BREAK" in text:
                text = text.replace('"type"', '"typo"')
            await self.inner.send(text)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    async def factory(url, **kwargs):
        return Corrupting(await open_websocket(url, **kwargs))

    session = open_session(transport_factory=factory)
    session.greeting.result(10)
    with pytest.raises(TurnError) as caught:
        session.say("BREAK this frame").result(10)
    assert caught.value.http_error_code == 400 and "type" in caught.value.description
    assert session.state == "active"
    assert "eight in the morning" in session.say("what are your opening hours").result(10).text


def test_agent_failure_is_a_turn_error_then_a_reconnect(tmp_path):
    from amigo_lab.emulator import Emulator

    def agent(turn):
        if "explode" in turn.text:
            raise RuntimeError("boom")
        return f"You said {turn.text}"

    with Emulator(realtime=False, agent=agent) as emu:
        session = connect(emulator=emu, log_dir=tmp_path / "s", backoff=FAST, timeout=10)
        try:
            conversation = session.conversation_id
            with pytest.raises(TurnError) as caught:
                session.say("please explode").result(10)
            assert caught.value.http_error_code == 500
            wait_for(lambda: session.state == "active"
                     and "server.conversation-continued" in set(session.frames["type"]))
            assert session.conversation_id == conversation
            assert session.say("hello again").result(10).text == "You said hello again"
            closed = session.frames.query("type == 'connection.closed'")
            assert list(closed["close_code"]) == [1011]
        finally:
            session.finish()


def test_cut_mid_turn_reconnects_and_continues(proxy, open_session):
    session = open_session(host=proxy.address, backoff=FAST)
    session.greeting.result(10)
    conversation = session.conversation_id
    proxy.pause("down")  # the server answers, the client hears nothing: the turn is in flight
    turn = session.say("what are your opening hours")
    time.sleep(0.3)
    proxy.cut()
    proxy.resume()
    # Nothing of the answer reached the client, so the turn goes again on the new socket, and says so.
    assert "open" in turn.result(10).text.lower()
    wait_for(lambda: session.state == "active" and proxy.accepted >= 2)
    assert "client.turn-resent" in set(session.frames["type"])
    assert session.conversation_id == conversation
    reply = session.say("where are you located").result(10)
    assert "River Street" in reply.text
    frames = session.frames
    reconnecting = frames[frames["type"] == "connection.reconnecting"]
    assert len(reconnecting) >= 1 and json.loads(reconnecting["extra"].iloc[0])["attempt"] == 1
    continued = frames[frames["type"] == "client.continue-conversation"]
    assert list(continued["conversation_id"]) == [conversation]


@pytest.mark.parametrize("code", [1001, 1011])
def test_going_away_and_internal_error_reconnect(proxy, open_session, code):
    session = open_session(host=proxy.address, backoff=FAST)
    session.greeting.result(10)
    proxy.close_with(code, "injected")
    wait_for(lambda: proxy.accepted >= 2 and session.state == "active")
    assert session.say("hello").result(10).text
    closed = session.frames.query("type == 'connection.closed'")
    assert list(closed["close_code"]) == [code] and list(closed["close_reason"]) == ["injected"]


def test_a_44xx_close_is_final(proxy, open_session):
    session = open_session(host=proxy.address, backoff=FAST)
    session.greeting.result(10)
    pending = session.event("something happened")  # may or may not be answered before the close
    proxy.close_with(4403, "conversation of another user")
    wait_for(lambda: session.state == "failed")
    with pytest.raises(ConnectionClosedError) as caught:
        session.say("hello")
    assert caught.value.code == 4403 and caught.value.hint == "do not retry"
    assert pending.done()
    time.sleep(0.3)
    assert proxy.accepted == 1  # no reconnect


def test_reconnecting_gives_up_after_its_attempts(proxy, open_session):
    session = open_session(host=proxy.address, backoff=Backoff(initial=0.02, maximum=0.05, attempts=3))
    session.greeting.result(10)
    proxy.stop()  # nothing listens any more
    wait_for(lambda: session.state == "failed")
    with pytest.raises(ConnectionClosedError, match="Gave up reconnecting after 3 attempts"):
        session.say("hello")
    assert len(session.frames.query("type == 'connection.reconnecting'")) == 3


def test_delay_shows_in_latency_but_changes_nothing_else(proxy, open_session):
    session = open_session(host=proxy.address)
    session.greeting.result(10)
    proxy.delay(0.25, "up")
    reply = session.say("what are your opening hours").result(10)
    assert reply.timings["latency_first_audio_ms"] >= 250 and "eight in the morning" in reply.text


def test_a_blocking_cell_does_not_stall_reception(realtime_emulator, tmp_path):
    """The greeting streams in real time while the main thread sleeps like a busy cell; frames keep arriving."""
    session = connect(emulator=realtime_emulator, token="live-0", log_dir=tmp_path / "s", timeout=15)
    try:
        before = session.log.now()
        time.sleep(2.0)  # blocks this thread, as a long computation in a cell would
        after = session.log.now()
        frames = session.frames
        received = frames[(frames["type"] == "server.new-message") & (frames["t"] > before) & (frames["t"] < after)]
        assert len(received) >= 5
        assert received["t"].max() - received["t"].min() >= 0.8  # spread over the sleep, not bunched after it
    finally:
        session.finish()


def test_barge_in_interrupts_the_agent(realtime_emulator, tmp_path):
    """With VAD on, speech sent while the greeting plays interrupts it; the speech gets its own answer."""
    from amigo_lab import audio
    from amigo_lab.speech import Synthesizer

    speech = audio.pcm16_to_float(Synthesizer().synthesize("what are your opening hours").pcm)
    session = connect(emulator=realtime_emulator, token="live-1", log_dir=tmp_path / "s", timeout=15)
    try:
        session.vad(True)
        wait_for(lambda: "server.new-message" in set(session.frames["type"]))
        question = session.send_audio(speech)
        greeting = session.greeting.result(15)
        assert greeting.interrupted and greeting.text != ""
        assert len(greeting.text) < len("Hello, this is Riverside Clinic. How can I help you today?")
        reply = question.result(15)
        assert reply.user_text == "what are your opening hours" and reply.text == "Sure."
        assert not reply.interrupted
        pieces = session.frames.query("type == 'server.new-message' and message_id == @greeting.message_id")
        assert bool(pieces["stop"].iloc[-1])
    finally:
        session.finish()


@pytest.fixture(scope="module")
def realtime_emulator():
    """Agent audio paced like the real service; the agent answers "Sure." to keep the tests short."""
    from amigo_lab.emulator import Emulator

    tokens = {f"live-{n}": f"live-user-{n}" for n in range(4)}
    with Emulator(realtime=True, agent=lambda turn: "Sure.", tokens=tokens) as emu:
        yield emu


def test_close_while_reconnecting_stops_trying(proxy, open_session):
    session = open_session(host=proxy.address, backoff=Backoff(initial=0.5, maximum=0.5, attempts=20))
    session.greeting.result(10)
    proxy.stop()
    wait_for(lambda: session.state == "reconnecting")
    session.close()
    assert session.state == "closed"
    time.sleep(1.0)
    assert session.state == "closed" and len(session.frames.query("type == 'connection.reconnecting'")) <= 2
    with pytest.raises(ConnectionClosedError, match="reconnect"):
        session.say("hello")


def test_on_frame_callbacks_see_everything_and_cannot_break_the_session(open_session, caplog):
    session = open_session(start=False)
    seen = []
    remove = session.on_frame(lambda entry, frame: seen.append(entry["type"]))
    session.on_frame(lambda entry, frame: 1 / 0)
    with caplog.at_level(logging.ERROR):
        session.start().result(10)
        session.say("hello").result(10)
    assert "server.interaction-complete" in seen and "client.new-text-message" in seen
    assert seen == list(session.frames["type"].iloc[-len(seen):])
    remove()
    count = len(seen)
    session.say("hello").result(10)
    assert len(seen) == count


def test_blocking_calls_are_refused_on_the_loop_thread(open_session):
    session = open_session()
    session.greeting.result(10)
    outcome = {}

    def callback(entry, frame):
        if entry["type"] == "server.interaction-complete" and "error" not in outcome:
            try:
                session.close()
            except SessionError as exc:
                outcome["error"] = exc
            # Non-blocking calls are fine here.
            outcome["turn"] = session.say("hello")

    session.on_frame(callback)
    session.say("where are you located").result(10)
    wait_for(lambda: "turn" in outcome)
    assert "loop thread" in str(outcome["error"])
    assert outcome["turn"].result(10).text


def test_unknown_and_invalid_frames_are_logged_not_fatal(open_session):
    """A transport wrapper slips odd frames in front of the server's; the session logs them and goes on."""
    odd = [
        '{"type":"server.brand-new-thing","colour":"blue"}',
        "this is not json",
        '{"type":"server.new-message","message":"","stop":false,"sequence_number":7,"message_id":"x"}',
        '{"type":"server.vad-mode-switched","vad_mode_on":false,"future_field":1}',
    ]

    class Injecting:
        def __init__(self, inner):
            self.inner, self.queue = inner, []

        async def recv(self):
            if self.queue:
                return self.queue.pop(0)
            text = await self.inner.recv()
            if '"server.interaction-complete"' in text and odd:
                self.queue = [*odd[:], text]
                odd.clear()
                return self.queue.pop(0)
            return text

        def __getattr__(self, name):
            return getattr(self.inner, name)

    async def factory(url, **kwargs):
        return Injecting(await open_websocket(url, **kwargs))

    session = open_session(transport_factory=factory)
    assert session.greeting.result(10).text
    frames = session.frames
    types = list(frames["type"])
    assert "server.brand-new-thing" in types and "client.invalid-frame" in types
    assert "client.protocol-violation" in types
    unknown = frames[frames["type"] == "server.brand-new-thing"].iloc[0]
    assert json.loads(unknown["extra"]) == {"colour": "blue"}
    extra = frames[frames["type"] == "server.vad-mode-switched"].iloc[0]
    assert json.loads(extra["extra"]) == {"future_field": 1}
    assert session.state == "active" and session.say("hello").result(10).text


def test_token_is_never_in_files_reprs_or_errors(tmp_path):
    from amigo_lab.emulator import Emulator, Limits

    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsYWItdXNlciJ9.bGFiLXRva2VuLXNpZ25hdHVyZQ"
    with Emulator(realtime=False, tokens={token: "lab-user"}, limits=Limits()) as emu:
        session = connect(emulator=emu, token=token, log_dir=tmp_path / "s")
        session.say("hello").result(10)
        texts = [repr(session), session._repr_html_(), repr(session.log), repr(session.greeting),
                 session.frames.to_json(date_format="iso"), json.dumps(session.log.meta)]
        session.close()
        try:
            session.say("x")
        except ConnectionClosedError as exc:
            texts.append(str(exc) + repr(exc))
        saved = session.save(tmp_path / "copy")
        with pytest.raises(ConnectionClosedError) as caught:
            connect(emulator=emu, token=token + "x", log_dir=tmp_path / "bad")
        texts.append(str(caught.value) + repr(caught.value))
    for text in texts:
        assert token not in text
    files = [f for folder in (tmp_path / "s", saved, tmp_path / "bad") for f in folder.iterdir()
             if not f.name.endswith(".tmp")]  # a Parquet still being written, renamed when done
    assert len(files) >= 12
    for file in files:
        assert token.encode() not in file.read_bytes(), file


def test_save_copies_a_loadable_session(open_session, tmp_path):
    session = open_session()
    session.say("hello").result(10)
    session.close()
    saved = session.save(tmp_path / "saved")
    recorded = load_session(saved)
    assert recorded.meta["conversation_id"] == session.conversation_id
    assert recorded.meta["url"].startswith("ws://127.0.0.1:")
    import pandas as pd
    pd.testing.assert_frame_equal(recorded.frames, session.frames)
    assert recorded.audio_track("received").size > 0
    with pytest.raises(SessionError, match="not empty"):
        session.save(saved)


def test_real_service_settings_are_checked_before_connecting(monkeypatch):
    for name in ("AMIGO_ORG", "AMIGO_TOKEN", "AMIGO_SERVICE_ID", "AMIGO_REGION", "AMIGO_HOST"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SessionError, match="token"):
        connect("my-org")
    with pytest.raises(SessionError, match="service id"):
        connect("my-org", "secret-token")
    with pytest.raises(SessionError, match="unknown region"):
        connect("my-org", "secret-token", region="mars", service_id="a" * 24)
    with pytest.raises(SessionError, match="response_format"):
        connect("my-org", "secret-token", service_id="a" * 24, response_format="video")


def test_environment_selects_the_service(emulator, token, monkeypatch, tmp_path):
    """AMIGO_* variables point connect() at a server; a loopback AMIGO_HOST means plain ws://."""
    from amigo_lab.emulator import DEFAULT_SERVICE_ID

    monkeypatch.setenv("AMIGO_ORG", emulator.org)
    monkeypatch.setenv("AMIGO_TOKEN", token)
    monkeypatch.setenv("AMIGO_HOST", f"{emulator.host}:{emulator.port}")
    monkeypatch.setenv("AMIGO_SERVICE_ID", DEFAULT_SERVICE_ID)
    monkeypatch.setenv("AMIGO_VERSION_SET", "staging")
    session = connect(log_dir=tmp_path / "s")
    try:
        assert session.url.startswith("ws://127.0.0.1:") and session.version_set == "staging"
        assert session.greeting.result(10).text
        start = session.frames.query("type == 'client.start-conversation'").iloc[0]
        assert json.loads(start["extra"])["service_version_set_name"] == "staging"
    finally:
        session.finish()


def test_region_hosts_are_used_for_the_real_service(monkeypatch):
    from amigo_lab.protocol import ConnectParams
    from amigo_lab.session import Session

    session = Session(organization="org", token="secret", params=ConnectParams("voice", "pcm"), region="eu")
    try:
        assert session.url.startswith("wss://api-eu-central-1.amigo.ai/v1/org/conversation/converse_realtime?")
        assert session.state == "idle" and "secret" not in repr(session)
    finally:
        session.log.close()


def test_connect_without_arguments_uses_the_embedded_emulator(monkeypatch, tmp_path):
    for name in ("AMIGO_ORG", "AMIGO_TOKEN", "AMIGO_HOST"):
        monkeypatch.delenv(name, raising=False)
    from amigo_lab._connect import shared_emulator

    first = connect(log_dir=tmp_path / "one")
    assert first.url.startswith(shared_emulator().base_url)
    assert first.greeting.result(10).text.startswith("Hello")
    # Running the cell again replaces the session: the first one is finished, the second one starts.
    second = connect(log_dir=tmp_path / "two")
    try:
        assert first.state == "closed" and second.state == "active"
        assert second.conversation_id != first.conversation_id
    finally:
        second.finish()



def test_idle_timeout_closes_with_4408_unless_extended(tmp_path):
    from amigo_lab.emulator import Emulator

    with Emulator(realtime=False, idle_timeout_s=0.6) as emu:
        kept = connect(emulator=emu, log_dir=tmp_path / "kept", response_format="text")
        kept.greeting.result(10)
        for _ in range(8):  # 1.6 s of silence, with a keep-alive of the conversation every 0.2 s
            kept.extend_timeout()
            time.sleep(0.2)
        assert kept.state == "active"
        assert len(kept.frames.query("type == 'client.extend-timeout'")) == 8
        kept.finish()

        idle = connect(emulator=emu, log_dir=tmp_path / "idle", response_format="text")
        idle.greeting.result(10)
        wait_for(lambda: idle.state == "failed", timeout=5)
        with pytest.raises(ConnectionClosedError) as caught:
            idle.say("hello")
        assert caught.value.code == 4408 and "extend-timeout" in caught.value.hint


EXITING = """
import sys
from amigo_lab import connect
from amigo_lab.emulator import Emulator
emu = Emulator(realtime=False).start()
session = connect(emulator=emu, log_dir=sys.argv[1], response_format="text")
print(session.say("hello").result(10).text, flush=True)
# no close(), no finish(): the interpreter exits with the socket open
"""


def test_interpreter_exit_closes_the_socket_and_the_log(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "s"
    done = subprocess.run([sys.executable, "-c", EXITING, str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and "Traceback" not in done.stderr and "destroyed" not in done.stderr
    recorded = load_session(folder)
    assert recorded.frames["type"].iloc[-1] == "connection.closed"
    assert recorded.frames["close_code"].iloc[-1] == 1000
    assert (folder / "frames.parquet").exists()


def test_nothing_listening_is_a_clear_error(emulator, tmp_path):
    with pytest.raises(SessionError, match=r"could not connect.*is the emulator running"):
        connect(emulator=emulator, host="127.0.0.1:9", log_dir=tmp_path / "s", timeout=5)


def test_the_agent_can_end_the_conversation(open_session):
    session = open_session()
    reply = session.say("goodbye").result(10)
    assert reply.conversation_completed and "Goodbye" in reply.text
    wait_for(lambda: session.state == "closed")
    with pytest.raises(ConnectionClosedError) as caught:
        session.say("hello?")
    assert caught.value.code == 1000 and "start a new one" in caught.value.hint
    assert session.log.wait_closed(10)  # closed on the loop, so frames.parquet is written in the background
    assert (session.log.path / "frames.parquet").exists()
    greeting = session.start()  # a new conversation on a new socket
    assert greeting.result(10).text and session.state == "active"
