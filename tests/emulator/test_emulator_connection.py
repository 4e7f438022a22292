"""The emulator's connection rules over real loopback sockets: routing, auth, query, limits, close codes."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
from emulator_wire import WireClient, of_type
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from amigo_lab.emulator import DEFAULT_SERVICE_ID, DEFAULT_TOKEN, AgentReply, Emulator
from amigo_lab.protocol import auth_subprotocol


def test_the_offered_auth_subprotocol_is_echoed_and_the_conversation_starts(connect):
    client = connect()
    assert client.ws.subprotocol == client.offered == "bearer.authorization.amigo.ai.demo-token"
    conversation_id = client.start()
    assert len(conversation_id) == 24 and int(conversation_id, 16) >= 0


@pytest.mark.parametrize(
    ("token", "org", "query", "code", "reason_part"),
    [
        ("wrong-token", "demo-org", "response_format=text", 4401, "invalid token"),
        (None, "demo-org", "response_format=text", 4401, "missing token"),
        (DEFAULT_TOKEN, "other-org", "response_format=text", 4404, "organization not found"),
        (DEFAULT_TOKEN, "demo-org", None, 4400, "response_format"),
        (DEFAULT_TOKEN, "demo-org", "response_format=voice", 4400, "audio_format"),
        (DEFAULT_TOKEN, "demo-org", "response_format=text&current_agent_action_type=(", 4400, "regular expression"),
    ],
    ids=["bad token", "missing token", "unknown org", "no response_format", "voice without audio_format",
         "bad action regex"],
)
def test_a_bad_connection_is_accepted_then_closed_at_once(connect, token, org, query, code, reason_part):
    client = connect(query, org=org, token=token)
    if token is not None:
        assert client.ws.subprotocol == client.offered  # echoed even when the token is wrong
    got, reason, before = client.expect_close()
    assert (got, before) == (code, [])
    assert reason_part in reason


def test_any_other_path_is_an_http_404(emulator):
    with pytest.raises(InvalidStatus) as info:
        ws_connect(f"{emulator.base_url}/v1/demo-org/conversation/other",
                   subprotocols=[auth_subprotocol(DEFAULT_TOKEN)], open_timeout=5)
    assert info.value.response.status_code == 404


def test_url_builds_the_endpoint_with_its_query(emulator):
    url = emulator.url(response_format="voice", audio_format="mp3", current_agent_action_type="tool-.*")
    assert url.startswith(f"ws://127.0.0.1:{emulator.port}/v1/demo-org/conversation/converse_realtime?")
    assert "response_format=voice" in url and "audio_format=mp3" in url and "current_agent_action_type=tool-" in url
    assert "/v1/other/" in emulator.url(org="other")


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ("{not json", "JSON"),
        (json.dumps({"type": "client.no-such-frame"}), "client.no-such-frame"),
        (json.dumps({"type": "client.new-text-message"}), "text"),
        (json.dumps({"type": "client.new-audio-message", "audio": "@@not base64@@"}), "base64"),
    ],
    ids=["malformed JSON", "unknown type", "missing field", "bad base64"],
)
def test_a_recoverable_mistake_is_a_400_and_the_connection_stays_open(connect, raw, named):
    client = connect()
    client.start()
    client.interaction()
    client.ws.send(raw)
    error = client.recv()
    assert error["type"] == "server.error" and error["http_error_code"] == 400
    assert named in error["error_description"]
    client.say("what time do you open")
    assert client.interaction()[0]["user_message"] == "what time do you open"


def test_a_frame_before_initialising_is_a_400_then_start_works(connect):
    client = connect()
    client.say("hello")
    error = client.recv()
    assert error["type"] == "server.error" and error["http_error_code"] == 400
    assert "client.new-text-message" in error["error_description"]
    client.start()
    assert client.interaction()[-1]["type"] == "server.interaction-complete"


def test_start_twice_on_one_connection_is_4400(connect):
    client = connect()
    client.start()
    client.send("client.start-conversation", service_id=DEFAULT_SERVICE_ID)
    assert client.expect_close()[0] == 4400


def test_a_frame_over_one_mebibyte_is_1009(connect):
    client = connect("response_format=voice&audio_format=pcm")
    client.start()
    client.interaction()
    client.send("client.new-audio-message", audio=base64.b64encode(bytes(800_000)).decode())
    assert client.expect_close()[0] == 1009


def test_more_than_a_hundred_frames_a_second_is_4429(connect):
    client = connect()
    client.start()
    client.interaction()
    try:
        for _ in range(130):
            client.send("client.extend-timeout")
    except ConnectionClosed:
        pass  # the server may close before the burst is over; the close code tells why
    code, reason, _ = client.expect_close()
    assert code == 4429 and "frames a second" in reason


def test_a_second_open_connection_to_the_same_service_is_4429(connect):
    first = connect()
    conversation_id = first.start()
    first.interaction()
    second = connect()
    second.send("client.continue-conversation", conversation_id=conversation_id)
    code, reason, _ = second.expect_close()
    assert code == 4429 and "open connection" in reason
    first.say("hello")  # the first connection is undisturbed
    assert of_type(first.interaction(), "server.user-message-available")


def test_more_than_five_new_conversations_a_minute_is_4429(connect):
    for _ in range(5):
        client = connect()
        client.start()
        client.send("client.finish-conversation")
        assert client.expect_close()[0] == 1000
    client = connect()
    client.send("client.start-conversation", service_id=DEFAULT_SERVICE_ID)
    code, reason, _ = client.expect_close()
    assert code == 4429 and "new conversations a minute" in reason


def test_idle_timeout_closes_4408_and_extend_timeout_postpones_it():
    with Emulator(realtime=False, idle_timeout_s=0.6) as emu:
        client = WireClient(emu.port)
        client.start()
        client.interaction()
        for _ in range(4):  # 1.2 s of extensions keep it open
            time.sleep(0.3)
            client.send("client.extend-timeout")
        assert client.close_code is None
        started = time.monotonic()
        code, reason, _ = client.expect_close()
        waited = time.monotonic() - started
        assert code == 4408 and "extend-timeout" in reason
        assert 0.2 < waited < 3.0
        client.close()


def test_stopping_the_emulator_closes_open_connections_1001():
    emu = Emulator(realtime=False).start()
    client = WireClient(emu.port)
    client.start()
    client.interaction()
    emu.stop()
    code, reason, _ = client.expect_close()
    assert code == 1001 and "shutting down" in reason
    assert emu.stats()["connections_open"] == 0


def test_an_agent_fault_closes_only_its_connection_with_1011():
    def agent(turn):
        if "explode" in turn.text:
            raise RuntimeError("scripted failure")
        return AgentReply(text=f"You said {turn.text}", language=turn.language)

    with Emulator(realtime=False, agent=agent, tokens={"token-a": "alice", "token-b": "bob"}) as emu:
        alice, bob = WireClient(emu.port, token="token-a"), WireClient(emu.port, token="token-b")
        alice.start()
        bob.start()
        alice.interaction()
        bob.interaction()
        alice.say("please explode")
        code, _, frames = alice.expect_close()
        assert code == 1011
        error = of_type(frames, "server.error")[0]
        assert error["http_error_code"] == 500 and "scripted failure" in error["error_description"]
        bob.say("still there")
        assert bob.interaction()[-1]["full_message"] == "You said still there"
        alice.close()
        bob.close()


def test_stats_count_connections_and_frames(connect, emulator):
    client = connect()
    client.start()
    client.interaction()
    stats = emulator.stats()
    assert stats["connections_open"] == 1 and stats["conversations"] == 1
    assert stats["frames_in"] >= 1 and stats["frames_out"] >= 3 and stats["interactions"] == 1


def test_async_with_serves_on_the_running_loop():
    async def scenario() -> list[str]:
        async with Emulator(realtime=False) as emu, async_connect(
                emu.url(response_format="text"), subprotocols=[auth_subprotocol(DEFAULT_TOKEN)]) as ws:
            await ws.send(json.dumps({"type": "client.start-conversation", "service_id": DEFAULT_SERVICE_ID}))
            kinds = []
            while not kinds or kinds[-1] != "server.interaction-complete":
                kinds.append(json.loads(await ws.recv())["type"])
            return kinds

    kinds = asyncio.run(scenario())
    assert kinds[0] == "server.conversation-created" and "server.new-message" in kinds


def test_a_missing_services_directory_names_the_path_and_the_fix(tmp_path):
    from amigo_lab.emulator import ServiceError

    missing = tmp_path / "nowhere"
    with pytest.raises(ServiceError, match="AMIGO_LAB_SERVICES") as info:
        Emulator(services_dir=missing)
    assert str(missing) in str(info.value)
