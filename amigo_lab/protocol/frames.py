"""Frames: one frozen dataclass per wire type of protocol.md §3 and §4, plus :class:`UnknownFrame`.

Frames are values. They are compared by value, carry their wire type as the class constant ``TYPE``, and
know nothing of time or direction (the frame log adds those). Field names are the wire keys; other names a
server may use are mapped by :data:`amigo_lab.protocol.wire.FIELD_ALIASES`. Keys a known frame does not
define are kept in ``extra`` (a wire key named ``extra`` included) so nothing the peer sent is lost.

Be liberal in what you accept, exact in what you send:

- **Client frames** (what the emulator reads) are checked as protocol.md requires: a bad field raises
  :class:`FrameError` naming it. Checks of id formats that only a server can judge are in
  :meth:`Frame.strict_problems`, which the server role of the state machine applies.
- **Server frames** (what the client reads) are read leniently. A missing boolean or counter takes its
  natural default (``stop`` false, ``sequence_number`` None = not given, ``conversation_completed`` false,
  ``full_message`` None = not given); plausible alternative shapes are normalised (a string
  ``http_error_code``, the alignment shapes of :mod:`~amigo_lab.protocol.wire`); a secondary field that still
  cannot be read (an alignment, an action, a counter) takes its default, its raw value is kept in
  :attr:`Frame.unparsed` and a line is added to :attr:`Frame.problems`, while the primary payload (the audio
  or text) survives. Only a frame without its primary payload raises :class:`FrameError`.

Use :func:`parse` on a received text and :func:`serialize` on a frame to send; ``parse(serialize(f)) == f``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from amigo_lab.protocol import wire
from amigo_lab.protocol.constants import (
    DEFAULT_VERSION_SET,
    MESSAGE_TYPE_USER,
    MESSAGE_TYPES,
)
from amigo_lab.protocol.errors import FrameError

_HEX24 = re.compile(r"[0-9a-f]{24}\Z")

#: Wire type -> frame class. Filled by :func:`_register`; the single source of truth for :func:`parse`.
FRAME_TYPES: dict[str, type[Frame]] = {}

#: An alignment: ``((ms, char), ...)``, the start of each character in the piece's audio.
Alignment = tuple[tuple[float, str], ...]


def _register(cls: type[Frame]) -> type[Frame]:
    FRAME_TYPES[cls.TYPE] = cls
    return cls


# --- strict field checks (client frames): each raises FrameError naming the field -------------------------


def _fail(frame: Frame, name: str, message: str) -> FrameError:
    return FrameError(message, field=name, frame_type=frame.type)


def _check_str(frame: Frame, name: str, *, non_empty: bool = False) -> None:
    value = getattr(frame, name)
    if not isinstance(value, str):
        raise _fail(frame, name, f"must be a string, got {type(value).__name__}")
    if non_empty and not value.strip():
        raise _fail(frame, name, "must not be empty")


def _check_bool(frame: Frame, name: str) -> None:
    if not isinstance(getattr(frame, name), bool):
        raise _fail(frame, name, f"must be true or false, got {getattr(frame, name)!r}")


def _check_base64(frame: Frame, name: str) -> bytes | None:
    """Validate an optional base64 field and return its bytes (validating means decoding; keep the result)."""
    value = getattr(frame, name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(frame, name, f"must be a base64 string or null, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(frame, name, f"is not valid base64 ({exc})") from exc


def _is_number(value: object) -> bool:
    # numbers.Real also admits numpy scalars a server-side caller may pass; the wire only has int and float.
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value: Any) -> float:
    """A number as a built-in int or float, so it serialises as JSON."""
    return value if type(value) in (int, float) else float(value)


# --- lenient field readers (server frames): normalise, or default and note the problem ----------------------

_NO_RAW = object()


def _lenient(frame: Frame, name: str, read: Callable[[Any], Any], default: Any, want: str) -> None:
    """Replace field ``name`` by ``read(value)``; when that raises ValueError, by ``default``, noting why."""
    value = getattr(frame, name)
    try:
        normal = read(value)
    except ValueError:
        frame._note(name, f"{name}: want {want}, got {_short(value)}; read as {default!r}", raw=value)
        normal = default
    if normal is not value:
        object.__setattr__(frame, name, normal)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _read_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(value)


def _read_opt_bool(value: Any) -> bool | None:
    return None if value is None else _read_bool(value)


def _read_opt_int(value: Any) -> int | None:
    # Readers raise ValueError for "cannot read this"; _lenient turns it into the default and a problem.
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise ValueError(value)


def _read_opt_number(value: Any) -> float | None:
    if value is None:
        return None
    if _is_number(value):
        return _plain(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(value) from None
        if math.isfinite(number):
            return number
    raise ValueError(value)


def _read_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if _is_number(value):
        return str(_plain(value))
    raise ValueError(value)


def _read_opt_str(value: Any) -> str | None:
    return None if value is None else _read_str(value)


def _read_action(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping) and isinstance(value.get("type"), str):
        return value
    if isinstance(value, str) and value:
        return {"type": value}  # a bare action type
    raise ValueError(value)


def _pick(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    return next((mapping[k] for k in keys if k in mapping), None)


def _ms_of(item: Mapping[str, Any]) -> float:
    ms = _pick(item, wire.ALIGNMENT_MS_KEYS)
    if _is_number(ms):
        return _plain(ms)
    seconds = _pick(item, wire.ALIGNMENT_SECONDS_KEYS)
    if _is_number(seconds):
        return float(seconds) * 1000.0
    raise ValueError(item)


def _pair(item: Any) -> tuple[float, str]:
    if isinstance(item, Mapping):
        char = _pick(item, wire.ALIGNMENT_CHAR_KEYS)
        if isinstance(char, str):
            return _ms_of(item), char
        raise ValueError(item)
    if isinstance(item, (list, tuple)) and len(item) == 2:
        first, second = item
        if _is_number(first) and isinstance(second, str):
            return _plain(first), second
        if isinstance(first, str) and _is_number(second):
            return _plain(second), first
    raise ValueError(item)


def normalise_alignment(value: Any) -> Alignment | None:
    """A ``transcript_alignment`` in any shape :mod:`~amigo_lab.protocol.wire` names, as ``((ms, char), ...)``.

    Accepts ``[ms, char]`` or ``[char, ms]`` pairs, a list of objects (``{"char": "h", "start_ms": 0}``) and a
    dict of arrays (``{"chars": [...], "charStartTimesMs": [...]}``, or start times in seconds). None stays
    None. Raises ValueError for anything else (the parser then keeps the raw value and notes the problem).
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(_pair(item) for item in value)
    if isinstance(value, Mapping):
        chars = _pick(value, wire.ALIGNMENT_CHARS_ARRAY_KEYS)
        if isinstance(chars, str):
            chars = list(chars)
        times = _pick(value, wire.ALIGNMENT_MS_ARRAY_KEYS)
        scale = 1.0
        if times is None:
            times, scale = _pick(value, wire.ALIGNMENT_SECONDS_ARRAY_KEYS), 1000.0
        if (isinstance(chars, list) and isinstance(times, list) and len(chars) == len(times)
                and all(isinstance(c, str) for c in chars) and all(_is_number(x) for x in times)):
            return tuple((_plain(x) * scale if scale != 1.0 else _plain(x), c)
                         for x, c in zip(times, chars, strict=True))
    raise ValueError(value)


# Decoded audio is kept on the frame under this attribute, outside the dataclass fields (so equality,
# repr and serialization are unchanged): audio is decoded once per frame, not once per reader.
_DECODED = "_decoded_audio"


_URL_SAFE = str.maketrans("-_", "+/")
_LINE_BREAKS = re.compile(r"[\r\n]+")
#: The shortest text read as base64 in a form other than the standard one: 48 bytes, 1.5 ms of PCM16 (a piece
#: of audio is far longer, while a short word of text could pass for unpadded base64).
MIN_MENDED_BASE64 = 64


def decode_audio_base64(text: str) -> tuple[bytes, str | None]:
    """Decode the base64 audio of an agent piece: ``(bytes, None)`` for standard padded base64, else
    ``(bytes, what was mended)`` for the forms other encoders emit (a ``data:audio/...;base64,`` prefix, line
    breaks every 76 characters, the URL-safe alphabet, no padding). Raises ``binascii.Error`` / ValueError when
    it is neither.

    Text with spaces, or shorter than :data:`MIN_MENDED_BASE64`, is only read as standard base64, so a text
    piece is not taken for audio. Next: the bytes are wire audio in the session's ``audio_format``.
    """
    try:
        return base64.b64decode(text, validate=True), None
    except (binascii.Error, ValueError):
        if len(text) < MIN_MENDED_BASE64 or " " in text:
            raise
    mended = []
    head, comma, body = text.partition(",")
    if comma and head.startswith("data:") and head.endswith(";base64"):  # as FileReader.readAsDataURL writes it
        text = body
        kind = head.removeprefix("data:").removesuffix(";base64")
        mended.append(f"a data URI prefix ({kind})" if kind else "a data URI prefix")
    compact = _LINE_BREAKS.sub("", text)
    if len(compact) != len(text):
        mended.append("line breaks")
    if "-" in compact or "_" in compact:
        compact = compact.translate(_URL_SAFE)
        mended.append("the URL-safe alphabet")
    if len(compact) % 4 == 1:
        raise binascii.Error("its length is one more than a multiple of four, which no base64 has")
    if len(compact) % 4:
        compact += "=" * (-len(compact) % 4)
        mended.append("no padding")
    return base64.b64decode(compact, validate=True), ", ".join(mended)


def _encode_base64(data: bytes | bytearray | memoryview | None) -> str | None:
    return None if data is None else base64.b64encode(bytes(data)).decode("ascii")


# --- the frames ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """Base of every frame. ``TYPE`` is the wire ``type``; ``extra`` keeps unknown keys the peer sent.

    :attr:`problems` and :attr:`unparsed` tell what a lenient read could not use; they are outside equality.
    """

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

    @property
    def problems(self) -> tuple[str, ...]:
        """What a lenient read could not use, one line each (empty for a well-formed frame)."""
        return tuple(self.__dict__.get("_problems", ()))

    @property
    def unparsed(self) -> Mapping[str, Any]:
        """Field name -> the raw wire value that could not be read (the field then holds its default)."""
        return dict(self.__dict__.get("_unparsed", {}))

    def _note(self, name: str, problem: str, *, raw: Any = _NO_RAW) -> None:
        self.__dict__.setdefault("_problems", []).append(problem)
        if raw is not _NO_RAW:
            self.__dict__.setdefault("_unparsed", {})[name] = raw

    def __post_init__(self) -> None:
        if not isinstance(self.extra, Mapping):
            raise _fail(self, "extra", "must be a mapping of extra wire keys")
        clash = (_defined_keys(type(self)) | {"type"}) & self.extra.keys()
        if clash:
            raise _fail(self, "extra", f"repeats defined keys {sorted(clash)}")
        self._validate()

    def _validate(self) -> None:
        """Check (client frames) or normalise (server frames) every field."""

    def strict_problems(self) -> list[str]:
        """Format checks a server applies to what a client sent (e.g. id formats); empty when all pass.

        A client never applies them to server frames: ids are the server's business. Next (server): answer a
        non-empty list with a 400 ``server.error`` naming the problems.
        """
        return []

    def to_dict(self) -> dict[str, Any]:
        """The wire object as a dict (``type`` first, then fields, then extras). Next: :func:`serialize`."""
        out: dict[str, Any] = {"type": self.type}
        for name in _field_names(type(self)):
            out[name] = _to_wire(getattr(self, name))
        out.update(self.extra)
        return out


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_DEFINED_KEYS: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    """A frame class's wire fields in order (``extra`` aside), once per class: walking ``dataclasses.fields``
    for every frame parsed or sent was about a tenth of a busy server's CPU per frame."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls) if f.name != "extra")
        _DEFINED_KEYS[cls] = frozenset(names)
    return names


def _defined_keys(cls: type) -> frozenset[str]:
    _field_names(cls)
    return _DEFINED_KEYS[cls]


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

    TYPE: ClassVar[str] = wire.START_CONVERSATION_TYPE
    service_id: str
    service_version_set_name: str = DEFAULT_VERSION_SET

    def _validate(self) -> None:
        _check_str(self, "service_id")
        if not _HEX24.match(self.service_id):
            raise _fail(self, "service_id", f"must be 24 lowercase hex characters, got {self.service_id!r}")
        _check_str(self, "service_version_set_name", non_empty=True)


@_register
@dataclass(frozen=True)
class ContinueConversation(Frame):
    """Continue an unfinished conversation (Option B). The server answers ``server.conversation-continued``.

    The id is the one the server gave; the client does not judge its format (the emulator does, see
    :meth:`strict_problems`).
    """

    TYPE: ClassVar[str] = wire.CONTINUE_CONVERSATION_TYPE
    conversation_id: str

    def _validate(self) -> None:
        _check_str(self, "conversation_id", non_empty=True)

    def strict_problems(self) -> list[str]:
        """The emulator's ids are 24 lowercase hex characters (protocol.md §3)."""
        if _HEX24.match(self.conversation_id):
            return []
        return [f"conversation_id must be 24 lowercase hex characters, got {self.conversation_id!r}"]


@_register
@dataclass(frozen=True)
class NewTextMessage(Frame):
    """A user's text turn, or an external event (``message_type="external-event"``)."""

    TYPE: ClassVar[str] = wire.NEW_TEXT_MESSAGE_TYPE
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

    TYPE: ClassVar[str] = wire.NEW_AUDIO_MESSAGE_TYPE
    audio: str | None

    def _validate(self) -> None:
        object.__setattr__(self, _DECODED, _check_base64(self, "audio"))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview | None) -> NewAudioMessage:
        """Wrap raw audio bytes (or None for end of audio). Next: :func:`serialize` or a session's send."""
        return cls(audio=_encode_base64(data))

    def audio_bytes(self) -> bytes | None:
        """The decoded audio bytes, or None at end of audio."""
        decoded: bytes | None = getattr(self, _DECODED)
        return decoded


@_register
@dataclass(frozen=True)
class SwitchVadMode(Frame):
    """Turn server-side voice activity detection on or off; answered by ``server.vad-mode-switched``."""

    TYPE: ClassVar[str] = wire.SWITCH_VAD_MODE_TYPE
    vad_mode_on: bool

    def _validate(self) -> None:
        _check_bool(self, "vad_mode_on")


@_register
@dataclass(frozen=True)
class ExtendTimeout(Frame):
    """Reset the server's idle timer (protocol.md §6) without saying anything."""

    TYPE: ClassVar[str] = wire.EXTEND_TIMEOUT_TYPE


@_register
@dataclass(frozen=True)
class FinishConversation(Frame):
    """Finish the conversation for good; the server then closes with 1000."""

    TYPE: ClassVar[str] = wire.FINISH_CONVERSATION_TYPE


@_register
@dataclass(frozen=True)
class CloseConnection(Frame):
    """Close the socket but leave the conversation open, to continue it later (Option B)."""

    TYPE: ClassVar[str] = wire.CLOSE_CONNECTION_TYPE


# Server -> client (protocol.md §4), read leniently ------------------------------------------------------


@dataclass(frozen=True)
class _InitAck(Frame):
    conversation_id: str = ""

    def _validate(self) -> None:
        _lenient(self, "conversation_id", _read_str, "", "a string")
        if not self.conversation_id:
            self._note("conversation_id", "conversation_id: missing or empty; the conversation cannot be "
                       "continued later")


@_register
@dataclass(frozen=True)
class ConversationCreated(_InitAck):
    """The answer to ``client.start-conversation``; the agent's greeting follows."""

    TYPE: ClassVar[str] = wire.CONVERSATION_CREATED_TYPE


@_register
@dataclass(frozen=True)
class ConversationContinued(_InitAck):
    """The answer to ``client.continue-conversation``."""

    TYPE: ClassVar[str] = wire.CONVERSATION_CONTINUED_TYPE


@_register
@dataclass(frozen=True)
class UserMessageAvailable(Frame):
    """The user's turn as the server understood it: the text, or the transcript of the audio."""

    TYPE: ClassVar[str] = wire.USER_MESSAGE_AVAILABLE_TYPE
    message_id: str = ""
    user_message: str = ""

    def _validate(self) -> None:
        _lenient(self, "message_id", _read_str, "", "a string")
        _lenient(self, "user_message", _read_str, "", "a string")


@_register
@dataclass(frozen=True)
class CurrentAgentAction(Frame):
    """An agent action (``action["type"]``: e.g. ``tool-call-started``, ``action-too-long``).

    An action that is not an object with a string ``type`` is kept raw in :attr:`unparsed`; ``action`` is then
    empty and :attr:`action_type` is ``""``.
    """

    TYPE: ClassVar[str] = wire.CURRENT_AGENT_ACTION_TYPE
    action: Mapping[str, Any] = field(default_factory=dict)

    def _validate(self) -> None:
        _lenient(self, "action", _read_action, {}, "an object with a string 'type'")

    @property
    def action_type(self) -> str:
        """The action's own type, e.g. ``"tool-call-started"`` (``""`` when the action could not be read)."""
        kind = self.action.get("type")
        return kind if isinstance(kind, str) else ""


@_register
@dataclass(frozen=True)
class NewMessage(Frame):
    """One piece of the agent's message: text, or base64 audio (see :meth:`audio_bytes`).

    ``sequence_number`` rises from 0 within a ``message_id`` (None: the server did not say); the last piece
    has ``stop=True``. ``transcript_alignment`` gives ``(ms, char)`` pairs for audio pieces, or None.
    ``message`` is the primary payload: a piece without it cannot be read.
    """

    TYPE: ClassVar[str] = wire.NEW_MESSAGE_TYPE
    message: str
    stop: bool = False
    sequence_number: int | None = None
    message_id: str = ""
    transcript_alignment: Alignment | None = None

    def _validate(self) -> None:
        if self.message is None:
            object.__setattr__(self, "message", "")
            self._note("message", "message: null, read as an empty piece")
        elif not isinstance(self.message, str):
            raise _fail(self, "message", f"must be a string (text or base64 audio), got "
                                         f"{type(self.message).__name__}")
        _lenient(self, "stop", _read_bool, False, "true or false")
        _lenient(self, "sequence_number", _read_opt_int, None, "an integer")
        if self.sequence_number is not None and self.sequence_number < 0:
            self._note("sequence_number", f"sequence_number: negative ({self.sequence_number})")
        _lenient(self, "message_id", _read_str, "", "a string")
        _lenient(self, "transcript_alignment", normalise_alignment, None,
                 "[ms, char] pairs, objects with a char and a start, or arrays of chars and start times")

    def audio_bytes(self) -> bytes:
        """Decode ``message`` as base64 audio (for ``response_format=voice``). Raises FrameError if it is not.

        The bytes are decoded on the first call and kept, so every reader of the frame shares one decode.
        Base64 in another encoder's form is decoded too (:func:`decode_audio_base64`) and noted in ``problems``.
        """
        decoded: bytes | None = self.__dict__.get(_DECODED)
        if decoded is None:
            try:
                decoded, mended = decode_audio_base64(self.message)
            except (binascii.Error, ValueError) as exc:
                raise _fail(self, "message", f"is not base64 audio ({exc}); is response_format 'text'?") from exc
            if mended:
                self._note("message", f"message: base64 audio with {mended}; decoded")
            object.__setattr__(self, _DECODED, decoded)
        return decoded

    @classmethod
    def audio_piece(cls, data: bytes, *, stop: bool, sequence_number: int, message_id: str,
                    transcript_alignment: Alignment | None = None) -> NewMessage:
        """Build an audio piece from raw bytes (the server side's constructor)."""
        return cls(message=_encode_base64(data) or "", stop=stop, sequence_number=sequence_number,
                   message_id=message_id, transcript_alignment=transcript_alignment)


@_register
@dataclass(frozen=True)
class InteractionComplete(Frame):
    """The end of an interaction. ``conversation_completed=True``: the agent ended the conversation.

    ``full_message`` None: the server did not send it (use the pieces' text).
    """

    TYPE: ClassVar[str] = wire.INTERACTION_COMPLETE_TYPE
    message_id: str = ""
    interaction_id: str = ""
    full_message: str | None = None
    conversation_completed: bool = False

    def _validate(self) -> None:
        _lenient(self, "message_id", _read_str, "", "a string")
        _lenient(self, "interaction_id", _read_str, "", "a string")
        _lenient(self, "full_message", _read_opt_str, None, "a string")
        _lenient(self, "conversation_completed", _read_bool, False, "true or false")


@_register
@dataclass(frozen=True)
class VadModeSwitched(Frame):
    """The answer to ``client.switch-vad-mode``; ``vad_mode_on`` None: the server did not say which mode."""

    TYPE: ClassVar[str] = wire.VAD_MODE_SWITCHED_TYPE
    vad_mode_on: bool | None = None

    def _validate(self) -> None:
        _lenient(self, "vad_mode_on", _read_opt_bool, None, "true or false")


@dataclass(frozen=True)
class _VadEvent(Frame):
    audio_ms: float | None = None

    def _validate(self) -> None:
        _lenient(self, "audio_ms", _read_opt_number, None, "a finite number")


@_register
@dataclass(frozen=True)
class VadSpeechStarted(_VadEvent):
    """Server VAD heard speech begin at ``audio_ms`` of the user's stream. Flush agent playback (barge-in)."""

    TYPE: ClassVar[str] = wire.VAD_SPEECH_STARTED_TYPE


@_register
@dataclass(frozen=True)
class VadSpeechEnded(_VadEvent):
    """Server VAD heard speech end at ``audio_ms``; the turn is being answered."""

    TYPE: ClassVar[str] = wire.VAD_SPEECH_ENDED_TYPE


@_register
@dataclass(frozen=True)
class VadSpeechResetZero(_VadEvent):
    """The speech detected was too short to be a turn (a cough, a click); it was discarded."""

    TYPE: ClassVar[str] = wire.VAD_SPEECH_RESET_ZERO_TYPE


@_register
@dataclass(frozen=True)
class ServerError(Frame):
    """The server's ``server.error``: an HTTP-like code and a description. 400s keep the connection open.

    ``http_error_code`` None: the server sent no readable code (treat it as a failure, not a recoverable 400).
    """

    TYPE: ClassVar[str] = wire.ERROR_TYPE
    http_error_code: int | None = None
    error_description: str = ""

    def _validate(self) -> None:
        _lenient(self, "http_error_code", _read_opt_int, None, "an integer")
        _lenient(self, "error_description", _read_str, "", "a string")


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


_DECODER = json.JSONDecoder()


def _skip_blank(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def split_batched(text: str) -> list[str] | None:
    """The JSON texts of a message that holds several JSON values one after another (one per line, as a
    batching gateway sends them, or back to back), each verbatim; None for any other text.

    The contract is one frame per message; the client reads each part as a message of its own and notes the
    batch. Call it only after :func:`parse` failed: it decodes the whole text again. Next: :func:`parse`
    each part.
    """
    parts: list[str] = []
    position = _skip_blank(text, 0)
    while position < len(text):
        try:
            _, end = _DECODER.raw_decode(text, position)
        except ValueError:
            return None
        parts.append(text[position:end])
        position = _skip_blank(text, end)
    return parts if len(parts) > 1 else None


def parse(text: str | bytes | bytearray) -> Frame:
    """Parse one wire message into its frame.

    Unknown types become :class:`UnknownFrame`; unknown keys of known types land in ``extra``; server frames
    are read leniently (see the module docstring; look at :attr:`Frame.problems`). A text that is not a JSON
    object with a ``type``, or a frame without its primary payload, raises :class:`FrameError` naming the
    field. Next: feed the frame to a connection's state machine, or log it.
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
    # A lone UTF-16 surrogate ("\\ud83d", half an emoji a JavaScript peer split) is valid JSON but not valid
    # Unicode: nothing could encode the string again. Only a \\u escape can bring one, so look only then.
    scrubbed = _scrub_surrogates(obj) if _SURROGATE_ESCAPE.search(text) else obj
    frame = from_dict(scrubbed)
    if scrubbed is not obj and scrubbed != obj:
        frame._note("", LONE_SURROGATE_PROBLEM)
    return frame


#: The problem noted on a frame whose strings held lone UTF-16 surrogates (they read as U+FFFD).
LONE_SURROGATE_PROBLEM = "the frame holds lone UTF-16 surrogates (half a character?); they read as U+FFFD"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrub_surrogates(value: Any) -> Any:
    """``value`` (a decoded JSON value) with every lone UTF-16 surrogate in its strings replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_scrub_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_scrub_surrogates(k): _scrub_surrogates(v) for k, v in value.items()}
    return value


def from_dict(obj: Mapping[str, Any]) -> Frame:
    """Build a frame from an already-decoded wire object (see :func:`parse` for the rules)."""
    frame_type = obj.get("type")
    if not isinstance(frame_type, str) or not frame_type:
        raise FrameError("is missing or not a non-empty string", field="type")
    rest = {k: v for k, v in obj.items() if k != "type"}
    spelled = frame_type
    frame_type = wire.TYPE_ALIASES.get(frame_type, frame_type)
    cls = FRAME_TYPES.get(frame_type)
    if cls is None:
        ours = wire.server_type_spelled_otherwise(frame_type)
        if ours is None:
            return UnknownFrame(frame_type=frame_type, payload=rest)
        frame_type, cls = ours, FRAME_TYPES[ours]
    for theirs, ours in wire.FIELD_ALIASES.get(frame_type, {}).items():
        if theirs in rest and ours not in rest:
            rest[ours] = rest.pop(theirs)
    for name in wire.REQUIRED.get(frame_type, ()):
        if name not in rest:
            raise FrameError("is required", field=name, frame_type=frame_type)
    kwargs = {name: rest.pop(name) for name in _field_names(cls) if name in rest}
    frame = cls(**kwargs, extra=rest)
    if spelled != frame_type and spelled not in wire.TYPE_ALIASES:
        frame._note("type", f"type: {spelled!r} read as {frame_type!r} ({wire.TYPE_SPELLING_NOTE})")
    return frame


def serialize(frame: Frame) -> str:
    """Encode a frame as the JSON text of one WebSocket text message. Next: send it."""
    if not isinstance(frame, Frame):
        raise TypeError(f"serialize() takes a Frame, got {type(frame).__name__}")
    return json.dumps(frame.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
