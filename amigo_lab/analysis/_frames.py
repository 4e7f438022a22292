"""Reading a frame-log DataFrame: the one account of the conversation, and the raw marks timelines draw.

A frame log (``session.frames``, ``load_session(path).frames``) has one row per frame or local event, on one
monotonic clock ``t`` (seconds since the log started).

- :func:`replay` feeds the log, row by row, to the protocol's interaction fold
  (:class:`amigo_lab.protocol.fold.Fold`): the same account the live session keeps. Which frames form an
  interaction, when the user stopped, what is filler, what an error voids, what was interrupted, and every
  latency come from there and nowhere else. Each row is fed by :func:`amigo_lab.framelog.feed_row`, the rule
  the widgets replay by too: frames are parsed from the verbatim ``wire`` column when the log has it, else
  rebuilt from the other columns.
- :func:`extract` reads what a timeline draws without interpreting it: sent texts and events, server VAD
  marks placed on ``t`` (by the fold's audio clock), playback reports, and each agent message's pieces.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from amigo_lab.analysis.errors import AnalysisError
from amigo_lab.framelog._refold import CHUNK_FRAME, feed_row
from amigo_lab.framelog._values import audio_ms_of, json_value, missing, num, opt_bool, opt_str
from amigo_lab.protocol import (
    CurrentAgentAction,
    NewAudioMessage,
    NewMessage,
    NewTextMessage,
    ServerError,
    SwitchVadMode,
    VadSpeechEnded,
    VadSpeechResetZero,
    VadSpeechStarted,
)
from amigo_lab.protocol.constants import (
    ACTION_TOO_LONG,
    MESSAGE_TYPE_EXTERNAL_EVENT,
    SAMPLE_RATE,
    SAMPLE_WIDTH_BYTES,
)
from amigo_lab.protocol.fold import (
    AudioClock,
    Fold,
    FoldEvent,
    InputDropped,
    PendingInput,
)
from amigo_lab.protocol.fold import Interaction as FoldInteraction

NAN = math.nan

# Local entry types the frame log records next to the wire frames.
CONNECTION_OPENED = "connection.opened"
CONNECTION_CLOSED = "connection.closed"
CONNECTION_RECONNECTING = "connection.reconnecting"
INVALID_FRAME = "client.invalid-frame"
PROTOCOL_VIOLATION = "client.protocol-violation"
PLAYBACK_PROGRESS = "playback.progress"
PLAYBACK_FLUSHED = "playback.flushed"
PLAYBACK_FINISHED = "playback.finished"
PLAYBACK_TYPES = (PLAYBACK_PROGRESS, PLAYBACK_FLUSHED, PLAYBACK_FINISHED)
#: Entries that tell of something going wrong or the connection ending (the report's error table).
TROUBLE_TYPES = (ServerError.TYPE, CONNECTION_CLOSED, CONNECTION_RECONNECTING, INVALID_FRAME, PROTOCOL_VIOLATION)

SENT, RECEIVED, LOCAL = "sent", "received", "local"

#: Columns the analysis reads; a frame log has these and more.
REQUIRED_COLUMNS = (
    "seq", "t", "direction", "type", "interaction_id", "message_id", "stop", "text", "message_type",
    "audio_bytes", "audio_ms", "vad_ms", "action_type", "action", "http_error_code", "error_description",
    "close_code", "close_reason", "conversation_completed", "played_ms", "alignment", "vad_mode_on",
)

#: ``type`` of a binary WebSocket message in the log (its bytes are the entry's audio).
BINARY_FRAME = "binary"
#: The optional column with the verbatim wire text of each frame; frames are rebuilt from the others without it.
WIRE_COLUMN = "wire"
#: Columns read when present (older logs lack them).
OPTIONAL_COLUMNS = (WIRE_COLUMN, "sequence_number", "conversation_id")

_PCM_BYTES_PER_MS = SAMPLE_RATE * SAMPLE_WIDTH_BYTES / 1000
#: User audio that went out at less than this fraction of real time (:func:`upload_pace`) was not real time:
#: sent in bursts or as fast as allowed, so the latencies measured on it are compressed.
REAL_TIME_PACE = 0.8


def check_frames(frames: Any) -> pd.DataFrame:
    """Return ``frames`` sorted by ``seq`` after checking it is a frame-log DataFrame; raise AnalysisError if not."""
    if not isinstance(frames, pd.DataFrame):
        raise AnalysisError(
            f"expected a frame-log DataFrame, got {type(frames).__name__}; pass session.frames or "
            "amigo_lab.load_session(path).frames")
    missing = [c for c in REQUIRED_COLUMNS if c not in frames.columns]
    if missing:
        raise AnalysisError(
            f"the DataFrame lacks frame-log columns {missing}; pass session.frames or "
            "amigo_lab.load_session(path).frames")
    if not frames["seq"].is_monotonic_increasing:
        frames = frames.sort_values("seq", kind="stable")
    return frames


def records(frames: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a checked frame log as dicts of the columns the analysis reads, in ``seq`` order.

    The :data:`OPTIONAL_COLUMNS` (e.g. ``wire``, the verbatim wire text) are included, None when absent.
    """
    # Column by column, then zipped: several times faster than DataFrame.to_dict("records") on long logs.
    names = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    columns = [frames[name].astype(object).tolist() if name in frames.columns else [None] * len(frames)
               for name in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


@dataclass
class Scan:
    """A checked frame log read for one pass: the sent audio chunks as arrays, every other entry as a dict.

    A voice session's log is mostly microphone chunks (50 a second), and a chunk tells the fold and the
    timelines only when it was sent and how much audio it carried; building a dict of every column for each
    one was most of the cost of a pass. ``t``, ``audio_ms`` and ``chunk`` cover every row in ``seq`` order
    (``audio_ms``: :func:`audio_ms_of`; ``chunk``: a sent ``client.new-audio-message`` carrying audio);
    ``others`` are the :func:`records` of the rows that are not chunks, in order.
    """

    t: np.ndarray
    audio_ms: np.ndarray
    chunk: np.ndarray
    others: list[dict[str, Any]]

    @property
    def chunk_t(self) -> np.ndarray:
        """``t`` of each sent audio chunk, in ``seq`` order."""
        return self.t[self.chunk]

    @property
    def chunk_ms(self) -> np.ndarray:
        """Milliseconds of audio of each sent audio chunk, in ``seq`` order."""
        return self.audio_ms[self.chunk]

    def walk(self) -> Iterator[tuple[float, float, dict[str, Any] | None]]:
        """Every row in ``seq`` order as ``(t, audio_ms, record)``; ``record`` is None for a sent audio chunk."""
        others = iter(self.others)
        for t, ms, is_chunk in zip(self.t.tolist(), self.audio_ms.tolist(), self.chunk.tolist(), strict=True):
            yield t, ms, None if is_chunk else next(others)


def _numbers(column: pd.Series) -> np.ndarray:
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=NAN)


def _is(column: pd.Series, value: str) -> np.ndarray:
    return (column == value).fillna(False).to_numpy(dtype=bool)


def scan(frames: pd.DataFrame, *, chunks_only: bool = False) -> Scan:
    """Read a frame log for one pass (see :class:`Scan`); the log is checked and sorted by ``seq`` first.

    ``chunks_only``: leave ``others`` empty, for a caller that needs the chunks' timing alone.
    """
    frames = check_frames(frames)
    size = _numbers(frames["audio_bytes"])
    ms = _numbers(frames["audio_ms"])
    # audio_ms_of, column-wise: audio_ms, else PCM16 bytes at 16 kHz, else 0.
    audio_ms = np.where(np.isnan(ms), np.where(np.isnan(size), 0.0, size / _PCM_BYTES_PER_MS), ms)
    chunk = _is(frames["direction"], SENT) & _is(frames["type"], NewAudioMessage.TYPE) & (size > 0)
    others = [] if chunks_only else records(frames.iloc[np.flatnonzero(~chunk)])
    return Scan(_numbers(frames["t"]), audio_ms, chunk, others)


def upload_pace(frames: pd.DataFrame | Scan) -> Callable[[float, float], float]:
    """A function of a time span giving how fast the user's audio sent in it went out: 1.0 = real time.

    The chunks sent from 50 ms before ``begin`` to ``end``: the time from the first one's sending to the last
    one's end, over the audio they carried. Audio sent in real time gives about 1.0; at twice real time 0.5.
    Fewer than two chunks give 1.0 (nothing to judge by; :func:`measured_pace` says None). Each call costs
    O(log n): a turns table asks once per turn. Next: compare with :data:`REAL_TIME_PACE`.
    """
    measured = measured_pace(frames)

    def pace(begin: float, end: float) -> float:
        value = measured(begin, end)
        return 1.0 if value is None else value

    return pace


def measured_pace(frames: pd.DataFrame | Scan) -> Callable[[float, float], float | None]:
    """:func:`upload_pace`, but None for a span with fewer than two chunks sent in it."""
    log = frames if isinstance(frames, Scan) else scan(frames, chunks_only=True)
    times, durations = log.chunk_t, log.chunk_ms / 1000.0
    if len(times) > 1 and np.any(np.diff(times) < 0):
        order = np.argsort(times, kind="stable")
        times, durations = times[order], durations[order]
    total = np.concatenate([[0.0], np.cumsum(durations)])

    def pace(begin: float, end: float) -> float | None:
        first = int(np.searchsorted(times, begin - 0.05, side="left"))
        last = int(np.searchsorted(times, end, side="right"))
        if last - first < 2:
            return None
        span = times[last - 1] + durations[last - 1] - times[first]
        return float(span / max(total[last] - total[first], 1e-9))

    return pace


# --- scalar helpers (missing values: ``missing``, ``num``, ``opt_str`` ... from the frame log's own) -----------


def alignment_text(value: Any) -> str:
    """The characters of a ``transcript_alignment`` JSON string (``[[ms, char], ...]``), joined."""
    pairs = json_value(value)
    if not isinstance(pairs, list):
        return ""
    return "".join(str(p[1]) for p in pairs if isinstance(p, (list, tuple)) and len(p) == 2)


def carries_audio(rec: dict[str, Any]) -> bool:
    """True when an entry carried audio bytes. The end of the user's audio (``audio: null``) has none."""
    return num(rec["audio_bytes"]) > 0


def is_frame(rec: dict[str, Any], direction: str, frame_type: str) -> bool:
    """True when the row is a ``frame_type`` entry going ``direction``."""
    return rec["direction"] == direction and rec["type"] == frame_type


# --- what one pass over the log extracts, for drawing ------------------------------------------------------


@dataclass(eq=False)  # compared by identity: each is one thing that happened
class AgentMessage:
    """The pieces of one agent message (one ``message_id``) as received, in arrival order.

    Whether it is a filler or the answer is the fold's call (see :func:`replay`); ``filler_text`` is the text an
    ``action-too-long`` announced just before it began, if any.
    """

    message_id: str
    pieces: list[dict[str, Any]] = field(default_factory=list)
    filler_text: str | None = None

    @property
    def first_t(self) -> float:
        """``t`` of the first piece."""
        return float(self.pieces[0]["t"])

    @property
    def last_t(self) -> float:
        """``t`` of the last piece received."""
        return float(self.pieces[-1]["t"])

    @property
    def audio_ms(self) -> float:
        """Milliseconds of audio in all pieces (0 for text replies)."""
        return sum(audio_ms_of(p) for p in self.pieces)

    @property
    def has_audio(self) -> bool:
        """True when any piece carried audio."""
        return any(carries_audio(p) for p in self.pieces)

    @property
    def text(self) -> str:
        """Text pieces joined, or for audio the characters of the transcript alignments."""
        return "".join(opt_str(p["text"]) or alignment_text(p["alignment"]) for p in self.pieces)

    @property
    def end_t(self) -> float:
        """When the agent stopped speaking, estimated: playback starts at the first piece and runs gap-free,
        so the end is the later of the last piece and first piece + audio duration."""
        return max(self.last_t, self.first_t + self.audio_ms / 1000.0)


@dataclass
class VadMark:
    """One server VAD frame: ``kind`` started/ended/reset, received at ``t``, placed at ``audio_t``."""

    kind: str
    t: float
    audio_t: float
    seq: int


@dataclass
class Extracted:
    """What :func:`extract` reads out of a frame log for timelines: no interpretation of the conversation.

    ``rows``: the :func:`records` of every entry but the sent audio chunks, which are ``chunk_t`` (when each
    was sent) and ``chunk_ms`` (the audio it carried), in ``seq`` order.
    """

    rows: list[dict[str, Any]]
    texts: list[dict[str, Any]]  # sent user texts
    events: list[dict[str, Any]]  # sent external events
    vad_marks: list[VadMark]
    playback: dict[str, list[dict[str, Any]]]  # message_id -> playback.* entries
    agent_messages: list[AgentMessage]
    chunk_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    chunk_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def messages(self) -> list[AgentMessage]:
        """Every agent message, in order of its first piece."""
        return self.agent_messages


_VAD_KINDS = {VadSpeechStarted.TYPE: "started", VadSpeechEnded.TYPE: "ended", VadSpeechResetZero.TYPE: "reset"}


def extract(frames: pd.DataFrame) -> Extracted:
    """Read a frame log once: sent texts and events, VAD marks, playback reports, agent messages.

    A VAD mark's ``audio_t`` is its ``audio_ms`` placed on ``t`` by the fold's
    :class:`~amigo_lab.protocol.fold.AudioClock` (the rule the turns table uses); with no audio sent on the
    stream it is the receipt ``t``.
    """
    log = scan(frames)
    clock = AudioClock()
    texts: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    vad_marks: list[VadMark] = []
    playback: dict[str, list[dict[str, Any]]] = {}
    messages: dict[str, AgentMessage] = {}
    announced: str | None = None  # filler text of an action-too-long whose message has not begun yet
    for t, ms, r in log.walk():
        if r is None:  # a sent audio chunk
            clock.add(ms, t)
            continue
        direction, kind = r["direction"], r["type"]
        if direction == LOCAL:
            if kind == CONNECTION_OPENED:
                clock.restart()
            elif kind in PLAYBACK_TYPES and opt_str(r["message_id"]):
                playback.setdefault(str(r["message_id"]), []).append(r)
        elif direction == SENT:
            if kind == SwitchVadMode.TYPE and opt_bool(r["vad_mode_on"]):
                clock.restart()
            elif kind == NewTextMessage.TYPE:
                external = opt_str(r["message_type"]) == MESSAGE_TYPE_EXTERNAL_EVENT
                (events if external else texts).append(r)
        elif direction == RECEIVED:
            if kind in _VAD_KINDS:
                at = clock.to_t(None if missing(r["vad_ms"]) else float(r["vad_ms"]), at_t=t)
                vad_marks.append(VadMark(_VAD_KINDS[kind], t, t if at is None else at, int(r["seq"])))
            elif kind == CurrentAgentAction.TYPE and opt_str(r["action_type"]) == ACTION_TOO_LONG:
                action = json_value(r["action"])
                filler = action.get("filler") if isinstance(action, dict) else None
                announced = filler if isinstance(filler, str) else ""
            elif kind == NewMessage.TYPE:
                message_id = opt_str(r["message_id"]) or ""
                message = messages.get(message_id)
                if message is None:
                    message = messages[message_id] = AgentMessage(message_id)
                    if announced is not None:
                        message.filler_text, announced = announced or None, None
                message.pieces.append(r)
    return Extracted(log.others, texts, events, vad_marks, playback, list(messages.values()),
                     chunk_t=log.chunk_t, chunk_ms=log.chunk_ms)


def describe_error(rec: dict[str, Any]) -> str:
    """``"400: text must be non-empty"`` for a server.error row."""
    code = num(rec["http_error_code"])
    text = opt_str(rec["error_description"]) or opt_str(rec["text"]) or ""
    return f"{int(code)}: {text}" if not math.isnan(code) else text


# --- the one account: replaying the log through the protocol's interaction fold ----------------------------

@dataclass
class Replay:
    """A frame log replayed through :class:`~amigo_lab.protocol.fold.Fold`: the session's own account.

    ``interactions``: the final record of each interaction, in order; ``unanswered``: user inputs that never got
    one (still waiting at the end of the log, or dropped when the connection closed); ``events``: every fold
    event, oldest first; ``skipped``: rows whose frame could not be rebuilt (counted, never fatal); ``scan``:
    the log as the pass read it (its sent chunks' timing gives :func:`upload_pace` without another read).
    """

    interactions: list[FoldInteraction]
    unanswered: list[PendingInput]
    events: list[FoldEvent]
    skipped: int
    scan: Scan


def replay(frames: pd.DataFrame) -> Replay:
    """Feed a frame log, row by row in ``seq`` order, to the protocol's fold: the same account the session
    keeps live. One pass, constant work per row. Next: :func:`~amigo_lab.analysis.turns`."""
    log = scan(frames)
    fold = Fold()
    events: list[FoldEvent] = []
    skipped = 0
    for t, ms, rec in log.walk():
        if rec is None:
            # A sent chunk: the fold needs its time and duration only, so one shared frame serves every chunk.
            fold.feed(SENT, CHUNK_FRAME, t, audio_ms=ms)
        elif not feed_row(fold, rec):
            skipped += 1
        events.extend(fold.events_received())
    dropped = [e.input for e in events if isinstance(e, InputDropped)]
    unanswered = [i for i in (*dropped, *fold.pending_inputs()) if i.source != "event"]
    return Replay(fold.interactions(), unanswered, events, skipped, log)
