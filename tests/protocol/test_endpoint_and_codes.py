"""URLs, query validation, the auth subprotocol, redaction and close codes."""

import pytest

from amigo_lab import protocol as p


def test_build_url_for_each_region_and_for_the_emulator():
    params = p.ConnectParams(response_format="voice", audio_format="pcm", current_agent_action_type=".*")
    assert p.build_url(organization="acme", params=params).startswith(
        "wss://api.amigo.ai/v1/acme/conversation/converse_realtime?response_format=voice&audio_format=pcm")
    assert "api-eu-central-1.amigo.ai" in p.build_url(organization="acme", params=params, region="eu")
    local = p.build_url(organization="demo-org", params=params, host="127.0.0.1:8765", secure=False)
    assert local.startswith("ws://127.0.0.1:8765/v1/demo-org/")
    with pytest.raises(ValueError, match="unknown region"):
        p.build_url(organization="acme", params=params, region="mars")
    with pytest.raises(ValueError, match="organization must be a non-empty id"):
        p.build_url(organization="a/b", params=params)


@pytest.mark.parametrize("query, message", [
    ("", "response_format is required"),
    ("response_format=voice", "audio_format is required"),
    ("response_format=video", "response_format must be one of"),
    ("response_format=voice&audio_format=wav", "audio_format must be one of"),
    ("response_format=text&current_agent_action_type=(", "not a regular expression"),
    ("response_format=text&response_format=voice", "given 2 times"),
])
def test_bad_queries_close_with_4400(query, message):
    with pytest.raises(p.QueryError, match=message) as info:
        p.parse_query(query)
    assert info.value.close_code == 4400


def test_query_round_trip_and_action_filter():
    params = p.parse_query("response_format=voice&audio_format=mp3&current_agent_action_type=tool-call-.*")
    assert p.parse_query(params.to_query()) == params
    assert params.admits_action("tool-call-started") and not params.admits_action("action-too-long")
    assert not p.parse_query("response_format=text").admits_action("tool-call-started")


def test_path_parsing():
    assert p.parse_path("/v1/demo-org/conversation/converse_realtime?x=1") == "demo-org"
    assert p.parse_path("/v1//conversation/converse_realtime") is None
    assert p.parse_path("/v2/demo-org/conversation/converse_realtime") is None


def test_subprotocol_carries_and_finds_the_token():
    sub = p.auth_subprotocol("eyJhbGciOi.abc.def")
    assert sub == "bearer.authorization.amigo.ai.eyJhbGciOi.abc.def"
    assert p.token_from_subprotocols(["chat", sub]) == (sub, "eyJhbGciOi.abc.def")
    assert p.token_from_subprotocols(["chat"]) == (None, None)
    with pytest.raises(ValueError):
        p.auth_subprotocol("has space")


def test_redact_removes_every_shape_of_token():
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature_1"
    text = f"offer bearer.authorization.amigo.ai.{token}; header Bearer {token}; raw {token}; custom s3cret"
    out = p.redact(text, "s3cret")
    assert token not in out and "s3cret" not in out and out.count(p.REDACTED) == 4
    assert p.redact(None) is None  # type: ignore[arg-type]  # non-text passes through untouched


def test_close_codes_carry_meaning_and_hint():
    assert p.CloseCode(4401).hint == "get a new token"
    assert p.CloseCode.GOING_AWAY.reconnect and p.CloseCode.ABNORMAL.reconnect
    assert not p.CloseCode.UNAUTHORIZED.reconnect
    assert "4404 not found: organization not found" in p.describe_close(4404, "organization not found")
    assert "not a code of the protocol" in p.describe_close(4999)
    assert all(c.hint and c.meaning and c.typical_cause for c in p.CloseCode)


def test_loopback_hosts_with_and_without_ports():
    for host in ("127.0.0.1", "127.0.0.1:8765", "localhost:8765", "LOCALHOST", "localhost.", "::1", "[::1]:8765",
                 "127.5.5.5", "127.255.255.254:1", "::ffff:127.0.0.1", "[::ffff:127.0.0.2]:80", "[::1%lo]:8765"):
        assert p.is_loopback_host(host), host
    for host in ("api.amigo.ai", "api.amigo.ai:443", "10.0.0.1:8765", "0.0.0.0", "[2001:db8::1]:443",
                 "127.evil.com", "127.0.0.1.nip.io:8765", "127.example", "128.0.0.1", "::ffff:10.0.0.1",
                 "localhost.example.com", ""):
        assert not p.is_loopback_host(host), host


def test_transient_close_codes_reconnect_and_unknown_codes_are_described():
    assert {int(c) for c in p.RECONNECT_CODES} == {1001, 1006, 1011, 1012, 1013, 4503}
    assert all(p.should_reconnect(c) for c in (None, 1001, 1006, 1011, 1012, 1013, 4503))
    assert not any(p.should_reconnect(c) for c in (1000, 4400, 4401, 4409, 4999))
    assert p.CloseCode(4503).reconnect and "reconnect" in p.CloseCode(1012).hint
    assert "HTTP 502 Bad Gateway" in p.describe_close(4502, "upstream")
    assert "upstream" in p.describe_close(4502, "upstream")
    assert "HTTP 499 in the 4000 + status scheme" in p.describe_close(4499)
    assert "a WebSocket code the protocol does not list" in p.describe_close(1014)
    assert "registered" in p.describe_close(3000)
    assert "an application code" in p.describe_close(4001)
    assert "outside the WebSocket close code ranges" in p.describe_close(99)
    assert "connection lost" in p.describe_close(None) and "boom" in p.describe_close(None, "boom")


@pytest.mark.parametrize("code", [None, 1000, 4999])
def test_a_caller_that_knows_why_gives_its_own_advice_in_place_of_the_codes(code):
    advice = "continue it with session.reconnect()."
    line = p.describe_close(code, "idle", what_to_do=advice)
    assert line.endswith(f"What to do: {advice}") and "idle" in line
    assert "What to do: " + advice not in p.describe_close(code, "idle")


def test_a_reason_that_ends_its_own_sentence_gets_no_second_stop():
    assert "running? What to do:" in p.describe_close(1006, "is the emulator running?")
    assert "gone. What to do:" in p.describe_close(1001, "gone.")
    assert "(connection lost). What to do:" in p.describe_close(None)
