"""Frames: one frozen dataclass per wire type of protocol.md §3 and §4, plus :class:`UnknownFrame`.

Frames are values. They are compared by value, validated on construction (a bad field raises
:class:`FrameError` naming it), carry their wire type as the class constant ``TYPE``, and know nothing of
time or direction (the frame log adds those). Field names are the wire keys. Keys a known frame does not
define are kept in ``extra`` so nothing the peer sent is lost.

Use :func:`parse` on a received text and :func:`serialize` on a frame to send; ``parse(serialize(f)) == f``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Mapping

from amigo_lab.protocol.constants import DEFAULT_VERSION_SET, MESSAGE_TYPE_USER, MESSAGE_TYPES
from amigo_lab.protocol.errors import FrameError

_HEX24 = re.compile(r"[0-9a-f]{24}\Z")

#: Wire type -> frame class. Filled by :func:`_register`; the single source of truth for :func:`parse`.
FRAME_TYPES: dict[str, type["Frame"]] = {}


def _register(cls: type["Frame"]) -> type["Frame"]:
    FRAME_TYPES[cls.TYPE] = cls
    return cls


# --- field checks: each raises FrameError naming the field ---------------------------------------------


def _fail(frame: "Frame", name: str, message: str) -> FrameError:
    return FrameError(message, field=name, frame_type=frame.type)


def _check_str(frame: "Frame", name: str, *, non_empty: bool = False, optional: bool = False) -> None:
    value = getattr(frame, name)
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise _fail(frame, name, f"must be a string, got {type(value).__name__}")
    if non_empty and not value.strip():
        raise _fail(frame, name, "must not be empty")


def _check_hex24(frame: "Frame", name: str) -> None:
    _check_str(frame, name)
    if not _HEX24.match(getattr(frame, name)):
        raise _fail(frame, name, f"must be 24 lowercase hex characters, got {getattr(frame, name)!r}")


def _check_bool(frame: "Frame", name: str) -> None:
    if not isinstance(getattr(frame, name), bool):
        raise _fail(frame, name, f"must be true or false, got {getattr(frame, name)!r}")


def _check_int(frame: "Frame", name: str, *, minimum: int | None = None) -> None:
    value = getattr(frame, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(frame, name, f"must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise _fail(frame, name, f"must be >= {minimum}, got {value}")


def _check_number(frame: "Frame", name: str, *, optional: bool = False) -> None:
    value = getattr(frame, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(frame, name, f"must be a finite number, got {value!r}")


def _check_base64(frame: "Frame", name: str, *, optional: bool = False) -> bytes | None:
    """Validate a base64 field and return its bytes (validating means decoding; keep the result)."""
    value = getattr(frame, name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _fail(frame, name, f"must be a base64 string{' or null' if optional else ''}, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(frame, name, f"is not valid base64 ({exc})") from exc


# Decoded audio is kept on the frame under this attribute, outside the dataclass fields (so equality,
# repr and serialization are unchanged): audio is decoded once per frame, not once per reader.
_DECODED = "_decoded_audio"


def _encode_base64(data: bytes | bytearray | memoryview | None) -> str | None:
    return None if data is None else base64.b64encode(bytes(data)).decode("ascii")


# --- the frames ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """Base of every frame. ``TYPE`` is the wire ``type``; ``extra`` keeps unknown keys the peer sent."""

    TYPE: ClassVar[str] = ""
    extra: Mapping[str, Any] = field(default_factory=dict, kw_only=True, repr=False)

    @property
    def type(self) -> str:
        """The wire ``type`` discriminator, e.g. ``"client.new-text-message"``."""
        return self.TYPE

    @property
    def is_client(self) -> bool:
        """True for ``client.*`` frames (sent by the client)."""
        return self.type.startswith("client.")

    def __post_init__(self) -> None:
        if not isinstance(self.extra, Mapping):
            raise _fail(self, "extra", "must be a mapping of extra wire keys")
        clash = {f.name for f in fields(self)} & set(self.extra) | ({"type"} & set(self.extra))
        if clash:
            raise _fail(self, "extra", f"repeats defined keys {sorted(clash)}")
        self._validate()

    def _validate(self) -> None:
        """Check every field; subclasses raise FrameError naming the field."""

    def to_dict(self) -> dict[str, Any]:
        """The wire object as a dict (``type`` first, then fields, then extras). Next: :func:`serialize`."""
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            out[f.name] = _to_wire(value)
        out.update(self.extra)
        return out


def _to_wire(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_wire(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _to_wire(v) for k, v in value.items()}
    return value


# Client -> server (protocol.md §3) ----------------------------------------------------------------------


@_register
@dataclass(frozen=True)
class StartConversation(Frame):
    """Start a new conversation (Option A). The server answers ``server.conversation-created``."""

    TYPE: ClassVar[str] = "client.start-conversation"
    service_id: str
    service_version_set_name: str = DEFAULT_VERSION_SET

    def _validate(self) -> None:
        _check_hex24(self, "service_id")
        _check_str(self, "service_version_set_name", non_empty=True)


@_register
@dataclass(frozen=True)
class ContinueConversation(Frame):
    """Continue an unfinished conversation (Option B). The server answers ``server.conversation-continued``."""

    TYPE: ClassVar[str] = "client.continue-conversation"
    conversation_id: str

    def _validate(self) -> None:
        _check_hex24(self, "conversation_id")


@_register
@dataclass(frozen=True)
class NewTextMessage(Frame):
    """A user's text turn, or an external event (``message_type="external-event"``)."""

    TYPE: ClassVar[str] = "client.new-text-message"
    text: str
    message_type: str = MESSAGE_TYPE_USER

    def _validate(self) -> None:
        _check_str(self, "text", non_empty=True)
        _check_str(self, "message_type")
        if self.message_type not in MESSAGE_TYPES:
            raise _fail(self, "message_type", f"must be one of {list(MESSAGE_TYPES)}, got {self.message_type!r}")


@_register
@dataclass(frozen=True)
class NewAudioMessage(Frame):
    """A chunk of user audio (base64 in the session's ``audio_format``), or ``audio=None``: end of this audio.

    Build it from bytes with :meth:`from_bytes`; read the bytes back with :meth:`audio_bytes`.
    """

    TYPE: ClassVar[str] = "client.new-audio-message"
    audio: str | None

    def _validate(self) -> None:
        object.__setattr__(self, _DECODED, _check_base64(self, "audio", optional=True))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview | None) -> "NewAudioMessage":
        """Wrap raw audio bytes (or None for end of audio). Next: :func:`serialize` or a session's send."""
        return cls(audio=_encode_base64(data))

    def audio_bytes(self) -> bytes | None:
        """The decoded audio bytes, or None at end of audio."""
        return getattr(self, _DECODED)


@_register
@dataclass(frozen=True)
class SwitchVadMode(Frame):
    """Turn server-side voice activity detection on or off; answered by ``server.vad-mode-switched``."""

    TYPE: ClassVar[str] = "client.switch-vad-mode"
    vad_mode_on: bool

    def _validate(self) -> None:
        _check_bool(self, "vad_mode_on")


@_register
@dataclass(frozen=True)
class ExtendTimeout(Frame):
    """Reset the server's idle timer (protocol.md §6) without saying anything."""

    TYPE: ClassVar[str] = "client.extend-timeout"


@_register
@dataclass(frozen=True)
class FinishConversation(Frame):
    """Finish the conversation for good; the server then closes with 1000."""

    TYPE: ClassVar[str] = "client.finish-conversation"


@_register
@dataclass(frozen=True)
class CloseConnection(Frame):
    """Close the socket but leave the conversation open, to continue it later (Option B)."""

    TYPE: ClassVar[str] = "client.close-connection"


# Server -> client (protocol.md §4) ----------------------------------------------------------------------


@_register
@dataclass(frozen=True)
class ConversationCreated(Frame):
    """The answer to ``client.start-conversation``; the agent's greeting follows."""

    TYPE: ClassVar[str] = "server.conversation-created"
    conversation_id: str

    def _validate(self) -> None:
        _check_str(self, "conversation_id", non_empty=True)


@_register
@dataclass(frozen=True)
class ConversationContinued(Frame):
    """The answer to ``client.continue-conversation``."""

    TYPE: ClassVar[str] = "server.conversation-continued"
    conversation_id: str

    def _validate(self) -> None:
        _check_str(self, "conversation_id", non_empty=True)


@_register
@dataclass(frozen=True)
class UserMessageAvailable(Frame):
    """The user's turn as the server understood it: the text, or the transcript of the audio."""

    TYPE: ClassVar[str] = "server.user-message-available"
    message_id: str
    user_message: str

    def _validate(self) -> None:
        _check_str(self, "message_id")
        _check_str(self, "user_message")


@_register
@dataclass(frozen=True)
class CurrentAgentAction(Frame):
    """An agent action (``action["type"]``: e.g. ``tool-call-started``, ``action-too-long``)."""

    TYPE: ClassVar[str] = "server.current-agent-action"
    action: Mapping[str, Any]

    def _validate(self) -> None:
        if not isinstance(self.action, Mapping):
            raise _fail(self, "action", f"must be an object, got {type(self.action).__name__}")
        if not isinstance(self.action.get("type"), str):
            raise _fail(self, "action", "must have a string 'type'")

    @property
    def action_type(self) -> str:
        """The action's own type, e.g. ``"tool-call-started"``."""
        return self.action["type"]


@_register
@dataclass(frozen=True)
class NewMessage(Frame):
    """One piece of the agent's message: text, or base64 audio (see :meth:`audio_bytes`).

    ``sequence_number`` rises from 0 within a ``message_id``; the last piece has ``stop=True``.
    ``transcript_alignment`` gives ``(ms, char)`` pairs for audio pieces, or None.
    """

    TYPE: ClassVar[str] = "server.new-message"
    message: str
    stop: bool
    sequence_number: int
    message_id: str
    transcript_alignment: tuple[tuple[float, str], ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.transcript_alignment, list):
            # Wire lists become tuples so the frame stays a value.
            try:
                pairs = tuple((p[0], p[1]) for p in self.transcript_alignment)
            except (TypeError, IndexError, KeyError) as exc:
                raise _fail(self, "transcript_alignment", "must be a list of [ms, char] pairs") from exc
            object.__setattr__(self, "transcript_alignment", pairs)
        super().__post_init__()

    def _validate(self) -> None:
        _check_str(self, "message")
        _check_bool(self, "stop")
        _check_int(self, "sequence_number", minimum=0)
        _check_str(self, "message_id")
        alignment = self.transcript_alignment
        if alignment is None:
            return
        if not isinstance(alignment, tuple):
            raise _fail(self, "transcript_alignment", "must be a list of [ms, char] pairs or null")
        for pair in alignment:
            if (len(pair) != 2 or isinstance(pair[0], bool) or not isinstance(pair[0], (int, float))
                    or not math.isfinite(pair[0]) or not isinstance(pair[1], str)):
                raise _fail(self, "transcript_alignment", f"has a bad pair {pair!r}; want [ms, char]")

    def audio_bytes(self) -> bytes:
        """Decode ``message`` as base64 audio (for ``response_format=voice``). Raises FrameError if it is not.

        The bytes are decoded on the first call and kept, so every reader of the frame shares one decode.
        """
        decoded = self.__dict__.get(_DECODED)
        if decoded is None:
            try:
                decoded = base64.b64decode(self.message, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _fail(self, "message", f"is not base64 audio ({exc}); is response_format 'text'?") from exc
            object.__setattr__(self, _DECODED, decoded)
        return decoded

    @classmethod
    def audio_piece(cls, data: bytes, *, stop: bool, sequence_number: int, message_id: str,
                    transcript_alignment: tuple[tuple[float, str], ...] | None = None) -> "NewMessage":
        """Build an audio piece from raw bytes (the server side's constructor)."""
        return cls(message=_encode_base64(data) or "", stop=stop, sequence_number=sequence_number,
                   message_id=message_id, transcript_alignment=transcript_alignment)


@_register
@dataclass(frozen=True)
class InteractionComplete(Frame):
    """The end of an interaction. ``conversation_completed=True``: the agent ended the conversation."""

    TYPE: ClassVar[str] = "server.interaction-complete"
    message_id: str
    interaction_id: str
    full_message: str
    conversation_completed: bool

    def _validate(self) -> None:
        _check_str(self, "message_id")
        _check_str(self, "interaction_id")
        _check_str(self, "full_message")
        _check_bool(self, "conversation_completed")


@_register
@dataclass(frozen=True)
class VadModeSwitched(Frame):
    """The answer to ``client.switch-vad-mode``."""

    TYPE: ClassVar[str] = "server.vad-mode-switched"
    vad_mode_on: bool

    def _validate(self) -> None:
        _check_bool(self, "vad_mode_on")


@dataclass(frozen=True)
class _VadEvent(Frame):
    audio_ms: float | None = None

    def _validate(self) -> None:
        _check_number(self, "audio_ms", optional=True)


@_register
@dataclass(frozen=True)
class VadSpeechStarted(_VadEvent):
    """Server VAD heard speech begin at ``audio_ms`` of the user's stream. Flush agent playback (barge-in)."""

    TYPE: ClassVar[str] = "server.vad-speech-started"


@_register
@dataclass(frozen=True)
class VadSpeechEnded(_VadEvent):
    """Server VAD heard speech end at ``audio_ms``; the turn is being answered."""

    TYPE: ClassVar[str] = "server.vad-speech-ended"


@_register
@dataclass(frozen=True)
class VadSpeechResetZero(_VadEvent):
    """The speech detected was too short to be a turn (a cough, a click); it was discarded."""

    TYPE: ClassVar[str] = "server.vad-speech-reset-zero"


@_register
@dataclass(frozen=True)
class ServerError(Frame):
    """The server's ``server.error``: an HTTP-like code and a description. 400s keep the connection open."""

    TYPE: ClassVar[str] = "server.error"
    http_error_code: int
    error_description: str

    def _validate(self) -> None:
        _check_int(self, "http_error_code")
        _check_str(self, "error_description")


@dataclass(frozen=True)
class UnknownFrame(Frame):
    """A frame whose ``type`` this version does not know; ``payload`` keeps every other key as sent."""

    frame_type: str
    payload: Mapping[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        """The wire ``type`` as the peer sent it."""
        return self.frame_type

    def _validate(self) -> None:
        _check_str(self, "frame_type")
        if self.frame_type in FRAME_TYPES:
            raise _fail(self, "frame_type", f"{self.frame_type!r} is a known type; build its own frame class")
        if not isinstance(self.payload, Mapping) or "type" in self.payload:
            raise _fail(self, "payload", "must be a mapping without 'type'")

    def to_dict(self) -> dict[str, Any]:
        """The wire object exactly as received (``type`` first). Next: :func:`serialize`."""
        return {"type": self.frame_type, **self.payload, **self.extra}


CLIENT_FRAME_TYPES = tuple(t for t in FRAME_TYPES if t.startswith("client."))
SERVER_FRAME_TYPES = tuple(t for t in FRAME_TYPES if t.startswith("server."))


# --- parse / serialize --------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise FrameError(f"{name} is not valid JSON")


def parse(text: str | bytes) -> Frame:
    """Parse one wire message into its frame.

    Unknown types become :class:`UnknownFrame`; unknown keys of known types land in ``extra``. Anything
    else that is wrong raises :class:`FrameError` naming the field. Next: feed the frame to a
    connection's state machine, or log it.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError("is not UTF-8 text; send JSON in a text frame") from exc
    if not isinstance(text, str):
        raise FrameError(f"must be a JSON text, got {type(text).__name__}")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except FrameError:
        raise
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"is not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise FrameError(f"must be a JSON object with a 'type', got {type(obj).__name__}")
    return from_dict(obj)


def from_dict(obj: Mapping[str, Any]) -> Frame:
    """Build a frame from an already-decoded wire object (see :func:`parse` for the rules)."""
    frame_type = obj.get("type")
    if not isinstance(frame_type, str) or not frame_type:
        raise FrameError("is missing or not a non-empty string", field="type")
    rest = {k: v for k, v in obj.items() if k != "type"}
    cls = FRAME_TYPES.get(frame_type)
    if cls is None:
        return UnknownFrame(frame_type=frame_type, payload=rest)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name == "extra":
            continue
        if f.name in rest:
            kwargs[f.name] = rest.pop(f.name)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise FrameError("is required", field=f.name, frame_type=frame_type)
    return cls(**kwargs, extra=rest)


def serialize(frame: Frame) -> str:
    """Encode a frame as the JSON text of one WebSocket text message. Next: send it."""
    if not isinstance(frame, Frame):
        raise TypeError(f"serialize() takes a Frame, got {type(frame).__name__}")
    return json.dumps(frame.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)

