"""Log entries into the protocol's fold: one rule for the live session and for every replay of a log.

The live session feeds its :class:`~amigo_lab.protocol.fold.Fold` each entry as it logs it; the analysis
(``analysis.turns`` on a saved log) and the widgets (a panel attached to a running session) replay the log's rows
through a fold of their own. All three do it with :func:`feed_row`, so a row means the same to each:

- a sent audio chunk is one shared chunk frame (the fold reads its time and duration, not its audio), the end
  of the user's audio (``audio: null``) one shared end frame;
- agent audio in a binary message is a piece of the message it names;
- an agent piece the log holds no audio for is text, even in a voice session (a service whose speech failed);
- any other frame is parsed from its verbatim ``wire`` text when the row has it, else rebuilt from the
  columns the log projected from it (a reader may leave the wire text out to save time);
- a local entry is fed with the fields the fold reads (close code and reason, message id, played ms).

A row is a mapping of column names to values, missing ones as None, NaN or pandas NA.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from amigo_lab.framelog._schema import BINARY_FRAME
from amigo_lab.framelog._values import audio_ms_of, json_value, missing, opt_bool, opt_str
from amigo_lab.protocol import (
    ContinueConversation,
    ConversationContinued,
    ConversationCreated,
    CurrentAgentAction,
    Frame,
    FrameError,
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
    from_dict,
    parse,
)
from amigo_lab.protocol.constants import MESSAGE_TYPE_USER
from amigo_lab.protocol.fold import Fold

__all__ = ["CHUNK_FRAME", "FOLDED_LOCAL_KINDS", "feed_row", "frame_of_row"]

SENT, RECEIVED, LOCAL = "sent", "received", "local"

# Rows of these types carry nothing the fold reads beyond their type; one shared frame each (frames are values).
CHUNK_FRAME = NewAudioMessage(audio="")
"""The frame every sent audio chunk replays as: the fold needs its time and duration (``audio_ms``) only."""
_AUDIO_END = NewAudioMessage(audio=None)
_START = StartConversation(service_id="0" * 24)
_CONTINUE = ContinueConversation(conversation_id="0" * 24)

FOLDED_LOCAL_KINDS = ("connection.opened", "connection.closed", "playback.progress", "playback.flushed",
                      "playback.finished", "user.speech-ended")
"""The local entries the fold reads (:meth:`~amigo_lab.protocol.fold.Fold.feed_local`); others change nothing."""

_AUDIO_KINDS = (NewAudioMessage.TYPE, NewMessage.TYPE, BINARY_FRAME)
_VAD_KINDS = (VadSpeechStarted.TYPE, VadSpeechEnded.TYPE, VadSpeechResetZero.TYPE)


def frame_of_row(row: Mapping[str, Any]) -> Frame | None:
    """The frame of a sent or received log row; None for a row that is no frame.

    Parsed from ``wire`` when the row has it, else rebuilt from the columns (see the module docstring).
    Raises :class:`~amigo_lab.protocol.FrameError` (or TypeError / ValueError) when the columns cannot make
    a frame, e.g. a sent text without its text. Next: :func:`feed_row`, which feeds it to a fold.
    """
    direction: Any = row.get("direction")
    kind: Any = row.get("type")
    if kind == NewAudioMessage.TYPE:
        return CHUNK_FRAME if _carries_audio(row) else _AUDIO_END  # its duration matters, not its audio
    if kind == BINARY_FRAME and direction == RECEIVED:
        return NewMessage(message="", message_id=opt_str(_get(row, "message_id")) or "")
    wire = opt_str(row.get("wire"))
    if wire is not None:
        try:
            return parse(wire)
        except FrameError:
            pass  # fall back to the columns, which the log wrote from the frame it had
    return _from_columns(direction, kind, row)


def feed_row(fold: Fold, row: Mapping[str, Any], *, frame: Frame | None = None, key: str | None = None) -> bool:
    """Feed one log row to ``fold``: the live session feeds each entry it logs this way, and a replay each row,
    so both keep the same account. Returns False when the row's frame cannot be rebuilt (counted as skipped
    by a caller; never fatal).

    ``frame``: the frame itself when the caller has it (a live entry), so nothing is parsed; ``key``: the user
    input a sent frame begins (see :meth:`~amigo_lab.protocol.fold.Fold.feed`). Rows without a ``t`` or
    ``type``, and directions other than sent / received / local, are passed over (True). Next:
    ``fold.events_received()``.
    """
    t: Any = row.get("t")
    kind: Any = row.get("type")
    direction: Any = row.get("direction")
    if missing(t) or missing(kind):
        return True
    if direction == LOCAL:
        if kind in FOLDED_LOCAL_KINDS:
            code = _get(row, "close_code")
            played = _get(row, "played_ms")
            fold.feed_local(str(kind), float(t), close_code=None if missing(code) else int(code),
                            close_reason=opt_str(_get(row, "close_reason")) or "",
                            message_id=opt_str(_get(row, "message_id")),
                            played_ms=None if missing(played) else float(played))
        return True
    if direction not in (SENT, RECEIVED):
        return True
    if frame is None or kind == BINARY_FRAME:  # a live binary entry's "frame" is its bytes
        try:
            frame = frame_of_row(row)
        except (FrameError, TypeError, ValueError):
            return False
    if frame is None:
        return True
    if kind in _AUDIO_KINDS and _carries_audio(row):
        audio_ms: float | None = audio_ms_of(row)
    elif isinstance(frame, NewMessage):
        audio_ms = 0.0  # an agent piece the log holds no audio for is text, whatever the response format
    else:
        audio_ms = None
    fold.feed(str(direction), frame, float(t), key=key if direction == SENT else None, audio_ms=audio_ms)
    return True


def _get(row: Mapping[str, Any], name: str) -> Any:
    """A column's value, None when the row lacks the column (a reader may leave some out)."""
    return row.get(name)


def _carries_audio(row: Mapping[str, Any]) -> bool:
    size: Any = row.get("audio_bytes")
    return not missing(size) and float(size) > 0


def _from_columns(direction: Any, kind: Any, row: Mapping[str, Any]) -> Frame | None:
    """The frame rebuilt from the columns the log projected from it (the row has no readable wire text)."""
    if direction == SENT and kind == StartConversation.TYPE:
        return _START
    if direction == SENT and kind == ContinueConversation.TYPE:
        return _CONTINUE
    obj: dict[str, Any] = {"type": kind}
    if direction == SENT:
        if kind == NewTextMessage.TYPE:
            # A sent text without its text cannot be rebuilt: from_dict refuses it.
            obj.update(text=opt_str(_get(row, "text")),
                       message_type=opt_str(_get(row, "message_type")) or MESSAGE_TYPE_USER)
        elif kind == SwitchVadMode.TYPE:
            obj["vad_mode_on"] = bool(opt_bool(_get(row, "vad_mode_on")))
    elif kind == UserMessageAvailable.TYPE:
        obj.update(message_id=opt_str(_get(row, "message_id")), user_message=opt_str(_get(row, "text")))
    elif kind == CurrentAgentAction.TYPE:
        obj["action"] = json_value(_get(row, "action")) or opt_str(_get(row, "action_type"))
    elif kind == NewMessage.TYPE:
        number = _get(row, "sequence_number")
        obj.update(message="" if _carries_audio(row) else opt_str(_get(row, "text")) or "",
                   stop=opt_bool(_get(row, "stop")), message_id=opt_str(_get(row, "message_id")),
                   sequence_number=None if missing(number) else int(number),
                   transcript_alignment=json_value(_get(row, "alignment")))
    elif kind == InteractionComplete.TYPE:
        obj.update(message_id=opt_str(_get(row, "message_id")), interaction_id=opt_str(_get(row, "interaction_id")),
                   full_message=opt_str(_get(row, "text")),
                   conversation_completed=opt_bool(_get(row, "conversation_completed")))
    elif kind in _VAD_KINDS:
        vad_ms = _get(row, "vad_ms")
        obj["audio_ms"] = None if missing(vad_ms) else float(vad_ms)
    elif kind == ServerError.TYPE:
        code = _get(row, "http_error_code")
        obj.update(http_error_code=None if missing(code) else int(code),
                   error_description=opt_str(_get(row, "error_description")) or opt_str(_get(row, "text")))
    elif kind == VadModeSwitched.TYPE:
        obj["vad_mode_on"] = opt_bool(_get(row, "vad_mode_on"))
    elif kind in (ConversationCreated.TYPE, ConversationContinued.TYPE):
        obj["conversation_id"] = opt_str(_get(row, "conversation_id"))
    return from_dict({k: v for k, v in obj.items() if v is not None})
