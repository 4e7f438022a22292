"""The session panel: connect, talk through the microphone, hear the agent, watch the conversation.

:class:`SessionPanel` is an ``ipywidgets.VBox`` of six widgets: a :class:`SessionView` (connect /
disconnect, state, live transcript of both sides, VAD indicator, last turn's latency, errors with their
hint), a :class:`~amigo_lab.widgets.Microphone`, a :class:`~amigo_lab.widgets.Player`, a
:class:`~amigo_lab.widgets.LiveTimeline` (agent state, levels, timeline strip), a
:class:`~amigo_lab.widgets.LatencyWaterfall` (per-turn latencies) and an
:class:`~amigo_lab.widgets.EventInspector` (every frame both ways, live)::

    panel = SessionPanel(session)                 # an open session
    panel = SessionPanel(mode="vad")              # or let the Connect button open one (embedded emulator)
    panel

Everything the view shows is derived from the session's frame log entries, so it also replays a session
that was already running when the panel was made.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets
import numpy as np
import pandas as pd
import traitlets

from amigo_lab.audio import SAMPLE_RATE
from amigo_lab.protocol import CloseCode, describe_close
from amigo_lab.protocol.constants import MESSAGE_TYPE_EXTERNAL_EVENT
from amigo_lab.protocol.fold import (
    LATENCIES,
    AgentPiece,
    BargeIn,
    InteractionCompleted,
    InteractionUpdated,
    InteractionVoided,
)
from amigo_lab.widgets.inspector import EventInspector
from amigo_lab.widgets.mic import Microphone
from amigo_lab.widgets.player import Player
from amigo_lab.widgets.timeline import LiveTimeline
from amigo_lab.widgets.waterfall import LatencyWaterfall

__all__ = ["PANEL_STATES", "SessionPanel", "SessionView"]

_log = logging.getLogger(__name__)
_HERE = Path(__file__).parent

PANEL_STATES = ("disconnected", "connecting", "connected", "reconnecting", "closing", "closed", "error")
"""What the panel shows about the connection."""

REPLAY_MARGIN_S = 0.15
"""Audio kept before the user's start and after the user's end of speech when a turn is replayed."""
REPLAY_GAP_S = 0.3
"""Silence between the user's audio and the agent's in a replay."""

SESSION_WATCH_S = 0.5
"""How often the panel compares what it shows with the session's state."""

MAX_TRANSCRIPT_LINES = 200
"""Older lines scroll out of the panel (the frame log keeps everything)."""

_SERVER_ERROR_HINTS = {
    400: "the server rejected one frame; the connection stays open, so fix it and send again",
}
_DEFAULT_SERVER_ERROR_HINT = "the interaction was voided; send the turn again"


def _value(entry: Mapping[str, Any], name: str) -> Any:
    """A column of an entry, with pandas' missing values (from a replayed DataFrame row) as None."""
    value = entry.get(name)
    if value is not None and not isinstance(value, (list, dict, str)) and pd.isna(value):
        return None
    return value


def _sent_audio(recorded: Any, start: float, end: float) -> np.ndarray:
    """The user's audio as sent between ``start`` and ``end`` on the session clock (float32, 16 kHz)."""
    track = recorded.audio_track("sent")
    a, b = max(0, int(start * SAMPLE_RATE)), max(0, int(end * SAMPLE_RATE))
    return track[a:b]


def _alignment_text(alignment: Any) -> str:
    if not alignment:
        return ""
    try:
        pairs = json.loads(alignment) if isinstance(alignment, str) else alignment
        return "".join(str(pair[1]) for pair in pairs)
    except (ValueError, TypeError, IndexError):
        return ""


class SessionView(anywidget.AnyWidget):
    """The status part of the panel: connection from the frame log, the conversation from the protocol fold.

    Traits (all set from Python): ``state`` (one of :data:`PANEL_STATES`), ``conversation_id``,
    ``transcript`` (``[{"role": "user"|"agent"|"event", "text", "message_id", "t", "interrupted", "filler",
    "index", "latency_ms", "latency_name"}]``: ``t`` on the session clock, ``index`` the fold's interaction,
    ``latency_*`` on the agent line of a completed turn), ``vad`` (``"off"``, ``"listening"``, ``"speech"``),
    ``latency_ms`` / ``latency_name`` (the last completed turn's, under the fold's name: first audio for voice,
    first text for text), ``definitions`` (latency name -> definition), ``error`` and ``hint``.
    The browser sends ``{"kind": "connect"}`` / ``{"kind": "disconnect"}`` from its button and
    ``{"kind": "replay", "index"}`` from a click on a turn; the owning :class:`SessionPanel` handles them.
    """

    _esm = _HERE / "panel.js"
    _css = _HERE / "panel.css"

    state = traitlets.Enum(PANEL_STATES, default_value="disconnected").tag(sync=True)
    conversation_id = traitlets.Unicode("").tag(sync=True)
    transcript = traitlets.List(traitlets.Dict()).tag(sync=True)
    vad = traitlets.Enum(("off", "listening", "speech"), default_value="off").tag(sync=True)
    latency_ms = traitlets.Float(None, allow_none=True).tag(sync=True)
    latency_name = traitlets.Unicode("").tag(sync=True)
    definitions = traitlets.Dict().tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    hint = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        self._lock = threading.RLock()
        self._lines: list[dict[str, Any]] = []
        self._last_seq = -1
        self._voice = True
        # What the fold said, by message id, so lines made later (another subscriber's order) still get it.
        self._role: dict[str, str] = {}
        self._turn_of: dict[str, int] = {}
        self._interrupted: set[str] = set()
        self._latency: dict[str, tuple[float | None, str]] = {}
        self.records: dict[int, Any] = {}
        self._remove_listener: Any = None
        self._remove_fold: Any = None
        self._quiet = False
        super().__init__(**kwargs)
        self.definitions = {name: spec[2] for name, spec in LATENCIES.items()}

    # --- following a session -----------------------------------------------------------------------------

    def follow(self, session: Any) -> None:
        """Show ``session``: replay what its log already holds, then follow new entries live."""
        from amigo_lab.widgets._fold_feed import follow_fold, log_entries

        self.unfollow()
        # hold_sync: the browser gets the replay's end state in one message, not every step of it.
        with self._lock, self.hold_sync():
            self._reset()
            params = getattr(session, "params", None)
            self._voice = getattr(params, "response_format", "voice") != "text"
            self._remove_listener = session.on_frame(self._on_live_entry)
            # The transcript is published once, at the end of the replay, not once per replayed piece.
            self._quiet = True
            try:
                last = -1
                for entry in log_entries(session):
                    if (entry.get("direction"), entry.get("type")) in _HANDLERS:   # most entries are audio
                        self.apply(entry)
                    seq = entry.get("seq")
                    if seq is not None:
                        last = max(last, int(seq))
                with self._lock:
                    self._last_seq = max(self._last_seq, last)
                self._remove_fold = follow_fold(session, self.apply_fold)
            finally:
                self._quiet = False
            self._publish()
            if self.state in ("disconnected", "error"):
                self.state = "connected" if session.conversation_id else "connecting"
            if session.conversation_id:
                self.conversation_id = session.conversation_id

    def unfollow(self) -> None:
        """Stop following the current session (what is shown stays)."""
        for name in ("_remove_listener", "_remove_fold"):
            remove = getattr(self, name)
            setattr(self, name, None)
            if remove is not None:
                remove()

    def _reset(self) -> None:
        self._lines = []
        self._last_seq = -1
        self._role.clear()
        self._turn_of.clear()
        self._interrupted.clear()
        self._latency.clear()
        self.records = {}
        self.state = "disconnected"
        self.transcript = []
        self.conversation_id = ""
        self.vad = "off"
        self.latency_ms = None
        self.latency_name = ""
        self.error = ""
        self.hint = ""

    def _on_live_entry(self, entry: dict, _frame: Any) -> None:
        self.apply(entry)

    def show_error(self, message: str, hint: str = "") -> None:
        """Show an error line (and what to do about it) until the next error or a new session."""
        self.error = message
        self.hint = hint

    # --- fold events -> what the conversation means ---------------------------------------------------------

    def apply_fold(self, event: Any) -> None:
        """Take one event of the protocol fold: filler vs answer, barge-in, each turn's latency."""
        with self._lock:
            if isinstance(event, AgentPiece):
                self._turn_of[event.message_id] = event.index
                self._role.setdefault(event.message_id, event.role)
            elif isinstance(event, BargeIn):
                self._interrupted.update(m for m, i in self._turn_of.items() if i == event.index)
            elif isinstance(event, (InteractionCompleted, InteractionUpdated, InteractionVoided)):
                self._take_record(event.record)
            else:
                return
            self._publish()

    def _take_record(self, record: Any) -> None:
        self.records[record.index] = record
        for message_id in record.filler_message_ids:
            self._role[message_id] = "filler"
            self._turn_of[message_id] = record.index
        if record.user_message_id:
            self._turn_of[record.user_message_id] = record.index
        answer = record.answer_message_id
        if answer:
            self._role[answer] = "answer"
            self._turn_of[answer] = record.index
            if record.interrupted:
                self._interrupted.add(answer)
            name = "latency_first_audio_ms" if self._voice else "latency_first_text_ms"
            value = record.latencies.get(name)
            self._latency[answer] = (value, name)
            if record.status == "completed" and record.kind != "greeting":
                self.latency_ms = None if value is None else round(float(value), 3)
                self.latency_name = name

    # --- entries -> what is shown -------------------------------------------------------------------------

    def apply(self, entry: Mapping[str, Any]) -> None:
        """Update the view from one frame-log entry (a live dict or a replayed DataFrame row)."""
        with self._lock:
            seq = _value(entry, "seq")
            if seq is not None:
                if seq <= self._last_seq:
                    return      # already shown: the replay and the live feed overlap
                self._last_seq = int(seq)
            direction = _value(entry, "direction")
            kind = _value(entry, "type")
            handler = _HANDLERS.get((direction, kind))
            if handler is not None:
                handler(self, entry)

    def _line(self, role: str, message_id: str | None, text: str, t: Any = None) -> dict[str, Any]:
        for line in self._lines:
            if message_id and line["message_id"] == message_id and line["role"] == role:
                line["text"] = text
                return line
        line = {"role": role, "text": text, "message_id": message_id or "",
                "t": None if t is None else round(float(t), 3)}
        self._lines.append(line)
        del self._lines[:-MAX_TRANSCRIPT_LINES]
        return line

    def _publish(self) -> None:
        if self._quiet:
            return
        out = []
        for line in self._lines:
            message_id = line["message_id"]
            shown = dict(line)
            shown["filler"] = self._role.get(message_id) == "filler"
            shown["interrupted"] = message_id in self._interrupted
            shown["index"] = self._turn_of.get(message_id)
            value, name = self._latency.get(message_id, (None, ""))
            shown["latency_ms"] = None if value is None else round(float(value), 3)
            shown["latency_name"] = name
            out.append(shown)
        self.transcript = out

    def _on_opened(self, _entry: Mapping[str, Any]) -> None:
        self.state = "connecting"

    def _on_conversation(self, entry: Mapping[str, Any]) -> None:
        self.state = "connected"
        self.conversation_id = _value(entry, "conversation_id") or ""
        self.error = ""
        self.hint = ""

    def _on_reconnecting(self, _entry: Mapping[str, Any]) -> None:
        self.state = "reconnecting"

    def _on_closed(self, entry: Mapping[str, Any]) -> None:
        code = _value(entry, "close_code")
        reason = _value(entry, "close_reason") or ""
        self.state = "closed"
        self.vad = "off"
        if code is not None and int(code) != CloseCode.NORMAL:
            self.error = describe_close(int(code), reason)
            try:
                self.hint = CloseCode(int(code)).hint
            except ValueError:
                self.hint = ""

    def _on_user_text(self, entry: Mapping[str, Any]) -> None:
        if _value(entry, "message_type") == MESSAGE_TYPE_EXTERNAL_EVENT:
            self._line("event", None, _value(entry, "text") or "", _value(entry, "t"))
            self._publish()

    def _on_user_message(self, entry: Mapping[str, Any]) -> None:
        self._line("user", _value(entry, "message_id"), _value(entry, "text") or "", _value(entry, "t"))
        self._publish()

    def _on_piece(self, entry: Mapping[str, Any]) -> None:
        message_id = _value(entry, "message_id") or ""
        text = _value(entry, "text")
        piece = text if text is not None and _value(entry, "audio_format") is None else _alignment_text(
            _value(entry, "alignment"))
        existing = next((ln for ln in self._lines if ln["role"] == "agent" and ln["message_id"] == message_id), None)
        if existing is None:
            self._line("agent", message_id, piece, _value(entry, "t"))
        else:
            existing["text"] += piece
        self._publish()

    def _on_complete(self, entry: Mapping[str, Any]) -> None:
        message_id = _value(entry, "message_id")
        full = _value(entry, "text")
        if full is not None:
            self._line("agent", message_id, full, _value(entry, "t"))
        self._publish()
        if _value(entry, "conversation_completed"):
            self.state = "closing"

    def _on_vad_switched(self, entry: Mapping[str, Any]) -> None:
        self.vad = "listening" if _value(entry, "vad_mode_on") else "off"

    def _on_speech_started(self, _entry: Mapping[str, Any]) -> None:
        self.vad = "speech"

    def _on_speech_ended(self, _entry: Mapping[str, Any]) -> None:
        self.vad = "listening"

    def _on_server_error(self, entry: Mapping[str, Any]) -> None:
        code = _value(entry, "http_error_code")
        description = _value(entry, "error_description") or ""
        self.error = f"server error {code}: {description}" if code is not None else f"server error: {description}"
        self.hint = _SERVER_ERROR_HINTS.get(code, _DEFAULT_SERVER_ERROR_HINT)

    def _on_client_problem(self, entry: Mapping[str, Any]) -> None:
        self.error = _value(entry, "text") or _value(entry, "error_description") or str(_value(entry, "type"))
        self.hint = "the lab logged this frame and went on"


_HANDLERS = {
    ("local", "connection.opened"): SessionView._on_opened,
    ("local", "connection.reconnecting"): SessionView._on_reconnecting,
    ("local", "connection.closed"): SessionView._on_closed,
    ("local", "client.invalid-frame"): SessionView._on_client_problem,
    ("local", "client.protocol-violation"): SessionView._on_client_problem,
    ("sent", "client.new-text-message"): SessionView._on_user_text,
    ("received", "server.conversation-created"): SessionView._on_conversation,
    ("received", "server.conversation-continued"): SessionView._on_conversation,
    ("received", "server.user-message-available"): SessionView._on_user_message,
    ("received", "server.new-message"): SessionView._on_piece,
    ("received", "server.interaction-complete"): SessionView._on_complete,
    ("received", "server.vad-mode-switched"): SessionView._on_vad_switched,
    ("received", "server.vad-speech-started"): SessionView._on_speech_started,
    ("received", "server.vad-speech-ended"): SessionView._on_speech_ended,
    ("received", "server.vad-speech-reset-zero"): SessionView._on_speech_ended,
    ("received", "server.error"): SessionView._on_server_error,
}


class SessionPanel(ipywidgets.VBox):
    """A session's controls in one box: :attr:`view` (status, transcript), :attr:`mic`, :attr:`player`,
    :attr:`timeline` (state, levels, timeline strip), :attr:`waterfall` (latencies per turn) and
    :attr:`inspector` (every frame, live).

    ``SessionPanel(session)`` shows an open session. ``SessionPanel(**connect_options)`` lets the
    *Connect* button open one with ``amigo_lab.connect(**connect_options)`` (no options: the embedded
    emulator); the panel then owns that session and closes it with itself. ``mode`` is the microphone's
    turn taking (``"push-to-talk"`` or ``"vad"``).

    Next: display it, click *Connect* (if needed) and *Start microphone*, and talk.
    """

    def __init__(self, session: Any = None, *, mode: str = "push-to-talk", **connect_options: Any) -> None:
        self._lock = threading.Lock()
        self._session: Any = None
        self._owns_session = False
        self._connect_options = dict(connect_options)
        self.view = SessionView()
        self.mic = Microphone(mode=mode)
        self.player = Player()
        self.inspector = EventInspector()
        self.waterfall = LatencyWaterfall()
        self.timeline = LiveTimeline()
        # A click on the timeline finds that frame in the inspector.
        self.timeline.on_select(lambda seq: setattr(self.inspector, "search", f"#{seq}"))
        super().__init__(children=[self.view, self.mic, self.player, self.timeline, self.waterfall, self.inspector])
        self.add_class("amigo-session-panel")
        self.view.on_msg(self._handle_view_message)
        self._closed = threading.Event()
        # The frame log says nothing once a session gives up reconnecting or fails: its state does. A
        # light watcher keeps the panel from showing "reconnecting" or "streaming" forever.
        self._watcher = threading.Thread(target=self._watch_session, name="amigo_lab-panel-watch", daemon=True)
        self._watcher.start()
        if session is not None:
            self.attach(session)

    @property
    def session(self) -> Any:
        """The session shown, or ``None`` before connecting."""
        return self._session

    def attach(self, session: Any, *, owned: bool = False) -> None:
        """Show ``session`` and route the microphone and player through it.

        ``owned=True``: the panel closes the session when it disconnects or closes.
        """
        with self._lock:
            self._session = session
            self._owns_session = owned
        from amigo_lab.widgets._fold_feed import shared_history

        # The view last: its "connected" is what callers wait for, so everything else is wired by then.
        self.player.attach(session)
        self.mic.session = session
        with shared_history(session):      # one read of the log and one fold replay for all of them
            self.inspector.follow(session)
            self.waterfall.follow(session)
            self.timeline.follow(session)
            self.view.follow(session)

    def connect(self) -> Any:
        """Connect and return the session (blocks until connected). Errors show in the panel and raise.

        With a session already shown, it reconnects that session (continuing its conversation); without
        one, it opens a new session with ``amigo_lab.connect(**connect_options)`` and owns it.
        """
        self.view.state = "connecting"
        self.view.show_error("")
        with self._lock:
            session = self._session
        try:
            if session is not None:
                session.reconnect()
            else:
                from amigo_lab._connect import (
                    connect,  # the real service, or the embedded emulator
                )

                session = connect(**self._connect_options)
                self.attach(session, owned=True)
        except Exception as exc:
            self.view.state = "error"
            self.view.show_error(str(exc), getattr(exc, "hint", "") or "")
            raise
        return session

    def disconnect(self) -> None:
        """Close the connection (the conversation stays open for a later continue)."""
        with self._lock:
            session = self._session
        if session is None:
            return
        self.mic.release()
        self.view.state = "closing"
        session.close()

    def close(self) -> None:
        """Release the microphone, stop playback, close an owned session, then close the widgets."""
        self._closed.set()
        with self._lock:
            session, owned = self._session, self._owns_session
            self._session = None
        self.view.unfollow()
        self.player.detach()
        self.mic.session = None
        for child in (self.mic, self.player, self.timeline, self.waterfall, self.inspector, self.view):
            child.close()
        if session is not None and owned:
            session.close()
        super().close()

    def _watch_session(self) -> None:
        while not self._closed.wait(SESSION_WATCH_S):
            try:
                self.sync_state()
            except Exception:
                _log.debug("could not sync the panel with its session", exc_info=True)

    def sync_state(self) -> None:
        """Bring the panel in line with the session's own state (the watcher calls it twice a second).

        A failed session shows ``error`` with what to do and releases the microphone; a closed one shows
        ``closed``. Next: *Connect* continues the conversation.
        """
        session = self._session
        if session is None:
            return
        state = str(session.state)
        shown = self.view.state
        lost = state in ("idle", "connected") and shown in ("connected", "reconnecting")   # no conversation left
        if (state == "failed" or lost) and shown != "error":
            self.mic.release()
            last = f" (last: {self.view.error})" if self.view.error else ""
            with self.view.hold_sync():       # the browser gets the error and the state in one message
                self.view.show_error(f"the connection was lost and could not be re-established{last}",
                                     "click Connect to continue the conversation")
                self.view.state = "error"
        elif state in ("closed", "completed") and shown in ("connected", "reconnecting") \
                and session.state == state:
            self.mic.release()
            self.view.state = "closed"
        elif state == "active" and shown in ("reconnecting", "error") and session.conversation_id:
            self.view.state = "connected"

    def replay(self, index: int) -> str:
        """Play turn ``index`` (the fold's interaction index) again in the panel's player: the user's audio as
        sent, then the agent's answer as heard (cut where the user barged in). Returns the message id the
        playback reports carry. Next: the turn's frames in :attr:`inspector`, its latencies in :attr:`waterfall`.
        """
        from amigo_lab.errors import AmigoError
        from amigo_lab.framelog import load_session

        session = self._session
        record = self.view.records.get(int(index))
        if session is None or record is None:
            raise AmigoError(f"no turn {index} to replay; turns shown: {sorted(self.view.records)}")
        recorded = load_session(session.log.path)
        parts: list[np.ndarray] = []
        start, end = record.stamps.get("user_start"), record.stamps.get("user_end")
        if record.kind in ("voice", "push-to-talk") and start is not None and end is not None:
            parts.append(_sent_audio(recorded, start - REPLAY_MARGIN_S, end + REPLAY_MARGIN_S))
            parts.append(np.zeros(int(SAMPLE_RATE * REPLAY_GAP_S), dtype=np.float32))
        if record.answer_message_id:
            agent = recorded.message_audio(record.answer_message_id)
            heard = record.heard_ms if record.heard_ms is not None else None
            if record.interrupted and heard is not None:
                agent = agent[: int(SAMPLE_RATE * heard / 1000.0)]
            parts.append(agent)
        audio = np.concatenate([p.astype(np.float32) for p in parts]) if parts else np.zeros(0, np.float32)
        if not audio.size:
            raise AmigoError(f"turn {index} has no audio to replay (a text turn with a text answer?)")
        return self.player.play(audio, sr=SAMPLE_RATE, message_id=f"local-replay-{index}")

    def _handle_view_message(self, _widget: Any, content: Any, _buffers: list) -> None:
        kind = content.get("kind") if isinstance(content, dict) else None
        if kind == "replay":
            threading.Thread(target=self._replay_in_background, args=(content.get("index"),),
                             name="amigo_lab-panel-replay", daemon=True).start()
            return
        # Connecting or closing waits on the network: do it off the kernel's comm thread.
        if kind == "connect":
            threading.Thread(target=self._connect_in_background, name="amigo_lab-panel-connect", daemon=True).start()
        elif kind == "disconnect":
            threading.Thread(target=self._disconnect_in_background, name="amigo_lab-panel-close", daemon=True).start()

    def _replay_in_background(self, index: Any) -> None:
        try:
            self.replay(int(index))
        except Exception as exc:
            self.view.show_error(f"cannot replay turn {index}: {exc}")

    def _connect_in_background(self) -> None:
        try:
            self.connect()
        except Exception:
            _log.info("the panel could not connect", exc_info=True)

    def _disconnect_in_background(self) -> None:
        try:
            self.disconnect()
        except Exception as exc:
            self.view.show_error(str(exc), getattr(exc, "hint", "") or "")
