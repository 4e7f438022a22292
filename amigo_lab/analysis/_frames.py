"""Reading a frame-log DataFrame once, into the few things every analysis builds on.

A frame log (``session.frames``, ``load_session(path).frames``) has one row per frame or local event, on one
monotonic clock ``t`` (seconds since the log started). :func:`extract` walks it in ``seq`` order and returns:

- user **utterances**: a sent text, a push-to-talk audio message (chunks, then ``audio: null``), or a speech
  segment that the server's VAD reported (``vad-speech-started`` .. ``vad-speech-ended``);
- **interactions**: everything the server sent up to and including one ``server.interaction-complete`` (or
  up to a ``server.error`` that voided it), with the agent messages in it, answer and fillers told apart;
- the external events, VAD marks, playback reports, errors and closes, for timelines and tables.

The server's VAD reports ``audio_ms``, a position on the *user's audio clock* (ms of audio received on this
connection since VAD was switched on). :class:`AudioClock` maps it onto ``t``: the ``t`` of the sent chunk
that carried that position, plus the offset inside the chunk. For audio streamed in real time that equals
``t`` of the first sent chunk + ``audio_ms / 1000``; for faster-than-real-time uploads it stays at the moment
the server could have heard it (``session.audio_track`` lays such audio end to end instead).
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from amigo_lab.analysis.errors import AnalysisError
from amigo_lab.protocol import (
    ContinueConversation,
    Frame,
    FrameError,
    ConversationContinued,
    ConversationCreated,
    CurrentAgentAction,
    InteractionComplete,
    NewAudioMessage,
    NewMessage,
    NewTextMessage,
    ServerError,
    StartConversation,
    SwitchVadMode,
    UserMessageAvailable,
    VadSpeechEnded,
    VadSpeechResetZero,
    VadModeSwitched,
    VadSpeechStarted,
    from_dict,
    parse,
)
from amigo_lab.protocol.fold import Fold, FoldEvent, InputDropped, PendingInput
from amigo_lab.protocol.fold import Interaction as FoldInteraction
from amigo_lab.protocol.constants import (
    ACTION_TOO_LONG,
    MESSAGE_TYPE_EXTERNAL_EVENT,
    MESSAGE_TYPE_USER,
    SAMPLE_RATE,
    SAMPLE_WIDTH_BYTES,
)

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

#: The optional column with the verbatim wire text of each frame; frames are rebuilt from the others without it.
WIRE_COLUMN = "wire"
#: Columns read when present (older logs lack them).
OPTIONAL_COLUMNS = (WIRE_COLUMN, "sequence_number", "conversation_id")

_PCM_BYTES_PER_MS = SAMPLE_RATE * SAMPLE_WIDTH_BYTES / 1000


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
    return [dict(zip(names, values)) for values in zip(*columns)]


# --- scalar helpers: the log uses pandas' nullable dtypes, so a missing value may be NA, None or NaN ----------


def missing(value: Any) -> bool:
    """True for NA, None and NaN."""
    if value is None or value is pd.NA:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def num(value: Any) -> float:
    """The value as a float, NaN when missing."""
    return NAN if missing(value) else float(value)


def opt_str(value: Any) -> str | None:
    """The value as a str, None when missing."""
    return None if missing(value) else str(value)


def opt_bool(value: Any) -> bool | None:
    """The value as a bool, None when missing."""
    return None if missing(value) else bool(value)


def json_value(value: Any) -> Any:
    """Decode a JSON string column (``action``, ``alignment``, ``extra``); None when missing or not JSON."""
    text = opt_str(value)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def alignment_text(value: Any) -> str:
    """The characters of a ``transcript_alignment`` JSON string (``[[ms, char], ...]``), joined."""
    pairs = json_value(value)
    if not isinstance(pairs, list):
        return ""
    return "".join(str(p[1]) for p in pairs if isinstance(p, (list, tuple)) and len(p) == 2)


def frame_audio_ms(rec: dict[str, Any]) -> float:
    """Milliseconds of audio a frame carried: ``audio_ms``, else PCM16 bytes at 16 kHz, else 0."""
    ms = num(rec["audio_ms"])
    if not math.isnan(ms):
        return ms
    size = num(rec["audio_bytes"])
    return 0.0 if math.isnan(size) else size / _PCM_BYTES_PER_MS


def carries_audio(rec: dict[str, Any]) -> bool:
    """True when an entry carried audio bytes. The end of the user's audio (``audio: null``) has none."""
    return num(rec["audio_bytes"]) > 0


def is_frame(rec: dict[str, Any], direction: str, frame_type: str) -> bool:
    """True when the row is a ``frame_type`` entry going ``direction``."""
    return rec["direction"] == direction and rec["type"] == frame_type


# --- the user's audio clock -------------------------------------------------------------------------------


class AudioClock:
    """Maps a position on the user's audio clock to the log clock ``t``.

    The position counts ms of audio sent since the stream began: at ``connection.opened``, and again when
    the client switches VAD on (the server's detector starts afresh then; the emulator does exactly this).
    A position inside a sent chunk maps to that chunk's ``t`` plus the offset inside it; before the first
    chunk or after the last it extrapolates at real time. With no audio sent on the stream the position
    cannot be placed and maps to NaN.
    """

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self._opened: list[float] = [-math.inf]
        self._streams: list[tuple[list[float], list[float]]] = [([], [])]  # (chunk start positions, chunk t)
        position = 0.0
        for rec in rows:
            if is_frame(rec, LOCAL, CONNECTION_OPENED) or (
                    is_frame(rec, SENT, SwitchVadMode.TYPE) and opt_bool(rec["vad_mode_on"])):
                self._opened.append(float(rec["t"]))
                self._streams.append(([], []))
                position = 0.0
            elif is_frame(rec, SENT, NewAudioMessage.TYPE) and carries_audio(rec):
                starts, times = self._streams[-1]
                starts.append(position)
                times.append(float(rec["t"]))
                position += frame_audio_ms(rec)

    def to_t(self, audio_ms: float, *, at_t: float) -> float:
        """Log time of position ``audio_ms`` in the stream that had begun by ``at_t``, the time the position
        was reported; never later than that (a server may pad the stream with silence of its own)."""
        if math.isnan(audio_ms):
            return NAN
        starts, times = self._streams[bisect_right(self._opened, at_t) - 1]
        if not starts:
            return NAN
        i = min(max(bisect_right(starts, audio_ms) - 1, 0), len(starts) - 1)
        return min(times[i] + (audio_ms - starts[i]) / 1000.0, at_t)


# --- what one pass over the log extracts ------------------------------------------------------------------


@dataclass(eq=False)  # compared by identity: each is one thing that happened
class Utterance:
    """One user turn as the client sent it and the server's VAD heard it.

    ``kind``: ``"text"`` (a sent user text), ``"audio"`` (push-to-talk: chunks then ``audio: null``) or
    ``"voice"`` (a segment of the server's VAD). Times are on the log clock; NaN when not known.
    """

    kind: str
    seq: int
    start_t: float = NAN
    vad_start_t: float = NAN
    vad_end_t: float = NAN
    audio_end_t: float = NAN
    text_t: float = NAN
    text: str | None = None

    @property
    def end_t(self) -> float:
        """The user's end of turn: the sent text, else the earlier of the VAD end and the client's audio end."""
        if not math.isnan(self.text_t):
            return self.text_t
        ends = [x for x in (self.vad_end_t, self.audio_end_t) if not math.isnan(x)]
        return min(ends) if ends else NAN


@dataclass(eq=False)  # compared by identity: each is one thing that happened
class AgentMessage:
    """The pieces of one agent message (one ``message_id``) as received."""

    message_id: str
    interaction: int
    pieces: list[dict[str, Any]] = field(default_factory=list)
    is_filler: bool = False
    filler_text: str | None = None  # the text the action-too-long action announced

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
        return sum(frame_audio_ms(p) for p in self.pieces)

    @property
    def has_audio(self) -> bool:
        """True when any piece carried audio."""
        return any(carries_audio(p) for p in self.pieces)

    @property
    def text(self) -> str:
        """Text pieces joined, or for audio the characters of the transcript alignments."""
        parts = [opt_str(p["text"]) or alignment_text(p["alignment"]) for p in self.pieces]
        return "".join(parts)

    def first_t_where(self, predicate) -> float:
        """``t`` of the first piece for which ``predicate(piece)`` holds, NaN if none."""
        return next((float(p["t"]) for p in self.pieces if predicate(p)), NAN)

    @property
    def end_t(self) -> float:
        """When the agent stopped speaking, estimated: playback starts at the first piece and runs gap-free,
        so the end is the later of the last piece and first piece + audio duration."""
        return max(self.last_t, self.first_t + self.audio_ms / 1000.0)

    @property
    def stopped(self) -> bool:
        """True when the last piece received has ``stop`` true."""
        return bool(opt_bool(self.pieces[-1]["stop"]))


def piece_has_text(piece: dict[str, Any]) -> bool:
    """True when a piece carries text: a text piece, or audio with a non-empty transcript alignment."""
    return bool(opt_str(piece["text"]) or alignment_text(piece["alignment"]))


@dataclass(eq=False)  # compared by identity: each is one thing that happened
class Interaction:
    """What the server sent for one interaction, closed by ``interaction-complete`` or a voiding error."""

    index: int
    uma: dict[str, Any] | None = None
    messages: dict[str, AgentMessage] = field(default_factory=dict)
    complete: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    first_t: float = NAN
    after_start: bool = False  # first interaction after conversation-created/continued

    @property
    def answer(self) -> AgentMessage | None:
        """The answer message (the one interaction-complete names, else the last non-filler one)."""
        if self.complete is not None:
            return self.messages.get(opt_str(self.complete["message_id"]) or "")
        answers = [m for m in self.messages.values() if not m.is_filler]
        return answers[-1] if answers else None

    @property
    def fillers(self) -> list[AgentMessage]:
        """The filler messages, in arrival order."""
        return [m for m in self.messages.values() if m.is_filler]

    @property
    def anchor_t(self) -> float:
        """When the server began this interaction: its user-message-available, else its first frame."""
        return float(self.uma["t"]) if self.uma is not None else self.first_t

    @property
    def end_t(self) -> float:
        """``t`` of interaction-complete, else of the voiding error, else of the last frame seen."""
        for rec in (self.complete, self.error):
            if rec is not None:
                return float(rec["t"])
        ends = [m.last_t for m in self.messages.values()]
        return max(ends) if ends else self.first_t

    def is_empty(self) -> bool:
        """True when nothing of an interaction arrived yet."""
        return self.uma is None and not self.messages and self.complete is None and self.error is None


@dataclass
class VadMark:
    """One server VAD frame: ``kind`` started/ended/reset, received at ``t``, placed at ``audio_t``."""

    kind: str
    t: float
    audio_t: float
    seq: int


@dataclass
class Extracted:
    """Everything :func:`extract` reads out of a frame log."""

    rows: list[dict[str, Any]]
    utterances: list[Utterance]
    interactions: list[Interaction]
    events: list[dict[str, Any]]  # sent external events
    vad_marks: list[VadMark]
    playback: dict[str, list[dict[str, Any]]]  # message_id -> playback.* entries
    stray_errors: list[dict[str, Any]]  # server.error rows outside any interaction
    start_t: float  # sent start/continue-conversation, NaN if none

    def messages(self) -> list[AgentMessage]:
        """Every agent message, in arrival order."""
        return [m for i in self.interactions for m in i.messages.values()]


_VAD_KINDS = {VadSpeechStarted.TYPE: "started", VadSpeechEnded.TYPE: "ended", VadSpeechResetZero.TYPE: "reset"}


def extract(frames: pd.DataFrame) -> Extracted:
    """Read a frame log once: utterances, interactions, events, VAD marks, playback reports."""
    rows = records(check_frames(frames))
    clock = AudioClock(rows)
    utterances = _utterances(rows, clock)
    interactions = _interactions(rows)
    vad_marks = []
    for r in rows:
        if r["direction"] == RECEIVED and r["type"] in _VAD_KINDS:
            t = float(r["t"])
            at = clock.to_t(num(r["vad_ms"]), at_t=t)
            # With no audio sent on that stream the position cannot be placed: the receipt is the best we know.
            vad_marks.append(VadMark(_VAD_KINDS[r["type"]], t, t if math.isnan(at) else at, int(r["seq"])))
    events = [r for r in rows if is_frame(r, SENT, NewTextMessage.TYPE)
              and opt_str(r["message_type"]) == MESSAGE_TYPE_EXTERNAL_EVENT]
    playback: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["direction"] == LOCAL and r["type"] in PLAYBACK_TYPES and opt_str(r["message_id"]):
            playback.setdefault(str(r["message_id"]), []).append(r)
    starts = [float(r["t"]) for r in rows if r["direction"] == SENT
              and r["type"] in (StartConversation.TYPE, ContinueConversation.TYPE)]
    return Extracted(rows, utterances, interactions, events, vad_marks, playback, _stray_errors(rows, interactions),
                     starts[0] if starts else NAN)


def _utterances(rows: list[dict[str, Any]], clock: AudioClock) -> list[Utterance]:
    """User turns in order of their start: sent texts, push-to-talk messages and server VAD segments."""
    found: list[Utterance] = []
    ptt: Utterance | None = None  # push-to-talk message being sent (chunks so far, no null yet)
    ptt_voiced: list[Utterance] = []  # VAD segments that started while ptt was being sent
    vad_open: Utterance | None = None
    vad_on = False  # with VAD on, the end of the audio is only the end of the stream, not a turn
    for rec in rows:
        t, kind, direction = float(rec["t"]), rec["type"], rec["direction"]
        if direction == SENT and kind == SwitchVadMode.TYPE:
            vad_on = bool(opt_bool(rec["vad_mode_on"]))
        elif direction == SENT and kind == NewTextMessage.TYPE:
            if (opt_str(rec["message_type"]) or MESSAGE_TYPE_USER) == MESSAGE_TYPE_USER:
                found.append(Utterance("text", int(rec["seq"]), start_t=t, text_t=t, text=opt_str(rec["text"])))
        elif direction == SENT and kind == NewAudioMessage.TYPE:
            if carries_audio(rec):
                if ptt is None:
                    ptt, ptt_voiced = Utterance("audio", int(rec["seq"]), start_t=t), []
            elif ptt is not None:
                # The client ended its audio. If the server's VAD cut it into segments, those are the turns and
                # the end of audio belongs to the last of them; otherwise the whole message is one turn.
                if ptt_voiced:
                    ptt_voiced[-1].audio_end_t = t
                elif not vad_on:
                    ptt.audio_end_t = t
                    found.append(ptt)
                ptt, ptt_voiced = None, []
        elif direction == LOCAL and kind == CONNECTION_OPENED:
            ptt, ptt_voiced, vad_open, vad_on = None, [], None, False
        elif direction == RECEIVED and kind in _VAD_KINDS:
            at = clock.to_t(num(rec["vad_ms"]), at_t=t)
            at = t if math.isnan(at) else at
            if kind == VadSpeechStarted.TYPE:
                vad_open = Utterance("voice", int(rec["seq"]), start_t=at, vad_start_t=at)
                found.append(vad_open)
                if ptt is not None:
                    ptt_voiced.append(vad_open)
            elif kind == VadSpeechEnded.TYPE:
                if vad_open is None:  # the start was before the log began
                    vad_open = Utterance("voice", int(rec["seq"]))
                    found.append(vad_open)
                vad_open.vad_end_t = at
                vad_open = None
            elif vad_open is not None:  # reset-zero: too short to be a turn, discarded by the server
                found.remove(vad_open)
                if vad_open in ptt_voiced:
                    ptt_voiced.remove(vad_open)
                vad_open = None
    return [u for u in found if not math.isnan(u.end_t)]


def _interactions(rows: list[dict[str, Any]]) -> list[Interaction]:
    """Split what the server sent into interactions, telling answer messages from fillers."""
    done: list[Interaction] = []
    after_start = False
    current = Interaction(0)
    filler_pending: str | None = None  # text of an action-too-long whose filler message has not begun yet

    def close() -> Interaction:
        nonlocal current, after_start
        answer_id = opt_str(current.complete["message_id"]) if current.complete is not None else None
        if answer_id is not None:
            for message in current.messages.values():
                message.is_filler = message.message_id != answer_id
        done.append(current)
        current = Interaction(len(done))
        return done[-1]

    for rec in rows:
        if rec["direction"] != RECEIVED:
            continue
        t, kind = float(rec["t"]), rec["type"]
        if kind in (ConversationCreated.TYPE, ConversationContinued.TYPE):
            after_start = True
            continue
        if kind not in (UserMessageAvailable.TYPE, CurrentAgentAction.TYPE, NewMessage.TYPE,
                        InteractionComplete.TYPE, ServerError.TYPE):
            continue
        if kind == ServerError.TYPE:
            # An error before interaction-complete voids the interaction, except a 400: that answers one bad
            # frame and the conversation goes on (protocol.md §5). Those and errors between interactions are
            # "stray"; turns() gives them to the user turn they refused.
            if not current.is_empty() and num(rec["http_error_code"]) != _BAD_FRAME_CODE:
                current.error = rec
                close()
            continue
        if current.is_empty():
            current.first_t, current.after_start, after_start = t, after_start, False
        if kind == UserMessageAvailable.TYPE:
            if current.uma is not None:  # a second user message: the first interaction never completed
                close()
                current.first_t = t
            current.uma = rec
        elif kind == CurrentAgentAction.TYPE:
            if opt_str(rec["action_type"]) == ACTION_TOO_LONG:
                action = json_value(rec["action"])
                filler = action.get("filler") if isinstance(action, dict) else None
                filler_pending = filler if isinstance(filler, str) else ""
        elif kind == NewMessage.TYPE:
            message_id = opt_str(rec["message_id"]) or ""
            message = current.messages.get(message_id)
            if message is None:
                message = current.messages[message_id] = AgentMessage(message_id, current.index)
                if filler_pending is not None:
                    message.is_filler, message.filler_text, filler_pending = True, filler_pending or None, None
            message.pieces.append(rec)
        else:  # interaction-complete
            current.complete = rec
            close()
    if not current.is_empty():
        close()
    return done


_BAD_FRAME_CODE = 400


def _stray_errors(rows: list[dict[str, Any]], interactions: list[Interaction]) -> list[dict[str, Any]]:
    """The server.error rows outside any interaction (a bad frame, or a user turn refused before it began)."""
    inside = {int(i.error["seq"]) for i in interactions if i.error is not None}
    return [r for r in rows if is_frame(r, RECEIVED, ServerError.TYPE) and int(r["seq"]) not in inside]


def describe_error(rec: dict[str, Any]) -> str:
    """``"400: text must be non-empty"`` for a server.error row."""
    code = num(rec["http_error_code"])
    text = opt_str(rec["error_description"]) or opt_str(rec["text"]) or ""
    return f"{int(code)}: {text}" if not math.isnan(code) else text


# --- the one account: replaying the log through the protocol's interaction fold ----------------------------

# Rows of these types carry nothing the fold reads beyond their type; one shared frame each (frames are values).
_CHUNK = NewAudioMessage(audio="")
_AUDIO_END = NewAudioMessage(audio=None)
_START = StartConversation(service_id="0" * 24)
_FOLDED_LOCAL = (CONNECTION_OPENED, CONNECTION_CLOSED, *PLAYBACK_TYPES, "user.speech-ended")


@dataclass
class Replay:
    """A frame log replayed through :class:`~amigo_lab.protocol.fold.Fold`: the session's own account.

    ``interactions``: the final record of each interaction, in order; ``unanswered``: user inputs that never got
    one (still waiting at the end of the log, or dropped when the connection closed); ``events``: every fold
    event, oldest first; ``skipped``: rows whose frame could not be rebuilt (counted, never fatal).
    """

    rows: list[dict[str, Any]]
    interactions: list[FoldInteraction]
    unanswered: list[PendingInput]
    events: list[FoldEvent]
    skipped: int


def _rebuild(rec: dict[str, Any]) -> Frame | None:
    """The frame of a log row: parsed from ``wire`` when present, else rebuilt from the columns."""
    direction, kind = rec["direction"], rec["type"]
    if kind == NewAudioMessage.TYPE:
        return _CHUNK if carries_audio(rec) else _AUDIO_END  # audio itself is not needed, its duration is
    wire = opt_str(rec.get(WIRE_COLUMN))
    if wire is not None:
        try:
            return parse(wire)
        except FrameError:
            pass  # fall back to the columns, which the log wrote from the frame it had
    if direction == SENT and kind == StartConversation.TYPE:
        return _START
    obj: dict[str, Any] = {"type": kind}
    if direction == SENT:
        if kind == ContinueConversation.TYPE:
            obj["conversation_id"] = opt_str(rec.get("conversation_id")) or "unknown"
        elif kind == NewTextMessage.TYPE:
            obj.update(text=opt_str(rec["text"]) or "?", message_type=opt_str(rec["message_type"]) or MESSAGE_TYPE_USER)
        elif kind == SwitchVadMode.TYPE:
            obj["vad_mode_on"] = bool(opt_bool(rec["vad_mode_on"]))
    elif kind == UserMessageAvailable.TYPE:
        obj.update(message_id=opt_str(rec["message_id"]), user_message=opt_str(rec["text"]))
    elif kind == CurrentAgentAction.TYPE:
        obj["action"] = json_value(rec["action"]) or opt_str(rec["action_type"])
    elif kind == NewMessage.TYPE:
        obj.update(message="" if not missing(rec["audio_bytes"]) else opt_str(rec["text"]) or "",
                   stop=opt_bool(rec["stop"]), message_id=opt_str(rec["message_id"]),
                   sequence_number=None if missing(rec["sequence_number"]) else int(rec["sequence_number"]),
                   transcript_alignment=json_value(rec["alignment"]))
    elif kind == InteractionComplete.TYPE:
        obj.update(message_id=opt_str(rec["message_id"]), interaction_id=opt_str(rec["interaction_id"]),
                   full_message=opt_str(rec["text"]), conversation_completed=opt_bool(rec["conversation_completed"]))
    elif kind in _VAD_KINDS:
        obj["audio_ms"] = None if missing(rec["vad_ms"]) else float(rec["vad_ms"])
    elif kind == ServerError.TYPE:
        obj.update(http_error_code=None if missing(rec["http_error_code"]) else int(rec["http_error_code"]),
                   error_description=opt_str(rec["error_description"]) or opt_str(rec["text"]))
    elif kind == VadModeSwitched.TYPE:
        obj["vad_mode_on"] = opt_bool(rec["vad_mode_on"])
    elif kind == ConversationCreated.TYPE or kind == ConversationContinued.TYPE:
        obj["conversation_id"] = opt_str(rec.get("conversation_id"))
    return from_dict({k: v for k, v in obj.items() if v is not None})


def replay(frames: pd.DataFrame) -> Replay:
    """Feed a frame log, row by row in ``seq`` order, to the protocol's fold: the same account the session
    keeps live. One pass, constant work per row. Next: :func:`~amigo_lab.analysis.turns`."""
    rows = records(check_frames(frames))
    fold = Fold()
    events: list[FoldEvent] = []
    skipped = 0
    for rec in rows:
        direction, kind, t = rec["direction"], rec["type"], float(rec["t"])
        if direction == LOCAL:
            if kind in _FOLDED_LOCAL:
                fold.feed_local(kind, t, close_code=None if missing(rec["close_code"]) else int(rec["close_code"]),
                                close_reason=opt_str(rec["close_reason"]) or "",
                                message_id=opt_str(rec["message_id"]),
                                played_ms=None if missing(rec["played_ms"]) else float(rec["played_ms"]))
                events.extend(fold.events_received())
            continue
        if direction not in (SENT, RECEIVED):
            continue
        try:
            frame = _rebuild(rec)
        except (FrameError, TypeError, ValueError):
            skipped += 1
            continue
        if frame is None:
            continue
        audio_ms = None
        if kind in (NewAudioMessage.TYPE, NewMessage.TYPE) and not missing(rec["audio_bytes"]):
            audio_ms = frame_audio_ms(rec)
        fold.feed(direction, frame, t, audio_ms=audio_ms)
        events.extend(fold.events_received())
    dropped = [e.input for e in events if isinstance(e, InputDropped)]
    unanswered = [i for i in (*dropped, *fold.pending_inputs()) if i.source != "event"]
    return Replay(rows, fold.interactions(), unanswered, events, skipped)
