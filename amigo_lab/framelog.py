"""The frame log: an append-only, durable record of every frame of a session, and its reader.

A recorded session is a folder::

    DIR/meta.json           lab version, url (never a token), org, region, service_id, formats, started_at, clock note
    DIR/frames.jsonl        one JSON object per entry, written and flushed as it happens
    DIR/audio-sent.bin      raw wire audio (pcm or mp3, as sent) of client.new-audio-message frames, concatenated
    DIR/audio-received.bin  raw wire audio of server.new-message audio pieces, concatenated
    DIR/frames.parquet      the DataFrame, written by export_parquet() and on close()

A crash loses at most the entry being written: every line of ``frames.jsonl`` is flushed to the operating
system before :meth:`FrameLog.record` returns. Audio lives out of band (``audio_offset`` / ``audio_bytes``
point into the ``.bin`` of the entry's direction) so entries stay small.

Each entry has the columns of :data:`COLUMNS`, in that order; :meth:`FrameLog.to_dataframe` and
:func:`load_session` give the same DataFrame (pandas nullable dtypes, null where a column does not apply).
Times: ``t`` is seconds on ``time.monotonic()`` since the log started, ``wall`` the UTC system clock.

Tokens never reach the disk: every string is passed through :func:`amigo_lab.protocol.redact` with the
secrets the log was given.

Write with :class:`FrameLog` (a session does it for you); read with :func:`load_session`, then use
:attr:`RecordedSession.frames` and :meth:`RecordedSession.audio_track`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets as _secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from amigo_lab import audio as _audio
from amigo_lab.errors import AmigoError
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
    redact,
)

logger = logging.getLogger("amigo_lab.framelog")

#: Column name -> pandas dtype, in DataFrame order. Analysis code depends on these names and dtypes.
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
}

DIRECTIONS = ("sent", "received", "local")

#: Types of entries the lab records itself (direction ``"local"``); no frame crossed the wire for them.
LOCAL_EVENT_TYPES = (
    "connection.opened",
    "connection.closed",
    "connection.reconnecting",
    "client.invalid-frame",
    "client.protocol-violation",
    "playback.progress",
    "playback.flushed",
    "playback.finished",
)

META_FILE = "meta.json"
FRAMES_FILE = "frames.jsonl"
PARQUET_FILE = "frames.parquet"
#: Direction -> audio file name.
AUDIO_FILES = {"sent": "audio-sent.bin", "received": "audio-received.bin"}

CLOCK_NOTE = ("t: seconds on time.monotonic() since started_at (use it to order and subtract); "
              "wall: UTC system clock when the entry was recorded")

_JSON_COLUMNS = ("action", "alignment", "extra")
_STRING_COLUMNS = tuple(name for name, dtype in COLUMNS.items() if dtype == "string")
_PCM_BYTES_PER_MS = _audio.SAMPLE_RATE * 2 / 1000.0


class FrameLogError(AmigoError):
    """A recorded session cannot be written or read: the folder, a file, or an entry is wrong."""


Listener = Callable[[dict[str, Any], "Frame | None"], None]


def default_sessions_dir() -> Path:
    """Where logs go when no folder is given: ``<temp>/amigo_lab-sessions``."""
    return Path(tempfile.gettempdir()) / "amigo_lab-sessions"


def _fresh_directory() -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return default_sessions_dir() / f"{stamp}-{_secrets.token_hex(3)}"


def _lab_version() -> str:
    from amigo_lab import __version__
    return __version__


def _json_text(value: Any) -> str | None:
    """A JSON string for a column that holds JSON (None stays None, strings are taken as JSON already)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def pcm_ms(n_bytes: int) -> float:
    """Milliseconds of wire PCM16 (mono, 16 kHz) in ``n_bytes`` bytes."""
    return n_bytes / _PCM_BYTES_PER_MS


def wire_audio_ms(data: bytes, audio_format: str) -> float:
    """Duration in ms of one piece of wire audio; MP3 pieces are decoded to measure them."""
    if audio_format == "pcm":
        return pcm_ms(len(data))
    return len(_audio.decode_wire_audio(data, audio_format)) * 1000.0 / _audio.SAMPLE_RATE


# --- summaries: what each frame type contributes to its entry ------------------------------------------

# Wire keys that have a column of their own, per frame class; every other key lands in ``extra``.
_COLUMNED_KEYS: dict[type, frozenset[str]] = {
    NewTextMessage: frozenset({"text", "message_type"}),
    NewAudioMessage: frozenset({"audio"}),
    SwitchVadMode: frozenset({"vad_mode_on"}),
    VadModeSwitched: frozenset({"vad_mode_on"}),
    ContinueConversation: frozenset({"conversation_id"}),
    ConversationCreated: frozenset({"conversation_id"}),
    ConversationContinued: frozenset({"conversation_id"}),
    UserMessageAvailable: frozenset({"message_id", "user_message"}),
    CurrentAgentAction: frozenset({"action"}),
    NewMessage: frozenset({"message", "stop", "sequence_number", "message_id", "transcript_alignment"}),
    InteractionComplete: frozenset({"message_id", "interaction_id", "full_message", "conversation_completed"}),
    VadSpeechStarted: frozenset({"audio_ms"}),
    VadSpeechEnded: frozenset({"audio_ms"}),
    VadSpeechResetZero: frozenset({"audio_ms"}),
    ServerError: frozenset({"http_error_code", "error_description"}),
}


def _summarize(frame: Frame, *, audio_given: bool) -> dict[str, Any]:
    """The columns a frame fills (besides audio, times and sizes)."""
    out: dict[str, Any] = {}
    if isinstance(frame, NewTextMessage):
        out.update(text=frame.text, message_type=frame.message_type)
    elif isinstance(frame, NewAudioMessage):
        if frame.audio is None:
            # End of the user's audio: marked like the agent's last piece, so one filter finds stream ends.
            out.update(stop=True, audio_bytes=0, audio_ms=0.0)
    elif isinstance(frame, (SwitchVadMode, VadModeSwitched)):
        out["vad_mode_on"] = frame.vad_mode_on
    elif isinstance(frame, (ContinueConversation, ConversationCreated, ConversationContinued)):
        out["conversation_id"] = frame.conversation_id
    elif isinstance(frame, UserMessageAvailable):
        out.update(message_id=frame.message_id, text=frame.user_message)
    elif isinstance(frame, CurrentAgentAction):
        out.update(action_type=frame.action_type, action=_json_text(dict(frame.action)))
    elif isinstance(frame, NewMessage):
        out.update(message_id=frame.message_id, sequence_number=frame.sequence_number, stop=frame.stop)
        if frame.transcript_alignment is not None:
            out["alignment"] = _json_text([list(pair) for pair in frame.transcript_alignment])
        if not audio_given:
            out["text"] = frame.message
    elif isinstance(frame, InteractionComplete):
        out.update(message_id=frame.message_id, interaction_id=frame.interaction_id, text=frame.full_message,
                   conversation_completed=frame.conversation_completed)
    elif isinstance(frame, (VadSpeechStarted, VadSpeechEnded, VadSpeechResetZero)):
        out["vad_ms"] = None if frame.audio_ms is None else float(frame.audio_ms)
    elif isinstance(frame, ServerError):
        out.update(http_error_code=frame.http_error_code, error_description=frame.error_description,
                   text=frame.error_description)
    extra = _extra_of(frame)
    if extra:
        out["extra"] = _json_text(extra)
    return out


_UNCOLUMNED_FIELDS: dict[type, tuple[str, ...]] = {}


def _extra_of(frame: Frame) -> dict[str, Any]:
    if isinstance(frame, UnknownFrame):
        return {**frame.payload, **frame.extra}
    names = _UNCOLUMNED_FIELDS.get(type(frame))
    if names is None:
        columned = _COLUMNED_KEYS.get(type(frame), frozenset())
        names = tuple(f.name for f in dataclasses.fields(frame) if f.name != "extra" and f.name not in columned)
        _UNCOLUMNED_FIELDS[type(frame)] = names
    out = {name: getattr(frame, name) for name in names}
    out.update(frame.extra)
    return out


# --- the writer ------------------------------------------------------------------------------------------


class FrameLog:
    """The durable, append-only log of one session; every entry is on disk when :meth:`record` returns.

    ``FrameLog()`` writes to a fresh folder under ``<temp>/amigo_lab-sessions``; ``FrameLog(path)`` to
    ``path`` (created; it must not already hold a recorded session). ``secrets`` are removed from every
    string before it is stored. Thread-safe.

    A session records wire frames with :meth:`record`; widgets add playback events with
    :meth:`record_local`. Read it live with :meth:`to_dataframe`, watch it with :meth:`subscribe`, and
    :meth:`close` it to write ``frames.parquet``. Recording after close reopens the files and appends.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, meta: Mapping[str, Any] | None = None,
                 secrets: Iterable[str | None] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s)
        path = Path(directory) if directory is not None else _fresh_directory()
        if (path / FRAMES_FILE).exists():
            raise FrameLogError(
                f"{str(path)!r} already holds a recorded session; give a new folder (or load it with load_session)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FrameLogError(f"cannot create the log folder {str(path)!r}: {exc}") from exc
        self._path = path
        self._lock = threading.RLock()
        self._t0 = time.monotonic()
        self._started = datetime.now(timezone.utc)
        self._entries: list[dict[str, Any]] = []
        self._audio_size = {direction: 0 for direction in AUDIO_FILES}
        self._conversation_id: str | None = None
        self._listeners: list[Listener] = []
        self._frame_file: Any = None
        self._audio_files: dict[str, Any] = {}
        self._closed = False
        self._cache: tuple[int, pd.DataFrame] | None = None
        self._meta: dict[str, Any] = {
            "lab_version": _lab_version(),
            "url": None, "organization": None, "region": None, "service_id": None,
            "response_format": None, "audio_format": None,
            "started_at": self._started.isoformat(),
            "clock": CLOCK_NOTE,
        }
        self._meta.update(meta or {})
        self._write_meta()
        self._open_files()

    # --- properties -----------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The folder of this recorded session."""
        return self._path

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of what ``meta.json`` holds."""
        with self._lock:
            return dict(self._meta)

    @property
    def closed(self) -> bool:
        """True after :meth:`close` (until the next entry reopens the files)."""
        return self._closed

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<FrameLog {len(self._entries)} entries at {str(self._path)!r}>"

    def now(self) -> float:
        """The log's clock: seconds since it started (``t`` of an entry recorded now)."""
        return time.monotonic() - self._t0

    # --- writing --------------------------------------------------------------------------------------

    def update_meta(self, **fields: Any) -> None:
        """Add or change fields of ``meta.json`` (strings are redacted); rewritten at once."""
        with self._lock:
            self._meta.update({k: self._clean(v) for k, v in fields.items()})
            self._write_meta()

    def record(self, direction: str, frame: Frame | str, *, raw_size: int, audio_bytes: bytes | None = None,
               audio_format: str | None = None, audio_ms: float | None = None, **fields: Any) -> dict[str, Any]:
        """Append one entry and flush it to disk; returns the entry (a dict of :data:`COLUMNS`).

        ``frame`` is the wire frame sent or received, or a local event type (a string, see
        :data:`LOCAL_EVENT_TYPES`). ``raw_size`` is the byte length of the wire text. ``audio_bytes``
        are the raw wire audio the frame carried (``audio_format`` says pcm or mp3; ``audio_ms`` saves
        decoding MP3 to measure it). ``fields`` set further columns (e.g. ``played_ms=...``,
        ``extra={...}``). Listeners from :meth:`subscribe` are called after the entry is on disk.
        Do not mutate the returned dict.
        """
        if direction not in DIRECTIONS:
            raise FrameLogError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")
        unknown = set(fields) - set(COLUMNS)
        if unknown:
            raise FrameLogError(f"unknown columns {sorted(unknown)}; the columns are {list(COLUMNS)}")
        if isinstance(frame, Frame):
            values = _summarize(frame, audio_given=audio_bytes is not None)
            type_ = frame.type
            wire_frame: Frame | None = frame
        elif isinstance(frame, str) and frame:
            values, type_, wire_frame = {}, frame, None
        else:
            raise FrameLogError(f"record() takes a Frame or a local event type, got {frame!r}")
        values.update(fields)
        for name in _JSON_COLUMNS:
            if name in values:
                values[name] = _json_text(values[name])
        if audio_bytes is not None and direction in AUDIO_FILES:
            if audio_format is None:
                raise FrameLogError("audio_format (pcm or mp3) is required with audio_bytes")
            values["audio_format"] = audio_format
            values["audio_bytes"] = len(audio_bytes)
            if audio_ms is None:
                audio_ms = wire_audio_ms(audio_bytes, audio_format) if audio_bytes else 0.0
            values["audio_ms"] = float(audio_ms)
        for name in _STRING_COLUMNS:
            value = values.get(name)
            if value is not None:
                values[name] = self._clean(value)

        with self._lock:
            if self._closed:
                self._open_files()
            if "conversation_id" in values and values["conversation_id"] is not None:
                self._conversation_id = values["conversation_id"]
            elif self._conversation_id is not None:
                values["conversation_id"] = self._conversation_id
            if audio_bytes is not None and direction in AUDIO_FILES:
                values["audio_offset"] = self._audio_size[direction]
                if audio_bytes:
                    handle = self._audio_files[direction]
                    handle.write(audio_bytes)
                    handle.flush()
                self._audio_size[direction] += len(audio_bytes)
            entry = {name: None for name in COLUMNS}
            entry.update(values)
            entry["seq"] = len(self._entries)
            entry["t"] = self.now()
            entry["wall"] = datetime.now(timezone.utc)
            entry["direction"] = direction
            entry["type"] = type_
            entry["size"] = int(raw_size) if direction != "local" else 0
            self._write_line(entry)
            self._entries.append(entry)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(entry, wire_frame)
            except Exception:  # a broken widget must never break the session
                logger.exception("a frame listener failed on entry %s (%s)", entry["seq"], entry["type"])
        return entry

    def record_local(self, type: str, **fields: Any) -> dict[str, Any]:
        """Append a local event (e.g. ``"playback.progress"`` with ``message_id`` and ``played_ms``)."""
        return self.record("local", type, raw_size=0, **fields)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(entry, frame)`` after every new entry (``frame`` is None for local events).

        It runs on the thread that recorded the entry (for a session, its background loop): keep it
        short. Exceptions are logged and swallowed. Returns a function that unsubscribes.
        """
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def close(self) -> None:
        """Write ``frames.parquet`` and close the files. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._meta["ended_at"] = datetime.now(timezone.utc).isoformat()
            self._write_meta()
            self._close_files()
            self._closed = True
        self.export_parquet()

    # --- reading --------------------------------------------------------------------------------------

    def to_dataframe(self) -> pd.DataFrame:
        """Every entry so far as a DataFrame with :data:`COLUMNS` and their dtypes (a fresh copy)."""
        with self._lock:
            n = len(self._entries)
            if self._cache is not None and self._cache[0] == n:
                return self._cache[1].copy()
            entries = self._entries[:n]
        frame = entries_to_dataframe(entries)
        with self._lock:
            self._cache = (n, frame)
        return frame.copy()

    def export_parquet(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the DataFrame to ``path`` (default ``DIR/frames.parquet``); returns the path."""
        target = Path(path) if path is not None else self._path / PARQUET_FILE
        return _write_parquet(self.to_dataframe(), target)

    def audio(self, direction: str) -> bytes:
        """All raw wire audio of one direction (``"sent"`` or ``"received"``), as recorded."""
        if direction not in AUDIO_FILES:
            raise FrameLogError(f"audio direction must be 'sent' or 'received', got {direction!r}")
        with self._lock:
            handle = self._audio_files.get(direction)
            if handle is not None:
                handle.flush()
            return (self._path / AUDIO_FILES[direction]).read_bytes()

    # --- internals ------------------------------------------------------------------------------------

    def _clean(self, value: Any) -> Any:
        return redact(value, *self._secrets) if isinstance(value, str) else value

    def _write_meta(self) -> None:
        text = json.dumps(self._meta, ensure_ascii=False, indent=2, default=str)
        text = redact(text, *self._secrets)
        tmp = self._path / (META_FILE + ".tmp")
        try:
            tmp.write_text(text + "\n", encoding="utf-8")
            os.replace(tmp, self._path / META_FILE)
        except OSError as exc:
            raise FrameLogError(f"cannot write {META_FILE} in {str(self._path)!r}: {exc}") from exc

    def _open_files(self) -> None:
        try:
            self._frame_file = open(self._path / FRAMES_FILE, "a", encoding="utf-8")
            self._audio_files = {d: open(self._path / name, "ab") for d, name in AUDIO_FILES.items()}
        except OSError as exc:
            raise FrameLogError(f"cannot open the log files in {str(self._path)!r}: {exc}") from exc
        self._closed = False

    def _close_files(self) -> None:
        for handle in (self._frame_file, *self._audio_files.values()):
            if handle is not None:
                handle.close()
        self._frame_file, self._audio_files = None, {}

    def _write_line(self, entry: dict[str, Any]) -> None:
        compact = {k: v for k, v in entry.items() if v is not None}
        compact["wall"] = entry["wall"].isoformat()
        line = json.dumps(compact, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        try:
            self._frame_file.write(line + "\n")
            self._frame_file.flush()
        except (OSError, ValueError) as exc:
            raise FrameLogError(f"cannot append to {FRAMES_FILE} in {str(self._path)!r}: {exc}") from exc


# --- DataFrames ------------------------------------------------------------------------------------------


def entries_to_dataframe(entries: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Build the log's DataFrame from entry dicts (missing keys are null). Columns and dtypes: :data:`COLUMNS`."""
    data: dict[str, Any] = {}
    for name, dtype in COLUMNS.items():
        values = [entry.get(name) for entry in entries]
        if name == "wall":
            data[name] = pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601") \
                .astype(dtype).array if values else pd.array([], dtype=dtype)
        else:
            data[name] = pd.array(values, dtype=dtype)
    return pd.DataFrame(data, columns=list(COLUMNS))


def _conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Give a DataFrame read from elsewhere (parquet) exactly the log's columns and dtypes."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise FrameLogError(f"the frames table lacks columns {missing}; it was not written by amigo_lab")
    frame = frame[list(COLUMNS)].reset_index(drop=True)
    return frame.astype(COLUMNS)


def _write_parquet(frame: pd.DataFrame, target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(target, index=False)
    except (OSError, ValueError, ImportError) as exc:
        raise FrameLogError(f"cannot write parquet {str(target)!r}: {exc}") from exc
    return target


# --- the reader ------------------------------------------------------------------------------------------


def _read_entries(path: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            if number >= len(lines) - 1:
                # The entry in flight when the writer died; everything before it is whole.
                logger.warning("ignoring a partial last line in %s", path)
                continue
            raise FrameLogError(f"{str(path)!r} line {number} is not a JSON entry ({exc}); the file is damaged") from exc
        if not isinstance(entry, dict):
            raise FrameLogError(f"{str(path)!r} line {number} is not a JSON object")
        entries.append(entry)
    return entries


@dataclass
class RecordedSession:
    """A recorded session read back from its folder: the frames DataFrame, the meta, and the audio.

    Get one from :func:`load_session`. Then: :attr:`frames` for analysis, :meth:`audio_track` to listen to
    one side on the session clock, :meth:`message_audio` for one agent message.
    """

    path: Path
    frames: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"<RecordedSession {len(self.frames)} entries, conversation "
                f"{self.meta.get('conversation_id') or _first(self.frames, 'conversation_id')} at {str(self.path)!r}>")

    def audio(self, direction: str) -> bytes:
        """All raw wire audio of one direction (``"sent"`` or ``"received"``), as recorded."""
        if direction not in AUDIO_FILES:
            raise FrameLogError(f"audio direction must be 'sent' or 'received', got {direction!r}")
        file = self.path / AUDIO_FILES[direction]
        return file.read_bytes() if file.exists() else b""

    def _pieces(self, rows: pd.DataFrame, blob: bytes) -> list[tuple[float, np.ndarray]]:
        out = []
        for t, offset, size, fmt in zip(rows["t"], rows["audio_offset"], rows["audio_bytes"], rows["audio_format"]):
            data = blob[int(offset): int(offset) + int(size)]
            if len(data) != int(size):
                logger.warning("audio of an entry at t=%.3f is cut short (the session did not end cleanly)", t)
                data = data[: len(data) - len(data) % 2] if fmt == "pcm" else b""
            if data:
                out.append((float(t), _audio.decode_wire_audio(data, str(fmt))))
        return out

    def _audio_rows(self, direction: str) -> pd.DataFrame:
        frames = self.frames
        mask = (frames["direction"] == direction) & (frames["audio_bytes"].fillna(0) > 0) \
            & frames["audio_offset"].notna()
        return frames[mask.fillna(False).astype(bool)].sort_values("seq")

    def audio_track(self, direction: str, *, sr: int = _audio.SAMPLE_RATE) -> np.ndarray:
        """One side of the conversation as float32 samples at ``sr`` Hz on the session clock.

        ``"sent"`` is what the user sent, ``"received"`` what the agent sent. Each frame's audio starts
        at its ``t`` (sample ``t * sr``), or right after the previous frame's audio when that has not
        finished yet (agent audio arrives ahead of real time; it is laid end to end as a gapless
        player would). Gaps are silence. Next: ``IPython.display.Audio(x, rate=sr)`` or a spectrogram.
        """
        if direction not in AUDIO_FILES:
            raise FrameLogError(f"audio direction must be 'sent' or 'received', got {direction!r}")
        base = _audio.SAMPLE_RATE
        pieces = self._pieces(self._audio_rows(direction), self.audio(direction))
        placed: list[tuple[int, np.ndarray]] = []
        end = 0
        for t, samples in pieces:
            start = max(int(round(t * base)), end)
            placed.append((start, samples))
            end = start + len(samples)
        track = np.zeros(end, dtype=np.float32)
        for start, samples in placed:
            track[start: start + len(samples)] = samples
        if sr != base:
            track = _audio.resample(track, sr_in=base, sr_out=sr).astype(np.float32, copy=False)
        return track

    def message_audio(self, message_id: str) -> np.ndarray:
        """The audio of one agent message (all its pieces, in order) as float32 at 16 kHz."""
        rows = self._audio_rows("received")
        rows = rows[(rows["message_id"] == message_id).fillna(False).astype(bool)]
        pieces = self._pieces(rows, self.audio("received"))
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([samples for _, samples in pieces]).astype(np.float32, copy=False)

    def export_parquet(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write :attr:`frames` to ``path`` (default ``DIR/frames.parquet``); returns the path."""
        return _write_parquet(self.frames, Path(path) if path is not None else self.path / PARQUET_FILE)


def _first(frames: pd.DataFrame, column: str) -> Any:
    values = frames[column].dropna()
    return values.iloc[0] if len(values) else None


def load_session(path: str | os.PathLike[str]) -> RecordedSession:
    """Read a recorded session folder (also one whose writer crashed) into a :class:`RecordedSession`.

    ``frames.jsonl`` is the source of truth; ``frames.parquet`` is used only when the JSONL is absent.
    """
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise FrameLogError(f"no recorded session at {str(folder)!r}: not a folder")
    meta: dict[str, Any] = {}
    meta_file = folder / META_FILE
    if meta_file.exists():
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise FrameLogError(f"{str(meta_file)!r} is not JSON ({exc})") from exc
    jsonl, parquet = folder / FRAMES_FILE, folder / PARQUET_FILE
    if jsonl.exists():
        frames = entries_to_dataframe(_read_entries(jsonl))
    elif parquet.exists():
        try:
            frames = _conform(pd.read_parquet(parquet))
        except (OSError, ValueError) as exc:
            raise FrameLogError(f"cannot read {str(parquet)!r}: {exc}") from exc
    else:
        raise FrameLogError(f"no recorded session at {str(folder)!r}: neither {FRAMES_FILE} nor {PARQUET_FILE}")
    return RecordedSession(path=folder, frames=frames, meta=meta)


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``frames.parquet`` written by the lab, with the log's columns and dtypes."""
    try:
        return _conform(pd.read_parquet(path))
    except (OSError, ValueError) as exc:
        raise FrameLogError(f"cannot read {str(path)!r}: {exc}") from exc


__all__ = [
    "AUDIO_FILES", "COLUMNS", "DIRECTIONS", "LOCAL_EVENT_TYPES",
    "FrameLog", "FrameLogError", "RecordedSession",
    "default_sessions_dir", "entries_to_dataframe", "load_session", "pcm_ms", "read_parquet", "wire_audio_ms",
]
