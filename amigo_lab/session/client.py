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
import re
import shutil
import ssl as _ssl
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self

import numpy as np

from amigo_lab import _loop
from amigo_lab import audio as _audio
from amigo_lab.framelog import FrameLog, feed_row
from amigo_lab.protocol import (
    TYPE_SPELLING_NOTE,
    CloseCode,
    CloseConnection,
    ConnectParams,
    ContinueConversation,
    Conversation,
    ExtendTimeout,
    FinishConversation,
    Frame,
    FrameError,
    InteractionComplete,
    LocalProtocolError,
    NewAudioMessage,
    NewMessage,
    NewTextMessage,
    Role,
    ServerError,
    StartConversation,
    SwitchVadMode,
    auth_subprotocol,
    build_url,
    init_ack_id,
    is_init_ack,
    is_vad_ack,
    redact,
    should_reconnect,
    split_batched,
)
from amigo_lab.protocol import constants as C
from amigo_lab.protocol.fold import Fold, FoldEvent
from amigo_lab.protocol.wire import announced_sample_rate
from amigo_lab.session.errors import (
    ConnectionClosedError,
    ResponseTimeoutError,
    SessionError,
    TurnError,
    _ConnectFailed,
)
from amigo_lab.session.lifecycle import TERMINAL, Event, SessionState, next_state
from amigo_lab.session.tracker import _Pending, _stamp, _TurnTracker
from amigo_lab.session.transport import (
    Backoff,
    Transport,
    TransportFactory,
    open_websocket,
)
from amigo_lab.session.turns import Turn

logger = logging.getLogger("amigo_lab.session")

SAMPLE_RATE = _audio.SAMPLE_RATE
#: Frames per second the sender stays under (the protocol allows 100 per connection).
MAX_SEND_RATE = C.MAX_FRAMES_PER_SECOND - 5
#: Silence appended to audio sent with VAD on, so the server hears the speech end (500 ms) with margin.
VAD_TRAILING_SILENCE_MS = C.VAD_END_SILENCE_MS + 300
#: Default seconds a turn waits for the server to say anything before it fails and the session reconnects.
RESPONSE_TIMEOUT_S = 30.0
#: After finish or close-connection left, seconds of silence after which the client closes the socket itself.
CLOSE_GRACE_S = 2.0

_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_text(text: Any, what: str) -> None:
    if isinstance(text, str):
        found = _SURROGATE.search(text)
        if found is not None:
            raise SessionError(
                f"the {what} holds a lone UTF-16 surrogate {found.group()!r} at position {found.start()} (half of "
                "an emoji?), which cannot travel as UTF-8; join the halves or remove it, e.g. "
                "text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace')")


@dataclass(eq=False)
class _Outgoing:
    """A frame waiting in the send queue, with what to do once it left."""

    frame: Frame
    owner: _Pending | None = None
    audio: bytes | None = None
    audio_ms: float | None = None
    on_sent: Callable[[Mapping[str, Any]], None] | None = None
    key: str | None = None  # the fold's name for the user input this frame begins (the turn's id)


class Session:
    """A conversation with an Amigo agent (or the emulator) over one WebSocket at a time.

    Build it with :func:`amigo_lab.connect`, which picks the URL, opens the socket and starts the
    conversation. Built directly, a session is idle: call :meth:`open`, then :meth:`start` or
    :meth:`resume`. ``transport_factory`` replaces :func:`open_websocket` (the seam to adapt to a service
    difference, or to inject faults), ``backoff`` sets how reconnecting waits, ``loop`` the
    :class:`~amigo_lab._loop.BackgroundLoop` to run on. ``agent_sample_rate`` is the rate of the agent's PCM
    (16 000 per protocol.md; a frame that announces another rate wins), ``response_timeout`` the seconds a
    turn waits for the server to say anything before it fails and the session reconnects. ``ssl_context``
    replaces the default (verifying) TLS context, e.g. for a staging host with its own certificate authority.

    Thread-safe; works in ``with`` and ``async with`` (leaving finishes the conversation). Every call that
    waits on the server blocks, and has an awaitable twin named with an ``a`` (:meth:`afinish`, ...).
    """

    def __init__(self, *, organization: str, token: str, params: ConnectParams, host: str | None = None,
                 region: str = C.DEFAULT_REGION, secure: bool = True, service_id: str | None = None,
                 version_set: str = C.DEFAULT_VERSION_SET, log_dir: str | os.PathLike[str] | None = None,
                 timeout: float = 30.0, response_timeout: float | None = RESPONSE_TIMEOUT_S,
                 agent_sample_rate: int = SAMPLE_RATE, ssl_context: _ssl.SSLContext | None = None,
                 transport_factory: TransportFactory | None = None, backoff: Backoff | None = None,
                 loop: _loop.BackgroundLoop | None = None) -> None:
        try:
            self._subprotocol = auth_subprotocol(token)
        except ValueError as exc:
            raise SessionError(f"the token is not usable: {exc}") from None
        if not isinstance(agent_sample_rate, int) or isinstance(agent_sample_rate, bool) or agent_sample_rate <= 0:
            raise SessionError(f"agent_sample_rate must be a positive whole number of Hz (e.g. 16000 or 24000), "
                               f"got {agent_sample_rate!r}")
        if response_timeout is not None and not response_timeout > 0:
            raise SessionError(f"response_timeout must be a positive number of seconds, or None to wait as long as "
                               f"keep-alive keeps the socket open; got {response_timeout!r}")
        self._token = token
        self.organization = organization
        self.region = region
        self.service_id = service_id
        self.version_set = version_set
        self.params = params
        self.url = build_url(organization=organization, params=params, host=host, region=region, secure=secure)
        self._secure = secure
        self._ssl = ssl_context
        self._timeout = float(timeout)
        self._response_timeout = None if response_timeout is None else float(response_timeout)
        self.agent_sample_rate = agent_sample_rate
        self._factory: TransportFactory = transport_factory or open_websocket
        self._backoff = backoff or Backoff()
        self._bg = loop or _loop.get_loop()
        self._log = FrameLog(log_dir, secrets=(token,), meta={
            "url": self.url, "organization": organization, "region": None if not secure and host else region,
            "host": host, "service_id": service_id, "version_set": version_set,
            "response_format": params.response_format, "audio_format": params.audio_format,
            "agent_actions": params.current_agent_action_type, "agent_sample_rate": agent_sample_rate,
        })
        self._audio_format = params.audio_format or "pcm"
        self._voice = params.response_format == "voice"

        # Loop-owned state (touched only on the loop thread).
        self._transport: Transport | None = None
        self._reader: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._conv = Conversation(Role.CLIENT)
        self._queue: collections.deque[_Outgoing] = collections.deque()
        self._queue_changed: asyncio.Event | None = None
        self._send_lock: asyncio.Lock | None = None
        self._sent_times: collections.deque[float] = collections.deque()
        self._init_waiter: asyncio.Future[Frame] | None = None
        self._init_requested: str | None = None
        self._vad_waiters: list[tuple[bool, asyncio.Future[None]]] = []
        started = datetime.fromisoformat(self._log.meta["started_at"])
        self._tracker = _TurnTracker(self._new_turn, audio_format=self._audio_format,
                                     agent_rate=agent_sample_rate, voice=self._voice, on_note=self._note,
                                     wall_of=lambda t: started + timedelta(seconds=t))
        self._closing_why: str | None = None   # why the client is closing the socket itself (None: it is not)
        self._last_close: tuple[int, str] = (int(CloseCode.ABNORMAL), "")
        self._last_activity = 0.0
        self._send_started: float | None = None
        self._in_flight: _Outgoing | None = None  # the frame the sender is writing now
        self._warned: set[str] = set()
        # The interaction fold sees every entry of the log, in order, on the loop thread (see _fold_entry).
        # history=0: the session keeps its own Turns; the fold keeps no ended records (flat memory).
        self._fold = Fold(response_format=params.response_format, audio_format=self._audio_format, history=0)
        self._feed_key: str | None = None
        self._event_listeners: list[Callable[[FoldEvent], Any]] = []

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
        self._log.subscribe(self._fold_entry)

    # --- properties -------------------------------------------------------------------------------------

    @property
    def log(self) -> FrameLog:
        """The session's :class:`~amigo_lab.framelog.FrameLog` (durable on disk at ``log.path``)."""
        return self._log

    @property
    def frames(self) -> Any:
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

    @property
    def response_timeout(self) -> float | None:
        """Seconds a turn waits for the server to say anything before it fails (None: no deadline)."""
        return self._response_timeout

    def __repr__(self) -> str:
        return (f"<Session {self.state} conversation={self.conversation_id} url={self.url} "
                f"turns={len(self._turns)} frames={len(self._log)} log={str(self._log.path)!r}>")

    def _repr_html_(self) -> str:
        rows = [("state", self.state), ("conversation", self.conversation_id), ("url", self.url),
                ("turns", len(self._turns)), ("frames", len(self._log)), ("log", str(self._log.path))]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in rows)
        return f"<table><caption>amigo_lab Session</caption>{body}</table>"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._state not in TERMINAL:
            self.finish()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._state not in TERMINAL:
            await self.afinish()

    # --- public calls: connection and conversation ------------------------------------------------------

    def open(self) -> None:
        """Open the socket (no conversation yet). :func:`amigo_lab.connect` calls it; then :meth:`start`."""
        self._block(self._open_if_needed())

    async def aopen(self) -> None:
        """:meth:`open`, awaitable."""
        await self._await(self._open_if_needed())

    def _start_frame(self, service_id: str | None, version_set: str | None) -> tuple[StartConversation, _Pending]:
        if self._state is SessionState.ACTIVE:
            raise SessionError(f"conversation {self.conversation_id} is already active on this session; "
                               "finish() or close() it first, or use another session")
        service_id = service_id or self.service_id
        if not service_id:
            raise SessionError("no service id: pass start(service_id=...) or connect(service_id=...) "
                               "(or set AMIGO_SERVICE_ID)")
        frame = StartConversation(service_id=service_id, service_version_set_name=version_set or self.version_set)
        self.service_id = service_id
        return frame, _Pending(self._new_turn("greeting", None), "greeting")

    def start(self, service_id: str | None = None, version_set: str | None = None) -> Turn:
        """Start a new conversation; returns once the server created it. Returns the greeting :class:`Turn`.

        Opens a socket first if the last one was closed. Next: ``.result()`` or ``await`` the greeting, then
        :meth:`say` or :meth:`send_audio`. A server that sends no greeting resolves it empty when the first
        user interaction begins.
        """
        frame, greeting = self._start_frame(service_id, version_set)
        self._block(self._start(frame, greeting))
        self.greeting = greeting.turn
        return greeting.turn

    async def astart(self, service_id: str | None = None, version_set: str | None = None) -> Turn:
        """:meth:`start`, awaitable: ``greeting = await session.astart()``."""
        frame, greeting = self._start_frame(service_id, version_set)
        await self._await(self._start(frame, greeting))
        self.greeting = greeting.turn
        return greeting.turn

    def resume(self, conversation_id: str) -> None:
        """Continue an unfinished conversation (Option B) on this session; returns once the server agreed.

        A conversation already active here is closed first (left open on the server). If the server refuses,
        the error says what it answered and the session stays ``connected``: call :meth:`start` or resume again.
        """
        self._block(self._resume(ContinueConversation(conversation_id=conversation_id)))

    async def aresume(self, conversation_id: str) -> None:
        """:meth:`resume`, awaitable."""
        await self._await(self._resume(ContinueConversation(conversation_id=conversation_id)))

    def reconnect(self) -> None:
        """Drop the socket (if any), open a new one and continue the same conversation."""
        self._block(self._resume(self._continue_frame()))

    async def areconnect(self) -> None:
        """:meth:`reconnect`, awaitable."""
        await self._await(self._resume(self._continue_frame()))

    def _continue_frame(self) -> ContinueConversation:
        if self.conversation_id is None:
            raise SessionError("nothing to reconnect to: no conversation yet; call start() first")
        return ContinueConversation(conversation_id=self.conversation_id)

    def close(self) -> None:
        """Send ``close-connection`` and close the socket; the conversation stays open on the server.

        Continue it later with :meth:`reconnect` (or ``connect(conversation_id=...)``).
        """
        self._block(self._end(CloseConnection(), "close"))
        self._log.wait_closed(self._timeout)

    async def aclose(self) -> None:
        """:meth:`close`, awaitable."""
        await self._await(self._end(CloseConnection(), "close"))
        await asyncio.to_thread(self._log.wait_closed, self._timeout)

    def finish(self) -> None:
        """Finish the conversation for good (``finish-conversation``); the server then closes the socket.

        A server that keeps the socket open is closed by the client after a short silence (``CLOSE_GRACE_S``).
        """
        self._block(self._end(FinishConversation(), "finish"))
        self._log.wait_closed(self._timeout)  # frames.parquet is written off the loop

    async def afinish(self) -> None:
        """:meth:`finish`, awaitable."""
        await self._await(self._end(FinishConversation(), "finish"))
        await asyncio.to_thread(self._log.wait_closed, self._timeout)

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
        _check_text(text, "text")
        frame = NewTextMessage(text=text)
        self._check_usable()
        pending = _Pending(self._new_turn("text", text), "text", text=text)
        self._submit(_Outgoing(frame, owner=pending, key=pending.key,
                               on_sent=lambda entry: self._tracker.user_sent(pending, entry)))
        return pending.turn

    def event(self, text: str) -> Turn:
        """Send an external event (context for the next interaction; alone it may start one).

        The Turn resolves at the next ``interaction-complete`` of an interaction that begins after it left.
        """
        _check_text(text, "event text")
        frame = NewTextMessage(text=text, message_type=C.MESSAGE_TYPE_EXTERNAL_EVENT)
        self._check_usable()
        pending = _Pending(self._new_turn("event", text), "event", text=text)
        self._submit(_Outgoing(frame, owner=pending, key=pending.key,
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
        ``interaction-complete`` of the turn this audio produced; with VAD on, audio after the point where the
        server's VAD ended that turn is still sent, and what the server hears in it becomes further ``"voice"``
        turns in :attr:`turns`. ``turn.cancel()`` stops the streaming.
        """
        if not 0 < chunk_ms <= C.MAX_CHUNK_MS:
            raise SessionError(f"chunk_ms must be more than 0 and at most {C.MAX_CHUNK_MS} (the protocol's "
                               f"limit per frame), got {chunk_ms!r}; {C.RECOMMENDED_CHUNK_MS[0]} to "
                               f"{C.RECOMMENDED_CHUNK_MS[1]} ms is recommended")
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
        if not realtime and not self._log.meta.get("fast"):
            # The log's timings stop being real-time figures; the report and the turns table say so.
            self._log.update_meta(fast=True)
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
        self._submit(_Outgoing(NewAudioMessage(audio=None), owner=pending, audio=b"", audio_ms=0.0, key=pending.key,
                               on_sent=lambda entry: self._tracker.audio_ended(entry, pending)))
        return pending.turn

    def vad(self, on: bool) -> None:
        """Switch server-side voice activity detection on or off; returns once the server confirmed."""
        self._block(self._switch_vad(self._vad_request(on)))

    async def avad(self, on: bool) -> None:
        """:meth:`vad`, awaitable."""
        await self._await(self._switch_vad(self._vad_request(on)))

    def _vad_request(self, on: bool) -> bool:
        on = bool(on)
        if on and self._audio_format != "pcm":
            raise SessionError("VAD needs audio_format='pcm' (the server closes with 4415 otherwise); "
                               "connect with audio_format='pcm'")
        self._check_usable()
        self._vad_wanted = on
        return on

    def extend_timeout(self) -> None:
        """Reset the server's idle timer (it closes with 4408 after 120 s without user activity)."""
        self._check_usable()
        self._submit(_Outgoing(ExtendTimeout()))

    def on_frame(self, callback: Callable[[Mapping[str, Any], Frame | None], Any]) -> Callable[[], None]:
        """Call ``callback(entry, frame)`` for every logged entry (``frame`` None for local events).

        Runs on the session's loop thread: keep it short, never block there. Exceptions are logged and
        swallowed. Returns a function that removes the callback.
        """
        return self._log.subscribe(callback)

    def on_event(self, callback: Callable[[FoldEvent], Any]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event of the interaction fold (:mod:`amigo_lab.protocol.fold`).

        Events come in order: ``UserTurnEnded``, ``InteractionStarted``, ``AgentPiece``, ``BargeIn``,
        ``SpeechDiscarded``, ``InteractionCompleted`` / ``InteractionVoided`` (with the interaction's record and
        its latencies under the names of :data:`amigo_lab.protocol.fold.LATENCIES`), ``InteractionUpdated``,
        ``ErrorReceived``, ``InputDropped``, ``Violation``. The fold is fed every frame sent and received and
        every local entry of the frame log (playback reports of the player included), so what a callback
        sees is what :func:`amigo_lab.analysis.turns` computes from the saved log. Keys in events are turn
        ids (``turn.id``). Runs on the session's loop thread: keep it short, never block. Exceptions are
        logged and swallowed. Returns a function that removes the callback.
        """
        self._event_listeners.append(callback)

        def remove() -> None:
            if callback in self._event_listeners:
                self._event_listeners.remove(callback)

        return remove

    def _fold_entry(self, entry: Mapping[str, Any], frame: Frame | None) -> None:
        """Feed one log entry to the fold (on the loop thread: entries recorded elsewhere hop there first)."""
        if not self._bg.in_loop_thread():
            self._bg.loop.call_soon_threadsafe(self._fold_entry, entry, frame)
            return
        try:
            # The rule a replay of the saved log uses too, so the live account and the offline one agree.
            feed_row(self._fold, entry, frame=frame, key=self._feed_key)
        except Exception:  # the fold never raises on odd input; a bug there must not cost the frame
            logger.exception("the interaction fold failed on entry %s (%s)", entry["seq"], entry["type"])
            return
        events = self._fold.events_received()
        if not events:
            return
        self._tracker.on_events(events)
        for event in events:
            for listener in list(self._event_listeners):
                try:
                    listener(event)
                except Exception:  # a broken widget must never break the session
                    logger.exception("an on_event callback failed on %s", type(event).__name__)

    def _discard(self) -> None:
        """Drop the socket without a word and close the log (when connect() fails half way)."""
        if self._transport is not None and not self._bg.in_loop_thread():
            try:
                self._bg.run(self._drop_socket("close")).result(self._timeout + 5.0)
            except (concurrent.futures.TimeoutError, SessionError):
                pass
        self._log.close()

    # --- plumbing between threads -----------------------------------------------------------------------

    def _block(self, coro: Coroutine[Any, Any, Any]) -> Any:
        if self._bg.in_loop_thread():
            coro.close()
            raise SessionError("this call blocks, and it was made on the session's own loop thread (inside an "
                               "on_frame callback?); use its awaitable twin (e.g. await session.afinish()) there")
        future = self._bg.run(coro)
        try:
            return future.result(self._timeout + 5.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise SessionError(f"no answer within {self._timeout:.0f} s ({self.state}); "
                               "check the connection, or pass a larger timeout to connect()") from None

    async def _await(self, coro: Coroutine[Any, Any, Any]) -> Any:
        if self._bg.in_loop_thread():
            return await coro
        future = asyncio.wrap_future(self._bg.run(coro))
        try:
            return await asyncio.wait_for(future, self._timeout + 5.0)
        except TimeoutError:
            raise SessionError(f"no answer within {self._timeout:.0f} s ({self.state}); "
                               "check the connection, or pass a larger timeout to connect()") from None

    def _new_turn(self, kind: str, request: str | None) -> Turn:
        turn = Turn(kind, request, display_timeout=self._timeout, in_loop_thread=self._bg.in_loop_thread)
        with self._lock:
            turn.id = f"turn-{len(self._turns) + 1}"
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

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        """Start a background task whose failure is never silent: it is logged and fails the waiting turns."""
        task = asyncio.get_running_loop().create_task(coro, name=f"amigo_lab-session-{what}")

        def done(task: asyncio.Task[None]) -> None:
            if task.cancelled() or task.exception() is None:
                return
            exc = task.exception()
            logger.error("the session's %s task failed: %r", what, exc, exc_info=exc)
            error = SessionError(f"the session's {what} task failed ({type(exc).__name__}: {exc}); "
                                 "the connection is being reset, send the turn again")
            self._tracker.fail_all(error)
            if self._transport is not None:
                self._transport.abort()

        task.add_done_callback(done)
        return task

    def _note(self, description: str, message_id: str | None = None, *, warn: str | None = None) -> None:
        """Record a rule the server broke, or an oddity the session worked around (and warn once per kind)."""
        self._log.record_local("client.protocol-violation", error_description=description, message_id=message_id)
        if warn is not None and warn not in self._warned:
            self._warned.add(warn)
            logger.warning("%s", description)

    # --- on the loop: lifecycle -------------------------------------------------------------------------

    def _fire(self, event: Event) -> None:
        new = next_state(self._state, event)
        if new is None:
            logger.debug("lifecycle: %s ignored while %s", event.value, self._state.value)
            return
        self._state = new
        self._wake_sender()

    def _ensure_loop_objects(self) -> None:
        if self._send_lock is None:
            self._send_lock = asyncio.Lock()
            self._queue_changed = asyncio.Event()
        if self._sender is None or self._sender.done():
            self._sender = self._spawn(self._send_loop(), "sender")
        if self._response_timeout is not None and (self._watchdog is None or self._watchdog.done()):
            self._watchdog = self._spawn(self._watch(), "response-deadline")

    def _stop_tasks(self) -> None:
        # A closed session keeps no task alive (nor itself, through it); opening again starts new ones.
        for task in (self._sender, self._watchdog):
            if task is not None and not task.done():
                task.cancel()
        self._sender = self._watchdog = None

    async def _open(self) -> None:
        self._ensure_loop_objects()
        self._fire(Event.OPEN)
        self._fatal = None
        options: dict[str, Any] = {"subprotocol": self._subprotocol, "secure": self._secure,
                                   "open_timeout": self._timeout}
        if self._ssl is not None:
            options["ssl"] = self._ssl
        try:
            transport = await self._factory(self.url, **options)
        except BaseException:
            self._fire(Event.OPEN_FAILED)
            raise
        self._transport = transport
        self._conv = Conversation(Role.CLIENT)
        self._sent_times.clear()
        self._closing_why = None
        self._last_activity = asyncio.get_running_loop().time()
        self._log.record_local("connection.opened", extra={"url": self.url})
        self._fire(Event.OPENED)
        self._reader = self._spawn(self._read(transport), "reader")

    async def _open_if_needed(self) -> None:
        if self._transport is None:
            await self._open()

    async def _initialise(self, frame: Frame,
                          on_sent: Callable[[Mapping[str, Any]], None] | None = None) -> Frame:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Frame] = loop.create_future()
        self._init_waiter = waiter
        self._init_requested = frame.conversation_id if isinstance(frame, ContinueConversation) else None
        try:
            assert self._send_lock is not None
            async with self._send_lock:
                try:
                    entry = await self._send_now(frame)
                except LocalProtocolError as exc:
                    raise SessionError(f"cannot send {frame.type} now ({exc})") from None
            if on_sent is not None:
                on_sent(entry)
            self._fire(Event.INIT_SENT)
            try:
                answer = await asyncio.wait_for(asyncio.shield(waiter), self._timeout)
            except TimeoutError:
                self._fire(Event.INIT_FAILED)
                raise SessionError(f"the server did not answer {frame.type} within {self._timeout:.0f} s "
                                   "(no server.conversation-* frame arrived)") from None
            except TurnError:
                self._fire(Event.INIT_FAILED)
                raise
            return answer
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
            self._tracker.forget(greeting)
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
        self._closing_why = why
        try:
            await asyncio.wait_for(transport.close(1000, why), min(self._timeout, CLOSE_GRACE_S))
        except (TimeoutError, ConnectionClosedError, OSError):
            transport.abort()
        if reader is not None:
            await asyncio.wait([reader], timeout=self._timeout)

    async def _end(self, frame: Frame, why: str) -> None:
        """Send finish or close-connection after everything queued, then wait for the server to close."""
        if self._state is SessionState.RECONNECTING:
            self._stop_reconnecting()
        if self._transport is None or self._state in TERMINAL:
            if why != "reconnect":
                self._finish_log()
            return
        if self._state is not SessionState.ACTIVE:
            await self._drop_socket(why)
            if why != "reconnect":
                self._finish_log()
            return
        loop = asyncio.get_running_loop()
        sent: asyncio.Future[None] = loop.create_future()
        self._closing_why = why

        def on_sent(entry: Mapping[str, Any]) -> None:
            self._fire(Event.CLOSE_SENT)
            if not sent.done():
                sent.set_result(None)

        self._enqueue(_Outgoing(frame, on_sent=on_sent))
        reader = self._reader
        if reader is not None:
            # Sending fails if the socket dropped meanwhile; the reader then ends on its own.
            await asyncio.wait({sent, reader}, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED)
            # The server closes once it is done; frames still arriving (the tail of a reply) keep the wait
            # going, a silent server that keeps the socket open does not.
            deadline = loop.time() + self._timeout
            while not reader.done() and loop.time() < deadline:
                await asyncio.wait({reader}, timeout=CLOSE_GRACE_S / 4)
                if loop.time() - self._last_activity > CLOSE_GRACE_S:
                    break
        if reader is None or not reader.done():
            await self._drop_socket(why)
        if not sent.done():
            sent.cancel()
        if why != "reconnect":
            self._finish_log()

    def _stop_reconnecting(self) -> None:
        """The user closed while the session was reconnecting: stop trying, leave the conversation open."""
        code, reason = self._last_close
        self._closed_error = ConnectionClosedError(
            code, reason, "Reconnecting was stopped by close() or finish(); continue with session.reconnect().")
        self._fail_queue(self._closed_error)
        self._tracker.fail_all(self._closed_error)
        self._stop_tasks()
        self._fire(Event.CLOSED)

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
        why, self._closing_why = self._closing_why, None
        error = ConnectionClosedError(code, reason)
        if self._init_waiter is not None and not self._init_waiter.done():
            self._init_waiter.set_exception(error)
        for _, waiter in self._vad_waiters:
            if not waiter.done():
                waiter.set_exception(error)
        self._vad_waiters.clear()
        if self._state is SessionState.RECONNECTING:
            return  # the reconnect loop sees the failure through its init waiter
        completed = self._state is SessionState.COMPLETED
        if why is None and should_reconnect(code) and self.conversation_id is not None and not completed \
                and self._state is SessionState.ACTIVE:
            resent = self._tracker.resendable()
            flying = self._in_flight
            if flying is not None and flying.owner is not None and flying not in self._queue:
                self._queue.appendleft(flying)  # it was leaving as the socket went: it leaves again after
            queued = [item.owner for item in self._queue if item.owner is not None]  # they leave after it
            self._tracker.fail_all(ConnectionClosedError(
                code, reason, f"The session is reconnecting to conversation {self.conversation_id}; "
                              "send this turn again."), keep=resent + queued)
            self._requeue(resent)
            self._fire(Event.LOST)
            self._spawn(self._auto_reconnect(code, reason), "reconnect")
            return
        if why is not None or code == CloseCode.NORMAL or completed:
            hint = {
                "finish": "The conversation is finished; start a new one with session.start().",
                "close": "The connection was closed by close(); continue with session.reconnect().",
                "reconnect": "The connection was replaced by reconnect() or resume(); send this turn again.",
            }.get(why or "", "The conversation ended; start a new one with session.start()." if completed else
                  # A normal close the agent did not announce: the conversation may well be open still.
                  f"The server closed without ending the conversation (no conversation_completed); continue "
                  f"{self.conversation_id} with session.reconnect(), or start a new one with session.start().")
            self._closed_error = ConnectionClosedError(code, reason, hint)
            self._tracker.fail_all(self._closed_error)
            if why != "reconnect":
                self._fail_queue(self._closed_error)
            if why is None:
                self._finish_log()  # the server ended it; close() and finish() close the log themselves
            if why != "reconnect":
                self._stop_tasks()
            self._fire(Event.CLOSED)
            return
        self._fail(error)

    def _requeue(self, pendings: list[_Pending]) -> None:
        """Put the frames of turns the server never answered back at the head of the queue, in order."""
        items = [item for pending in pendings for item in pending.sent_items]
        for pending in pendings:
            pending.reset_for_resend()
            self._log.record_local("client.turn-resent", text=(
                f"{pending.turn.kind} turn sent again after the reconnect ({len(pending.sent_items)} frames): "
                "the server had not answered it when the socket dropped"))
            pending.sent_items = []
        self._queue.extendleft(reversed(items))

    def _fail(self, error: ConnectionClosedError) -> None:
        self._fatal = error
        self._tracker.fail_all(error)
        self._fail_queue(error)
        self._finish_log()
        self._stop_tasks()
        self._fire(Event.FATAL)

    async def _auto_reconnect(self, code: int, reason: str) -> None:
        attempt = 0
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
                self._log.record_local("connection.resumed", conversation_id=self.conversation_id)
                return
            except ConnectionClosedError as exc:
                code, reason = exc.code, exc.reason
                # 4429 too: the server may not have noticed yet that the old socket is gone.
                if not (should_reconnect(code) or code == CloseCode.RATE_LIMITED):
                    self._fail(exc)
                    return
            except _ConnectFailed as exc:
                code, reason = int(CloseCode.ABNORMAL), str(exc)
            except SessionError as exc:  # server.error, another conversation, or no answer to continue
                if self._transport is not None:
                    self._transport.abort()
                    self._transport = None
                self._fail(ConnectionClosedError(
                    code, reason, f"Continuing conversation {self.conversation_id} failed: {exc}. "
                                  "Start a new conversation with session.start(), or try session.reconnect()."))
                return
        self._fail(ConnectionClosedError(code, reason, f"Gave up reconnecting after {attempt} attempts; "
                                                       "call session.reconnect() to try again."))

    async def _at_exit(self) -> None:
        transport = self._transport
        if transport is not None:
            self._closing_why = "exit"
            try:
                await asyncio.wait_for(transport.close(1000, "client exiting"), 1.0)
            except (TimeoutError, ConnectionClosedError, OSError):
                transport.abort()
        self._log.close(wait=True)  # the process is ending: write frames.parquet now, not in the background

    async def _watch(self) -> None:
        """The response deadline: a turn the server says nothing about for ``response_timeout`` fails, and
        the socket is reset (a black-holed link looks exactly like this until keep-alive notices)."""
        assert self._response_timeout is not None
        loop = asyncio.get_running_loop()
        limit = self._response_timeout
        while True:
            await asyncio.sleep(min(limit / 4, 0.5))
            started = self._send_started
            if started is not None and loop.time() - started > limit and self._transport is not None:
                # A send stuck that long: the link is gone. The frame goes again on the next socket.
                self._log.record_local("client.turn-failed", error_description=(
                    f"a send waited {limit:g} s (response_timeout) for the link; the connection is reset"))
                self._transport.abort()
                continue
            if self._state is not SessionState.ACTIVE or self._tracker.idle or self._transport is None:
                continue
            if self._queue or loop.time() - self._last_activity < limit:
                continue
            missing = self._tracker.describe_missing()
            error = ResponseTimeoutError(
                f"no answer from the server for {limit:g} s (response_timeout): {missing}; the session resets "
                "the connection and continues the conversation. Send the turn again, or pass a larger "
                "connect(response_timeout=...) for a slow agent")
            self._tracker.fail_all(error)
            self._log.record_local("client.turn-failed", error_description=str(error))
            self._last_activity = loop.time()
            self._transport.abort()

    # --- on the loop: receiving -------------------------------------------------------------------------

    def _on_data(self, data: str | bytes) -> None:
        self._last_activity = asyncio.get_running_loop().time()
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._on_binary(bytes(data))
            return
        self._on_text(data)

    def _on_text(self, data: str) -> None:
        try:
            self._conv.receive(data)
        except FrameError as exc:
            parts = split_batched(data)
            if parts is None:
                self._log.record("received", None, raw=data, error_description=str(exc))
                return
            # Several frames in one message (a batching gateway): each is read, and logged, as its own.
            self._note(f"one message held {len(parts)} JSON frames, one after another; each is read as a message "
                       "of its own", None)
            for part in parts:
                self._on_text(part)
            return
        frames = self._conv.events_received()
        violations = self._conv.violations_received()
        for frame in frames:
            reported = len(frame.problems)  # the state machine reports these among the violations below
            self._on_frame(frame, data)
            for problem in frame.problems[reported:]:  # mended while handling it (audio in another base64 form)
                self._note(problem, getattr(frame, "message_id", None) or None)
        for violation in violations:
            if TYPE_SPELLING_NOTE in violation.description:
                # A type name in another spelling recurs on every frame of that type: noted once.
                if violation.description in self._warned:
                    continue
                self._warned.add(violation.description)
            self._note(violation.description, getattr(violation.frame, "message_id", None) or None)

    def _on_frame(self, frame: Frame, raw: str) -> None:
        audio: bytes | None = None
        rate: int | None = None
        if isinstance(frame, NewMessage) and self._voice:
            try:
                audio = frame.audio_bytes()
            except FrameError as exc:
                self._log.record("received", frame, raw=raw)
                self._note(f"a voice piece whose message is not base64 audio ({exc}); it is read as a text piece",
                           frame.message_id or None)
                return
            rate = announced_sample_rate(frame)
        if isinstance(frame, ServerError):
            self._tracker.note_error(self._turn_error(frame))  # before the fold sees it: voiding names it
        entry = self._log.record("received", frame, raw=raw, audio_bytes=audio,
                                 audio_format=self._audio_format if audio is not None else None,
                                 audio_ms=self._pcm_ms(audio, rate) if audio is not None else None)
        self._handle(frame, entry, audio, rate)

    def _pcm_ms(self, audio: bytes, rate: int | None) -> float | None:
        if self._audio_format != "pcm":
            return None  # the log measures MP3 itself
        return len(audio) * 1000.0 / (2 * (rate or self.agent_sample_rate))

    def _on_binary(self, data: bytes) -> None:
        """A binary message: the service's audio outside JSON. Kept, and heard, as audio of the open message."""
        message_id = self._tracker.open_message()
        entry = self._log.record("received", None, raw=data, audio_format=self._audio_format,
                                 audio_ms=self._pcm_ms(data, None), message_id=message_id)
        if self._voice:
            self._tracker.on_binary(data, entry)

    def _handle(self, frame: Frame, entry: Mapping[str, Any], audio: bytes | None, rate: int | None) -> None:
        waiter = self._init_waiter
        if waiter is not None and not waiter.done():
            if is_init_ack(frame, self._init_requested):
                self.conversation_id = init_ack_id(frame) or self._init_requested or self.conversation_id
                self._log.update_meta(conversation_id=self.conversation_id)
                self._fire(Event.INIT_ACKED)
                waiter.set_result(frame)
                return
            if frame.type.startswith("server.conversation-"):
                waiter.set_exception(SessionError(
                    f"the server answered {frame.type} for conversation {init_ack_id(frame)!r}, not the "
                    f"conversation {self._init_requested!r} asked for"))
                return
            if isinstance(frame, ServerError):
                waiter.set_exception(self._turn_error(frame))
                return
        for on, vad_waiter in list(self._vad_waiters):
            if is_vad_ack(frame, on) and not vad_waiter.done():
                vad_waiter.set_result(None)
                self._vad_waiters.remove((on, vad_waiter))
                return
        if isinstance(frame, ServerError) and self._tracker.idle:
            for on, vad_waiter in list(self._vad_waiters):
                if not vad_waiter.done():
                    vad_waiter.set_exception(self._turn_error(frame))
                    self._vad_waiters.remove((on, vad_waiter))
                    return
        self._tracker.on_frame(frame, entry, audio, rate=rate, error=self._turn_error(frame)
                               if isinstance(frame, ServerError) else None)
        if isinstance(frame, InteractionComplete) and frame.conversation_completed:
            self._fire(Event.COMPLETED)

    def _turn_error(self, frame: ServerError) -> TurnError:
        """The server's error in the caller's terms, without the token even if the server repeated it."""
        code = frame.http_error_code
        return TurnError(code if code is not None else 0, redact(frame.error_description or "", self._token))

    # --- on the loop: sending ---------------------------------------------------------------------------

    def _enqueue(self, item: _Outgoing) -> None:
        if self._fatal is not None or self._state is SessionState.CLOSED:
            error = self._fatal or self._closed_error or ConnectionClosedError(1000, "")
            if item.owner is not None:
                item.owner.turn._fail(error)
            return
        self._ensure_loop_objects()
        if item.owner is not None:
            self._tracker.register(item.owner)
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
            if item.owner is not None and _obsolete(item.owner):
                continue  # cancelled, or failed while it waited
            self._in_flight = item
            await self._pace()
            async with self._send_lock:
                if self._state is not SessionState.ACTIVE:
                    if item not in self._queue:
                        self._queue.appendleft(item)
                    self._in_flight = None
                    continue
                try:
                    entry = await self._send_now(item.frame, audio=item.audio, audio_ms=item.audio_ms,
                                                 key=item.key)
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
                except ConnectionClosedError:
                    if self._state in (SessionState.ACTIVE, SessionState.RECONNECTING):
                        # The socket went while this frame left: it goes first on the next one, if the
                        # reader reconnects (otherwise the queue fails with the close).
                        if item not in self._queue:
                            self._queue.appendleft(item)
                        if item.owner is not None:
                            self._log.record_local("client.turn-resent", text=(
                                f"{item.owner.turn.kind} turn: {item.frame.type} is sent again after the "
                                "reconnect; the socket closed while it was leaving"))
                        # Let the reader see the close (and the state leave ACTIVE) before trying again.
                        dead = self._transport
                        for _ in range(100):
                            if self._transport is not dead or self._state is not SessionState.ACTIVE:
                                break
                            await asyncio.sleep(0.01)
                    elif item.owner is not None:
                        item.owner.turn._fail(self._fatal or self._closed_error
                                              or ConnectionClosedError(CloseCode.ABNORMAL, "session closed"))
                    continue
                finally:
                    if self._in_flight is item:
                        self._in_flight = None
            if item in self._queue:
                continue  # the socket went while it left: it goes again (and is bookkept) after the reconnect
            if item.owner is not None:
                item.owner.sent_items.append(item)
            if item.on_sent is not None:
                try:
                    item.on_sent(entry)
                except Exception:
                    logger.exception("bookkeeping after sending %s failed", item.frame.type)

    async def _send_now(self, frame: Frame, *, audio: bytes | None = None, audio_ms: float | None = None,
                        key: str | None = None) -> Mapping[str, Any]:
        transport = self._transport
        if transport is None:
            raise self._fatal or self._closed_error or ConnectionClosedError(CloseCode.ABNORMAL, "not connected")
        self._conv.send(frame)
        entry: Mapping[str, Any] = {}
        for text in self._conv.data_to_send():
            self._feed_key = key
            try:
                entry = self._log.record("sent", frame, raw=text, audio_bytes=audio,
                                         audio_format=self._audio_format if audio is not None else None,
                                         audio_ms=audio_ms)
            finally:
                self._feed_key = None
            self._last_activity = self._send_started = asyncio.get_running_loop().time()
            try:
                await transport.send(text)
            finally:
                self._send_started = None
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
                if not pending.vad or pending.turn.cancelled() or pending.turn.exception() is not None:
                    return
                # With VAD the server may answer the first sentence while the file goes on: the rest is more
                # speech, sent as a microphone's would be (its turns appear as "voice" turns), never dropped.
                await self._stream_rest(pieces[index:], start=start, first=index, realtime=realtime,
                                        chunk_ms=chunk_ms)
                return
            if realtime:
                await asyncio.sleep(max(0.0, start + index * chunk_ms / 1000.0 - loop.time()))

            def sent(entry: Mapping[str, Any], final: bool = index == last and not end) -> None:
                self._tracker.audio_sent(pending, entry)
                if final:
                    self._tracker.vad_audio_done(pending)

            self._enqueue(_Outgoing(NewAudioMessage.from_bytes(data), owner=pending, audio=data, audio_ms=ms,
                                    on_sent=sent, key=pending.key if index == 0 else None))
        if end and not pending.turn.done():
            if realtime and pieces:
                await asyncio.sleep(max(0.0, start + len(pieces) * chunk_ms / 1000.0 - loop.time()))
            self._ptt_end_item(pending)

    async def _stream_rest(self, pieces: list[tuple[bytes, float]], *, start: float, first: int, realtime: bool,
                           chunk_ms: float) -> None:
        loop = asyncio.get_running_loop()
        for offset, (data, ms) in enumerate(pieces):
            if realtime:
                await asyncio.sleep(max(0.0, start + (first + offset) * chunk_ms / 1000.0 - loop.time()))
            self._enqueue(_Outgoing(NewAudioMessage.from_bytes(data), audio=data, audio_ms=ms))

    def _ptt_end_item(self, pending: _Pending) -> None:
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
        except TimeoutError:
            raise SessionError(f"the server did not confirm switch-vad-mode within {self._timeout:.0f} s "
                               "(no server.vad-mode-switched arrived)") from None
        finally:
            if (on, waiter) in self._vad_waiters:
                self._vad_waiters.remove((on, waiter))


def _obsolete(owner: _Pending) -> bool:
    """True when a queued frame of ``owner``'s turn should no longer be sent: the turn was cancelled or
    failed, or it was answered and is not VAD audio (with VAD on, audio after an early answer is more speech)."""
    turn = owner.turn
    if not turn.done():
        return False
    return turn.cancelled() or turn.exception() is not None or not owner.vad


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
