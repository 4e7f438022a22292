"""The interaction fold: one account of the conversation, from frames to typed events, sans-I/O.

The session (live Turns, ``Reply.timings``), the panel and the analysis (replaying a saved log) all read
interactions and latencies from here, so they cannot disagree. Feed every frame sent and received, and the
local log entries, in the order they happened; drain the events::

    fold = Fold(response_format="voice")
    fold.feed("sent", frame, t, key="turn-1")      # key: the feeder's name for a user input (optional)
    fold.feed("received", frame, t, audio_ms=160)  # audio_ms: duration of a piece or chunk, when known
    fold.feed_local("connection.closed", t, close_code=1006)
    for event in fold.events_received():
        ...

``t`` is seconds on one monotonic clock (the frame log's ``t``). Nothing here blocks, reads a clock or
raises on odd input: what breaks a rule becomes a :class:`Violation` event.

Rules (each stated once)
------------------------
1. **Inputs.** A user input ends when the client sends a text (source ``text``); when it sends ``audio: null``
   after push-to-talk chunks (``push-to-talk``); when the server reports ``vad-speech-ended`` (``vad``). A sent
   external event is an input of source ``event``. Each ending emits :class:`UserTurnEnded`.
2. **User end of speech.** For a text, the send. For VAD audio, the audio-clock position of
   ``vad-speech-ended.audio_ms`` mapped to ``t``: the ``t`` of the sent chunk carrying that position plus the
   offset inside it, never later than the report. For push-to-talk, the earlier of that (when the server's
   VAD reported during it) and the ``audio: null`` send. A ``user.speech-ended`` hint from the client counts
   when earlier. The audio clock restarts at ``connection.opened`` and when the client switches VAD on.
   If the server's VAD segments a push-to-talk stream, the segments are the inputs and ``audio: null`` only
   ends the last of them.
3. **Interactions.** One is in flight at a time (protocol.md §2). ``conversation-created`` opens the greeting,
   whose user end is the sent ``start-conversation``. An ending user input opens the next interaction at once
   when none is in flight, else waits its turn; external events wait and ride with the next interaction (an
   interaction with events only opens when the server begins it). Whatever the server sends for an
   interaction before ``user-message-available`` (actions, pieces) belongs to the interaction in flight: the
   waiting user turn (order-robust). Server output with no interaction in flight opens one: for speech the
   server's VAD began but never reported ended (kind ``voice``, its end unknown), for waiting events
   (``event``), else unprompted (``agent``).
4. **No greeting.** When the server begins the first user interaction (``user-message-available``) while the
   greeting has received nothing, the greeting completes empty (reported) and the waiting input's interaction
   opens. A user input that ends while the greeting is in flight waits behind it like any other.
5. **Messages pair by ``message_id``**: a piece belongs to the interaction where its message began, even when
   another interaction is in flight (a piece without a ``message_id`` belongs to the interaction in flight).
   The answer is the message ``interaction-complete`` names; every other message is a **filler**. Before the
   complete, a message that begins after an ``action-too-long`` is taken as a filler, any other as the answer
   (:class:`AgentPiece` ``role`` is that provisional judgement; the record is final).
6. **Errors.** A 400 voids nothing (protocol.md §5: one bad frame never costs the conversation), except that a
   400 arriving before the server sent anything for a waiting text, push-to-talk or event input refuses that
   input (voided, reason ``refused``). Any other ``server.error`` before ``interaction-complete`` voids the
   interaction in flight (reason ``error``); frames the server still sends for it attach to it, reported.
7. **Skipped turns.** A ``user-message-available`` that repeats the text of a waiting text input (case,
   punctuation and spacing aside), while the interaction in flight is a text input with other text and nothing
   from the server, means the server skipped the ones before: they are voided (reason ``skipped``).
8. **Every interaction ends**: completed by ``interaction-complete``; voided by an error or refusal; completed
   without its ``interaction-complete`` when the server begins the next one (a ``user-message-available`` for a
   new message after one was seen, or after greeting output; reported); or, on ``connection.closed``, voided
   (reason ``closed``) with the close named. Inputs still waiting at the close are dropped
   (:class:`InputDropped`). An interaction stays open only while the socket is open.
9. **Barge-in**: ``vad-speech-started`` while an interaction is in flight and has received agent pieces, or a
   client ``playback.flushed`` of one of its messages (also after completion: the user spoke over audio still
   playing).
10. **Heard.** ``playback.*`` entries (``message_id``, ``played_ms``) tell what the player played: the first
    audio heard is the earliest ``t - played_ms``; ``heard_ms`` is the answer's largest ``played_ms``.
    Without reports: all of the answer's audio, or, if interrupted, what arrived before the barge-in capped at
    the time since its first audio. Facts that arrive after completion update the record
    (:class:`InteractionUpdated`).
11. **Latencies** are named in :data:`LATENCIES`, each with its origin, its target and its definition.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from amigo_lab.protocol.codes import describe_close
from amigo_lab.protocol.constants import (
    ACTION_TOO_LONG,
    MESSAGE_TYPE_EXTERNAL_EVENT,
    SAMPLE_RATE,
    SAMPLE_WIDTH_BYTES,
)
from amigo_lab.protocol.frames import (
    ContinueConversation,
    ConversationCreated,
    CurrentAgentAction,
    Frame,
    InteractionComplete,
    NewAudioMessage,
    NewMessage,
    NewTextMessage,
    ServerError,
    StartConversation,
    SwitchVadMode,
    UserMessageAvailable,
    VadModeSwitched,
    VadSpeechEnded,
    VadSpeechResetZero,
    VadSpeechStarted,
)

SENT, RECEIVED = "sent", "received"

#: ``name -> (origin stamp, target stamp, definition)``; each latency is ``(target - origin)`` in ms, None when
#: either stamp is missing. Every latency shown to a user carries one of these names.
LATENCIES: dict[str, tuple[str, str, str]] = {
    "latency_first_text_ms": (
        "user_end", "first_text",
        "from the user's end of speech (or the sent text) to the first agent piece carrying text, filler or answer"),
    "latency_first_audio_ms": (
        "user_end", "first_audio",
        "from the user's end of speech (or the sent text) to the first agent audio piece, filler or answer"),
    "latency_first_answer_audio_ms": (
        "user_end", "first_answer_audio",
        "from the user's end of speech (or the sent text) to the first audio piece of the answer, fillers excluded"),
    "latency_first_heard_ms": (
        "user_end", "first_heard",
        "from the user's end of speech (or the sent text) to when the player began playing the first agent audio"),
    "latency_complete_ms": (
        "user_end", "complete",
        "from the user's end of speech (or the sent text) to server.interaction-complete"),
    "vad_latency_first_text_ms": (
        "vad_end", "first_text",
        "from the arrival of server.vad-speech-ended to the first agent piece carrying text"),
    "vad_latency_first_audio_ms": (
        "vad_end", "first_audio",
        "from the arrival of server.vad-speech-ended to the first agent audio piece, filler or answer"),
    "vad_latency_first_answer_audio_ms": (
        "vad_end", "first_answer_audio",
        "from the arrival of server.vad-speech-ended to the first audio piece of the answer"),
}

#: Every stamp of an :class:`Interaction` (seconds on the feeder's clock, None = did not happen).
STAMPS = (
    "user_start",          # the user's input began: text sent, first chunk, VAD speech start (mapped)
    "user_end",            # the user's actual end of speech, or the sent text (rule 2); greeting: the start sent
    "speech_start",        # vad-speech-started, mapped onto t
    "speech_end",          # vad-speech-ended, mapped onto t
    "vad_end",             # arrival of vad-speech-ended
    "audio_end",           # audio: null sent
    "first_text",          # first agent piece carrying text (filler or answer)
    "first_answer_text",   # first piece of the answer carrying text
    "first_audio",         # first agent audio piece (filler or answer)
    "first_answer_audio",  # first audio piece of the answer
    "first_heard",         # the player began playing the first agent audio
    "complete",            # server.interaction-complete
    "barge_in",            # the user spoke over the agent (rule 9)
    "end",                 # when the interaction ended (completed or voided)
)

#: Kinds of interaction, from the input that opened it.
KINDS = ("greeting", "text", "event", "push-to-talk", "voice", "agent")
_KIND_OF_SOURCE = {"text": "text", "event": "event", "push-to-talk": "push-to-talk", "vad": "voice"}

# Bounds that keep memory flat over long sessions: interactions still updatable after completion, message
# ids remembered for pairing, audio chunks kept for the audio clock.
_UPDATABLE = 64
_MESSAGE_IDS = 4096
_CLOCK_CHUNKS = 65536
_PCM_BYTES_PER_MS = SAMPLE_RATE * SAMPLE_WIDTH_BYTES / 1000


def latency_definition(name: str) -> str:
    """The one-line definition of a latency of :data:`LATENCIES` (e.g. ``"latency_first_audio_ms"``).

    Next: show it next to the number (a tooltip, a column header) so the reader knows which latency it is.
    """
    try:
        return LATENCIES[name][2]
    except KeyError:
        raise KeyError(f"{name!r} is not a latency; use one of {list(LATENCIES)}") from None


# --- events ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserTurnEnded:
    """A user input ended (rule 1). ``speech_end_t``: the user's actual end of speech (rule 2), None if unknown."""

    key: str
    source: str
    t: float
    speech_end_t: float | None


@dataclass(frozen=True)
class InteractionStarted:
    """Interaction ``index`` is in flight, for the inputs ``keys`` (events first, then the user's input)."""

    index: int
    keys: tuple[str, ...]
    kind: str
    t: float


@dataclass(frozen=True)
class AgentPiece:
    """A ``server.new-message`` piece of interaction ``index``; ``role`` ``"filler"`` or ``"answer"`` (rule 5)."""

    index: int
    message_id: str
    role: str
    sequence_number: int | None
    has_audio: bool
    t: float


@dataclass(frozen=True)
class BargeIn:
    """The user spoke over the agent in interaction ``index``; ``source`` ``"vad"`` or ``"playback"``."""

    index: int
    t: float
    source: str


@dataclass(frozen=True)
class SpeechDiscarded:
    """``vad-speech-reset-zero``: the speech was too short to be a turn (a cough, a click)."""

    t: float
    audio_ms: float | None


@dataclass(frozen=True)
class InteractionCompleted:
    """Interaction ``index`` ended well; ``record`` holds everything known about it."""

    index: int
    keys: tuple[str, ...]
    record: Interaction
    t: float


@dataclass(frozen=True)
class InteractionVoided:
    """Interaction ``index`` ended without an answer. ``reason``: ``error``, ``refused``, ``skipped``, ``closed``."""

    index: int
    keys: tuple[str, ...]
    http_error_code: int | None
    description: str
    t: float
    reason: str
    record: Interaction


@dataclass(frozen=True)
class InteractionUpdated:
    """A fact that arrived after interaction ``index`` ended (first heard, a flush): its new ``record``."""

    index: int
    record: Interaction
    t: float


@dataclass(frozen=True)
class ErrorReceived:
    """A ``server.error``; ``index`` is the interaction in flight (None: none), ``voids`` whether it ended it."""

    t: float
    index: int | None
    http_error_code: int | None
    description: str
    voids: bool


@dataclass(frozen=True)
class PendingInput:
    """A user input that has no interaction (yet): waiting for one, or dropped. Times None when unknown."""

    key: str
    source: str
    start_t: float | None
    end_t: float | None
    text: str | None


@dataclass(frozen=True)
class InputDropped:
    """A user input that never got an interaction: the connection closed, or VAD was switched, first."""

    key: str
    description: str
    t: float
    input: PendingInput


@dataclass(frozen=True)
class Violation:
    """Something out of order (never withheld: the frame was still folded as well as it could be)."""

    t: float
    description: str


FoldEvent = (UserTurnEnded | InteractionStarted | AgentPiece | BargeIn | SpeechDiscarded | InteractionCompleted
             | InteractionVoided | InteractionUpdated | ErrorReceived | InputDropped | Violation)


@dataclass(frozen=True)
class Interaction:
    """Everything known about one interaction. ``status``: ``open``, ``completed`` or ``voided``.

    ``stamps`` maps each name of :data:`STAMPS` to a time or None; ``latencies`` each name of
    :data:`LATENCIES` to ms or None.
    """

    index: int
    kind: str
    keys: tuple[str, ...]
    status: str
    started_t: float
    user_text: str | None
    sent_text: str | None
    event_texts: tuple[str, ...]
    user_message_id: str | None
    interaction_id: str | None
    reply_text: str | None
    answer_message_id: str | None
    filler_message_ids: tuple[str, ...]
    filler_text: str | None
    actions: tuple[Mapping[str, Any], ...]
    interrupted: bool
    conversation_completed: bool
    reply_audio_ms: float | None
    heard_ms: float | None
    heard_source: str | None
    http_error_code: int | None
    error: str | None
    stamps: Mapping[str, float | None]
    latencies: Mapping[str, float | None]


# --- internal builders ------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Input:
    key: str | None
    source: str
    start: float | None = None
    end: float | None = None
    speech_start: float | None = None
    speech_end: float | None = None
    vad_end: float | None = None
    audio_end: float | None = None
    hint: float | None = None
    text: str | None = None
    segmented: bool = False  # push-to-talk whose audio the server's VAD cut into segments
    end_ms: float | None = None  # vad-speech-ended's position on the audio clock
    end_stream: int = -1  # which stream of the audio clock that position is on (AudioClock.stream)
    last_segment: _Input | None = None
    owner: _Open | None = None  # the interaction it went to

    def user_end(self) -> float | None:
        ends = [x for x in (self.speech_end, self.audio_end, self.hint) if x is not None]
        if self.source in ("text", "event"):
            return self.end
        return min(ends) if ends else self.end


@dataclass(eq=False)
class _Message:
    message_id: str
    filler: bool
    first_t: float
    texts: list[str] = field(default_factory=list)
    audio: list[tuple[float, float]] = field(default_factory=list)  # (t, ms) of each audio piece
    has_audio: bool = False
    first_text: float | None = None
    first_audio: float | None = None
    played_ms: float | None = None
    heard: float | None = None


@dataclass(eq=False)
class _Open:
    index: int
    kind: str
    keys: tuple[str, ...]
    started: float
    user: _Input | None
    events: tuple[_Input, ...]
    user_end: float | None
    status: str = "open"
    uma_id: str | None = None
    uma_text: str | None = None
    got_server: bool = False
    messages: OrderedDict[str, _Message] = field(default_factory=OrderedDict)
    actions: list[Mapping[str, Any]] = field(default_factory=list)
    filler_texts: list[str] = field(default_factory=list)
    filler_next: bool = False
    first_text: float | None = None
    first_audio: float | None = None
    barge_in: float | None = None
    complete: InteractionComplete | None = None
    complete_t: float | None = None
    end_t: float | None = None
    error_code: int | None = None
    error: str | None = None


class AudioClock:
    """Positions on the user's audio clock (ms of audio sent since the stream began) -> log ``t`` (rule 2).

    :meth:`add` each sent chunk, :meth:`restart` when the stream begins afresh (a new connection, VAD switched
    on), :meth:`to_t` a position the server reported, :meth:`forget_before` positions no longer asked for.
    Memory stays flat on long streams: the fold forgets the chunks before each completed VAD turn's end.
    """

    def __init__(self) -> None:
        self._starts: list[float] = []
        self._times: list[float] = []
        self._position = 0.0
        self.stream = 0  # counts restarts, so a position is never applied to a later stream

    def restart(self) -> None:
        """The stream begins again at position 0."""
        self.stream += 1
        self._starts.clear()
        self._times.clear()
        self._position = 0.0

    def add(self, ms: float, t: float) -> None:
        """A chunk of ``ms`` milliseconds was sent at ``t``."""
        if len(self._starts) >= _CLOCK_CHUNKS:
            # Positions far behind the stream are no longer asked for; keep the recent half.
            del self._starts[: _CLOCK_CHUNKS // 2]
            del self._times[: _CLOCK_CHUNKS // 2]
        self._starts.append(self._position)
        self._times.append(t)
        self._position += ms

    def __len__(self) -> int:
        """How many chunks are kept."""
        return len(self._starts)

    def forget_before(self, audio_ms: float) -> None:
        """Drop the chunks that end at or before position ``audio_ms`` (the chunk holding it stays)."""
        i = bisect_right(self._starts, audio_ms) - 1
        if i > 0:
            del self._starts[:i]
            del self._times[:i]

    def to_t(self, audio_ms: float | None, *, at_t: float) -> float | None:
        """``t`` of position ``audio_ms`` reported at ``at_t`` (never later); None without a position or audio."""
        if audio_ms is None or not self._starts:
            return None
        i = min(max(bisect_right(self._starts, audio_ms) - 1, 0), len(self._starts) - 1)
        return min(self._times[i] + (audio_ms - self._starts[i]) / 1000.0, at_t)


def _pending(item: _Input) -> PendingInput:
    return PendingInput(str(item.key), item.source, item.start, item.user_end(), item.text)


def _pcm_ms(b64: str) -> float:
    """Milliseconds of PCM16 16 kHz in a base64 string, from its length alone (no decoding)."""
    size = len(b64) * 3 // 4 - (2 if b64.endswith("==") else 1 if b64.endswith("=") else 0)
    return max(size, 0) / _PCM_BYTES_PER_MS


def _ms(origin: float | None, target: float | None) -> float | None:
    if origin is None or target is None:
        return None
    return round((target - origin) * 1000.0, 3)


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _norm(text: str | None) -> str:
    """Text as a server may echo it: case, punctuation and spacing do not count."""
    kept = "".join(c if c.isalnum() else " " for c in (text or "").casefold())
    return " ".join(kept.split())


class Fold:
    """The interaction fold (see the module docstring for its rules). Feed it, then drain its events.

    ``response_format`` (``"text"`` or ``"voice"``) tells how to read agent pieces when the feeder does not
    pass ``audio_ms``; ``audio_format`` ``"pcm"`` lets the fold derive durations from the base64 length.
    ``history`` bounds how many ended interactions :meth:`interactions` keeps (None: all, as a replay wants;
    a live session that keeps its own records may pass a small number so memory stays flat).
    """

    def __init__(self, *, response_format: str | None = None, audio_format: str | None = "pcm",
                 history: int | None = None) -> None:
        if history is not None and history < 0:
            raise ValueError(f"history must be None or a count >= 0, got {history}")
        self._history = history
        self._voice = response_format == "voice"
        self._pcm = audio_format in (None, "pcm")
        self._out: list[FoldEvent] = []
        self._index = 0
        self._made = 0
        self._open: _Open | None = None
        self._tail: _Open | None = None
        self._queue: deque[_Input] = deque()
        self._events: list[_Input] = []
        self._start_t: float | None = None
        self._vad_on = False
        self._clock = AudioClock()
        self._ptt: _Input | None = None
        self._segment: _Input | None = None
        self._audio_keys: deque[str] = deque()
        self._by_message: OrderedDict[str, _Open] = OrderedDict()
        self._updatable: OrderedDict[int, _Open] = OrderedDict()
        self._records: dict[int, Interaction] = {}

    # --- the verbs ------------------------------------------------------------------------------------

    def feed(self, direction: str, frame: Frame, t: float, *, key: str | None = None,
             audio_ms: float | None = None) -> None:
        """Fold one frame ``direction`` (``"sent"`` or ``"received"``) at ``t``. Next: :meth:`events_received`.

        ``key`` names the user input a sent frame begins (a text, an event, the first chunk of an audio);
        ``audio_ms`` is the duration of the audio the frame carries, when the feeder knows it.
        """
        if direction == SENT:
            self._sent(frame, float(t), key, audio_ms)
        elif direction == RECEIVED:
            self._received(frame, float(t), audio_ms)
        else:
            raise ValueError(f"direction must be 'sent' or 'received', got {direction!r}")

    def feed_local(self, kind: str, t: float, **fields: Any) -> None:
        """Fold a local log entry: ``connection.opened``, ``connection.closed`` (``close_code``,
        ``close_reason``), ``playback.progress`` / ``.flushed`` / ``.finished`` (``message_id``,
        ``played_ms``), ``user.speech-ended``. Other kinds change nothing. Next: :meth:`events_received`.
        """
        t = float(t)
        if kind == "connection.opened":
            self._clock.restart()
            self._ptt = self._segment = None
            self._vad_on = False
        elif kind == "connection.closed":
            self._closed(t, fields.get("close_code"), str(fields.get("close_reason") or ""))
        elif kind in ("playback.progress", "playback.flushed", "playback.finished"):
            self._playback(kind, t, fields.get("message_id"), fields.get("played_ms"))
        elif kind == "user.speech-ended":
            current = self._segment or self._ptt
            if current is not None:
                current.hint = _earliest(current.hint, t)

    def events_received(self) -> list[FoldEvent]:
        """Take the events folded so far, oldest first. Next: act on each (resolve a Turn, draw it), then feed more."""
        out, self._out = self._out, []
        return out

    def interactions(self) -> list[Interaction]:
        """The latest record of every interaction so far, in order (the one in flight as ``open``).

        Next: read ``record.latencies`` (names of :data:`LATENCIES`) or ``record.stamps``.
        """
        records = dict(self._records)
        if self._open is not None:
            records[self._open.index] = self._record(self._open)
        return [records[i] for i in sorted(records)]

    def pending_inputs(self) -> list[PendingInput]:
        """The inputs waiting for an interaction (external events first), oldest first. Next: show them as
        unanswered, or keep feeding: the server's next interaction takes the oldest."""
        return [_pending(i) for i in (*self._events, *self._queue)]

    # --- sent -------------------------------------------------------------------------------------------

    def _key(self, key: str | None) -> str:
        if key is not None:
            return key
        self._made += 1
        return f"fold-{self._made}"

    def _sent(self, frame: Frame, t: float, key: str | None, audio_ms: float | None) -> None:
        if isinstance(frame, StartConversation):
            self._start_t = t
        elif isinstance(frame, ContinueConversation):
            self._start_t = None
        elif isinstance(frame, NewTextMessage):
            source = "event" if frame.message_type == MESSAGE_TYPE_EXTERNAL_EVENT else "text"
            done = _Input(self._key(key), source, start=t, end=t, text=frame.text)
            self._emit(UserTurnEnded(str(done.key), source, t, t))
            if source == "event":
                self._events.append(done)
            else:
                self._ended(done, t)
        elif isinstance(frame, NewAudioMessage):
            self._sent_audio(frame, t, key, audio_ms)
        elif isinstance(frame, SwitchVadMode):
            if self._ptt is not None and self._ptt.key is not None:
                self._emit(InputDropped(self._ptt.key, "VAD was switched while this audio was being sent; the "
                                                       "server drops audio in progress", t, _pending(self._ptt)))
            self._vad_on = frame.vad_mode_on
            self._ptt = self._segment = None
            if frame.vad_mode_on:
                self._clock.restart()

    def _sent_audio(self, frame: NewAudioMessage, t: float, key: str | None, audio_ms: float | None) -> None:
        if frame.audio is not None:
            ms = audio_ms if audio_ms is not None else (_pcm_ms(frame.audio) if self._pcm else 0.0)
            self._clock.add(ms, t)
            if self._vad_on:
                if key is not None:
                    self._audio_keys.append(key)
            elif self._ptt is None:
                self._ptt = _Input(key, "push-to-talk", start=t)
            elif self._ptt.key is None and key is not None:
                self._ptt.key = key
            return
        ptt, self._ptt = self._ptt, None
        if ptt is not None and ptt.key is None:
            ptt.key = key  # a feeder may name the input on its last frame (audio: null) instead of its first
        if self._segment is not None:
            self._segment.audio_end = t  # the segment in progress ends with the audio (rule 2)
            named = ptt.key if ptt is not None else key
            if named is not None and self._segment.key is None:
                self._segment.key = named
            return
        if ptt is None:
            return  # with VAD on, the end of the audio is the end of the stream, not a turn
        if ptt.segmented:
            last = ptt.last_segment
            if last is not None and last.owner is not None and last.owner.status == "open":
                last.audio_end = _earliest(last.audio_end, t)
                last.owner.user_end = last.user_end()
            return
        ptt.audio_end = ptt.end = t
        ptt.key = self._key(ptt.key)
        self._emit(UserTurnEnded(ptt.key, "push-to-talk", t, ptt.user_end()))
        self._ended(ptt, t)

    # --- received ---------------------------------------------------------------------------------------

    def _received(self, frame: Frame, t: float, audio_ms: float | None) -> None:
        if isinstance(frame, ConversationCreated):
            if self._open is None:
                self._begin(None, "greeting", t, user_end=self._start_t)
            self._start_t = None
        elif isinstance(frame, UserMessageAvailable):
            self._user_message(frame, t)
        elif isinstance(frame, CurrentAgentAction):
            target = self._target(t, frame.type)
            target.got_server = True
            target.actions.append(dict(frame.action))
            if frame.action_type == ACTION_TOO_LONG:
                target.filler_next = True
                filler = frame.action.get("filler")
                if isinstance(filler, str) and filler:
                    target.filler_texts.append(filler)
        elif isinstance(frame, NewMessage):
            self._piece(frame, t, audio_ms)
        elif isinstance(frame, InteractionComplete):
            self._complete(frame, t)
        elif isinstance(frame, VadSpeechStarted):
            self._speech_started(frame, t)
        elif isinstance(frame, VadSpeechEnded):
            self._speech_ended(frame, t)
        elif isinstance(frame, VadSpeechResetZero):
            self._segment = None
            self._emit(SpeechDiscarded(t, frame.audio_ms))
        elif isinstance(frame, VadModeSwitched):
            if frame.vad_mode_on is not None:
                self._vad_on = frame.vad_mode_on
        elif isinstance(frame, ServerError):
            self._error(frame, t)

    def _user_message(self, frame: UserMessageAvailable, t: float) -> None:
        self._tail = None
        current = self._open
        if current is not None and current.user is not None and current.user.source == "text" \
                and not current.got_server and _norm(current.user.text) != _norm(frame.user_message):
            waiting = [i for i in self._queue if i.source == "text" and _norm(i.text) == _norm(frame.user_message)]
            if waiting:
                self._skip_until(waiting[0], t)
        current = self._open
        if current is not None and current.uma_id is not None and current.uma_id != frame.message_id:
            self._violate(t, f"user-message-available {frame.message_id!r} began a new interaction before "
                             f"interaction-complete of interaction {current.index}")
            self._finish(current, t)
        elif current is not None and current.kind == "greeting":
            if current.got_server:
                self._violate(t, f"user-message-available arrived before interaction-complete of the greeting "
                                 f"(interaction {current.index}); the greeting is taken as complete")
            else:
                self._violate(t, "the server sent no greeting; it is taken as empty (rule 4)")
            self._finish(current, t)
        target = self._open or self._open_lazily(t)
        target.got_server = True
        target.uma_id, target.uma_text = frame.message_id, frame.user_message

    def _skip_until(self, wanted: _Input, t: float) -> None:
        while self._open is not None and self._open.user is not wanted:
            self._void(self._open, t, None, "the server answered a later turn first; this one got no answer",
                       "skipped", advance=True)

    def _piece(self, frame: NewMessage, t: float, audio_ms: float | None) -> None:
        # A piece without a message_id pairs with nothing: it belongs to the interaction in flight.
        target = self._by_message.get(frame.message_id) if frame.message_id else None
        if target is None:
            target = self._target(t, frame.type)
        elif target.status != "open":
            self._violate(t, f"a piece of message {frame.message_id!r} arrived after interaction "
                             f"{target.index} {target.status}")
        target.got_server = True
        has_audio = (audio_ms > 0) if audio_ms is not None else (self._voice and bool(frame.message))
        if has_audio and audio_ms is None:
            audio_ms = _pcm_ms(frame.message) if self._pcm else None
        message = target.messages.get(frame.message_id)
        if message is None:
            message = _Message(frame.message_id, target.filler_next, t)
            target.filler_next = False
            target.messages[frame.message_id] = message
            if frame.message_id:
                self._by_message[frame.message_id] = target
                if len(self._by_message) > _MESSAGE_IDS:
                    self._by_message.popitem(last=False)
        if has_audio:
            text = "".join(c for _, c in frame.transcript_alignment or ())
            message.has_audio = True
            message.audio.append((t, audio_ms or 0.0))
            message.first_audio = _earliest(message.first_audio, t)
            target.first_audio = _earliest(target.first_audio, t)
        else:
            text = frame.message
        if text:
            message.texts.append(text)
            message.first_text = _earliest(message.first_text, t)
            target.first_text = _earliest(target.first_text, t)
        self._emit(AgentPiece(target.index, frame.message_id, "filler" if message.filler else "answer",
                              frame.sequence_number, has_audio, t))

    def _complete(self, frame: InteractionComplete, t: float) -> None:
        target = self._by_message.get(frame.message_id) if frame.message_id else None
        if target is None:
            target = self._open or self._tail or self._open_lazily(t)
        if target.status != "open":
            self._violate(t, f"interaction-complete for interaction {target.index}, already {target.status}")
            if target is self._tail:
                self._tail = None
            return
        target.complete, target.complete_t = frame, t
        self._finish(target, t)

    def _speech_started(self, frame: VadSpeechStarted, t: float) -> None:
        at = self._clock.to_t(frame.audio_ms, at_t=t)
        at = t if at is None else at
        self._segment = _Input(None, "vad", start=at, speech_start=at)
        if self._ptt is not None:
            self._ptt.segmented = True
        current = self._open
        if current is not None and current.messages and current.barge_in is None:
            current.barge_in = t
            self._emit(BargeIn(current.index, t, "vad"))

    def _speech_ended(self, frame: VadSpeechEnded, t: float) -> None:
        at = self._clock.to_t(frame.audio_ms, at_t=t)
        segment, self._segment = self._segment, None
        if segment is None:  # its start was not seen (before the log began, or not sent)
            segment = _Input(None, "vad")
        segment.speech_end = at if at is not None else t
        segment.end_ms, segment.end_stream = frame.audio_ms, self._clock.stream
        segment.vad_end = segment.end = t
        ptt = self._ptt
        if ptt is not None:
            ptt.segmented = True
            ptt.last_segment = segment
            if ptt.key is not None:
                segment.key, ptt.key = ptt.key, None
        if segment.key is None and self._audio_keys:
            segment.key = self._audio_keys.popleft()
        segment.key = self._key(segment.key)
        self._emit(UserTurnEnded(segment.key, "vad", t, segment.user_end()))
        self._ended(segment, t)

    def _error(self, frame: ServerError, t: float) -> None:
        code, description = frame.http_error_code, frame.error_description
        current = self._open
        voids = False
        if current is not None:
            if code == 400:
                voids = (not current.got_server and current.user is not None
                         and current.user.source in ("text", "push-to-talk", "event"))
            else:
                voids = True
        self._emit(ErrorReceived(t, current.index if current is not None else None, code, description, voids))
        if current is not None and voids:
            self._void(current, t, code, f"{code if code is not None else 'error'}: {description}",
                       "refused" if code == 400 else "error", advance=True)
            if code != 400:
                self._tail = current

    # --- local ------------------------------------------------------------------------------------------

    def _closed(self, t: float, code: Any, reason: str) -> None:
        number = int(code) if isinstance(code, (int, float)) and not isinstance(code, bool) else None
        said = describe_close(number, reason)
        if self._open is not None:
            self._void(self._open, t, None, f"the connection closed before interaction-complete ({said})",
                       "closed", advance=False)
        dropped = [*self._events, *self._queue]
        if self._ptt is not None and self._ptt.key is not None:
            dropped.append(self._ptt)
        for item in dropped:
            self._emit(InputDropped(str(item.key), f"the connection closed before the server answered it ({said})",
                                    t, _pending(item)))
        for key in self._audio_keys:
            self._emit(InputDropped(key, f"the connection closed before the server's VAD ended this audio ({said})",
                                    t, PendingInput(key, "vad", None, None, None)))
        self._events, self._tail, self._ptt, self._segment = [], None, None, None
        self._queue.clear()
        self._audio_keys.clear()

    def _playback(self, kind: str, t: float, message_id: Any, played_ms: Any) -> None:
        if not isinstance(message_id, str):
            return
        owner = self._by_message.get(message_id)
        if owner is None:
            return
        message = owner.messages[message_id]
        before = self._record(owner) if owner.status != "open" else None
        if isinstance(played_ms, (int, float)) and not isinstance(played_ms, bool) and math.isfinite(played_ms):
            message.played_ms = max(message.played_ms or 0.0, float(played_ms))
            if played_ms > 0:
                message.heard = _earliest(message.heard, t - float(played_ms) / 1000.0)
        if kind == "playback.flushed" and owner.barge_in is None:
            owner.barge_in = t
            self._emit(BargeIn(owner.index, t, "playback"))
        if before is not None and owner.index in self._updatable:
            after = self._record(owner)
            if owner.index in self._records:
                self._records[owner.index] = after
            if (after.interrupted, after.stamps["first_heard"]) != (before.interrupted, before.stamps["first_heard"]):
                self._emit(InteractionUpdated(owner.index, after, t))

    # --- interactions ---------------------------------------------------------------------------------------

    def _ended(self, done: _Input, t: float) -> None:
        self._tail = None
        current = self._open
        if current is None:
            self._begin(done, _KIND_OF_SOURCE[done.source], t)
        else:
            self._queue.append(done)

    def _open_lazily(self, t: float) -> _Open:
        # Called with nothing in flight, hence nothing queued (an ending input opens at once when idle).
        segment = self._segment
        if segment is not None:  # the server answers speech whose vad-speech-ended it never sent
            self._segment = None
            segment.key = self._key(self._audio_keys.popleft() if self._audio_keys else None)
            segment.end = t
            self._emit(UserTurnEnded(segment.key, "vad", t, None))
            return self._begin(segment, "voice", t)
        if self._events:
            return self._begin(None, "event", t, user_end=self._events[-1].end)
        return self._begin(None, "agent", t)

    def _target(self, t: float, what: str) -> _Open:
        if self._open is not None:
            return self._open
        if self._tail is not None:
            self._violate(t, f"{what} arrived after interaction {self._tail.index} was voided; kept with it")
            return self._tail
        return self._open_lazily(t)

    def _begin(self, user: _Input | None, kind: str, t: float, *, user_end: float | None = None) -> _Open:
        events = tuple(self._events)
        self._events = []
        keys = tuple(str(e.key) for e in events) + ((str(user.key),) if user is not None else ())
        self._index += 1
        opened = _Open(self._index - 1, kind, keys, t, user, events,
                       user.user_end() if user is not None else user_end)
        if user is not None:
            user.owner = opened
        self._open = opened
        self._emit(InteractionStarted(opened.index, keys, kind, t))
        return opened

    def _finish(self, current: _Open, t: float) -> None:
        current.status, current.end_t = "completed", t
        record = self._retire(current)
        self._emit(InteractionCompleted(current.index, current.keys, record, t))
        if self._queue:
            user = self._queue.popleft()
            self._begin(user, _KIND_OF_SOURCE[user.source], t)

    def _void(self, current: _Open, t: float, code: int | None, description: str, reason: str, *,
              advance: bool) -> None:
        current.status, current.end_t = "voided", t
        current.error_code, current.error = code, description
        record = self._retire(current)
        self._emit(InteractionVoided(current.index, current.keys, code, description, t, reason, record))
        if advance and self._queue:
            user = self._queue.popleft()
            self._begin(user, _KIND_OF_SOURCE[user.source], t)

    def _retire(self, current: _Open) -> Interaction:
        if self._open is current:
            self._open = None
        user = current.user
        if (current.status == "completed" and user is not None and user.end_ms is not None
                and user.end_stream == self._clock.stream):
            # The server's VAD reports positions in order: nothing before this turn's end is asked for again.
            self._clock.forget_before(user.end_ms)
        record = self._record(current)
        self._records[current.index] = record
        if self._history is not None:
            while len(self._records) > self._history:
                del self._records[next(iter(self._records))]
        self._updatable[current.index] = current
        if len(self._updatable) > _UPDATABLE:
            self._updatable.popitem(last=False)
        return record

    def _record(self, b: _Open) -> Interaction:
        complete = b.complete
        messages = list(b.messages.values())
        answer: _Message | None
        if complete is not None and complete.message_id:
            answer = b.messages.get(complete.message_id)
            answer_id: str | None = complete.message_id
            fillers = [m for m in messages if m.message_id != complete.message_id]
        else:
            answers = [m for m in messages if not m.filler]
            answer = answers[-1] if answers else None
            answer_id = answer.message_id if answer is not None else None
            fillers = [m for m in messages if m is not answer]
        reply_text: str | None
        if complete is not None and complete.full_message is not None:
            reply_text = complete.full_message
        elif answer is not None:
            reply_text = "".join(answer.texts)
        else:
            reply_text = "" if b.status == "completed" else None
        heard, source = self._heard(b, answer)
        user = b.user
        stamps: dict[str, float | None] = dict.fromkeys(STAMPS)
        stamps.update(
            user_start=user.start if user is not None else (b.events[0].start if b.events else b.user_end),
            user_end=b.user_end,
            speech_start=user.speech_start if user is not None else None,
            speech_end=user.speech_end if user is not None else None,
            vad_end=user.vad_end if user is not None else None,
            audio_end=user.audio_end if user is not None else None,
            first_text=b.first_text,
            first_answer_text=answer.first_text if answer is not None else None,
            first_audio=b.first_audio,
            first_answer_audio=answer.first_audio if answer is not None else None,
            first_heard=min((m.heard for m in messages if m.heard is not None), default=None),
            complete=b.complete_t,
            barge_in=b.barge_in,
            end=b.end_t,
        )
        latencies = {name: _ms(stamps[origin], stamps[target]) for name, (origin, target, _) in LATENCIES.items()}
        filler_text = " / ".join(b.filler_texts) or " / ".join("".join(m.texts) for m in fillers if m.texts) or None
        return Interaction(
            index=b.index, kind=b.kind, keys=b.keys, status=b.status, started_t=b.started,
            user_text=b.uma_text if b.uma_text is not None else (user.text if user is not None else None),
            sent_text=user.text if user is not None else None,
            event_texts=tuple(e.text or "" for e in b.events),
            user_message_id=b.uma_id,
            interaction_id=complete.interaction_id or None if complete is not None else None,
            reply_text=reply_text, answer_message_id=answer_id,
            filler_message_ids=tuple(m.message_id for m in fillers), filler_text=filler_text,
            actions=tuple(b.actions), interrupted=b.barge_in is not None,
            conversation_completed=bool(complete is not None and complete.conversation_completed),
            reply_audio_ms=sum(ms for _, ms in answer.audio) if answer is not None and answer.has_audio else None,
            heard_ms=heard, heard_source=source, http_error_code=b.error_code, error=b.error,
            stamps=stamps, latencies=latencies,
        )

    @staticmethod
    def _heard(b: _Open, answer: _Message | None) -> tuple[float | None, str | None]:
        if answer is None:
            return None, None
        if answer.played_ms is not None:
            return answer.played_ms, "playback"
        if not answer.has_audio:
            return None, None
        total = sum(ms for _, ms in answer.audio)
        if b.barge_in is None or answer.first_audio is None:
            return total, "frames"
        before = sum(ms for t, ms in answer.audio if t < b.barge_in)
        elapsed = max(b.barge_in - answer.first_audio, 0.0) * 1000.0
        return min(before, elapsed), "frames"

    def _emit(self, event: FoldEvent) -> None:
        self._out.append(event)

    def _violate(self, t: float, description: str) -> None:
        self._emit(Violation(t, description))


__all__ = [
    "KINDS", "LATENCIES", "STAMPS",
    "AgentPiece", "AudioClock", "BargeIn", "ErrorReceived", "Fold", "FoldEvent", "InputDropped", "Interaction",
    "InteractionCompleted", "InteractionStarted", "InteractionUpdated", "InteractionVoided", "PendingInput",
    "SpeechDiscarded",
    "UserTurnEnded", "Violation", "latency_definition",
]
