"""The frame log's schema: its columns, the local entry kinds, file names and the log's error."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from amigo_lab import audio as _audio
from amigo_lab.errors import AmigoError

#: Column name -> pandas dtype, in DataFrame order. Analysis code depends on these names and dtypes.
#: ``wire`` is the exact wire text of the frame (tokens redacted); every other column is a projection of it
#: or of the envelope (``seq``, ``t``, ``wall``, ``direction``, the audio reference).
COLUMNS: dict[str, str] = {
    "seq": "int64",
    "t": "float64",
    "wall": "datetime64[ns, UTC]",
    "direction": "string",
    "type": "string",
    "conversation_id": "string",
    "interaction_id": "string",
    "message_id": "string",
    "sequence_number": "Int64",
    "stop": "boolean",
    "size": "int64",
    "text": "string",
    "message_type": "string",
    "audio_format": "string",
    "audio_offset": "Int64",
    "audio_bytes": "Int64",
    "audio_ms": "Float64",
    "vad_ms": "Float64",
    "vad_mode_on": "boolean",
    "action_type": "string",
    "action": "string",
    "http_error_code": "Int64",
    "error_description": "string",
    "close_code": "Int64",
    "close_reason": "string",
    "conversation_completed": "boolean",
    "played_ms": "Float64",
    "alignment": "string",
    "extra": "string",
    "flags": "string",
    "wire": "string",
}

DIRECTIONS = ("sent", "received", "local")

#: ``type`` of an entry whose wire text could not be parsed (kept whole in ``wire``).
INVALID_FRAME = "client.invalid-frame"
#: ``type`` of a binary WebSocket message; its bytes are kept as audio (``audio_offset`` / ``audio_bytes``).
BINARY_FRAME = "binary"

#: Values of the ``flags`` column (comma-separated when several apply).
FLAG_INVALID_UNICODE = "invalid-unicode"   # a string held a lone UTF-16 surrogate; shown as U+FFFD in columns
FLAG_UNPARSED = "unparsed"                 # the wire text is not a frame this version can parse
FLAG_BINARY = "binary"                     # a binary message; its bytes are the entry's audio
FLAG_RESERIALIZED = "reserialized"         # no wire text was given: ``wire`` is the frame serialised again


@dataclass(frozen=True)
class LocalKind:
    """One kind of entry the lab records itself (direction ``"local"``): its name, the columns it may set, and
    what it means. Register more with :func:`register_local_kind`."""

    name: str
    fields: frozenset[str]
    doc: str


# Every local entry may carry a free-form ``extra`` mapping and a human ``text``.
_ALWAYS = frozenset({"extra", "text"})

#: Local kind name -> :class:`LocalKind`. ``FrameLog.record_local`` accepts these kinds and their fields only.
LOCAL_KINDS: dict[str, LocalKind] = {}


def register_local_kind(name: str, fields: tuple[str, ...] | frozenset[str], doc: str) -> LocalKind:
    """Declare a local entry kind (``"area.what-happened"``) and the columns it may set; returns it.

    Next: ``log.record_local(name, **fields)``. Re-registering a name with the same fields is a no-op.
    """
    if not isinstance(name, str) or "." not in name or name != name.strip():
        raise FrameLogError(f"a local kind is named 'area.what-happened' (e.g. 'playback.progress'), got {name!r}")
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise FrameLogError(f"local kind {name!r} names unknown columns {sorted(unknown)}; choose from {list(COLUMNS)}")
    kind = LocalKind(name, frozenset(fields) | _ALWAYS, doc)
    previous = LOCAL_KINDS.get(name)
    if previous is not None and previous.fields != kind.fields:
        raise FrameLogError(f"local kind {name!r} is already registered with fields {sorted(previous.fields)}")
    LOCAL_KINDS[name] = kind
    return kind


for _name, _fields, _doc in (
    ("connection.opened", (), "the WebSocket opened (extra: url without token, subprotocol)"),
    ("connection.closed", ("close_code", "close_reason"), "the WebSocket closed with this code and reason"),
    ("connection.reconnecting", ("close_code", "close_reason", "conversation_id"),
     "the socket dropped with a transient code; the session reconnects (extra: attempt, delay)"),
    ("connection.resumed", ("conversation_id",), "a reconnect resumed the conversation"),
    (INVALID_FRAME, ("error_description", "wire", "size", "message_id"),
     "a received message that is not a frame this version parses; its text is kept whole in wire"),
    ("client.protocol-violation", ("error_description", "message_id", "sequence_number", "interaction_id"),
     "the server broke a rule of the protocol; the frame was still delivered"),
    ("client.turn-resent", ("message_id", "interaction_id"),
     "a turn in flight when the socket dropped was sent again after the reconnect"),
    ("client.turn-failed", ("error_description", "message_id", "interaction_id"),
     "a turn ended with an error (deadline passed, socket closed, voided)"),
    ("playback.progress", ("message_id", "played_ms"), "the player has played played_ms of this message"),
    ("playback.flushed", ("message_id", "played_ms"), "the player dropped queued audio (barge-in) after played_ms"),
    ("playback.finished", ("message_id", "played_ms"), "the player played this message to its end"),
    ("user.speech-ended", ("audio_ms",), "a client-side hint: the user stopped speaking at audio_ms of their audio"),
):
    register_local_kind(_name, _fields, _doc)

#: The local kinds known when the lab was imported (see :data:`LOCAL_KINDS` for the live table).
LOCAL_EVENT_TYPES = tuple(LOCAL_KINDS)

META_FILE = "meta.json"
FRAMES_FILE = "frames.jsonl"
PARQUET_FILE = "frames.parquet"
#: Direction -> audio file name.
AUDIO_FILES = {"sent": "audio-sent.bin", "received": "audio-received.bin"}

CLOCK_NOTE = ("t: seconds on time.monotonic() since started_at (use it to order and subtract); "
              "wall: UTC system clock when the entry was recorded")

STRING_COLUMNS = tuple(name for name, dtype in COLUMNS.items() if dtype == "string")
JSON_COLUMNS = ("action", "alignment", "extra")
_PCM_BYTES_PER_MS = _audio.SAMPLE_RATE * 2 / 1000.0


class FrameLogError(AmigoError):
    """A recorded session cannot be written or read: the folder, a file, or an entry is wrong."""


def default_sessions_dir() -> Path:
    """Where logs go when no folder is given: ``<temp>/amigo_lab-sessions``. Next: ``load_session(path)``."""
    return Path(tempfile.gettempdir()) / "amigo_lab-sessions"


def pcm_ms(n_bytes: int) -> float:
    """Milliseconds of wire PCM16 (mono, 16 kHz) in ``n_bytes`` bytes."""
    return n_bytes / _PCM_BYTES_PER_MS


def wire_audio_ms(data: bytes, audio_format: str) -> float:
    """Duration in ms of one piece of wire audio; MP3 pieces are decoded to measure them."""
    if audio_format == "pcm":
        return pcm_ms(len(data))
    return len(_audio.decode_wire_audio(data, audio_format)) * 1000.0 / _audio.SAMPLE_RATE
