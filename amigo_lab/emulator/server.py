"""The emulator's WebSocket server: routing, authentication, the connection limits, start and stop.

:class:`Emulator` serves the Amigo real-time endpoint on loopback, either on its own background thread
(``with Emulator() as emu:`` or ``emu.start()``) or on the running event loop (``async with Emulator()``).
Each accepted socket is checked here (path, token, organization, query) and then handed to
:class:`~amigo_lab.emulator.connection.Connection`, which speaks the conversation.
"""

from __future__ import annotations

import asyncio
import http
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Self
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.frames import DATA_OPCODES, Frame
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from amigo_lab.emulator.agent import Agent, ScriptedAgent
from amigo_lab.emulator.connection import Connection, short_reason
from amigo_lab.emulator.logs import WEBSOCKETS_LOGGER, RedactingFilter, install
from amigo_lab.emulator.profiles import Profile, resolve_profile
from amigo_lab.emulator.runtime import Limits, Runtime
from amigo_lab.emulator.services import Service, load_services
from amigo_lab.protocol import (
    CloseCode,
    ConnectParams,
    QueryError,
    build_url,
    constants,
    parse_path,
    parse_query,
)
from amigo_lab.protocol.endpoint import token_from_subprotocols

logger = logging.getLogger("amigo_lab.emulator")

DEFAULT_ORG = "demo-org"
DEFAULT_TOKEN = "demo-token"
DEFAULT_USER = "demo-user"
#: The demo clinic service shipped in data/services (version set "release").
DEFAULT_SERVICE_ID = "6650a1b2c3d4e5f6a7b8c9d0"

#: Received frames a connection buffers ahead of its reader (see StampedConnection).
READ_AHEAD_FRAMES = 128

_NOT_FOUND_BODY = f"Not found. The endpoint is ws://HOST:PORT{constants.ENDPOINT_PATH}?response_format=...\n"


class Emulator:
    """A local server that speaks Amigo's real-time voice protocol with scripted agents.

    Parameters
    ----------
    host, port
        Where to listen; ``port=0`` picks a free port (read it from :attr:`port`).
    org, token
        The one organization served, and the token that authenticates as the demo user.
    services_dir
        Directory of service JSON files; default ``$AMIGO_LAB_SERVICES`` or the repo's ``data/services``.
    agent
        None for :class:`ScriptedAgent` (answers from the service files), or any callable
        ``agent(AgentTurn) -> AgentReply | str``.
    idle_timeout_s
        Close a connection with 4408 after this long without user activity.
    realtime
        Pace agent audio like a real service (at most 1 s ahead of playback). False sends it at once,
        which keeps tests fast.
    tokens
        ``{token: user_id}`` to serve several users; default ``{token: "demo-user"}``.
    limits
        Override other limits of protocol.md §6 and the emulator's own input bounds
        (:class:`~amigo_lab.emulator.runtime.Limits`).
    profile
        How the agent and the link behave in time: ``"instant"`` (default: answers at once, perfect link),
        ``"realistic"`` (answers after p50 1.2 s, fillers on slow turns, network jitter and loss), or a
        :class:`~amigo_lab.emulator.profiles.Profile` of your own (see data/README.md, "Profiles").

    Use ``with Emulator() as emu:`` (background thread), ``async with Emulator() as emu:`` (the running
    loop) or :meth:`start`/:meth:`stop`; then connect a client to :meth:`url`.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, org: str = DEFAULT_ORG,
                 token: str = DEFAULT_TOKEN, services_dir: str | os.PathLike[str] | None = None,
                 agent: Agent | None = None, idle_timeout_s: float = constants.IDLE_TIMEOUT_S,
                 realtime: bool = True, tokens: Mapping[str, str] | None = None,
                 limits: Limits | None = None, profile: str | Profile | None = None) -> None:
        if agent is not None and not callable(agent):
            raise TypeError(f"agent must be a callable taking an AgentTurn, got {type(agent).__name__}")
        if not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be positive, got {idle_timeout_s!r}")
        limits = replace(limits or Limits(), idle_timeout_s=float(idle_timeout_s))
        self._host = host
        self._requested_port = port
        self.org = org
        self.token = token
        self._runtime = Runtime(
            org=org,
            users=dict(tokens) if tokens is not None else {token: DEFAULT_USER},
            services=load_services(services_dir),
            agent=agent if agent is not None else ScriptedAgent(),
            limits=limits,
            realtime=realtime,
            profile=resolve_profile(profile),
        )
        self._server: Server | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._uninstall_filter: Callable[[], None] | None = None

    # --- where to connect -----------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The host the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the server listens on (known once started)."""
        if self._port is None:
            raise RuntimeError("the emulator is not running; call start() or use it in a with block first")
        return self._port

    @property
    def base_url(self) -> str:
        """``ws://HOST:PORT``."""
        return f"ws://{self._host}:{self.port}"

    @property
    def profile(self) -> Profile:
        """The behaviour profile in use (see :mod:`amigo_lab.emulator.profiles`)."""
        return self._runtime.profile

    @property
    def services(self) -> dict[str, Service]:
        """The loaded services, ``{service_id: Service}``."""
        return dict(self._runtime.services)

    def accepts(self, token: str) -> bool:
        """True when this emulator knows ``token`` (a user may connect with it). Next: :func:`amigo_lab.connect`."""
        return token in self._runtime.users

    def url(self, *, response_format: str = "voice", audio_format: str | None = "pcm",
            current_agent_action_type: str | None = None, org: str | None = None) -> str:
        """The full endpoint URL with its query (``audio_format=None`` leaves it out). Next: connect a client
        offering the subprotocol ``bearer.authorization.amigo.ai.<token>``."""
        params = ConnectParams(response_format=response_format, audio_format=audio_format,
                               current_agent_action_type=current_agent_action_type)
        return build_url(organization=org or self.org, params=params, host=f"{self._host}:{self.port}",
                         secure=False)

    def stats(self) -> dict[str, object]:
        """Counters for benchmarks and tests: open connections, conversations, frames in and out, ...

        Safe from any thread: the snapshot is taken on the serving loop.
        """
        loop = self._loop if self._thread is not None else None
        if loop is None or not loop.is_running() or threading.current_thread() is self._thread:
            return self._runtime.stats()

        async def snapshot() -> dict[str, object]:
            return self._runtime.stats()

        try:
            return asyncio.run_coroutine_threadsafe(snapshot(), loop).result(timeout=5)
        except (RuntimeError, TimeoutError):  # the loop stopped meanwhile: nothing changes any more
            return self._runtime.stats()

    # --- running on a background thread --------------------------------------------------------------------

    def start(self) -> Self:
        """Serve on a background thread with its own event loop; return once listening. Next: :meth:`url`."""
        if self._thread is not None or self._server is not None:
            raise RuntimeError("the emulator is already running")
        ready = threading.Event()
        self._startup_error = None
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="amigo-emulator",
                                        daemon=True)
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Close every connection with 1001 (going away), stop serving and join the thread."""
        thread, loop, stop = self._thread, self._loop, self._stop_requested
        if thread is None:
            if self._server is not None:
                raise RuntimeError("this emulator serves on your event loop; use 'await emu.aclose()'")
            return
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join()
        self._thread = None

    def serve_forever(self) -> None:
        """Block until :meth:`stop` is called from another thread, or Ctrl-C; starts the server if needed.

        Prints nothing: a CLI prints :meth:`url` after :meth:`start`, then calls this.
        """
        if self._thread is None:
            self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _thread_main(self, ready: threading.Event) -> None:
        asyncio.run(self._serve_until_stopped(ready))

    async def _serve_until_stopped(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            await self._open()
        except BaseException as exc:  # reported to the thread that called start()
            self._startup_error = exc
            ready.set()
            return
        ready.set()
        await self._stop_requested.wait()
        await self.aclose()

    # --- running on the caller's loop ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._thread is not None or self._server is not None:
            raise RuntimeError("the emulator is already running")
        await self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection with 1001 (going away) and stop serving (on the serving loop)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=True, code=CloseCode.GOING_AWAY, reason="emulator shutting down")
        await server.wait_closed()
        if self._lag_task is not None:
            self._lag_task.cancel()
            await asyncio.gather(self._lag_task, return_exceptions=True)
            self._lag_task = None
        # Off the loop: the last emulator of the process waits here for its recognition workers to exit.
        await asyncio.to_thread(self._runtime.close)
        self._port = None
        if self._uninstall_filter is not None:
            self._uninstall_filter()
            self._uninstall_filter = None

    async def _open(self) -> None:
        limits = self._runtime.limits
        # Before the first handshake: websockets logs its headers, the token among them, at DEBUG.
        self._uninstall_filter = install(RedactingFilter(lambda: self._runtime.users),
                                         (WEBSOCKETS_LOGGER, logger.name))
        try:
            self._server = await serve(
                self._handle,
                self._host,
                self._requested_port,
                select_subprotocol=_select_subprotocol,
                process_request=_route,
                compression=None,  # base64 audio hardly compresses; deflate would only cost CPU
                max_size=limits.max_frame_bytes,
                ping_interval=limits.keepalive_interval_s,
                ping_timeout=limits.keepalive_timeout_s,
                close_timeout=limits.close_timeout_s,
                logger=logging.getLogger(WEBSOCKETS_LOGGER),
                create_connection=StampedConnection,
                # Frames a connection reads ahead of its reader before websockets stops reading the socket:
                # 2.5 s of a microphone's 20 ms chunks (the default, 16, is a third of a second). Frames left
                # in the socket are stamped only when read, so a reader behind by more than the read-ahead
                # would charge them late and could close a client that kept the rate.
                max_queue=(READ_AHEAD_FRAMES, READ_AHEAD_FRAMES // 4),
            )
        except BaseException:
            self._uninstall_filter()
            self._uninstall_filter = None
            raise
        self._runtime.open()
        self._lag_task = asyncio.create_task(self._runtime.loop_lag.run())
        self._port = self._server.sockets[0].getsockname()[1]
        logger.info("emulator listening on ws://%s:%s", self._host, self._port)

    # --- one connection ---------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        runtime = self._runtime
        runtime.counters.connections_open += 1
        runtime.counters.connections_total += 1
        try:
            admitted = await self._admit(ws)
            if admitted is not None:
                user_id, params = admitted
                await Connection(ws, runtime, user_id=user_id, params=params).run()
        finally:
            runtime.counters.connections_open -= 1
            if ws.close_code is not None:
                runtime.counters.close_codes[ws.close_code] += 1

    async def _admit(self, ws: ServerConnection) -> tuple[str, ConnectParams] | None:
        """Check token, organization and query; close with 4401, 4404 or 4400 at once when one is wrong."""
        _, token = token_from_subprotocols([ws.subprotocol] if ws.subprotocol else [])
        user_id = self._runtime.users.get(token) if token is not None else None
        if user_id is None:
            reason = "missing token: offer the subprotocol bearer.authorization.amigo.ai.<token>" \
                if token is None else "invalid token"
            await ws.close(CloseCode.UNAUTHORIZED, reason)
            return None
        path = ws.request.path if ws.request is not None else ""
        if parse_path(path) != self.org:
            await ws.close(CloseCode.NOT_FOUND, "organization not found")
            return None
        try:
            params = parse_query(urlsplit(path).query)
        except QueryError as exc:
            await ws.close(CloseCode.BAD_REQUEST, short_reason(str(exc)))
            return None
        return user_id, params


class StampedConnection(ServerConnection):
    """A server connection that notes when each message arrived, for the frame-rate limiter.

    When the event loop falls behind, frames wait in the socket and the reader takes them in a burst; the
    limiter must charge them at their arrival, not at their reading, or a client that kept the rate would
    be closed for the server's own lateness. :attr:`arrivals` holds the loop time of each received message
    not yet read (the socket read that completed it); the reader takes one per message, in order.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: deque[float] = deque()

    def process_event(self, event: Any) -> None:
        """Stamp the last frame of each data message, then let websockets process the event."""
        if isinstance(event, Frame) and event.fin and event.opcode in DATA_OPCODES:
            self.arrivals.append(self.loop.time())
        super().process_event(event)


def _select_subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """Echo the offered auth subprotocol exactly (browsers drop the socket otherwise), token right or wrong."""
    subprotocol, _ = token_from_subprotocols(list(offered))
    return Subprotocol(subprotocol) if subprotocol is not None else None


def _route(connection: ServerConnection, request: Request) -> Response | None:
    """Answer HTTP 404 for any path but the endpoint's."""
    if parse_path(request.path) is None:
        return connection.respond(http.HTTPStatus.NOT_FOUND, _NOT_FOUND_BODY)
    return None


async def serve_forever(*, on_ready: Callable[[Emulator], None] | None = None, **kwargs: Any) -> None:
    """Serve an :class:`Emulator` built from ``kwargs`` on the running loop until cancelled.

    ``on_ready(emu)`` is called once it listens (e.g. to print ``emu.url()``); nothing is printed here.
    """
    async with Emulator(**kwargs) as emu:
        if on_ready is not None:
            on_ready(emu)
        await asyncio.get_running_loop().create_future()


__all__ = ["DEFAULT_ORG", "DEFAULT_SERVICE_ID", "DEFAULT_TOKEN", "DEFAULT_USER", "Emulator", "serve_forever"]
