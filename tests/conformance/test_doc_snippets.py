"""Amigo's own quick-start snippets, run against the embedded emulator.

``snippets/quickstart.js`` and ``snippets/quickstart.py`` hold the JavaScript and Python quick starts of
Amigo's real-time voice page (developer guide, core API, conversations, real-time; the classic-API copy
of the same page keeps the code's indentation). They run unchanged but for what the page leaves to the
reader:

- the URL: ``wss://api.amigo.ai`` becomes the emulator's ``ws://127.0.0.1:{port}``, ``your-org`` (or
  ``{org_id}``) its demo org;
- the placeholders: ``authToken`` / ``auth_token`` (the demo token), ``org_id``, ``handleAgentResponse``,
  and the service id ``'your-service-id'`` (the demo service);
- a prelude and an epilogue around the text that observe the frames and close the socket after the agent
  has answered the snippet's own text message. Each harness says in comments what it adds and why.

The stored copy of the page cuts the Python tab inside its step 4 (at ``"client.new``); the lines after
that point in ``quickstart.py`` are marked and mirror the JavaScript tab's step 4. The indentation of the
Python tab after its first lines comes from a copy of the page that flattened whitespace, so it was
restored; no token was changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from amigo_lab.emulator import DEFAULT_ORG, DEFAULT_SERVICE_ID, DEFAULT_TOKEN, Emulator

HERE = Path(__file__).resolve().parent
SNIPPETS = HERE / "snippets"
JS_PROJECT = HERE / "js"
RESULT_TAG = "HARNESS-RESULT "
RUN_TIMEOUT_S = 30
QUICKSTART_TEXT = "Hello, how can you help me?"


def _substitute(text: str, replacements: dict[str, str]) -> str:
    """Replace each placeholder exactly once, so an edited snippet fails here rather than silently."""
    for old, new in replacements.items():
        count = text.count(old)
        assert count == 1, f"the snippet should contain {old!r} exactly once, found {count}: was it edited?"
        text = text.replace(old, new)
    return text


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_TAG)]
    assert len(lines) == 1, f"the harness printed no result; output was:\n{stdout}"
    return json.loads(lines[0][len(RESULT_TAG) :])


@pytest.fixture
def emulator():
    with Emulator(realtime=False) as emu:
        yield emu


# --- JavaScript (ws) -----------------------------------------------------------------------------------

JS_PRELUDE = """\
// ---- Harness prelude: not part of the documentation. ----
'use strict';
// The page's code is written for a browser's WebSocket; on Node the same constructor comes from `ws`.
const BaseWebSocket = require('ws');
// Placeholders the page leaves to the reader.
const authToken = __TOKEN__;
const harness = { created: null, agentResponses: 0, step4Error: null, types: [], protocol: null,
                  offered: 'bearer.authorization.amigo.ai.' + authToken, userMessage: null,
                  closeCode: null, error: null };
function handleAgentResponse(message) { harness.agentResponses += 1; }
// Step 4 of the page calls ws.send() right after the constructor, while the socket is still CONNECTING.
// A browser's WebSocket throws InvalidStateError there, and so does `ws`. The harness records that error,
// then sends the same frame once the socket opens, after step 2's start-conversation (listeners run in the
// order they were added, and step 2's onopen is set before step 4 runs), which is what the page means.
class WebSocket extends BaseWebSocket {
  send(data, ...rest) {
    if (this.readyState === BaseWebSocket.CONNECTING) {
      try { super.send(data, ...rest); } catch (e) { harness.step4Error = e.message; }
      this.once('open', () => super.send(data, ...rest));
      return;
    }
    super.send(data, ...rest);
  }
}
// ---- The documentation's quick start, as published (URL and placeholders substituted). ----
"""

JS_EPILOGUE = """
// ---- Harness epilogue: not part of the documentation. ----
// Observe every frame beside the page's own onmessage, and close once the agent has answered the page's
// text message (the interaction-complete after user-message-available), so the run ends on its own.
ws.on('open', () => { harness.protocol = ws.protocol; });
ws.on('message', (data) => {
  const message = JSON.parse(data);
  harness.types.push(message.type);
  if (message.type === 'server.conversation-created') harness.created = message.conversation_id;
  if (message.type === 'server.user-message-available') harness.userMessage = message.user_message;
  if (message.type === 'server.interaction-complete' && harness.userMessage !== null) ws.close(1000);
});
ws.on('error', (e) => { harness.error = String(e); });
ws.on('close', (code) => {
  harness.closeCode = code;
  console.log('__TAG__' + JSON.stringify(harness));
  process.exit(0);
});
setTimeout(() => { harness.error = 'no answer within 20 s'; ws.terminate(); }, 20000);
"""


def _node_or_skip() -> str:
    node = shutil.which("node")
    ws_module = JS_PROJECT / "node_modules" / "ws"
    missing = []
    if node is None:
        missing.append("node is not installed")
    if not ws_module.is_dir():
        missing.append(f"{ws_module.relative_to(HERE.parents[1])} is missing (run: cd tests/conformance/js && npm ci)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail("CI must run the JavaScript quick start: " + "; ".join(missing))
        pytest.skip("; ".join(missing))
    return node


def test_javascript_quick_start_runs_against_the_emulator(emulator, tmp_path):
    node = _node_or_skip()
    snippet = _substitute(
        (SNIPPETS / "quickstart.js").read_text(encoding="utf-8"),
        {
            "wss://api.amigo.ai/v1/your-org/": f"ws://127.0.0.1:{emulator.port}/v1/{DEFAULT_ORG}/",
            "'your-service-id'": f"'{DEFAULT_SERVICE_ID}'",
        },
    )
    prelude = JS_PRELUDE.replace("__TOKEN__", json.dumps(DEFAULT_TOKEN))
    script = tmp_path / "quickstart_harness.js"
    script.write_text(prelude + snippet + JS_EPILOGUE.replace("__TAG__", RESULT_TAG), encoding="utf-8")

    env = {**os.environ, "NODE_PATH": str(JS_PROJECT / "node_modules")}
    run = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)
    assert run.returncode == 0, f"node failed:\n{run.stdout}\n{run.stderr}"
    result = _result(run.stdout)

    assert result["error"] is None, result
    assert result["protocol"] == result["offered"], "the handshake must echo the offered subprotocol"
    assert result["created"] and f"Ready to chat! Conversation ID: {result['created']}" in run.stdout
    assert result["agentResponses"] > 0, f"handleAgentResponse was never called; frames: {result['types']}"
    assert result["userMessage"] == QUICKSTART_TEXT, result
    assert "server.error" not in result["types"], result["types"]
    assert result["closeCode"] == 1000
    # The page's step 4 cannot work as written: it sends while the socket is CONNECTING.
    assert result["step4Error"] and "CONNECTING" in result["step4Error"], result


# --- Python (websocket-client) -------------------------------------------------------------------------

PY_PRELUDE = """\
# ---- Harness prelude: not part of the documentation. ----
import json as _json
import threading as _threading

import websocket as _websocket

# Placeholders the page leaves to the reader.
auth_token = __TOKEN__
org_id = __ORG__
_harness = {"created": None, "new_messages": 0, "types": [], "user_message": None, "error": None,
            "opened": False, "undefined_callbacks": []}


# The page passes on_open, on_message, on_error and on_close to WebSocketApp before it defines on_open
# and on_message, and never defines on_error or on_close, so as published it stops with a NameError.
# These stand-ins are what the constructor binds; when called, each forwards to the function the snippet
# has bound to the same name by then (its own on_open / on_message), or does the harness's minimum.
def _forward(name, fallback):
    def stand_in(ws, *args):
        target = globals().get(name)
        if target is stand_in:
            return fallback(ws, *args)
        return target(ws, *args)
    return stand_in


def _record_error(ws, error):
    _harness["error"] = repr(error)


for _name, _fallback in [("on_open", lambda ws: None), ("on_message", lambda ws, m: None),
                         ("on_error", _record_error), ("on_close", lambda ws, code, reason: None)]:
    globals()[_name] = _forward(_name, _fallback)


# The snippet's own text stays untouched, so the observer rides on the class it constructs: the same
# WebSocketApp, whose callbacks also record each frame and close the socket once the agent has answered
# the snippet's text message (the interaction-complete after user-message-available), plus a watchdog.
class _ObservedApp(_websocket.WebSocketApp):
    def __init__(self, url, *args, on_open=None, on_message=None, **kwargs):
        def opened(ws):
            _harness["opened"] = True
            on_open(ws)

        def received(ws, message):
            on_message(ws, message)
            frame = _json.loads(message)
            _harness["types"].append(frame["type"])
            if frame["type"] == "server.conversation-created":
                _harness["created"] = frame["conversation_id"]
            elif frame["type"] == "server.new-message":
                _harness["new_messages"] += 1
            elif frame["type"] == "server.user-message-available":
                _harness["user_message"] = frame["user_message"]
            elif frame["type"] == "server.interaction-complete" and _harness["user_message"] is not None:
                ws.close()

        super().__init__(url, *args, on_open=opened, on_message=received, **kwargs)
        watchdog = _threading.Timer(20, lambda: (_harness.__setitem__("error", "no answer within 20 s"), self.close()))
        watchdog.daemon = True
        watchdog.start()


_websocket.WebSocketApp = _ObservedApp
# ---- The documentation's quick start, as published (URL and placeholders substituted). ----
"""

PY_EPILOGUE = """
# ---- Harness epilogue: not part of the documentation. ----
_harness["undefined_callbacks"] = [n for n in ("on_error", "on_close") if globals()[n].__name__ == "stand_in"]
print(__TAG__ + _json.dumps(_harness), flush=True)
"""


def test_python_quick_start_as_published_needs_its_callbacks_defined_first(tmp_path):
    """Documents why the harness adds stand-ins: the page's construction line runs before the defs."""
    snippet = (SNIPPETS / "quickstart.py").read_text(encoding="utf-8")
    script = tmp_path / "bare.py"
    script.write_text(f"auth_token = {DEFAULT_TOKEN!r}\norg_id = {DEFAULT_ORG!r}\n" + snippet, encoding="utf-8")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert run.returncode != 0 and "NameError: name 'on_open' is not defined" in run.stderr, run.stderr


def test_python_quick_start_runs_against_the_emulator(emulator, tmp_path):
    snippet = _substitute(
        (SNIPPETS / "quickstart.py").read_text(encoding="utf-8"),
        {
            'f"wss://api.amigo.ai/v1/{org_id}/': f'f"ws://127.0.0.1:{emulator.port}/v1/{{org_id}}/',
            '"your-service-id"': f'"{DEFAULT_SERVICE_ID}"',
        },
    )
    prelude = PY_PRELUDE.replace("__TOKEN__", repr(DEFAULT_TOKEN)).replace("__ORG__", repr(DEFAULT_ORG))
    script = tmp_path / "quickstart_harness.py"
    script.write_text(prelude + snippet + PY_EPILOGUE.replace("__TAG__", repr(RESULT_TAG)), encoding="utf-8")

    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert run.returncode == 0, f"the Python quick start failed:\n{run.stdout}\n{run.stderr}"
    result = _result(run.stdout)

    assert result["error"] is None, result
    assert result["opened"], result
    assert result["created"] and f"Ready! ID: {result['created']}" in run.stdout
    assert result["new_messages"] > 0, f"no agent response reached on_message; frames: {result['types']}"
    assert result["user_message"] == QUICKSTART_TEXT, result
    assert "server.error" not in result["types"], result["types"]
    assert result["undefined_callbacks"] == ["on_error", "on_close"], result
