"""The live strip: agent state, input and output levels, and a timeline of the call on the session clock.

Lanes, left to right in time: the server's VAD speech segments, the user's audio as sent, the agent's audio
as received (answer and filler apart) and as actually heard (cut at the flush), with marks for barge-ins,
external events and errors. Hovering a segment or mark lists the frames it stands for (the first
:data:`HOVER_FRAMES`, audio runs folded as ``audio ×250, 5.0 s``); a click finds its first frame in the
panel's inspector. Above the lanes: what the
agent is doing (listening, user speaking, thinking, agent speaking, interrupted), a level meter per side and a
small scrolling waveform of both sides (each :data:`LEVEL_BIN_S` bin's lowest and highest sample). Agent audio
in PCM is read from its piece; in MP3 the samples are the session's own decoder's
(:func:`amigo_lab.session.agent_audio.on_decoded`), never decoded a second time; the user's MP3 chunks, which
the session only encodes, are decoded here. The conversation's meaning
(filler vs answer, barge-in, turn ends) comes from the protocol fold's events; levels and segment extents from
the frames themselves::

    from amigo_lab.widgets import LiveTimeline
    LiveTimeline(session)

Updates go to the browser in one compact message five times a second, never one per frame.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from amigo_lab.audio import SAMPLE_RATE, AudioError, decode_mp3, pcm16_to_float
from amigo_lab.protocol.fold import (
    AgentPiece,
    BargeIn,
    ErrorReceived,
    InteractionCompleted,
    InteractionStarted,
    InteractionVoided,
    SpeechDiscarded,
    UserTurnEnded,
    Violation,
)
from amigo_lab.widgets.inspector import _alignment_text, _cut, summarize

__all__ = ["AGENT_STATES", "HOVER_FRAMES", "LEVEL_BIN_S", "LiveTimeline", "envelope"]

_log = logging.getLogger(__name__)
_HERE = Path(__file__).parent

AGENT_STATES = ("idle", "listening", "user speaking", "thinking", "agent speaking", "interrupted")
"""What the strip says the conversation is doing right now."""

FLUSH_EVERY_S = 0.2
"""How often changes go to the browser."""

RUN_GAP_S = 0.5
"""A pause longer than this in one side's audio starts a new segment."""

REPLAY_WINDOW_S = 600.0
"""Audio of the last this many seconds of a log is replayed when the strip follows a running session (the
browser keeps as much); older audio makes no segments, later entries all do."""

LEVEL_BIN_S = 0.05
"""The level meters' and waveform's bin: one point per side per this many seconds of audio."""

MAX_PENDING_PIECES = 64
"""MP3 pieces waiting for the session's decoder to report their samples (older ones are forgotten)."""

MAX_SEGMENTS = 4000
"""Segments and marks the kernel keeps for a new view (the browser keeps its own bounded window)."""

HOVER_FRAMES = 8
"""Frames a hover lists (an audio run counts as one, folded); the rest are counted ("and N more")."""

_MOMENTS = 2 * MAX_SEGMENTS
# Entries kept by time for the marks the fold's events make (a barge-in, an error): not audio, not progress.
_QUIET_TYPES = ("playback.progress",)


def envelope(samples: np.ndarray, t0: float, side: str, *, sr: float = SAMPLE_RATE) -> list[tuple[Any, ...]]:
    """Level and waveform points of float samples starting at ``t0`` on the session clock: one
    ``(t, side, rms_db, lo, hi)`` per :data:`LEVEL_BIN_S` bin (dB full scale, -90 for silence; ``lo`` / ``hi``
    the bin's lowest and highest sample, -1..1), what the strip's meters and waveform draw."""
    samples = np.asarray(samples, dtype=np.float32).ravel()
    if not samples.size or sr <= 0:
        return []
    per = max(1, int(round(sr * LEVEL_BIN_S)))
    starts = np.arange(0, samples.size, per)
    counts = np.diff(np.append(starts, samples.size))
    lo = np.minimum.reduceat(samples, starts)
    hi = np.maximum.reduceat(samples, starts)
    power = np.add.reduceat(samples * samples, starts) / counts
    db = np.maximum(-90.0, 10.0 * np.log10(np.maximum(power, 1e-12)))
    times = t0 + starts / sr
    return [(round(float(at), 3), side, round(float(d), 1), round(float(a), 3), round(float(b), 3))
            for at, d, a, b in zip(times, db, lo, hi, strict=True)]


def _value(entry: Mapping[str, Any], name: str) -> Any:
    value = entry.get(name)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _frame_item(entry: Mapping[str, Any], seq: int, t: float, direction: Any, kind: str) -> dict[str, Any]:
    """One frame as a hover lists it: direction, time, type and a short payload (the inspector's)."""
    audio = bool(_value(entry, "audio_bytes")) or kind in _QUIET_TYPES
    item = {"direction": str(direction or ""), "t": round(t, 3), "type": kind, "summary": "", "n": 1,
            "audio_ms": None, "t_end": round(t, 3), "seq": seq, "last_seq": seq, "audio": audio, "text": ""}
    if kind in _QUIET_TYPES:
        item["audio_ms"] = float(_value(entry, "played_ms") or 0.0)   # played so far, not a duration
    elif audio:
        item["audio_ms"] = float(_value(entry, "audio_ms") or 0.0)
        item["text"] = _alignment_text(_value(entry, "alignment")) if kind == "server.new-message" else ""
    else:
        item["summary"] = summarize(entry)
    return item


class _Members:
    """The frames a segment or mark stands for: the first few, audio runs folded, the rest counted."""

    __slots__ = ("items", "more")

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.more = 0

    def add(self, frame: dict[str, Any]) -> None:
        last = self.items[-1] if self.items else None
        if last is not None and last["seq"] == frame["seq"]:
            return
        if last is not None and frame["audio"] and last["audio"] and last["type"] == frame["type"] \
                and last["direction"] == frame["direction"]:
            last["n"] += 1
            last["t_end"], last["last_seq"] = frame["t"], frame["seq"]
            if frame["type"] in _QUIET_TYPES:
                last["audio_ms"] = frame["audio_ms"]
            else:
                last["audio_ms"] = round(last["audio_ms"] + frame["audio_ms"], 3)
                if len(last["text"]) <= 80:
                    last["text"] += frame["text"]
            _fold_summary(last)
            return
        if len(self.items) >= HOVER_FRAMES:
            self.more += 1
            return
        item = dict(frame)
        if item["audio"]:
            _fold_summary(item)
        self.items.append(item)


def _fold_summary(item: dict[str, Any]) -> None:
    """``audio ×250, 5.0 s`` (and the words of agent audio), as the inspector folds a run."""
    if item["type"] in _QUIET_TYPES:
        item["summary"] = f"×{item['n']}, played {item['audio_ms']:.0f} ms"
        return
    head = f"audio ×{item['n']}, {item['audio_ms'] / 1000:.1f} s"
    item["summary"] = f"{head} “{_cut(item['text'])}”" if item["text"] else head


def _title(thing: Mapping[str, Any]) -> str:
    if "lane" in thing:
        return f"{thing['label']}: {thing['t0']:.3f}–{thing['t1']:.3f} s"
    return f"{thing['kind']} at {thing['t']:.3f} s: {thing['label']}"


class LiveTimeline(anywidget.AnyWidget):
    """Agent state, levels of both sides and a timeline strip of the call, live.

    Traits: ``state`` (one of :data:`AGENT_STATES`, set by the kernel), ``span_s`` (seconds the strip shows,
    default 30). Segments: ``{"id", "lane", "t0", "t1", "seq0", "seq1", "n", "label", "role"}`` with ``lane``
    one of ``vad``, ``user``, ``agent``, ``heard``; marks: ``{"id", "t", "kind", "label", "seq"}`` with ``kind``
    ``barge-in``, ``event``, ``error`` or ``discarded``. :meth:`segments` and :meth:`marks` return them.
    Hovering one in the browser lists the frames it stands for (:meth:`hover`: direction, time, type, a short
    payload, audio runs folded), asked from the kernel as the pointer rests, so the browser holds no frames.
    Levels of both sides go to the browser as ``(t, side, rms_db, lo, hi)`` points (:func:`envelope`), live only
    (a replayed log has no audio at hand).

    Next: display it under a :class:`~amigo_lab.widgets.SessionPanel`, or :meth:`follow` a session.
    """

    _esm = _HERE / "timeline.js"
    _css = _HERE / "timeline.css"

    state = traitlets.Enum(AGENT_STATES, default_value="idle").tag(sync=True)
    span_s = traitlets.Float(30.0, min=2.0).tag(sync=True)

    def __init__(self, session: Any = None, **kwargs: Any) -> None:
        self._lock = threading.RLock()
        self._segments: dict[int, dict[str, Any]] = {}
        self._marks: list[dict[str, Any]] = []
        self._dirty: dict[int, dict[str, Any]] = {}
        self._new_marks: list[dict[str, Any]] = []
        self._levels: list[tuple[Any, ...]] = []
        # MP3 pieces by the identity of their bytes, until the session's decoder reports their samples.
        self._mp3_pending: collections.OrderedDict[int, tuple[bytes, float]] = collections.OrderedDict()
        self._mp3_messages: weakref.WeakKeyDictionary[Any, list[float]] = weakref.WeakKeyDictionary()
        self._clock: Callable[[], float] | None = None
        self._open: dict[tuple[str, str], dict[str, Any]] = {}   # (lane, message or "") -> open segment
        self._members: dict[int, _Members] = {}        # segment id -> the frames it stands for
        self._mark_members: dict[int, _Members] = {}   # mark id -> its frames
        self._moments: collections.OrderedDict[float, list[dict[str, Any]]] = collections.OrderedDict()
        self._next_mark = 0
        self._frame: dict[str, Any] = {}               # the entry being fed, as a hover lists it
        self._roles: dict[str, str] = {}
        self._next_id = 0
        self._now = 0.0
        self._vad_on = False
        self._remove: list[Callable[[], None]] = []
        self._select_sinks: list[Callable[[int], None]] = []
        self._stop = threading.Event()
        super().__init__(**kwargs)
        self.on_msg(self._handle_message)
        self._flusher = threading.Thread(target=self._flush_loop, name="amigo_lab-timeline", daemon=True)
        self._flusher.start()
        if session is not None:
            self.follow(session)

    # --- following ----------------------------------------------------------------------------------------

    def follow(self, session: Any) -> None:
        """Show ``session``: its log so far, then live."""
        from amigo_lab.session.agent_audio import on_decoded
        from amigo_lab.widgets._fold_feed import follow_fold, log_entries

        self.unfollow()
        with self._lock:
            self._mp3_pending.clear()
            self._segments.clear()
            self._marks.clear()
            self._dirty.clear()
            self._new_marks.clear()
            self._levels.clear()
            self._open.clear()
            self._roles.clear()
            self._members.clear()
            self._mark_members.clear()
            self._moments.clear()
        self._send_safely({"kind": "reset"})
        last = [-1]

        def on_entry(entry: Mapping[str, Any], frame: Any) -> None:
            seq = _value(entry, "seq")
            if seq is not None:
                if int(seq) <= last[0]:
                    return
                last[0] = int(seq)
            self.feed(entry, frame)

        self._remove.append(session.on_frame(on_entry))
        # The decoder's listeners are process-wide: hold this strip weakly, so one never closed can go.
        method = weakref.WeakMethod(self._on_decoded)
        removers: list[Callable[[], None]] = []

        def relay(message: Any, piece: bytes | None, samples: np.ndarray | None) -> None:
            target = method()
            if target is None:
                removers[0]()
            else:
                target(message, piece, samples)

        removers.append(on_decoded(relay))
        self._remove.append(removers[0])
        log = getattr(session, "log", None)
        self._clock = getattr(log, "now", None)
        entries = log_entries(session)
        # Audio older than what the browser keeps would only draw segments it drops: skip it on a long log.
        until = max((float(t) for e in entries[-1:] if (t := _value(e, "t")) is not None), default=0.0)
        skip_before = until - REPLAY_WINDOW_S
        for entry in entries:
            if _value(entry, "audio_bytes") and float(_value(entry, "t") or 0.0) < skip_before:
                continue
            on_entry(entry, None)
        self._remove.append(follow_fold(session, self.apply_fold))

    def unfollow(self) -> None:
        """Stop following (what is shown stays)."""
        while self._remove:
            self._remove.pop()()

    def close(self) -> None:
        """Stop following and sending, close the widget."""
        self.unfollow()
        self._stop.set()
        super().close()

    def segments(self) -> list[dict[str, Any]]:
        """Every segment the kernel keeps, oldest first."""
        with self._lock:
            return [dict(s) for s in sorted(self._segments.values(), key=lambda s: s["id"])]

    def marks(self) -> list[dict[str, Any]]:
        """Every mark the kernel keeps (barge-ins, events, errors, discarded speech), oldest first."""
        with self._lock:
            return [dict(m) for m in self._marks]

    # --- frames: extents and levels ---------------------------------------------------------------------------

    def feed(self, entry: Mapping[str, Any], frame: Any = None) -> None:
        """Take one frame-log entry (and its frame, when live): audio extents, VAD segments, levels."""
        direction = _value(entry, "direction")
        kind = str(_value(entry, "type") or "")
        t = float(_value(entry, "t") or 0.0)
        seq = int(_value(entry, "seq") or 0)
        with self._lock:
            self._now = max(self._now, t)
            self._frame = _frame_item(entry, seq, t, direction, kind)
            if not self._frame["audio"] and kind not in _QUIET_TYPES:
                self._moments.setdefault(round(t, 6), []).append(self._frame)
                while len(self._moments) > _MOMENTS:
                    self._moments.popitem(last=False)
            audio_ms = _value(entry, "audio_ms")
            if direction == "sent" and kind == "client.new-audio-message" and _value(entry, "audio_bytes"):
                self._extend("user", "", t, t + float(audio_ms or 0) / 1000.0, seq, "user audio")
                self._level(t, "in", frame, entry, audio_ms)
                if not self._vad_on and self.state in ("idle", "listening"):
                    self._set_state("user speaking")       # push-to-talk: audio flows only while held
            elif direction == "received" and kind == "server.new-message" and _value(entry, "audio_bytes"):
                message_id = str(_value(entry, "message_id") or "")
                seg = self._open.get(("agent", message_id))
                start = t if seg is None else max(t, seg["t1"])
                role = self._roles.get(message_id, "answer")
                self._extend("agent", message_id, t, start + float(audio_ms or 0) / 1000.0, seq, role, role=role,
                             gap=math.inf)
                self._level(start, "out", frame, entry, audio_ms)
            elif kind == "server.vad-speech-started":
                self._extend("vad", "", t, t, seq, "server VAD: speech", gap=math.inf)
                if self.state != "agent speaking":
                    self._set_state("user speaking")
            elif kind in ("server.vad-speech-ended", "server.vad-speech-reset-zero"):
                seg = self._open.pop(("vad", ""), None)
                if seg is not None:
                    seg["t1"], seg["seq1"], seg["n"] = t, seq, seg["n"] + 1
                    self._dirty[seg["id"]] = seg
                    self._member(seg)
            elif kind == "server.vad-mode-switched":
                self._vad_on = bool(_value(entry, "vad_mode_on"))
                self._set_state("listening" if self._vad_on else "idle")
            elif kind.startswith("playback."):
                message_id = str(_value(entry, "message_id") or "")
                played = float(_value(entry, "played_ms") or 0.0) / 1000.0
                seg = self._open.get(("heard", message_id))
                if seg is None:
                    self._extend("heard", message_id, t - played, t, seq, "heard", gap=math.inf)
                else:
                    seg["t1"], seg["seq1"], seg["n"] = seg["t0"] + played, seq, seg["n"] + 1
                    self._dirty[seg["id"]] = seg
                    self._member(seg)
                if kind != "playback.progress":
                    done = self._open.pop(("heard", message_id), None)
                    if done is not None and kind == "playback.flushed":
                        done["label"] = "heard (cut at the flush)"
                    if self.state == "agent speaking":
                        self._set_state("listening" if self._vad_on else "idle")
            elif direction == "sent" and kind == "client.new-text-message" and \
                    _value(entry, "message_type") == "external-event":
                self._mark(t, "event", str(_value(entry, "text") or "external event"), seq, [self._frame])
            elif kind == "connection.closed":
                self._open.clear()
                self._set_state("idle")

    def _extend(self, lane: str, key: str, t0: float, t1: float, seq: int, label: str, *, role: str = "",
                gap: float = RUN_GAP_S) -> None:
        seg = self._open.get((lane, key))
        if seg is not None and t0 - seg["t1"] <= gap:
            seg["t1"], seg["seq1"], seg["n"] = max(seg["t1"], t1), seq, seg["n"] + 1
        else:
            self._next_id += 1
            seg = {"id": self._next_id, "lane": lane, "t0": t0, "t1": t1, "seq0": seq, "seq1": seq, "n": 1,
                   "label": label, "role": role}
            self._open[(lane, key)] = seg
            self._segments[seg["id"]] = seg
            self._members[seg["id"]] = _Members()
            while len(self._segments) > MAX_SEGMENTS:
                old = next(iter(self._segments))
                self._segments.pop(old)
                self._members.pop(old, None)
        self._dirty[seg["id"]] = seg
        self._member(seg)

    def _member(self, seg: dict[str, Any]) -> None:
        """The frame being fed belongs to ``seg``: what its hover lists."""
        members = self._members.get(seg["id"])
        if members is not None:
            members.add(self._frame)

    def _mark(self, t: float, kind: str, label: str, seq: int | None = None,
              frames: list[dict[str, Any]] | None = None) -> None:
        if frames is None:
            # A mark of the fold's (barge-in, error, discarded speech) stands for the frames at its moment.
            frames = list(self._moments.get(round(t, 6), ()))
        if seq is None and frames:
            seq = frames[0]["seq"]          # a click finds it in the inspector, as any mark's
        self._next_mark += 1
        mark: dict[str, Any] = {"id": self._next_mark, "t": t, "kind": kind, "label": label, "seq": seq}
        members = _Members()
        for frame in frames:
            members.add(frame)
        self._mark_members[self._next_mark] = members
        self._marks.append(mark)
        for dropped in self._marks[:-MAX_SEGMENTS]:
            self._mark_members.pop(dropped["id"], None)
        del self._marks[:-MAX_SEGMENTS]
        self._new_marks.append(mark)

    def _level(self, t: float, side: str, frame: Any, entry: Mapping[str, Any], audio_ms: Any) -> None:
        if frame is None:
            return      # replayed rows carry no audio
        try:
            data = frame.audio_bytes()     # decoded once by the frame, shared with the player and the session
        except (AttributeError, ValueError):
            return
        if not data:
            return
        audio_format = _value(entry, "audio_format")
        if audio_format == "pcm":
            samples = pcm16_to_float(data[: len(data) // 2 * 2])
            seconds = float(audio_ms or 0.0) / 1000.0
            self._levels.extend(envelope(samples, t, side, sr=samples.size / seconds if seconds > 0 else SAMPLE_RATE))
        elif audio_format == "mp3" and side == "in":
            # The user's chunks in MP3 were encoded by the session, which never decodes them: this is their one
            # decode (a 20 ms chunk takes a fraction of a millisecond).
            try:
                self._levels.extend(envelope(decode_mp3(data, sr=SAMPLE_RATE), t, side))
            except AudioError:
                return
        elif audio_format == "mp3" and side == "out":
            # The session decodes it next (agent_audio.on_decoded reports the samples): never decoded twice.
            self._mp3_pending[id(data)] = (data, t)
            while len(self._mp3_pending) > MAX_PENDING_PIECES:
                self._mp3_pending.popitem(last=False)

    def _on_decoded(self, message: Any, piece: bytes | None, samples: np.ndarray | None) -> None:
        """The session decoded agent MP3 audio (see :func:`amigo_lab.session.agent_audio.on_decoded`)."""
        with self._lock:
            if piece is not None:
                pending = self._mp3_pending.get(id(piece))
                if pending is None or pending[0] is not piece:
                    return      # another session's audio, or a piece this strip never saw
                del self._mp3_pending[id(piece)]
                state = self._mp3_messages.setdefault(message, [pending[1], 0.0])   # [start t, samples taken]
                if samples is not None:
                    self._levels.extend(envelope(samples, pending[1], "out"))
                    state[1] += samples.size
                return
            known = self._mp3_messages.get(message)
            if known is None or samples is None or samples.size <= known[1]:
                return
            state = known
            # A message decoded as one stream: the samples not shown yet, after those that were.
            taken = int(state[1])
            self._levels.extend(envelope(samples[taken:], state[0] + taken / SAMPLE_RATE, "out"))
            state[1] = float(samples.size)

    def _set_state(self, state: str) -> None:
        if self.state != state:
            self.state = state

    # --- fold events: meaning --------------------------------------------------------------------------------

    def apply_fold(self, event: Any) -> None:
        """Take one protocol-fold event: filler vs answer, barge-ins, errors, the agent's state."""
        with self._lock:
            if isinstance(event, AgentPiece):
                self._roles[event.message_id] = event.role
                seg = self._open.get(("agent", event.message_id))
                if seg is not None and seg["role"] != event.role:
                    seg["role"] = seg["label"] = event.role
                    self._dirty[seg["id"]] = seg
                self._set_state("agent speaking")
            elif isinstance(event, BargeIn):
                self._mark(event.t, "barge-in", f"barge-in ({event.source})")
                self._set_state("interrupted")
            elif isinstance(event, (ErrorReceived, Violation)):
                label = (f"error {event.http_error_code}: {event.description}" if isinstance(event, ErrorReceived)
                         else f"violation: {event.description}")
                self._mark(event.t, "error", label)
            elif isinstance(event, SpeechDiscarded):
                self._mark(event.t, "discarded", "speech discarded (too short)")
            elif isinstance(event, UserTurnEnded) or (
                    isinstance(event, InteractionStarted) and self.state in ("idle", "listening")):
                self._set_state("thinking")
            elif isinstance(event, (InteractionCompleted, InteractionVoided)):
                if isinstance(event, InteractionVoided):
                    self._mark(event.t, "error", f"voided: {event.description or event.reason}")
                for message_id in event.record.filler_message_ids:
                    self._roles[message_id] = "filler"
                playing = any(lane == "heard" for lane, _ in self._open)
                if self.state in ("thinking", "interrupted") or (self.state == "agent speaking" and not playing):
                    # With a player, "agent speaking" lasts until its audio finished playing (playback.*).
                    self._set_state("listening" if self._vad_on else "idle")

    # --- to the browser ----------------------------------------------------------------------------------------

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_EVERY_S):
            if self.comm is None:
                continue
            with self._lock:
                if not (self._dirty or self._new_marks or self._levels):
                    continue        # the browser moves its clock on by itself between updates
                content = {"kind": "update", "now": self._clock_now(),
                           "segments": [dict(s) for s in self._dirty.values()],
                           "marks": list(self._new_marks), "levels": list(self._levels)}
                self._dirty.clear()
                self._new_marks.clear()
                self._levels.clear()
            self._send_safely(content)

    def _clock_now(self) -> float:
        """The session clock now (the log's), so the strip and the meters move between entries too."""
        clock = self._clock
        if clock is not None:
            try:
                return max(self._now, float(clock()))
            except Exception:
                self._clock = None
        return self._now

    def _send_safely(self, content: dict[str, Any]) -> None:
        if self.comm is None:
            return
        try:
            self.send(content)
        except Exception:
            _log.debug("could not send to the timeline's view", exc_info=True)

    def on_select(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call ``callback(seq)`` when a segment or mark is clicked in the browser (``seq``: its first frame);
        returns a remover. :class:`~amigo_lab.widgets.SessionPanel` shows that frame in its inspector."""
        self._select_sinks.append(callback)
        return lambda: self._select_sinks.remove(callback) if callback in self._select_sinks else None

    def hover(self, *, segments: Sequence[int] = (), marks: Sequence[int] = ()) -> dict[str, Any]:
        """What hovering these segments and marks (by ``id``) shows: ``{"items": [{"ref", "title", "frames"}],
        "more"}``, each frame ``{"direction", "t", "type", "summary", "n", "audio_ms", "t_end", "seq",
        "last_seq"}`` (an audio run folded into one, ``n`` frames). At most :data:`HOVER_FRAMES` frames in all;
        ``more`` counts the rest. The browser asks for it as the pointer rests on a mark."""
        items: list[dict[str, Any]] = []
        budget, more = HOVER_FRAMES, 0
        with self._lock:
            refs = [(f"s{i}", self._segments.get(int(i)), self._members.get(int(i))) for i in segments]
            by_id = {m["id"]: m for m in self._marks[-MAX_SEGMENTS:]} if marks else {}
            refs += [(f"m{i}", by_id.get(int(i)), self._mark_members.get(int(i))) for i in marks]
            for ref, thing, members in refs:
                if thing is None:
                    continue
                frames = members.items if members is not None else []
                shown = [dict(f) for f in frames[:budget]]
                budget -= len(shown)
                more += len(frames) - len(shown) + (members.more if members is not None else 0)
                items.append({"ref": ref, "title": _title(thing), "frames": shown})
        for item in items:
            for frame in item["frames"]:
                frame.pop("audio", None)
                frame.pop("text", None)
        return {"items": items, "more": more}

    def _handle_message(self, _widget: Any, content: Any, _buffers: list) -> None:
        if isinstance(content, dict) and content.get("kind") == "hover":
            try:
                answer = self.hover(segments=[int(i) for i in content.get("segments", [])][:8],
                                    marks=[int(i) for i in content.get("marks", [])][:8])
            except (TypeError, ValueError):
                return
            self._send_safely({"kind": "hover", "id": content.get("id"), **answer})
            return
        if isinstance(content, dict) and content.get("kind") == "select" and content.get("seq") is not None:
            for sink in list(self._select_sinks):
                sink(int(content["seq"]))
            return
        if isinstance(content, dict) and content.get("kind") == "hello":
            with self._lock:
                snapshot = {"kind": "update", "now": self._clock_now(),
                            "segments": [dict(s) for s in self._segments.values()],
                            "marks": list(self._marks), "levels": []}
            self._send_safely({"kind": "reset"})
            self._send_safely(snapshot)
