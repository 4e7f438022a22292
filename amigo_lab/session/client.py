"""The :class:`Session` itself: the socket on the lab's loop, the send queue, reconnects, and the public calls.

See the theory of operation in :mod:`amigo_lab.session`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import html
import logging
import os
import shutil
import threading
import weakref
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

import numpy as np

from amigo_lab import _loop
from amigo_lab import audio as _audio
from amigo_lab.framelog import FrameLog
from amigo_lab.protocol import (
    CloseCode,
    CloseConnection,
    ConnectParams,
    ContinueConversation,
    Conversation,
    ConversationContinued,
    ConversationCreated,
    ExtendTimeout,
    FinishConversation,
    Frame,
    FrameError,
    InteractionComplete,
    LocalProtocolError,
    NewAudioMessage,
    NewMessage,
    NewTextMessage,
    RemoteProtocolError,
    Role,
    ServerError,
    StartConversation,
    SwitchVadMode,
    VadModeSwitched,
    auth_subprotocol,
    build_url,
    parse,
)
from amigo_lab.protocol import constants as C
from amigo_lab.session.errors import ConnectionClosedError, SessionError, TurnError, _ConnectFailed
from amigo_lab.session.tracker import _Pending, _stamp, _TurnTracker
from amigo_lab.session.transport import Backoff, Transport, TransportFactory, open_websocket
from amigo_lab.session.turns import Turn

logger = logging.getLogger("amigo_lab.session")

SAMPLE_RATE = _audio.SAMPLE_RATE
#: Frames per second the sender stays under (the protocol allows 100 per connection).
MAX_SEND_RATE = C.MAX_FRAMES_PER_SECOND - 5
#: Silence appended to audio sent with VAD on, so the server hears the speech end (500 ms) with margin.
VAD_TRAILING_SILENCE_MS = C.VAD_END_SILENCE_MS + 300


# --- the session -----------------------------------------------------------------------------------------


class SessionState(str, Enum):
    """Where a :class:`Session` is; ``session.state`` gives its value."""

    IDLE = "idle"                    # no socket yet
    CONNECTING = "connecting"
    CONNECTED = "connected"          # socket open, no conversation on it yet
    INITIALISING = "initialising"    # start or continue sent
    ACTIVE = "active"                # turns may flow
    RECONNECTING = "reconnecting"    # the socket dropped; continuing the conversation on a new one
    COMPLETED = "completed"          # the agent ended the conversation; the server is closing
    CLOSING = "closing"              # finish or close sent
    CLOSED = "closed"                # closed normally; start(), resume() or reconnect() open a new socket
    FAILED = "failed"                # closed for good (a 44xx code, or reconnecting gave up)


_TERMINAL = (SessionState.CLOSED, SessionState.FAILED)


@dataclass(eq=False)
class _Outgoing:
    """A frame waiting in the send queue, with what to do once it left."""

    frame: Frame
    owner: _Pending | None = None
    audio: bytes | None = None
    audio_ms: float | None = None
    on_sent: Callable[[Mapping[str, Any]], None] | None = None


class Session:
    """A conversation with an Amigo agent (or the emulator) over one WebSocket at a time.

    Build it with :func:`amigo_lab.connect`, which picks the URL, opens the socket and starts the
    conversation. Built directly, a session is idle: call :meth:`open`, then :meth:`start` or
    :meth:`resume`. ``transport_factory`` replaces :func:`open_websocket` (tests wrap it to inject faults),
    ``backoff`` sets how reconnecting waits, ``loop`` the :class:`~amigo_lab._loop.BackgroundLoop` to run on.
    Thread-safe; see the module docstring for how it works.
    """

    def __init__(self, *, organization: str, token: str, params: ConnectParams, host: str | None = None,
                 region: str = C.DEFAULT_REGION, secure: bool = True, service_id: str | None = None,
                 version_set: str = C.DEFAULT_VERSION_SET, log_dir: str | os.PathLike[str] | None = None,
                 timeout: float = 30.0, transport_factory: TransportFactory | None = None,
                 backoff: Backoff = Backoff(), loop: _loop.BackgroundLoop | None = None) -> None:
        try:
            self._subprotocol = auth_subprotocol(token)
        except ValueError as exc:
            raise SessionError(f"the token is not usable: {exc}") from None
        self._token = token
        self.organization = organization
        self.region = region
        self.service_id = service_id
        self.version_set = version_set
        self.params = params
        self.url = build_url(organization=organization, params=params, host=host, region=region, secure=secure)
        self._secure = secure
        self._timeout = float(timeout)
        self._factory: TransportFactory = transport_factory or open_websocket
        self._backoff = backoff
        self._bg = loop or _loop.get_loop()
        self._log = FrameLog(log_dir, secrets=(token,), meta={
            "url": self.url, "organization": organization, "region": None if not secure and host else region,
            "host": host, "service_id": service_id, "version_set": version_set,
            "response_format": params.response_format, "audio_format": params.audio_format,
            "agent_actions": params.current_agent_action_type,
        })
        self._audio_format = params.audio_format or "pcm"
        self._voice = params.response_format == "voice"

        # Loop-owned state (touched only on the loop thread).
        self._transport: Transport | None = None
        self._reader: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._conv = Conversation(Role.CLIENT)
        self._queue: collections.deque[_Outgoing] = collections.deque()
        self._queue_changed: asyncio.Event | None = None
        self._send_lock: asyncio.Lock | None = None
        self._sent_times: collections.deque[float] = collections.deque()
        self._init_waiter: asyncio.Future[Frame] | None = None
        self._vad_waiters: list[tuple[bool, asyncio.Future[None]]] = []
        self._tracker = _TurnTracker(self._new_turn)
        self._user_closing: str | None = None
        self._reconnecting = False
        self._last_close: tuple[int, str] = (int(CloseCode.ABNORMAL), "")

        # Shared state (read from any thread; written under the lock or on the loop).
        self._lock = threading.Lock()
        self._state = SessionState.IDLE
        self._fatal: ConnectionClosedError | None = None
        self._closed_error: ConnectionClosedError | None = None
        self._turns: list[Turn] = []
        self._vad_wanted = False
        self.conversation_id: str | None = None
        self.greeting: Turn | None = None
        self._remove_hook = self._bg.add_shutdown_hook(_weak_hook(self))

    # --- properties -------------------------------------------------------------------------------------

    @property
    def log(self) -> FrameLog:
        """The session's :class:`~amigo_lab.framelog.FrameLog` (durable on disk at ``log.path``)."""
        return self._log

    @property
    def frames(self) -> "Any":
        """Every frame so far, both directions, as a DataFrame (see :data:`amigo_lab.framelog.COLUMNS`)."""
        return self._log.to_dataframe()

    @property
    def state(self) -> str:
        """The session's :class:`SessionState` value, e.g. ``"active"``."""
        return self._state.value

    @property
    def turns(self) -> list[Turn]:
        """Every turn so far in the order they began, including speech the server heard on its own."""
        with self._lock:
            return list(self._turns)

    @property
    def response_format(self) -> str:
        """``"voice"`` (agent pieces are audio) or ``"text"``, as asked in the connection's query."""
        return self.params.response_format

    @property
    def audio_format(self) -> str:
        """``"pcm"`` or ``"mp3"``: the encoding of audio in both directions."""
        return self._audio_format

    @property
    def vad_on(self) -> bool:
        """True when server-side VAD is (being) switched on for this session."""
        return self._vad_wanted

    def __repr__(self) -> str:
        return (f"<Session {self.state} conversation={self.conversation_id} url={self.url} "
                f"turns={len(self._turns)} frames={len(self._log)} log={str(self._log.path)!r}>")

    def _repr_html_(self) -> str:
        rows = [("state", self.state), ("conversation", self.conversation_id), ("url", self.url),
                ("turns", len(self._turns)), ("frames", len(self._log)), ("log", str(self._log.path))]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in rows)
        return f"<table><caption>amigo_lab Session</caption>{body}</table>"

    # --- public calls: connection and conversation ------------------------------------------------------

    def open(self) -> None:
        """Open the socket (no conversation yet). :func:`amigo_lab.connect` calls it; then :meth:`start`."""
        self._block(self._open_if_needed())

    def start(self, service_id: str | None = None, version_set: str | None = None) -> Turn:
        """Start a new conversation; returns once the server created it. Returns the greeting :class:`Turn`.

        Opens a socket first if the last one was closed. Next: ``.result()`` or ``await`` the greeting, then
        :meth:`say` or :meth:`send_audio`.
        """
        if self._state is SessionState.ACTIVE:
            raise SessionError(f"conversation {self.conversation_id} is already active on this session; "
                               "finish() or close() it first, or use another session")
        service_id = service_id or self.service_id
        if not service_id:
            raise SessionError("no service id: pass start(service_id=...) or connect(service_id=...) "
                               "(or set AMIGO_SERVICE_ID)")
        frame = StartConversation(service_id=service_id,
                                  service_version_set_name=version_set or self.version_set)
        greeting = self._new_turn("greeting", None)
        self._block(self._start(frame, _Pending(greeting, "greeting")))
        self.service_id = service_id
        self.greeting = greeting
        return greeting

    def resume(self, conversation_id: str) -> None:
        """Continue an unfinished conversation (Option B) on this session; returns once the server agreed.

        A conversation already active here is closed first (left open on the server).
        """
        frame = ContinueConversation(conversation_id=conversation_id)
        self._block(self._resume(frame))

    def reconnect(self) -> None:
        """Drop the socket (if any), open a new one and continue the same conversation."""
        if self.conversation_id is None:
            raise SessionError("nothing to reconnect to: no conversation yet; call start() first")
        self._block(self._resume(ContinueConversation(conversation_id=self.conversation_id)))

    def close(self) -> None:
        """Send ``close-connection`` and close the socket; the conversation stays open on the server.

        Continue it later with :meth:`reconnect` (or ``connect(conversation_id=...)``).
        """
        self._block(self._end(CloseConnection(), "close"))

    def finish(self) -> None:
        """Finish the conversation for good (``finish-conversation``); the server then closes the socket."""
        self._block(self._end(FinishConversation(), "finish"))

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Copy the recorded session (frames, audio, meta, parquet) to a new folder; returns its path.

        Next: :func:`amigo_lab.load_session` on that folder, anywhere, later.
        """
        target = Path(directory)
        if target.exists() and any(target.iterdir()):
            raise SessionError(f"{str(target)!r} is not empty; save into a new folder")
        self._log.export_parquet()
        shutil.copytree(self._log.path, target, dirs_exist_ok=True)
        return target

    # --- public calls: turns ----------------------------------------------------------------------------

    def say(self, text: str) -> Turn:
        """Send a text turn; returns its :class:`Turn` at once (``.result()`` or ``await`` it for the Reply)."""
        frame = NewTextMessage(text=text)
        self._check_usable()
        pending = _Pending(self._new_turn("text", text), "text", text=text)
        self._submit(_Outgoing(frame, owner=pending,
                               on_sent=lambda entry: self._tracker.user_sent(pending, entry)))
        return pending.turn

    def event(self, text: str) -> Turn:
        """Send an external event (context for the next interaction; alone it may start one).

        The Turn resolves at the next ``interaction-complete`` of an interaction that begins after it left.
        """
        frame = NewTextMessage(text=text, message_type=C.MESSAGE_TYPE_EXTERNAL_EVENT)
        self._check_usable()
        pending = _Pending(self._new_turn("event", text), "event", text=text)
        self._submit(_Outgoing(frame, owner=pending,
                               on_sent=lambda entry: self._tracker.event_sent(pending, entry)))
        return pending.turn

    def send_audio(self, audio: np.ndarray | bytes | str | os.PathLike[str], *, sr: int | None = None,
                   realtime: bool = True, chunk_ms: float = 20, end: bool | None = None) -> Turn:
        """Stream audio as the user's turn; returns its :class:`Turn` at once.

        ``audio`` is a file path (WAV, FLAC, OGG, MP3, ...), a float or int16 array at ``sr`` Hz (default
        16 000; resampled to 16 kHz, mixed to mono), or PCM16 bytes at ``sr``. It is cut into ``chunk_ms``
        pieces and sent in real time (``realtime=True``) or as fast as the 100 frames/s limit allows.
        ``end`` sends ``audio: null`` after it (push-to-talk); the default ends the turn unless VAD is on.
        With VAD on, trailing silence is added so the server hears the speech end. The Turn resolves at the
        ``interaction-complete`` of the turn this audio produced.
        """
        if not 0 < chunk_ms <= C.MAX_CHUNK_MS:
            raise SessionError(f"chunk_ms must be more than 0 and at most {C.MAX_CHUNK_MS} (the protocol's "
                               f"limit per frame), got {chunk_ms!r}; {C.RECOMMENDED_CHUNK_MS[0]} to {C.RECOMMENDED_CHUNK_MS[1]} ms "
                               "is recommended")
        vad = self._vad_wanted
        if vad and self._audio_format != "pcm":
            raise SessionError("VAD needs audio_format='pcm'; connect with audio_format='pcm' or call vad(False)")
        samples = _as_samples(audio, sr)
        if vad:
            samples = np.concatenate([samples, _audio.silence(VAD_TRAILING_SILENCE_MS)])
        if samples.size == 0 and not (end if end is not None else not vad):
            raise SessionError("send_audio got no samples; pass some audio (or call end_audio() to end a turn)")
        pieces = [(_audio.encode_wire_audio(p, self._audio_format), p.size * 1000.0 / SAMPLE_RATE)
                  for p in _audio.chunk(samples, sr=SAMPLE_RATE, ms=chunk_ms) if p.size]
        self._check_usable()
        name = os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else None
        pending = _Pending(self._new_turn("audio", name), "audio", vad=vad)
        streaming = self._bg.run(self._stream(pending, pieces, realtime=realtime, chunk_ms=chunk_ms,
                                              end=(not vad) if end is None else end))

        def streamed(future: concurrent.futures.Future[None]) -> None:
            if not future.cancelled() and future.exception() is not None:
                pending.turn._fail(future.exception())  # type: ignore[arg-type]

        streaming.add_done_callback(streamed)
        return pending.turn

    def send_chunk(self, pcm16: bytes | bytearray | memoryview) -> None:
        """Send one chunk of live microphone audio (PCM16, mono, 16 kHz). Non-blocking, any thread.

        End a push-to-talk turn with :meth:`end_audio`; with VAD on, just keep streaming.
        """
        data = bytes(pcm16)
        if len(data) % 2:
            raise SessionError(f"PCM16 chunks hold whole 2-byte samples; got {len(data)} bytes")
        self._check_usable()
        wire = data if self._audio_format == "pcm" else _audio.encode_mp3(data, sr=SAMPLE_RATE)
        self._submit(_Outgoing(NewAudioMessage.from_bytes(wire), audio=wire,
                               audio_ms=len(data) * 1000.0 / (2 * SAMPLE_RATE)))

    def end_audio(self) -> Turn:
        """End the user's audio (``audio: null``): the server answers what it heard. Returns that Turn."""
        self._check_usable()
        pending = _Pending(self._new_turn("audio", None), "audio")
        self._submit(_Outgoing(NewAudioMessage(audio=None), owner=pending, audio=b"", audio_ms=0.0,
                               on_sent=lambda entry: self._tracker.audio_ended(entry, pending)))
        return pending.turn

    def vad(self, on: bool) -> None:
        """Switch server-side voice activity detection on or off; returns once the server confirmed."""
        on = bool(on)
        if on and self._audio_format != "pcm":
            raise SessionError("VAD needs audio_format='pcm' (the server closes with 4415 otherwise); "
                               "connect with audio_format='pcm'")
        self._check_usable()
        self._vad_wanted = on
        self._block(self._switch_vad(on))

    def extend_timeout(self) -> None:
        """Reset the server's idle timer (it closes with 4408 after 120 s without user activity)."""
        self._check_usable()
        self._submit(_Outgoing(ExtendTimeout()))

    def on_frame(self, callback: Callable[[dict[str, Any], Frame | None], Any]) -> Callable[[], None]:
        """Call ``callback(entry, frame)`` for every logged entry (``frame`` None for local events).

        Runs on the session's loop thread: keep it short, never block there. Exceptions are logged and
        swallowed. Returns a function that removes the callback.
        """
        return self._log.subscribe(callback)

    def _discard(self) -> None:
        """Drop the socket without a word and close the log (when connect() fails half way)."""
        if self._transport is not None and not self._bg.in_loop_thread():
            try:
                self._bg.run(self._drop_socket("close")).result(self._timeout + 5.0)
            except (concurrent.futures.TimeoutError, SessionError):
                pass
        self._log.close()

    # --- plumbing between threads -----------------------------------------------------------------------

    def _block(self, coro: Any) -> Any:
        if self._bg.in_loop_thread():
            coro.close()
            raise SessionError("this call blocks, and it was made on the session's own loop thread (inside an "
                               "on_frame callback?); call it from another thread")
        future = self._bg.run(coro)
        try:
            return future.result(self._timeout + 5.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise SessionError(f"no answer within {self._timeout:.0f} s ({self.state}); "
                               "check the connection, or pass a larger timeout to connect()") from None

    def _new_turn(self, kind: str, request: str | None) -> Turn:
        turn = Turn(kind, request, display_timeout=self._timeout, in_loop_thread=self._bg.in_loop_thread)
        with self._lock:
            self._turns.append(turn)
        return turn

    def _check_usable(self) -> None:
        if self._fatal is not None:
            raise ConnectionClosedError(self._fatal.code, self._fatal.reason, self._fatal.hint)
        state = self._state
        if state is SessionState.CLOSED:
            closed = self._closed_error
            raise ConnectionClosedError(closed.code if closed else 1000, closed.reason if closed else "",
                                        closed.hint if closed else None)
        if state in (SessionState.IDLE, SessionState.CONNECTED) or (
                state is SessionState.CONNECTING and self.conversation_id is None and self._init_waiter is None):
            raise SessionError("no conversation on this session yet: call session.start() or "
                               "session.resume(conversation_id) first")

    def _submit(self, item: _Outgoing) -> None:
        self._bg.loop.call_soon_threadsafe(self._enqueue, item)

    # --- on the loop: connection ------------------------------------------------------------------------

    def _set_state(self, state: SessionState) -> None:
        self._state = state
        self._wake_sender()

    def _ensure_loop_objects(self) -> None:
        if self._send_lock is None:
            self._send_lock = asyncio.Lock()
            self._queue_changed = asyncio.Event()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    def _stop_sender(self) -> None:
        # A closed session keeps no task alive (nor itself, through it); opening again starts a new one.
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
        self._sender = None

    async def _open(self) -> None:
        self._ensure_loop_objects()
        if not self._reconnecting:
            self._set_state(SessionState.CONNECTING)
        self._fatal = None
        try:
            transport = await self._factory(self.url, subprotocol=self._subprotocol, secure=self._secure,
                                            open_timeout=self._timeout)
        except BaseException:
            if not self._reconnecting:
                self._set_state(SessionState.IDLE)
            raise
        self._transport = transport
        self._conv = Conversation(Role.CLIENT)
        self._sent_times.clear()
        self._user_closing = None
        self._log.record_local("connection.opened", extra={"url": self.url})
        if not self._reconnecting:
            self._set_state(SessionState.CONNECTED)
        self._reader = asyncio.get_running_loop().create_task(self._read(transport))

    async def _open_if_needed(self) -> None:
        if self._transport is None:
            await self._open()

    async def _initialise(self, frame: Frame,
                          on_sent: Callable[[Mapping[str, Any]], None] | None = None) -> Frame:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Frame] = loop.create_future()
        self._init_waiter = waiter
        try:
            assert self._send_lock is not None
            async with self._send_lock:
                try:
                    entry = await self._send_now(frame)
                except LocalProtocolError as exc:
                    raise SessionError(f"cannot send {frame.type} now ({exc})") from None
            if on_sent is not None:
                on_sent(entry)
            if not self._reconnecting:
                self._set_state(SessionState.INITIALISING)
            try:
                return await asyncio.wait_for(asyncio.shield(waiter), self._timeout)
            except asyncio.TimeoutError:
                raise SessionError(f"the server did not answer {frame.type} within {self._timeout:.0f} s") from None
        finally:
            if self._init_waiter is waiter:
                self._init_waiter = None
            # When sending failed first, the close also lands here; read it so it is not reported at exit.
            if waiter.done() and not waiter.cancelled():
                waiter.exception()
            else:
                waiter.cancel()

    async def _start(self, frame: StartConversation, greeting: _Pending) -> None:
        try:
            if self._state is SessionState.ACTIVE:
                raise SessionError(f"conversation {self.conversation_id} is already active on this session; "
                                   "finish() or close() it first")
            await self._open_if_needed()
            self._tracker.expect_greeting(greeting)

            def sent(entry: Mapping[str, Any]) -> None:
                greeting.sent = greeting.end = _stamp(entry)

            await self._initialise(frame, sent)
        except BaseException as exc:
            greeting.turn._fail(exc if isinstance(exc, Exception) else SessionError("start was cancelled"))
            raise

    async def _resume(self, frame: ContinueConversation) -> None:
        if self._transport is not None:
            if self._state is SessionState.ACTIVE:
                await self._end(CloseConnection(), "reconnect")
            else:
                await self._drop_socket("reconnect")
        await self._open()
        await self._initialise(frame)

    async def _drop_socket(self, why: str) -> None:
        transport, reader = self._transport, self._reader
        if transport is None:
            return
        self._user_closing = why
        try:
            await asyncio.wait_for(transport.close(1000, why), self._timeout)
        except (asyncio.TimeoutError, ConnectionClosedError, OSError):
            transport.abort()
        if reader is not None:
            await asyncio.wait([reader], timeout=self._timeout)

    async def _end(self, frame: Frame, why: str) -> None:
        """Send finish or close-connection after everything queued, then wait for the server to close."""
        if self._state is SessionState.RECONNECTING:
            self._stop_reconnecting()
        if self._transport is None or self._state in _TERMINAL:
            if why != "reconnect":
                self._finish_log()
            return
        if self._state is not SessionState.ACTIVE:
            await self._drop_socket(why)
            self._finish_log()
            return
        loop = asyncio.get_running_loop()
        sent: asyncio.Future[None] = loop.create_future()
        self._user_closing = why

        def on_sent(entry: Mapping[str, Any]) -> None:
            self._set_state(SessionState.CLOSING)
            if not sent.done():
                sent.set_result(None)

        self._enqueue(_Outgoing(frame, on_sent=on_sent))
        reader = self._reader
        if reader is not None:
            # Sending fails if the socket dropped meanwhile; the reader then ends on its own.
            await asyncio.wait({sent, reader}, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.wait({reader}, timeout=self._timeout)
        if reader is None or not reader.done():
            await self._drop_socket(why)
        if why != "reconnect":
            self._finish_log()

    def _stop_reconnecting(self) -> None:
        """The user closed while the session was reconnecting: stop trying, leave the conversation open."""
        code, reason = self._last_close
        self._reconnecting = False
        self._closed_error = ConnectionClosedError(
            code, reason, "Reconnecting was stopped by close() or finish(); continue with session.reconnect().")
        self._fail_queue(self._closed_error)
        self._stop_sender()
        self._set_state(SessionState.CLOSED)

    def _finish_log(self) -> None:
        self._log.close()

    async def _read(self, transport: Transport) -> None:
        try:
            while True:
                data = await transport.recv()
                try:
                    self._on_data(data)
                except Exception:  # a bug here must not stop the socket
                    logger.exception("handling a received frame failed")
        except ConnectionClosedError as exc:
            self._on_closed(transport, exc.code, exc.reason)
        except asyncio.CancelledError:
            transport.abort()
            raise
        except Exception as exc:  # the socket failed in a way websockets does not classify: treat as lost
            logger.exception("reading from the socket failed")
            transport.abort()
            self._on_closed(transport, int(CloseCode.ABNORMAL), f"client error: {type(exc).__name__}")

    def _on_closed(self, transport: Transport, code: int, reason: str) -> None:
        if transport is not self._transport:
            return
        self._transport = None
        self._last_close = (code, reason)
        self._conv.connection_closed(code, reason)
        self._log.record_local("connection.closed", close_code=code, close_reason=reason, text=reason or None)
        why, self._user_closing = self._user_closing, None
        error = ConnectionClosedError(code, reason)
        if self._init_waiter is not None and not self._init_waiter.done():
            self._init_waiter.set_exception(error)
        for _, waiter in self._vad_waiters:
            if not waiter.done():
                waiter.set_exception(error)
        self._vad_waiters.clear()
        if self._reconnecting:
            return  # the reconnect loop sees the failure through its init waiter
        completed = self._state is SessionState.COMPLETED
        try:
            reconnect = CloseCode(code).reconnect
        except ValueError:
            reconnect = False
        if why is None and reconnect and self.conversation_id is not None and not completed:
            self._tracker.fail_all(ConnectionClosedError(
                code, reason, f"The session is reconnecting to conversation {self.conversation_id}; "
                              "send this turn again."))
            self._reconnecting = True
            self._set_state(SessionState.RECONNECTING)
            asyncio.get_running_loop().create_task(self._auto_reconnect(code, reason))
            return
        if why is not None or code == CloseCode.NORMAL or completed:
            hint = {
                "finish": "The conversation is finished; start a new one with session.start().",
                "close": "The connection was closed by close(); continue with session.reconnect().",
                "reconnect": "The connection was replaced by reconnect() or resume(); send this turn again.",
            }.get(why or "", "The conversation ended; start a new one with session.start().")
            self._closed_error = ConnectionClosedError(code, reason, hint)
            self._tracker.fail_all(self._closed_error)
            if why != "reconnect":
                self._fail_queue(self._closed_error)
            if why is None:
                self._finish_log()  # the server ended it; close() and finish() close the log themselves
            if why != "reconnect":
                self._stop_sender()
            self._set_state(SessionState.CLOSED)
            return
        self._fail(error)

    def _fail(self, error: ConnectionClosedError) -> None:
        self._fatal = error
        self._tracker.fail_all(error)
        self._fail_queue(error)
        self._finish_log()
        self._stop_sender()
        self._set_state(SessionState.FAILED)

    async def _auto_reconnect(self, code: int, reason: str) -> None:
        attempt = 0
        try:
            while attempt < self._backoff.attempts:
                delay = self._backoff.delay(attempt)
                attempt += 1
                self._log.record_local("connection.reconnecting", close_code=code, close_reason=reason,
                                       extra={"attempt": attempt, "delay_s": round(delay, 3)})
                await asyncio.sleep(delay)
                if self._state is not SessionState.RECONNECTING:
                    return  # the user closed or resumed meanwhile
                try:
                    await self._open()
                    if self._state is not SessionState.RECONNECTING:
                        await self._drop_socket("close")
                        return
                    await self._initialise(ContinueConversation(conversation_id=self.conversation_id or ""))
                    return
                except ConnectionClosedError as exc:
                    code, reason = exc.code, exc.reason
                    try:
                        # 4429 too: the server may not have noticed yet that the old socket is gone.
                        retry = CloseCode(code).reconnect or code == CloseCode.RATE_LIMITED
                    except ValueError:
                        retry = False
                    if not retry:
                        self._reconnecting = False
                        self._fail(exc)
                        return
                except _ConnectFailed as exc:
                    code, reason = int(CloseCode.ABNORMAL), str(exc)
                except SessionError as exc:  # server.error or no answer to continue-conversation
                    self._reconnecting = False
                    if self._transport is not None:
                        self._transport.abort()
                        self._transport = None
                    self._fail(ConnectionClosedError(code, reason, f"Continuing the conversation failed: {exc}"))
                    return
            self._reconnecting = False
            self._fail(ConnectionClosedError(code, reason, f"Gave up reconnecting after {attempt} attempts; "
                                                           "call session.reconnect() to try again."))
        finally:
            self._reconnecting = False

    async def _at_exit(self) -> None:
        transport = self._transport
        if transport is not None:
            self._user_closing = "exit"
            try:
                await asyncio.wait_for(transport.close(1000, "client exiting"), 1.0)
            except (asyncio.TimeoutError, ConnectionClosedError, OSError):
                transport.abort()
        self._log.close()

    # --- on the loop: receiving -------------------------------------------------------------------------

    def _on_data(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            self._log.record_local("client.invalid-frame", error_description="a binary message; the protocol "
                                   "sends JSON in text messages", extra={"bytes": len(data)})
            return
        size = len(data) if data.isascii() else len(data.encode("utf-8"))
        try:
            frame = parse(data)
        except FrameError as exc:
            self._log.record_local("client.invalid-frame", error_description=str(exc), extra={"raw": data[:2000]})
            return
        audio = samples = None
        if isinstance(frame, NewMessage) and self._voice:
            try:
                audio = frame.audio_bytes()
                samples = _audio.decode_wire_audio(audio, self._audio_format) if audio else np.zeros(0, np.float32)
            except (FrameError, _audio.AudioError) as exc:
                self._log.record("received", frame, raw_size=size)
                self._log.record_local("client.protocol-violation", error_description=str(exc),
                                       message_id=frame.message_id)
                return
        try:
            self._conv.receive_frame(frame)
            self._conv.events_received()
        except RemoteProtocolError as exc:
            self._log.record("received", frame, raw_size=size, audio_bytes=audio, audio_format=self._audio_format,
                             audio_ms=None if samples is None else samples.size * 1000.0 / SAMPLE_RATE)
            self._log.record_local("client.protocol-violation", error_description=str(exc))
            return
        entry = self._log.record("received", frame, raw_size=size, audio_bytes=audio,
                                 audio_format=self._audio_format if audio is not None else None,
                                 audio_ms=None if samples is None else samples.size * 1000.0 / SAMPLE_RATE)
        self._handle(frame, entry, samples)

    def _handle(self, frame: Frame, entry: Mapping[str, Any], samples: np.ndarray | None) -> None:
        if isinstance(frame, (ConversationCreated, ConversationContinued)):
            self.conversation_id = frame.conversation_id
            self._log.update_meta(conversation_id=frame.conversation_id)
            self._reconnecting = False
            self._set_state(SessionState.ACTIVE)
            if self._init_waiter is not None and not self._init_waiter.done():
                self._init_waiter.set_result(frame)
            return
        if isinstance(frame, ServerError) and self._init_waiter is not None and not self._init_waiter.done():
            self._init_waiter.set_exception(TurnError(frame.http_error_code, frame.error_description))
            return
        if isinstance(frame, VadModeSwitched):
            for on, waiter in list(self._vad_waiters):
                if on == frame.vad_mode_on and not waiter.done():
                    waiter.set_result(None)
                    self._vad_waiters.remove((on, waiter))
                    break
            return
        if isinstance(frame, ServerError) and self._tracker.idle:
            for on, waiter in list(self._vad_waiters):
                if not waiter.done():
                    waiter.set_exception(TurnError(frame.http_error_code, frame.error_description))
                    self._vad_waiters.remove((on, waiter))
                    return
        self._tracker.on_frame(frame, entry, samples)
        if isinstance(frame, InteractionComplete) and frame.conversation_completed:
            self._set_state(SessionState.COMPLETED)

    # --- on the loop: sending ---------------------------------------------------------------------------

    def _enqueue(self, item: _Outgoing) -> None:
        if self._fatal is not None or self._state is SessionState.CLOSED:
            error = self._fatal or self._closed_error or ConnectionClosedError(1000, "")
            if item.owner is not None:
                item.owner.turn._fail(error)
            return
        self._ensure_loop_objects()
        self._queue.append(item)
        self._wake_sender()

    def _wake_sender(self) -> None:
        if self._queue_changed is not None:
            self._queue_changed.set()

    def _fail_queue(self, error: BaseException) -> None:
        while self._queue:
            item = self._queue.popleft()
            if item.owner is not None:
                item.owner.turn._fail(error)

    async def _send_loop(self) -> None:
        assert self._queue_changed is not None and self._send_lock is not None
        while True:
            if not self._queue or self._state is not SessionState.ACTIVE:
                self._queue_changed.clear()
                await self._queue_changed.wait()
                continue
            item = self._queue.popleft()
            if item.owner is not None and item.owner.turn.done():
                continue  # cancelled, or failed while it waited
            async with self._send_lock:
                if self._state is not SessionState.ACTIVE:
                    self._queue.appendleft(item)
                    continue
                try:
                    await self._pace()
                    entry = await self._send_now(item.frame, audio=item.audio, audio_ms=item.audio_ms)
                except asyncio.CancelledError:
                    # The session closed while this frame waited for its turn on the wire: it is neither
                    # queued nor tracked any more, so its Turn must learn why here or it would never end.
                    if item.owner is not None:
                        item.owner.turn._fail(self._fatal or self._closed_error
                                              or ConnectionClosedError(CloseCode.ABNORMAL, "session closed"))
                    raise
                except LocalProtocolError as exc:
                    if item.owner is not None:
                        item.owner.turn._fail(SessionError(f"cannot send {item.frame.type} now: {exc}"))
                    continue
                except ConnectionClosedError as exc:
                    if item.owner is not None:
                        item.owner.turn._fail(exc)
                    continue
            if item.on_sent is not None:
                try:
                    item.on_sent(entry)
                except Exception:
                    logger.exception("bookkeeping after sending %s failed", item.frame.type)

    async def _send_now(self, frame: Frame, *, audio: bytes | None = None,
                        audio_ms: float | None = None) -> Mapping[str, Any]:
        transport = self._transport
        if transport is None:
            raise self._fatal or self._closed_error or ConnectionClosedError(CloseCode.ABNORMAL, "not connected")
        self._conv.send(frame)
        entry: Mapping[str, Any] = {}
        for text in self._conv.data_to_send():
            size = len(text) if text.isascii() else len(text.encode("utf-8"))
            entry = self._log.record("sent", frame, raw_size=size, audio_bytes=audio,
                                     audio_format=self._audio_format if audio is not None else None,
                                     audio_ms=audio_ms)
            await transport.send(text)
        return entry

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        times = self._sent_times
        now = loop.time()
        while times and now - times[0] >= 1.0:
            times.popleft()
        if len(times) >= MAX_SEND_RATE:
            await asyncio.sleep(1.0 - (now - times[0]))
        times.append(loop.time())

    async def _stream(self, pending: _Pending, pieces: list[tuple[bytes, float]], *, realtime: bool,
                      chunk_ms: float, end: bool) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        last = len(pieces) - 1
        for index, (data, ms) in enumerate(pieces):
            if pending.turn.done():
                return
            if realtime:
                await asyncio.sleep(max(0.0, start + index * chunk_ms / 1000.0 - loop.time()))

            def sent(entry: Mapping[str, Any], final: bool = index == last and not end) -> None:
                self._tracker.audio_sent(pending, entry)
                if final:
                    self._tracker.vad_audio_done(pending)

            self._enqueue(_Outgoing(NewAudioMessage.from_bytes(data), owner=pending, audio=data, audio_ms=ms,
                                    on_sent=sent))
        if end and not pending.turn.done():
            if realtime and pieces:
                await asyncio.sleep(max(0.0, start + len(pieces) * chunk_ms / 1000.0 - loop.time()))
            self._tracker_ptt_end_item(pending)

    def _tracker_ptt_end_item(self, pending: _Pending) -> None:
        def ended(entry: Mapping[str, Any]) -> None:
            extra = pending if pending.sent is None and pending not in self._tracker.ptt_open else None
            self._tracker.audio_ended(entry, extra)

        self._enqueue(_Outgoing(NewAudioMessage(audio=None), owner=pending, audio=b"", audio_ms=0.0,
                                on_sent=ended))

    async def _switch_vad(self, on: bool) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._vad_waiters.append((on, waiter))
        self._enqueue(_Outgoing(SwitchVadMode(vad_mode_on=on)))
        try:
            await asyncio.wait_for(waiter, self._timeout)
        except asyncio.TimeoutError:
            raise SessionError(f"the server did not confirm switch-vad-mode within {self._timeout:.0f} s") from None


def _weak_hook(session: Session) -> Callable[[], Awaitable[None]]:
    """A shutdown hook that closes the session at exit without keeping it alive until then."""
    ref = weakref.ref(session)

    async def hook() -> None:
        alive = ref()
        if alive is not None:
            await alive._at_exit()

    return hook


def _as_samples(audio: Any, sr: int | None) -> np.ndarray:
    """Float32 mono samples at 16 kHz from a path, an array or PCM16 bytes."""
    if isinstance(audio, (str, os.PathLike)):
        samples, _ = _audio.load_audio(audio, sr=SAMPLE_RATE)
        return samples
    if isinstance(audio, (bytes, bytearray, memoryview)):
        samples = _audio.pcm16_to_float(audio)
    elif isinstance(audio, np.ndarray):
        samples = audio
        if samples.dtype.kind == "i" and samples.dtype.itemsize == 2:
            samples = _audio.pcm16_to_float(samples)
        elif samples.dtype.kind != "f":
            raise SessionError(f"send_audio takes float or int16 samples, got an array of {samples.dtype}")
        if samples.ndim == 2:
            samples = _audio.to_mono(samples)
        elif samples.ndim != 1:
            raise SessionError(f"send_audio takes (n,) or (n, channels) samples, got shape {samples.shape}")
    else:
        raise SessionError(f"send_audio takes a file path, a numpy array or PCM16 bytes, got {type(audio).__name__}")
    rate = SAMPLE_RATE if sr is None else sr
    if rate != SAMPLE_RATE:
        samples = _audio.resample(samples, sr_in=rate, sr_out=SAMPLE_RATE)
    return np.asarray(samples, dtype=np.float32)
