"""The transport seam: the WebSocket the session talks through, how it is opened, and the reconnect policy.

The seam is the way to adapt to a service difference without editing the library. A
:data:`TransportFactory` opens a :class:`Transport`; give your own to :func:`amigo_lab.connect` as
``transport_factory=``. It sees every text exactly as it crosses the wire, both ways, so it can rename a
frame type, reshape a field or drop a message the service sends that the lab should not see::

    class Renaming:
        def __init__(self, inner): self.inner = inner
        async def send(self, text): await self.inner.send(text)
        async def recv(self):
            text = await self.inner.recv()
            return text.replace('"server.conversation-resumed"', '"server.conversation-continued"')
        async def close(self, code=1000, reason=""): await self.inner.close(code, reason)
        def abort(self): self.inner.abort()

    async def factory(url, **options):
        return Renaming(await open_websocket(url, **options))

    session = amigo_lab.connect(org, token, transport_factory=factory)

(Prefer a one-line entry in :mod:`amigo_lab.protocol.wire` when the difference is a name the lab should
know anyway.) Tests wrap a transport the same way to delay, drop or cut traffic. :func:`open_websocket` is the
default factory: TLS verified for ``wss``, the token kept out of every log record of the ``websockets`` library.
"""

from __future__ import annotations

import logging
import random
import ssl as _ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from amigo_lab.protocol import CloseCode, is_loopback_host, redact
from amigo_lab.protocol import constants as C
from amigo_lab.session.errors import ConnectionClosedError, SessionError, _ConnectFailed

#: Largest message the client accepts; the protocol caps frames at 1 MiB, a newer server may send more.
MAX_RECEIVE_BYTES = 16 * C.MAX_FRAME_BYTES


# --- the transport seam ----------------------------------------------------------------------------------


class Transport(Protocol):
    """What a session needs from a socket. :class:`WebSocketTransport` is the real one; tests may wrap it.

    ``recv`` and ``send`` raise :class:`ConnectionClosedError` once the socket is closed.
    """

    async def send(self, text: str) -> None:
        """Send one text message (one frame)."""

    async def recv(self) -> str | bytes:
        """The next message from the server; raises ConnectionClosedError once the socket is closed."""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a close frame and wait for the server's answer."""

    def abort(self) -> None:
        """Drop the connection at once, without a close frame (what a network failure looks like)."""


#: ``await factory(url, subprotocol=..., secure=..., open_timeout=...)`` opens a :class:`Transport`.
TransportFactory = Callable[..., Awaitable[Transport]]


class WebSocketTransport:
    """A :class:`Transport` over a ``websockets`` asyncio client connection.

    ``secret`` (the token) is removed from close reasons, in case a server repeats it there.
    """

    def __init__(self, connection: Any, *, secret: str | None = None) -> None:
        self._ws = connection
        self._secret = secret

    def _closed(self, exc: Exception) -> ConnectionClosedError:
        rcvd = getattr(exc, "rcvd", None)
        if rcvd is None:
            return ConnectionClosedError(CloseCode.ABNORMAL, "connection lost without a close frame")
        return ConnectionClosedError(rcvd.code, redact(rcvd.reason, self._secret))

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server echoed."""
        echoed: str | None = self._ws.subprotocol
        return echoed

    async def send(self, text: str) -> None:
        """Send one text message."""
        from websockets.exceptions import ConnectionClosed
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            raise self._closed(exc) from None

    async def recv(self) -> str | bytes:
        """Wait for the next message."""
        from websockets.exceptions import ConnectionClosed
        try:
            message: str | bytes = await self._ws.recv()
        except ConnectionClosed as exc:
            raise self._closed(exc) from None
        return message

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close politely (close frame, then wait for the server's)."""
        await self._ws.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        self._ws.transport.abort()



class _RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The ``websockets`` client logger, with the token removed from every record.

    At DEBUG the library logs the handshake headers, the subprotocol (the token) included; records are
    formatted here and redacted before they reach any handler.
    """

    def __init__(self, secret: str) -> None:
        super().__init__(logging.getLogger("websockets.client"), {})
        self._secret = secret

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        kwargs.pop("extra", None)
        self.logger.log(level, "%s", redact(text, self._secret), **kwargs)


async def open_websocket(url: str, *, subprotocol: str, secure: bool, open_timeout: float,
                         ssl: _ssl.SSLContext | None = None) -> WebSocketTransport:
    """Open the WebSocket; the default :data:`TransportFactory`.

    For ``wss`` the server's certificate is verified against the system's authorities, unless ``ssl`` gives
    another context (e.g. one that trusts a staging host's own authority). Library errors become
    :class:`SessionError` / :class:`ConnectionClosedError` without the token; the library's own log records
    never hold it.
    """
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

    host = url.split("://", 1)[1].split("/", 1)[0]
    token = subprotocol.removeprefix(C.AUTH_SUBPROTOCOL_PREFIX)
    tls: dict[str, Any] = {"ssl": ssl} if ssl is not None and secure else {}
    try:
        connection = await ws_connect(
            url,
            subprotocols=[subprotocol],  # type: ignore[list-item]
            open_timeout=open_timeout,
            ping_interval=C.KEEPALIVE_INTERVAL_S,
            ping_timeout=C.KEEPALIVE_TIMEOUT_S,
            max_size=MAX_RECEIVE_BYTES,
            compression=None,  # base64 audio barely compresses; deflate would only cost CPU
            proxy=None if is_loopback_host(host) else True,
            user_agent_header=f"amigo_lab/{_lab_version()}",
            logger=_RedactingLogger(token),
            **tls,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        try:
            mirrored = CloseCode(4000 + status)  # the close codes mirror HTTP statuses (protocol.md §5)
        except ValueError:
            mirrored = None
        if mirrored is not None:
            raise ConnectionClosedError(
                mirrored, f"the server refused the WebSocket upgrade with HTTP {status}") from None
        raise SessionError(f"the server at {url} refused the WebSocket upgrade with HTTP {status}; "
                           "check the host, region and organization") from None
    except (InvalidURI, InvalidHandshake) as exc:
        detail = redact(f"{type(exc).__name__}: {exc}", token)
        raise SessionError(f"the WebSocket handshake with {url} failed ({detail})") from None
    except (OSError, TimeoutError) as exc:
        detail = redact(f"{type(exc).__name__}: {exc}", token)
        where = "is the emulator running?" if is_loopback_host(host) else "check the network, host and region"
        raise _ConnectFailed(f"could not connect to {url} ({detail}); {where}") from None
    return WebSocketTransport(connection, secret=token)


def _lab_version() -> str:
    from amigo_lab import __version__
    return __version__


# --- reconnect policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter for reconnecting: ``initial * factor**attempt`` seconds, capped at
    ``maximum``, each multiplied by a random factor in ``[1 - jitter, 1 + jitter]``; ``attempts`` tries."""

    initial: float = 0.25
    factor: float = 2.0
    maximum: float = 8.0
    jitter: float = 0.5
    attempts: int = 8

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before try number ``attempt`` (0-based)."""
        base = min(self.maximum, self.initial * self.factor ** attempt)
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return max(0.0, base * spread)
