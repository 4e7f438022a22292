"""What each frame type contributes to its entry's columns: the projection of the wire text into the table."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from amigo_lab.protocol import (
    ContinueConversation,
    ConversationContinued,
    ConversationCreated,
    CurrentAgentAction,
    Frame,
    InteractionComplete,
    NewAudioMessage,
    NewMessage,
    NewTextMessage,
    ServerError,
    SwitchVadMode,
    UnknownFrame,
    UserMessageAvailable,
    VadModeSwitched,
    VadSpeechEnded,
    VadSpeechResetZero,
    VadSpeechStarted,
)


def json_text(value: Any) -> str | None:
    """A JSON string for a column that holds JSON (None stays None, strings are taken as JSON already)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _alignment(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        try:
            return json_text([list(pair) for pair in value])
        except TypeError:
            pass
    # A shape this version does not normalise stays as it came; the audio beside it is unaffected.
    return json_text(value)


def _text(frame: Any, out: dict[str, Any]) -> None:
    out["text"] = frame.text
    out["message_type"] = frame.message_type


def _audio_message(frame: Any, out: dict[str, Any]) -> None:
    if frame.audio is None:
        # End of the user's audio: marked like the agent's last piece, so one filter finds stream ends.
        out["stop"] = True
        out["audio_bytes"] = 0
        out["audio_ms"] = 0.0


def _vad_mode(frame: Any, out: dict[str, Any]) -> None:
    out["vad_mode_on"] = frame.vad_mode_on


def _conversation(frame: Any, out: dict[str, Any]) -> None:
    out["conversation_id"] = frame.conversation_id


def _user_message(frame: Any, out: dict[str, Any]) -> None:
    out["message_id"] = frame.message_id
    out["text"] = frame.user_message


def _action(frame: Any, out: dict[str, Any]) -> None:
    out["action_type"] = frame.action_type
    action = frame.action
    out["action"] = json_text(dict(action) if hasattr(action, "keys") else action)


def _piece(frame: Any, out: dict[str, Any]) -> None:
    out["message_id"] = frame.message_id
    out["sequence_number"] = frame.sequence_number
    out["stop"] = frame.stop
    alignment = frame.transcript_alignment
    if alignment is not None:
        out["alignment"] = _alignment(alignment)


def _complete(frame: Any, out: dict[str, Any]) -> None:
    out["message_id"] = frame.message_id
    out["interaction_id"] = frame.interaction_id
    out["text"] = frame.full_message
    out["conversation_completed"] = frame.conversation_completed


def _vad(frame: Any, out: dict[str, Any]) -> None:
    ms = frame.audio_ms
    out["vad_ms"] = None if ms is None else float(ms)


def _error(frame: Any, out: dict[str, Any]) -> None:
    code = frame.http_error_code
    out["http_error_code"] = code if isinstance(code, int) and not isinstance(code, bool) else _int_or_none(code)
    out["error_description"] = frame.error_description
    out["text"] = frame.error_description


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# Frame class -> (filler of columns, wire keys that have a column of their own; the rest land in ``extra``).
_PROJECTIONS: dict[type, tuple[Callable[[Any, dict[str, Any]], None], frozenset[str]]] = {
    NewTextMessage: (_text, frozenset({"text", "message_type"})),
    NewAudioMessage: (_audio_message, frozenset({"audio"})),
    SwitchVadMode: (_vad_mode, frozenset({"vad_mode_on"})),
    VadModeSwitched: (_vad_mode, frozenset({"vad_mode_on"})),
    ContinueConversation: (_conversation, frozenset({"conversation_id"})),
    ConversationCreated: (_conversation, frozenset({"conversation_id"})),
    ConversationContinued: (_conversation, frozenset({"conversation_id"})),
    UserMessageAvailable: (_user_message, frozenset({"message_id", "user_message"})),
    CurrentAgentAction: (_action, frozenset({"action"})),
    NewMessage: (_piece, frozenset({"message", "stop", "sequence_number", "message_id", "transcript_alignment"})),
    InteractionComplete: (_complete, frozenset({"message_id", "interaction_id", "full_message",
                                                "conversation_completed"})),
    VadSpeechStarted: (_vad, frozenset({"audio_ms"})),
    VadSpeechEnded: (_vad, frozenset({"audio_ms"})),
    VadSpeechResetZero: (_vad, frozenset({"audio_ms"})),
    ServerError: (_error, frozenset({"http_error_code", "error_description"})),
}

_UNCOLUMNED: dict[type, tuple[str, ...]] = {}


def _extra_of(frame: Frame) -> dict[str, Any]:
    if isinstance(frame, UnknownFrame):
        return {**frame.payload, **frame.extra}
    names = _UNCOLUMNED.get(type(frame))
    if names is None:
        columned = _PROJECTIONS.get(type(frame), (None, frozenset()))[1]
        names = tuple(f.name for f in dataclasses.fields(frame) if f.name != "extra" and f.name not in columned)
        _UNCOLUMNED[type(frame)] = names
    extra = getattr(frame, "extra", None)
    if not names and not extra:
        return {}
    out = {name: getattr(frame, name) for name in names}
    if extra:
        out.update(extra)
    return out


def project(frame: Frame, *, audio_given: bool) -> dict[str, Any]:
    """The columns a frame fills (besides the envelope and the audio reference)."""
    out: dict[str, Any] = {}
    projection = _PROJECTIONS.get(type(frame))
    if projection is not None:
        try:
            projection[0](frame, out)
        except AttributeError:
            # A frame class reshaped by a newer protocol module: its wire text is still logged whole.
            out.clear()
    if type(frame) is NewMessage and not audio_given:
        out["text"] = frame.message
    extra = _extra_of(frame)
    if extra:
        out["extra"] = json_text(extra)
    return out
