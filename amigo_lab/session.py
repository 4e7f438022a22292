"""The client: one :class:`Session` per conversation, talking to Amigo (or the emulator) over a WebSocket.

Get one from :func:`amigo_lab.connect`, then talk::

    session = amigo_lab.connect()                 # the embedded emulator; the greeting is session.greeting
    reply = session.say("Hi, I need a doctor's appointment").result()
    reply.text, reply.audio, reply.timings["latency_ms"]
    turn = session.send_audio("question.wav")     # streamed in real time; push-to-talk unless VAD is on
    session.frames                                # every frame both ways, as a DataFrame

Every call works as a plain call in a notebook cell and from any thread; calls that return a :class:`Turn`
return at once, and the Turn is awaitable (``reply = await session.say("hi")``) or blocking
(``turn.result()``).

Theory of operation
-------------------
The socket lives on the lab's background loop (:mod:`amigo_lab._loop`), so a cell that blocks never stops
frames from arriving or keep-alive pings from being answered. Public methods hop onto that loop with
``call_soon_threadsafe``; outgoing frames go through one queue and one sender task, so they leave in the
order they were submitted, paced under the protocol's 100 frames/s. Every frame, sent or received, is
checked by the sans-I/O :class:`~amigo_lab.protocol.Conversation` and recorded in the session's
:class:`~amigo_lab.framelog.FrameLog` before anything else happens to it.

Turns are matched to interactions by the order the server promises (one interaction at a time, turns
queued in arrival order): a text turn or a push-to-talk end joins the queue when its last frame is sent;
an interaction begins with ``user-message-available`` (a user's turn) or with agent output alone (the
greeting, or a turn started by external events); ``interaction-complete`` resolves it. External events
resolve with the next interaction that begins after they were sent. Speech the server hears on its own
(VAD) becomes a Turn in :attr:`Session.turns` too.

An abnormal close (1001, 1006, 1011) reconnects with exponential backoff and jitter and continues the same
conversation; turns in flight at that moment fail with :class:`ConnectionClosedError` (send them again).
A 44xx close is final: pending and later calls raise :class:`ConnectionClosedError` with a hint.
``server.error`` fails the turn in flight with :class:`TurnError`; the session stays usable. Frames the
client does not understand are logged (``client.invalid-frame``, ``client.protocol-violation``), never fatal.

Errors (all :class:`~amigo_lab.errors.AmigoError`)::

    SessionError                connecting or talking failed (what, and what to do)
    ├── ConnectionClosedError     the socket closed: .code .reason .hint
    └── TurnError                 the server answered a turn with server.error: .http_error_code .description
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import html
import io
import logging
import os
import random
import shutil
import threading
import wave
import weakref
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Protocol

import numpy as np

from amigo_lab import _loop
from amigo_lab import audio as _audio
from amigo_lab.errors import AmigoError
from amigo_lab.framelog import FrameLog
from amigo_lab.protocol import (
    CloseCode,
    CloseConnection,
    ConnectParams,
    ContinueConversation,
    Conversation,
    ConversationContinued,
    ConversationCreated,
    CurrentAgentAction,
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
    UserMessageAvailable,
    VadModeSwitched,
    VadSpeechEnded,
    VadSpeechResetZero,
    VadSpeechStarted,
    auth_subprotocol,
    build_url,
    describe_close,
    parse,
    redact,
)
from amigo_lab.protocol import constants as C

logger = logging.getLogger("amigo_lab.session")

SAMPLE_RATE = _audio.SAMPLE_RATE
#: Frames per second the sender stays under (the protocol allows 100 per connection).
MAX_SEND_RATE = C.MAX_FRAMES_PER_SECOND - 5
#: Silence appended to audio sent with VAD on, so the server hears the speech end (500 ms) with margin.
VAD_TRAILING_SILENCE_MS = C.VAD_END_SILENCE_MS + 300
#: Largest message the client accepts; the protocol caps frames at 1 MiB, a newer server may send more.
MAX_RECEIVE_BYTES = 16 * C.MAX_FRAME_BYTES


# --- errors ----------------------------------------------------------------------------------------------


class SessionError(AmigoError):
    """Connecting or talking failed; the message says what happened and what to do."""


class ConnectionClosedError(SessionError):
    """The socket closed. ``code`` is the close code (1006: lost without one), ``reason`` what the peer
    said, ``hint`` what to do (from :func:`amigo_lab.protocol.describe_close` unless given)."""

    def __init__(self, code: int | None, reason: str = "", hint: str | None = None) -> None:
        self.code = int(code) if code is not None else int(CloseCode.ABNORMAL)
        self.reason = reason or ""
        try:
            known_hint = CloseCode(self.code).hint
        except ValueError:
            known_hint = ""
        self.hint = hint or known_hint
        message = describe_close(self.code, self.reason)
        if hint and hint != known_hint:
            message = f"{message} {hint}"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.reason, self.hint))


class TurnError(SessionError):
    """The server answered a turn with ``server.error``; the session stays usable (send the turn again)."""

    def __init__(self, http_error_code: int, description: str) -> None:
        self.http_error_code = http_error_code
        self.description = description
        super().__init__(f"the server answered with error {http_error_code}: {description}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.http_error_code, self.description))


class _ConnectFailed(SessionError):
    """No socket could be opened (refused, unreachable, timed out); worth retrying while reconnecting."""


# --- the transport seam ----------------------------------------------------------------------------------


class Transport(Protocol):
    """What a session needs from a socket. :class:`WebSocketTransport` is the real one; tests may wrap it.

    ``recv`` and ``send`` raise :class:`ConnectionClosedError` once the socket is closed.
    """

    async def send(self, text: str) -> None: ...

    async def recv(self) -> str | bytes: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    def abort(self) -> None: ...


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
        return self._ws.subprotocol

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
            return await self._ws.recv()
        except ConnectionClosed as exc:
            raise self._closed(exc) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close politely (close frame, then wait for the server's)."""
        await self._ws.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        self._ws.transport.abort()


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or host.startswith("[") else host
    return name in ("127.0.0.1", "localhost", "::1") or name.startswith("127.")


async def open_websocket(url: str, *, subprotocol: str, secure: bool, open_timeout: float) -> WebSocketTransport:
    """Open the WebSocket (TLS verified for ``wss``); the default :data:`TransportFactory`.

    Library errors become :class:`SessionError` / :class:`ConnectionClosedError` without the token.
    """
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

    host = url.split("://", 1)[1].split("/", 1)[0]
    token = subprotocol.removeprefix(C.AUTH_SUBPROTOCOL_PREFIX)
    try:
        connection = await ws_connect(
            url,
            subprotocols=[subprotocol],  # type: ignore[list-item]
            open_timeout=open_timeout,
            ping_interval=C.KEEPALIVE_INTERVAL_S,
            ping_timeout=C.KEEPALIVE_TIMEOUT_S,
            max_size=MAX_RECEIVE_BYTES,
            compression=None,  # base64 audio barely compresses; deflate would only cost CPU
            proxy=None if _is_loopback(host) else True,
            user_agent_header=f"amigo_lab/{_lab_version()}",
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
    except (OSError, TimeoutError, asyncio.TimeoutError) as exc:
        detail = redact(f"{type(exc).__name__}: {exc}", token)
        where = "is the emulator running?" if _is_loopback(host) else "check the network, host and region"
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


# --- replies and turns -----------------------------------------------------------------------------------


def _wav_bytes(samples: np.ndarray, sr: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sr)
        out.writeframes(_audio.float_to_pcm16(samples))
    return buffer.getvalue()


def _audio_html(samples: np.ndarray, sr: int) -> str:
    if samples.size == 0:
        return ""
    data = base64.b64encode(_wav_bytes(samples, sr)).decode("ascii")
    return f'<audio controls src="data:audio/wav;base64,{data}"></audio>'


@dataclass(frozen=True, eq=False)
class Reply:
    """What the agent answered in one interaction.

    ``text`` is the agent's full message (``full_message``); ``user_text`` what the server understood the
    user to say (text or transcript; None for agent-started interactions); ``audio`` the answer's audio as
    float32 at ``sr`` = 16 000 Hz (empty for text responses; filler audio excluded); ``filler_text`` what a
    slow action's filler said; ``actions`` the ``current-agent-action`` objects; ``interrupted`` is True when
    the user barged in; ``timings`` holds stamps ``{"t": seconds on the log clock, "wall": UTC datetime}``
    for ``sent``, ``end_of_turn``, ``user_message``, ``first_piece``, ``first_audio``, ``complete`` (None
    when it did not happen) and ``latency_ms`` = first agent piece minus the user's end of turn.
    """

    text: str
    user_text: str | None
    audio: np.ndarray
    sr: int
    message_id: str
    interaction_id: str
    filler_text: str | None = None
    actions: tuple[Mapping[str, Any], ...] = ()
    interrupted: bool = False
    conversation_completed: bool = False
    timings: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        seconds = self.audio.size / self.sr if self.sr else 0.0
        latency = self.timings.get("latency_ms")
        extra = f", latency {latency:.0f} ms" if latency is not None else ""
        flags = "".join([", interrupted" if self.interrupted else "",
                         ", conversation completed" if self.conversation_completed else ""])
        return f"<Reply {self.text!r} ({seconds:.2f} s audio{extra}{flags})>"

    def _repr_html_(self) -> str:
        user = f"<div><b>user:</b> {html.escape(self.user_text)}</div>" if self.user_text else ""
        filler = f"<div><i>filler:</i> {html.escape(self.filler_text)}</div>" if self.filler_text else ""
        latency = self.timings.get("latency_ms")
        meta = f"<small>latency {latency:.0f} ms</small>" if latency is not None else ""
        return (f"<div>{user}{filler}<div><b>agent:</b> {html.escape(self.text)}</div>"
                f"{_audio_html(self.audio, self.sr)}{meta}</div>")


class Turn:
    """One exchange in flight: becomes a :class:`Reply` when the server completes the interaction.

    ``turn.result(timeout)`` blocks (off the session's loop thread), ``await turn`` suspends,
    ``turn.add_done_callback(fn)`` calls ``fn(turn)`` when done. ``kind`` is ``"greeting"``, ``"text"``,
    ``"event"``, ``"audio"``, ``"voice"`` (speech the server's VAD heard) or ``"agent"`` (agent-started).
    """

    def __init__(self, kind: str, request: str | None = None, *, display_timeout: float = 30.0,
                 in_loop_thread: Callable[[], bool] = lambda: False) -> None:
        self.kind = kind
        self.request = request
        self._future: concurrent.futures.Future[Reply] = concurrent.futures.Future()
        self._display_timeout = display_timeout
        self._in_loop_thread = in_loop_thread

    def result(self, timeout: float | None = None) -> Reply:
        """The :class:`Reply`, waiting up to ``timeout`` seconds (None: as long as it takes).

        Raises :class:`TurnError`, :class:`ConnectionClosedError`, :class:`TimeoutError`, or
        ``concurrent.futures.CancelledError`` after :meth:`cancel`.
        """
        if not self._future.done() and self._in_loop_thread():
            raise SessionError("Turn.result() would block the session's own loop thread (inside an on_frame "
                               "callback?); use turn.add_done_callback(fn) there instead")
        return self._future.result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error the turn failed with, or None if it succeeded (waits like :meth:`result`)."""
        return self._future.exception(timeout)

    def done(self) -> bool:
        """True when the turn has a reply, failed, or was cancelled."""
        return self._future.done()

    def cancel(self) -> bool:
        """Stop waiting for this turn (audio still streaming stops too). True if it was still pending."""
        return self._future.cancel()

    def cancelled(self) -> bool:
        """True after a successful :meth:`cancel`."""
        return self._future.cancelled()

    def add_done_callback(self, fn: Callable[["Turn"], Any]) -> None:
        """Call ``fn(turn)`` when done (at once if already done; otherwise on the session's loop thread)."""
        self._future.add_done_callback(lambda _future: fn(self))

    def __await__(self) -> Any:
        return asyncio.wrap_future(self._future).__await__()

    # The session resolves turns; these never raise if the turn was cancelled meanwhile.
    def _resolve(self, reply: Reply) -> None:
        if not self._future.done():
            try:
                self._future.set_result(reply)
            except concurrent.futures.InvalidStateError:
                pass

    def _fail(self, error: BaseException) -> None:
        if not self._future.done():
            try:
                self._future.set_exception(error)
            except concurrent.futures.InvalidStateError:
                pass

    def _status(self) -> str:
        if not self._future.done():
            return "pending"
        if self._future.cancelled():
            return "cancelled"
        error = self._future.exception()
        return f"failed: {error}" if error else repr(self._future.result())

    def __repr__(self) -> str:
        request = f" {self.request!r}" if self.request else ""
        return f"<Turn {self.kind}{request} {self._status()}>"

    def _repr_html_(self) -> str:
        """Shown in a notebook: waits (up to the session's timeout) for the reply, then shows it."""
        if not self._future.done() and not self._in_loop_thread():
            concurrent.futures.wait([self._future], timeout=self._display_timeout)
        if self._future.done() and not self._future.cancelled() and self._future.exception() is None:
            return self._future.result()._repr_html_()
        return f"<div>{html.escape(repr(self))}</div>"


# --- matching turns to interactions ----------------------------------------------------------------------

Stamp = dict  # {"t": float, "wall": datetime}


def _stamp(entry: Mapping[str, Any]) -> Stamp:
    return {"t": entry["t"], "wall": entry["wall"]}


@dataclass(eq=False)
class _Pending:
    """A turn the client is waiting on, with what the tracker needs to know about it."""

    turn: Turn
    kind: str
    text: str | None = None
    vad: bool = False
    sent: Stamp | None = None
    end: Stamp | None = None
    audio_done: bool = False
    heard_speech_end: bool = False
    # The server discarded speech (reset-zero) while this audio was still streaming; if no more speech
    # is heard before its last chunk leaves, the turn produced nothing.
    reset_while_streaming: bool = False
    followers: list["_Pending"] = field(default_factory=list)

    def everyone(self) -> list["_Pending"]:
        return [self, *self.followers]


@dataclass(eq=False)
class _Interaction:
    """What has arrived of the interaction in flight."""

    owner: _Pending
    started: Stamp
    user_text: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    filler_text: str | None = None
    texts: dict[str, list[str]] = field(default_factory=dict)
    audio: dict[str, list[np.ndarray]] = field(default_factory=dict)
    open_messages: set[str] = field(default_factory=set)
    interrupted: bool = False
    user_message: Stamp | None = None
    first_piece: Stamp | None = None
    first_audio: Stamp | None = None


def _same_text(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


class _TurnTracker:
    """Matches interactions to turns (see the module docstring). Runs on the loop thread only."""

    def __init__(self, new_turn: Callable[[str, str | None], Turn]) -> None:
        self._new_turn = new_turn
        self.greeting: _Pending | None = None
        self.users: collections.deque[_Pending] = collections.deque()
        self.events: list[_Pending] = []
        self.ptt_open: list[_Pending] = []
        self.current: _Interaction | None = None
        self.last_vad_end: Stamp | None = None

    # --- the client's side ----------------------------------------------------------------------------

    def expect_greeting(self, pending: _Pending) -> None:
        self.greeting = pending

    def user_sent(self, pending: _Pending, entry: Mapping[str, Any]) -> None:
        """A text turn left: it waits for its interaction."""
        pending.sent = pending.end = _stamp(entry)
        self.users.append(pending)

    def event_sent(self, pending: _Pending, entry: Mapping[str, Any]) -> None:
        pending.sent = pending.end = _stamp(entry)
        self.events.append(pending)

    def audio_sent(self, pending: _Pending, entry: Mapping[str, Any]) -> None:
        """A chunk of a send_audio turn left."""
        if pending.sent is None:
            pending.sent = _stamp(entry)
            if pending.vad:
                self.users.append(pending)  # the server decides where the turn ends
            elif pending not in self.ptt_open:
                self.ptt_open.append(pending)

    def audio_ended(self, entry: Mapping[str, Any], extra: _Pending | None) -> None:
        """``audio: null`` left: every push-to-talk turn that contributed audio shares one interaction."""
        contributors = self.ptt_open + ([extra] if extra is not None else [])
        self.ptt_open = []
        if not contributors:
            return
        owner, *followers = contributors
        owner.followers.extend(followers)
        owner.end = _stamp(entry)
        if owner.sent is None:
            owner.sent = owner.end
        for pending in contributors:
            pending.audio_done = True
        self.users.append(owner)

    # --- the server's side ----------------------------------------------------------------------------

    def _begin(self, frame: Frame, entry: Mapping[str, Any]) -> _Interaction:
        events, self.events = self.events, []
        owner: _Pending | None = None
        if isinstance(frame, UserMessageAvailable):
            head = self.users[0] if self.users else None
            if head is not None and (head.kind != "text" or _same_text(head.text, frame.user_message)):
                owner = self.users.popleft()
            elif events:
                owner, events = events[0], events[1:]
            elif head is not None:
                owner = self.users.popleft()  # a server may normalise the text it echoes
            else:
                owner = _Pending(self._new_turn("voice", None), "voice")
            if owner.vad or owner.kind == "voice":
                owner.end = self.last_vad_end or owner.end
        elif self.greeting is not None:
            owner, self.greeting = self.greeting, None
        elif events:
            owner, events = events[0], events[1:]
        else:
            owner = _Pending(self._new_turn("agent", None), "agent")
        owner.followers.extend(events)
        self.current = _Interaction(owner=owner, started=_stamp(entry))
        return self.current

    def on_frame(self, frame: Frame, entry: Mapping[str, Any], samples: np.ndarray | None) -> None:
        """Feed a received frame that the state machine accepted."""
        if isinstance(frame, (UserMessageAvailable, CurrentAgentAction, NewMessage, InteractionComplete)):
            current = self.current or self._begin(frame, entry)
            if isinstance(frame, UserMessageAvailable):
                current.user_text = frame.user_message
                current.user_message = _stamp(entry)
            elif isinstance(frame, CurrentAgentAction):
                action = dict(frame.action)
                current.actions.append(action)
                if frame.action_type == C.ACTION_TOO_LONG and isinstance(action.get("filler"), str):
                    current.filler_text = action["filler"]
            elif isinstance(frame, NewMessage):
                self._piece(current, frame, entry, samples)
            else:
                self._complete(current, frame, entry)
        elif isinstance(frame, VadSpeechStarted):
            for pending in self.users:
                if pending.vad and not pending.audio_done:
                    pending.reset_while_streaming = False  # speech again: the earlier discard no longer decides
            if self.current is not None and self.current.first_piece is not None and self.current.open_messages:
                self.current.interrupted = True
        elif isinstance(frame, VadSpeechEnded):
            self.last_vad_end = _stamp(entry)
            for pending in self.users:
                if pending.vad and not pending.heard_speech_end:
                    pending.heard_speech_end = True
                    pending.end = self.last_vad_end
                    break
        elif isinstance(frame, VadSpeechResetZero):
            self._reset_zero()
        elif isinstance(frame, ServerError):
            self._error(TurnError(frame.http_error_code, frame.error_description))

    def _piece(self, current: _Interaction, frame: NewMessage, entry: Mapping[str, Any],
               samples: np.ndarray | None) -> None:
        stamp = _stamp(entry)
        current.first_piece = current.first_piece or stamp
        if frame.stop:
            current.open_messages.discard(frame.message_id)
        else:
            current.open_messages.add(frame.message_id)
        if samples is not None:
            current.first_audio = current.first_audio or stamp
            current.audio.setdefault(frame.message_id, []).append(samples)
        else:
            current.texts.setdefault(frame.message_id, []).append(frame.message)

    def _complete(self, current: _Interaction, frame: InteractionComplete, entry: Mapping[str, Any]) -> None:
        self.current = None
        owner = current.owner
        answer = current.audio.get(frame.message_id)
        if answer is None and current.audio and current.filler_text is None:
            # No audio under the answer's id and no filler announced: a server that numbers messages
            # differently; all audio of the interaction is the answer. (After a filler, none is.)
            answer = [a for pieces in current.audio.values() for a in pieces]
        filler_text = current.filler_text
        if filler_text is None:
            others = [m for m in current.texts if m != frame.message_id]
            if others:
                filler_text = "".join(current.texts[others[0]])
        timings: dict[str, Any] = {
            "sent": owner.sent,
            "end_of_turn": owner.end,
            "user_message": current.user_message,
            "first_piece": current.first_piece,
            "first_audio": current.first_audio,
            "complete": _stamp(entry),
        }
        end, first = owner.end, current.first_piece
        timings["latency_ms"] = (first["t"] - end["t"]) * 1000.0 if end and first else None
        reply = Reply(
            text=frame.full_message,
            user_text=current.user_text,
            audio=np.concatenate(answer).astype(np.float32, copy=False) if answer else np.zeros(0, np.float32),
            sr=SAMPLE_RATE,
            message_id=frame.message_id,
            interaction_id=frame.interaction_id,
            filler_text=filler_text,
            actions=tuple(current.actions),
            interrupted=current.interrupted,
            conversation_completed=frame.conversation_completed,
            timings=timings,
        )
        for pending in owner.everyone():
            pending.turn._resolve(reply)

    def _reset_zero(self) -> None:
        for pending in list(self.users):
            if pending.vad and not pending.heard_speech_end:
                if pending.audio_done:
                    self._discard(pending)
                else:
                    pending.reset_while_streaming = True  # decided when its last chunk leaves

    def vad_audio_done(self, pending: _Pending) -> None:
        """The last chunk of a VAD turn left: a turn whose only speech was discarded ends here."""
        pending.audio_done = True
        if pending.reset_while_streaming and not pending.heard_speech_end and pending in self.users:
            self._discard(pending)

    def _discard(self, pending: _Pending) -> None:
        self.users.remove(pending)
        error = SessionError("the server's VAD heard no speech long enough to be a turn in this audio "
                             f"(vad-speech-reset-zero; speech must last {C.VAD_MIN_SPEECH_MS} ms or more)")
        for each in pending.everyone():
            each.turn._fail(error)

    def _error(self, error: TurnError) -> None:
        # protocol.md: an error before interaction-complete voids that interaction.
        if self.current is not None:
            victim, self.current = self.current.owner, None
        elif self.users:
            victim = self.users.popleft()
        elif self.ptt_open:
            victim, *rest = self.ptt_open
            victim.followers.extend(rest)
            self.ptt_open = []
        elif self.events:
            victim = self.events.pop(0)
        elif self.greeting is not None:
            victim, self.greeting = self.greeting, None
        else:
            logger.warning("server.error outside any turn: %s", error)
            return
        for pending in victim.everyone():
            pending.turn._fail(error)

    @property
    def idle(self) -> bool:
        """True when no turn waits for the server."""
        return not (self.current or self.greeting or self.users or self.events or self.ptt_open)

    def fail_all(self, error: BaseException) -> None:
        """The connection is gone: every turn waiting on it fails with ``error``."""
        waiting: list[_Pending] = []
        if self.current is not None:
            waiting.append(self.current.owner)
        if self.greeting is not None:
            waiting.append(self.greeting)
        waiting += [*self.users, *self.events, *self.ptt_open]
        self.current, self.greeting, self.events, self.ptt_open = None, None, [], []
        self.users.clear()
        for pending in waiting:
            for each in pending.everyone():
                each.turn._fail(error)


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
            self._stop_reconnecting(why)
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

    def _stop_reconnecting(self, why: str) -> None:
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


__all__ = [
    "Backoff", "ConnectionClosedError", "Reply", "Session", "SessionError", "SessionState", "Transport",
    "TransportFactory", "Turn", "TurnError", "WebSocketTransport", "open_websocket",
]
