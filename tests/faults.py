"""A loopback TCP proxy that injects network faults between a WebSocket client and its server.

Put it in front of a server, point the client at ``proxy.address``, and break things from the test::

    with FaultProxy("127.0.0.1", emulator_port) as proxy:
        session = connect(emulator=emu, host=proxy.address)
        proxy.delay(0.2)            # add 200 ms to everything forwarded, both ways
        proxy.pause("down")         # stop forwarding server -> client (data waits until resume())
        proxy.resume()
        proxy.drop("up")            # discard client -> server bytes from now on
        proxy.cut()                 # drop every connection abruptly (the client sees 1006)
        proxy.close_with(1011, "x") # send the client a WebSocket close frame with that code, then cut

The proxy runs its own event loop in a daemon thread, independent of the code under test. Server-to-client
traffic is forwarded one whole WebSocket frame at a time (after the HTTP handshake), so an injected close
frame never lands in the middle of another frame.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

UP, DOWN = "up", "down"  # up: client -> server; down: server -> client
_DIRECTIONS = {UP: (UP,), DOWN: (DOWN,), "both": (UP, DOWN)}


def close_frame(code: int, reason: str = "") -> bytes:
    """An unmasked WebSocket close frame (as a server sends it) with a status code and reason."""
    payload = struct.pack("!H", code) + reason.encode("utf-8")[:123]
    return bytes([0x88, len(payload)]) + payload


@dataclass
class _Direction:
    delay: float = 0.0
    dropping: bool = False
    flowing: asyncio.Event = field(default_factory=asyncio.Event)


class _Link:
    """One proxied connection: a client socket, a server socket, and a pump each way."""

    def __init__(self, proxy: FaultProxy, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 server: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.proxy = proxy
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        self.closing = False
        self.tasks: list[asyncio.Task[None]] = []

    async def _forward(self, direction: str, data: bytes, writer: asyncio.StreamWriter) -> None:
        settings = self.proxy._settings[direction]
        if settings.delay:
            await asyncio.sleep(settings.delay)
        await settings.flowing.wait()
        if self.closing or settings.dropping:
            return
        writer.write(data)
        await writer.drain()

    async def pump_up(self) -> None:
        while not self.closing:
            data = await self.client_reader.read(65536)
            if not data:
                break
            await self._forward(UP, data, self.server_writer)
        self.abort()

    async def pump_down(self) -> None:
        reader = self.server_reader
        handshake = await reader.readuntil(b"\r\n\r\n")
        await self._forward(DOWN, handshake, self.client_writer)
        while not self.closing:
            head = await reader.readexactly(2)
            length = head[1] & 0x7F
            extended = b""
            if length == 126:
                extended = await reader.readexactly(2)
                length = struct.unpack("!H", extended)[0]
            elif length == 127:
                extended = await reader.readexactly(8)
                length = struct.unpack("!Q", extended)[0]
            mask = await reader.readexactly(4) if head[1] & 0x80 else b""
            payload = await reader.readexactly(length)
            self.proxy._frames_down += 1
            await self._forward(DOWN, head + extended + mask + payload, self.client_writer)

    async def run(self) -> None:
        self.tasks = [asyncio.create_task(self.pump_up()), asyncio.create_task(self.pump_down())]
        await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        self.abort()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def abort(self) -> None:
        self.closing = True
        for writer in (self.client_writer, self.server_writer):
            transport = writer.transport
            if not transport.is_closing():
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    # Linger 0: the peer gets a reset, as when a network path dies.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()

    async def close_with(self, code: int, reason: str) -> None:
        self.closing = True
        self.client_writer.write(close_frame(code, reason))
        try:
            await asyncio.wait_for(self.client_writer.drain(), 1.0)
        except (TimeoutError, ConnectionError):
            pass
        self.server_writer.transport.abort()
        self.client_writer.close()


class FaultProxy:
    """A TCP proxy on ``127.0.0.1`` in front of ``target_host:target_port``, with fault switches.

    Use as a context manager (or :meth:`start` / :meth:`stop`). All switch methods are thread-safe and
    apply to current and future connections.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._links: list[_Link] = []
        self._settings: dict[str, _Direction] = {}
        self._frames_down = 0
        self.accepted = 0
        self.port = 0

    # --- life cycle ---------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start listening on a free loopback port (see :attr:`address`)."""
        self._thread.start()
        self._run(self._start())
        return self

    async def _start(self) -> None:
        self._settings = {UP: _Direction(), DOWN: _Direction()}
        for settings in self._settings.values():
            settings.flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Cut every connection, stop listening and end the proxy's thread."""
        if not self._thread.is_alive():
            return
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        await asyncio.sleep(0)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """``host:port`` to give a client instead of the server's."""
        return f"127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        """Connections currently proxied."""
        return sum(1 for link in self._links if not link.closing)

    @property
    def frames_down(self) -> int:
        """WebSocket frames forwarded (or held) server -> client so far, over all connections."""
        return self._frames_down

    def wait_for_connections(self, accepted: int, timeout: float = 10.0) -> None:
        """Block until at least ``accepted`` connections have been accepted in total."""
        deadline = time.monotonic() + timeout
        while self.accepted < accepted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.accepted} of {accepted} connections arrived in {timeout} s")
            time.sleep(0.01)

    # --- faults -------------------------------------------------------------------------------------

    def delay(self, seconds: float, direction: str = "both") -> None:
        """Hold everything forwarded in ``direction`` ("up", "down", "both") for ``seconds`` first."""
        def apply() -> None:
            for d in _DIRECTIONS[direction]:
                self._settings[d].delay = seconds
        self._call(apply)

    def pause(self, direction: str = "both") -> None:
        """Stop forwarding in ``direction``; the data waits (the socket stays open) until :meth:`resume`."""
        self._call(lambda: [self._settings[d].flowing.clear() for d in _DIRECTIONS[direction]])

    def resume(self, direction: str = "both") -> None:
        """Forward again in ``direction``, starting with what waited."""
        self._call(lambda: [self._settings[d].flowing.set() for d in _DIRECTIONS[direction]])

    def drop(self, direction: str = "both", dropping: bool = True) -> None:
        """Silently discard everything in ``direction`` from now on (``dropping=False`` to stop)."""
        def apply() -> None:
            for d in _DIRECTIONS[direction]:
                self._settings[d].dropping = dropping
        self._call(apply)

    def cut(self) -> None:
        """Drop every current connection abruptly: no close frame, a TCP reset (the client sees 1006)."""
        self._call(lambda: [link.abort() for link in self._links])

    def close_with(self, code: int, reason: str = "") -> None:
        """Send every current client a close frame with ``code`` and ``reason``, then drop the connection."""
        async def close_all() -> None:
            await asyncio.gather(*(link.close_with(code, reason) for link in self._links if not link.closing))
        self._run(close_all())

    # --- internals ----------------------------------------------------------------------------------

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            server = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        link = _Link(self, (client_reader, client_writer), server)
        self._links.append(link)
        try:
            await link.run()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            link.abort()
        finally:
            self._links.remove(link)

    def _run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    def _call(self, fn: object) -> None:
        async def invoke() -> None:
            fn()  # type: ignore[operator]
        self._run(invoke())
