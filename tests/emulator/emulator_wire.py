"""A small synchronous wire client for the emulator tests, and helpers to read what it received.

The client speaks raw protocol frames (JSON dicts) over a real loopback socket with
``websockets.sync.client``; it shares nothing with the lab's own session client.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from contextlib import ExitStack

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from amigo_lab.emulator import DEFAULT_ORG, DEFAULT_SERVICE_ID, DEFAULT_TOKEN
from amigo_lab.protocol.constants import AUTH_SUBPROTOCOL_PREFIX, ENDPOINT_PATH

RECV_TIMEOUT_S = 10.0
BYTES_PER_MS = 32


class Closed(AssertionError):
    """The server closed while a frame was expected."""


class WireClient:
    """One connection speaking protocol frames as dicts; ``frames`` keeps every server frame read."""

    def __init__(self, port: int, *, query: str | None = "response_format=text", org: str = DEFAULT_ORG,
                 token: str | None = DEFAULT_TOKEN, max_size: int | None = None) -> None:
        url = f"ws://127.0.0.1:{port}{ENDPOINT_PATH.format(organization=org)}"
        if query:
            url += f"?{query}"
        self.offered = AUTH_SUBPROTOCOL_PREFIX + token if token is not None else None
        self._stack = ExitStack()
        self.ws = self._stack.enter_context(ws_connect(
            url, subprotocols=[self.offered] if self.offered else None, max_size=max_size, open_timeout=5,
            close_timeout=2))
        self.frames: list[dict] = []

    def send(self, type_: str, **fields: object) -> None:
        self.ws.send(json.dumps({"type": type_, **fields}))

    def say(self, text: str, *, message_type: str = "user-message") -> None:
        self.send("client.new-text-message", text=text, message_type=message_type)

    def send_audio(self, pcm: bytes, *, chunk_ms: int = 100, frames_per_s: float = 60.0) -> None:
        """Send PCM in chunks, under the 100 frames/s limit; ``frames_per_s=None`` sends at once."""
        step = chunk_ms * BYTES_PER_MS
        for start in range(0, len(pcm), step):
            self.send("client.new-audio-message", audio=base64.b64encode(pcm[start:start + step]).decode())
            time.sleep(1.0 / frames_per_s)

    def recv(self, timeout: float = RECV_TIMEOUT_S) -> dict:
        try:
            frame = json.loads(self.ws.recv(timeout=timeout))
        except ConnectionClosed as exc:
            raise Closed(f"closed with {self.close_code} {self.close_reason!r} after {self.kinds()}") from exc
        self.frames.append(frame)
        return frame

    def recv_until(self, type_: str, *, where: Callable[[dict], bool] = lambda f: True,
                   timeout: float = RECV_TIMEOUT_S) -> list[dict]:
        """Frames up to and including the first of ``type_`` satisfying ``where``."""
        start = len(self.frames)
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(timeout=max(0.01, deadline - time.monotonic()))
            if frame["type"] == type_ and where(frame):
                return self.frames[start:]

    def interaction(self) -> list[dict]:
        return self.recv_until("server.interaction-complete")

    def start(self, service_id: str = DEFAULT_SERVICE_ID, **fields: object) -> str:
        """Start a conversation; return its id (the greeting is left unread)."""
        self.send("client.start-conversation", service_id=service_id, **fields)
        return self.recv_until("server.conversation-created")[-1]["conversation_id"]

    def expect_close(self, timeout: float = RECV_TIMEOUT_S) -> tuple[int | None, str, list[dict]]:
        """Read until the server closes; return (code, reason, frames read meanwhile)."""
        start = len(self.frames)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.frames.append(json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))))
            except ConnectionClosed:
                return self.close_code, self.close_reason, self.frames[start:]

    def quiet_for(self, seconds: float) -> list[dict]:
        """Frames that arrive within ``seconds``; fails if the server closes meanwhile."""
        start = len(self.frames)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.recv(timeout=left)
            except TimeoutError:
                break
        return self.frames[start:]

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str:
        return self.ws.close_reason or ""

    def kinds(self, frames: list[dict] | None = None) -> list[str]:
        return [f["type"].removeprefix("server.") for f in (self.frames if frames is None else frames)]

    def close(self) -> None:
        self._stack.close()


def pieces(frames: list[dict], message_id: str) -> list[dict]:
    """The new-message pieces of one message, in order."""
    return [f for f in frames if f["type"] == "server.new-message" and f["message_id"] == message_id]


def of_type(frames: list[dict], type_: str) -> list[dict]:
    return [f for f in frames if f["type"] == type_]


def words(text: str) -> str:
    """Lowercase words only, to compare texts and transcripts."""
    return " ".join(re.findall(r"[a-z']+", text.lower()))


def silence(ms: int) -> bytes:
    """PCM16 silence."""
    return bytes(ms * BYTES_PER_MS)
