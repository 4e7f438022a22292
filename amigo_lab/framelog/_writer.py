"""The writer: :class:`FrameLog`, one durable, append-only recorded session."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import secrets as _secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from json.encoder import encode_basestring as _encode_string
from pathlib import Path
from typing import Any

import pandas as pd

from amigo_lab.framelog._project import json_text, project
from amigo_lab.framelog._reader import (
    parquet_is_complete,
    read_jsonl_bytes,
    read_parquet,
    write_parquet,
)
from amigo_lab.framelog._schema import (
    AUDIO_FILES,
    BINARY_FRAME,
    CLOCK_NOTE,
    COLUMNS,
    DIRECTIONS,
    FLAG_BINARY,
    FLAG_INVALID_UNICODE,
    FLAG_RESERIALIZED,
    FLAG_UNPARSED,
    FRAMES_FILE,
    INVALID_FRAME,
    JSON_COLUMNS,
    LOCAL_KINDS,
    META_FILE,
    PARQUET_FILE,
    FrameLogError,
    default_sessions_dir,
    wire_audio_ms,
)
from amigo_lab.protocol import Frame, redact, serialize
from amigo_lab.protocol.constants import AUTH_SUBPROTOCOL_PREFIX
from amigo_lab.protocol.frames import LONE_SURROGATE_PROBLEM

logger = logging.getLogger("amigo_lab.framelog")

Listener = Callable[[Mapping[str, Any], "Frame | None"], None]

_ENVELOPE = frozenset({"seq", "t", "wall", "direction", "type", "size", "audio_offset"})
_SETTABLE = frozenset(COLUMNS) - _ENVELOPE
_SURROGATE = re.compile("[\ud800-\udfff]")
_PREFIX_LOWER = AUTH_SUBPROTOCOL_PREFIX.lower()
_PAYLOAD_KEYS = ('"message":"', '"audio":"')
_AUDIO_KEYS = ('"audio":"', '"message":"')
_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


class Entry(dict):  # type: ignore[type-arg]
    """One log entry as recorded: the columns it sets; a column it does not set reads as None."""

    def __missing__(self, key: str) -> None:
        if key in COLUMNS:
            return None
        raise KeyError(key)


def _fresh_directory() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return default_sessions_dir() / f"{stamp}-{_secrets.token_hex(3)}"


def _lab_version() -> str:
    from amigo_lab import __version__
    return __version__


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _fast_line(seq: int, t: float, wall: float, direction: str, type_: str, size: int,
               values: dict[str, Any]) -> bytes | None:
    """The entry's JSON line, written by hand, or None when a value needs the careful path (:meth:`FrameLog._line`).

    The keys are column names (nothing to escape) and the values few types, so this is about twice as fast as
    json.dumps and gives the same text.
    """
    parts = [f'{{"seq":{seq},"t":{t!r},"wall":{wall!r},"direction":"{direction}","type":{_encode_string(type_)},'
             f'"size":{size}']
    for key, value in values.items():
        kind = value.__class__
        if kind is str:
            parts.append(f'"{key}":{_encode_string(value)}')
        elif kind is int:
            parts.append(f'"{key}":{int.__repr__(value)}')
        elif kind is float:
            if value - value != 0.0:  # inf or nan
                return None
            parts.append(f'"{key}":{float.__repr__(value)}')
        elif kind is bool:
            parts.append(f'"{key}":true' if value else f'"{key}":false')
        elif value is not None:
            return None
    try:
        return (",".join(parts) + "}\n").encode("utf-8")
    except UnicodeEncodeError:
        return None


def _write_all(handle: Any, data: bytes, fsync: bool) -> None:
    written = handle.write(data)
    while written is not None and written < len(data):  # a short write (a signal, a full pipe): go on
        data = data[written:]
        written = handle.write(data)
    if fsync:
        os.fsync(handle.fileno())


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    return value


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class FrameLog:
    """The durable, append-only log of one session; every entry is on disk when :meth:`record` returns.

    ``FrameLog()`` writes to a fresh folder under ``<temp>/amigo_lab-sessions``; ``FrameLog(path)`` to
    ``path`` (created; it must not already hold a recorded session). ``secrets`` are removed from every
    string before it is stored. ``fsync=True`` also asks the operating system to put each entry on the
    device before :meth:`record` returns (slower; survives a power cut, not only a crash). ``clock`` gives
    the seconds ``t`` counts (default ``time.monotonic``; a replay or a simulation passes its own). Thread-safe.

    A session records wire frames with :meth:`record` (``raw=`` the exact wire text or bytes) and its own
    events with :meth:`record_local` (kinds in :data:`LOCAL_KINDS`). Read it live with :meth:`to_dataframe`
    (built from disk on demand; entries are not kept in memory), watch it with :meth:`subscribe`, and
    :meth:`close` it to write ``frames.parquet``. Recording after close reopens the files and appends.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, meta: Mapping[str, Any] | None = None,
                 secrets: Iterable[str | None] = (), fsync: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._secrets = tuple(s for s in secrets if s)
        self._base64_secrets = tuple(s for s in self._secrets if _BASE64_CHARS.issuperset(s))
        path = Path(directory) if directory is not None else _fresh_directory()
        if (path / FRAMES_FILE).exists():
            raise FrameLogError(
                f"{str(path)!r} already holds a recorded session; give a new folder (or load it with load_session)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FrameLogError(f"cannot create the log folder {str(path)!r}: {exc}") from exc
        self._path = path
        self._fsync = bool(fsync)
        self._lock = threading.RLock()
        self._clock = clock
        self._t0 = clock()
        self._started = datetime.now(UTC)
        self._count = 0
        self._jsonl_bytes = 0
        self._audio_size = dict.fromkeys(AUDIO_FILES, 0)
        self._conversation_id: str | None = None
        self._listeners: list[Listener] = []
        self._frame_file: Any = None
        self._audio_files: dict[str, Any] = {}
        self._closed = False
        self._cache: tuple[int, pd.DataFrame] | None = None
        self._finisher: threading.Thread | None = None
        self._finish_error: BaseException | None = None
        self._meta: dict[str, Any] = {
            "lab_version": _lab_version(),
            "url": None, "organization": None, "region": None, "service_id": None,
            "response_format": None, "audio_format": None,
            "started_at": self._started.isoformat(),
            "clock": CLOCK_NOTE,
            "durability": "fsync per entry" if self._fsync else "flushed per entry, not fsynced",
        }
        self._meta.update(meta or {})
        self._write_meta()
        self._open_files()

    # --- properties -----------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The folder of this recorded session. Next: :func:`amigo_lab.load_session` on it."""
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
        return self._count

    def __repr__(self) -> str:
        return f"<FrameLog {self._count} entries at {str(self._path)!r}>"

    def now(self) -> float:
        """The log's clock: seconds since it started (``t`` of an entry recorded now)."""
        return self._clock() - self._t0

    # --- writing --------------------------------------------------------------------------------------

    def update_meta(self, **fields: Any) -> None:
        """Add or change fields of ``meta.json`` (strings are redacted); rewritten at once.

        ``fast=True`` marks a session whose audio went faster than real time: its timings are not real time,
        and the report says so.
        """
        with self._lock:
            self._meta.update({k: self._clean(v) for k, v in fields.items()})
            self._write_meta()

    def record(self, direction: str, frame: Frame | str | None, *, raw_size: int | None = None,
               raw: str | bytes | None = None, audio_bytes: bytes | None = None, audio_format: str | None = None,
               audio_ms: float | None = None, **fields: Any) -> Mapping[str, Any]:
        """Append one entry and flush it to disk; returns the entry (a mapping of :data:`COLUMNS`).

        ``frame`` is the wire frame sent or received, a local kind (a string, see :data:`LOCAL_KINDS`), or
        None for a message that did not parse. ``raw`` is the exact wire text, kept whole in the ``wire``
        column (tokens redacted); without it the frame is serialised again and flagged ``reserialized``.
        ``raw`` as bytes is a binary message: its bytes are kept as audio of ``audio_format`` (default pcm).
        ``raw_size`` is the byte length on the wire (derived from ``raw`` when not given). ``audio_bytes``
        are the raw wire audio the frame carried (``audio_format`` says pcm or mp3; ``audio_ms`` saves
        decoding MP3 to measure it). ``fields`` set further columns (e.g. ``message_id=...``,
        ``extra={...}``). Listeners from :meth:`subscribe` are called after the entry is on disk.
        """
        if direction not in DIRECTIONS:
            raise FrameLogError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")
        if fields and not _SETTABLE.issuperset(fields):
            raise FrameLogError(f"unknown columns {sorted(set(fields) - _SETTABLE)}; settable columns are "
                                f"{sorted(_SETTABLE)}")
        flags: list[str] = []
        wire_frame: Frame | None = None
        values: dict[str, Any]
        wire: str | None = None
        if isinstance(frame, Frame):
            wire_frame = frame
            type_ = frame.type
            values = project(frame, audio_given=audio_bytes is not None)
            if LONE_SURROGATE_PROBLEM in frame.problems:
                flags.append(FLAG_INVALID_UNICODE)  # the protocol mended them; the wire text keeps them
            if raw is None:
                try:
                    wire = serialize(frame)
                except (TypeError, ValueError):
                    wire = None
                flags.append(FLAG_RESERIALIZED)
        elif isinstance(frame, str):
            if frame not in LOCAL_KINDS:
                raise FrameLogError(f"unknown local kind {frame!r}; known kinds: {sorted(LOCAL_KINDS)} "
                                    "(declare a new one with amigo_lab.framelog.register_local_kind)")
            type_ = frame
            values = {}
        elif frame is None and raw is not None:
            values = {}
            if isinstance(raw, (bytes, bytearray, memoryview)):
                type_ = BINARY_FRAME
                flags.append(FLAG_BINARY)
                audio_bytes = bytes(raw)
                audio_format = audio_format or "pcm"
            else:
                type_ = INVALID_FRAME
                flags.append(FLAG_UNPARSED)
        else:
            raise FrameLogError("record() takes a protocol Frame, a local kind (str), or frame=None with raw= "
                                f"the wire text or bytes of a message that did not parse; got {type(frame).__name__}")
        if isinstance(raw, str):
            wire = raw
            if raw_size is None:
                raw_size = len(raw) if raw.isascii() else len(raw.encode("utf-8", "surrogatepass"))
        elif raw is not None and raw_size is None:
            raw_size = len(raw)
        if "wire" in fields:
            wire = fields.pop("wire")
        if fields:
            values.update(fields)
            for name in JSON_COLUMNS:
                if name in fields:
                    values[name] = json_text(values[name])
        for name, value in values.items():
            if value.__class__ is str:
                values[name] = self._clean(value)
        if wire is not None:
            payload, keys = None, _PAYLOAD_KEYS
            if audio_bytes is not None and wire_frame is not None:
                payload = getattr(wire_frame, "audio", None)
                if payload is not None:
                    keys = _AUDIO_KEYS
                else:
                    payload = getattr(wire_frame, "message", None)
            values["wire"] = self._clean_wire(wire, payload, keys)
        if audio_bytes is not None and direction in AUDIO_FILES:
            if audio_format is None:
                raise FrameLogError("audio_format (pcm or mp3) is required with audio_bytes")
            values["audio_format"] = audio_format if audio_format.__class__ is str else str(audio_format)
            values["audio_bytes"] = len(audio_bytes)
            if audio_ms is None:
                try:
                    audio_ms = wire_audio_ms(audio_bytes, audio_format) if audio_bytes else 0.0
                except Exception as exc:  # undecodable audio is still kept, byte for byte
                    logger.warning("cannot measure %s audio of a %s entry: %s", audio_format, type_, exc)
                    audio_ms = None
            values["audio_ms"] = None if audio_ms is None else float(audio_ms)
        if flags:
            values["flags"] = ",".join(flags)
        return self._append(direction, type_, 0 if direction == "local" else int(raw_size or 0), values,
                            audio_bytes if direction in AUDIO_FILES else None, wire_frame)

    def record_local(self, type: str, **fields: Any) -> Mapping[str, Any]:
        """Append a local entry of a kind in :data:`LOCAL_KINDS` (e.g. ``"playback.progress"`` with
        ``message_id`` and ``played_ms``). ``raw=`` keeps a message's whole text (``client.invalid-frame``)."""
        kind = LOCAL_KINDS.get(type)
        if kind is None:
            raise FrameLogError(f"unknown local kind {type!r}; known kinds: {sorted(LOCAL_KINDS)} "
                                "(declare a new one with amigo_lab.framelog.register_local_kind)")
        raw = fields.pop("raw", None)
        if raw is not None:
            fields["wire"] = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
        extra = fields.get("extra")
        if isinstance(extra, dict) and isinstance(extra.get("raw"), str) and "wire" not in fields:
            # Older callers passed the unparsed text inside extra; it belongs, whole, in wire.
            fields["wire"] = extra["raw"]
            fields["extra"] = {k: v for k, v in extra.items() if k != "raw"} or None
        unknown = set(fields) - kind.fields
        if unknown:
            raise FrameLogError(f"unknown columns {sorted(unknown)} for local kind {type!r}; it takes "
                                f"{sorted(kind.fields)}")
        return self.record("local", type, raw_size=0, **fields)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(entry, frame)`` after every new entry (``frame`` is None for local events).

        It runs on the thread that recorded the entry (for a session, its background loop): keep it
        short. Exceptions are logged and swallowed. Returns a function that unsubscribes.
        """
        with self._lock:
            # Copy on write: _append reads the list without the lock while calling listeners.
            self._listeners = [*self._listeners, listener]

        def remove() -> None:
            with self._lock:
                self._listeners = [other for other in self._listeners if other is not listener]

        return remove

    def close(self, *, wait: bool | None = None) -> None:
        """Close the files and write ``frames.parquet``. Safe to call twice.

        Called on a running event loop (a session's), the Parquet is written on a background thread so the
        loop never stalls; elsewhere close waits for it. ``wait=True`` / ``False`` chooses explicitly;
        :meth:`wait_closed` waits for a background write. The JSONL stays the source of truth meanwhile.
        """
        with self._lock:
            if self._closed:
                return
            self._meta["ended_at"] = datetime.now(UTC).isoformat()
            self._write_meta()
            self._close_files()
            self._closed = True
            end, count = self._jsonl_bytes, self._count
        if wait is None:
            wait = not _on_event_loop()
        if wait:
            self.wait_closed()
            self._finish(end, count)
            return
        thread = threading.Thread(target=self._finish_quietly, args=(end, count, self._finisher),
                                  name="amigo_lab-framelog-parquet")
        self._finisher = thread
        thread.start()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait for a background Parquet write started by :meth:`close`; True once it is done."""
        thread = self._finisher
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    # --- reading --------------------------------------------------------------------------------------

    def to_dataframe(self) -> pd.DataFrame:
        """Every entry so far as a DataFrame with :data:`COLUMNS` and their dtypes (a fresh copy).

        Built from the files on disk (new lines only, since the last call). Next: :func:`frames_view` for a
        readable view, or the functions of :mod:`amigo_lab.analysis`.
        """
        with self._lock:
            end = self._jsonl_bytes
            cache = self._cache
            if cache is not None and cache[0] == end:
                return self._marked(cache[1].copy())
            start = cache[0] if cache is not None else 0
            if cache is None and self._closed and parquet_is_complete(self._path, self._meta):
                frame = read_parquet(self._path / PARQUET_FILE)
                self._cache = (end, frame)
                return self._marked(frame.copy())
        try:
            with open(self._path / FRAMES_FILE, "rb") as handle:
                handle.seek(start)
                data = handle.read(end - start)
        except OSError as exc:
            raise FrameLogError(f"cannot read {FRAMES_FILE} in {str(self._path)!r}: {exc}") from exc
        tail = read_jsonl_bytes(data, source=self._path / FRAMES_FILE)
        if cache is not None and len(cache[1]):
            frame = pd.concat([cache[1], tail], ignore_index=True) if len(tail) else cache[1]
        else:
            frame = tail
        with self._lock:
            if self._cache is None or self._cache[0] < end:
                self._cache = (end, frame)
        return self._marked(frame.copy())

    def _marked(self, frame: pd.DataFrame) -> pd.DataFrame:
        # The rows cannot say that the session sent audio faster than real time; analysis.turns reads this.
        with self._lock:
            frame.attrs["fast"] = bool(self._meta.get("fast"))
        return frame

    def export_parquet(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the DataFrame to ``path`` (default ``DIR/frames.parquet``); returns the path."""
        if path is None:
            with self._lock:
                end, count = self._jsonl_bytes, self._count
            self._finish(end, count)
            return self._path / PARQUET_FILE
        return write_parquet(self.to_dataframe(), Path(path))

    def audio(self, direction: str) -> bytes:
        """All raw wire audio of one direction (``"sent"`` or ``"received"``), as recorded."""
        if direction not in AUDIO_FILES:
            raise FrameLogError(f"audio direction must be 'sent' or 'received', got {direction!r}")
        with self._lock:
            handle = self._audio_files.get(direction)
            if handle is not None:
                handle.flush()
            file = self._path / AUDIO_FILES[direction]
            return file.read_bytes() if file.exists() else b""

    # --- internals ------------------------------------------------------------------------------------

    def _clean(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        # Cheap necessary conditions first: the full redaction runs only when one could match.
        for secret in self._secrets:
            if secret in value:
                return redact(value, *self._secrets)
        if "eyJ" in value:
            return redact(value, *self._secrets)
        lowered = value.lower()
        if "bearer" in lowered or _PREFIX_LOWER in lowered:
            return redact(value, *self._secrets)
        return value

    def _clean_wire(self, wire: str, payload: Any, keys: tuple[str, ...] = ()) -> str:
        """``wire`` redacted; the base64 audio in it (``payload``) is skipped when it is found where expected.

        Base64 has no '.' and no whitespace, so no JWT, bearer value or auth subprotocol can hide in it; only a
        given secret made of base64 characters could, and that is looked for. Scanning kilobytes of base64
        for the trigger words is most of what redaction would cost a voice frame.
        """
        if payload.__class__ is str and len(payload) > 256:
            for key in keys or _PAYLOAD_KEYS:
                at = wire.find(key)
                if at < 0:
                    continue
                start = at + len(key)
                if not wire.startswith(payload, start):
                    break
                end = start + len(payload)
                if any(secret in payload for secret in self._base64_secrets):
                    return redact(wire, *self._secrets)
                head, tail = wire[:start], wire[end:]
                if self._clean(head) is head and self._clean(tail) is tail:
                    return wire
                return redact(wire, *self._secrets)
        return str(self._clean(wire))

    def _append(self, direction: str, type_: str, size: int, values: dict[str, Any], audio_bytes: bytes | None,
                wire_frame: Frame | None) -> Mapping[str, Any]:
        with self._lock:
            if self._closed:
                self._open_files()
            conversation_id = values.get("conversation_id")
            if conversation_id is not None:
                self._conversation_id = conversation_id
            elif self._conversation_id is not None:
                values["conversation_id"] = self._conversation_id
            seq, t, wall = self._count, self._clock() - self._t0, datetime.now(UTC)
            wall_s = wall.timestamp()
            if audio_bytes is not None:
                values["audio_offset"] = self._audio_size[direction]
            line = _fast_line(seq, t, wall_s, direction, type_, size, values)
            entry = Entry(seq=seq, t=t, wall=wall_s, direction=direction, type=type_, size=size)
            entry.update(values)
            if line is None:
                line = self._line(entry)
            if audio_bytes:
                try:
                    handle = self._audio_files[direction]
                    handle.write(audio_bytes)
                    if "wire" not in values or self._fsync:
                        # No wire text carries these bytes (a binary message): they must be durable themselves.
                        # Otherwise the JSONL line below holds them (base64 in the wire text) and the .bin copy
                        # may trail behind in its buffer; a reader recovers a trailing piece from the wire.
                        handle.flush()
                        if self._fsync:
                            os.fsync(handle.fileno())
                except (OSError, ValueError) as exc:
                    raise FrameLogError(f"cannot append audio in {str(self._path)!r}: {exc}") from exc
            if audio_bytes is not None:
                self._audio_size[direction] += len(audio_bytes)
            try:
                _write_all(self._frame_file, line, self._fsync)
            except (OSError, ValueError) as exc:
                raise FrameLogError(f"cannot append to {FRAMES_FILE} in {str(self._path)!r}: {exc}") from exc
            self._jsonl_bytes += len(line)
            self._count += 1
            entry["wall"] = wall
            listeners = self._listeners
        for listener in listeners:
            try:
                listener(entry, wire_frame)
            except Exception:  # a broken widget must never break the session
                logger.exception("a frame listener failed on entry %s (%s)", entry["seq"], entry["type"])
        return entry

    @staticmethod
    def _line(entry: Entry) -> bytes:
        # A lone UTF-16 surrogate (valid JSON, not valid Unicode) or a non-finite number: the entry is still
        # logged, its strings shown with U+FFFD, and flagged so a reader knows.
        bad_unicode = False
        for name, value in list(entry.items()):
            if isinstance(value, str):
                clean = _without_surrogates(value)
                bad_unicode = bad_unicode or clean != value
                entry[name] = clean
            else:
                entry[name] = _finite(value)
        if bad_unicode:
            flags = entry.get("flags")
            entry["flags"] = f"{flags},{FLAG_INVALID_UNICODE}" if flags else FLAG_INVALID_UNICODE
        compact = {k: v for k, v in entry.items() if v is not None}
        text = json.dumps(compact, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
        return (text + "\n").encode("utf-8")

    def _finish_quietly(self, end: int, count: int, previous: threading.Thread | None) -> None:
        if previous is not None:
            previous.join()  # an earlier close's Parquet first, so the newest one lands last
        try:
            self._finish(end, count)
        except Exception:  # already logged; the JSONL is whole, so loading still works
            pass

    def _finish(self, end: int, count: int) -> None:
        """Write ``frames.parquet`` with the first ``count`` entries (``end`` bytes of JSONL); mark it in meta."""
        try:
            frame = self.to_dataframe()
            if len(frame) > count:  # entries appended after the close began wait for the next close
                frame = frame.iloc[:count]
            write_parquet(frame, self._path / PARQUET_FILE)
            with self._lock:
                self._meta["parquet"] = {"jsonl_bytes": end, "rows": len(frame)}
                self._write_meta()
                if self._closed:
                    self._cache = None  # the Parquet holds it now; the memory goes back
        except Exception as exc:
            self._finish_error = exc
            logger.exception("writing %s in %s failed; the JSONL still holds every entry", PARQUET_FILE, self._path)
            raise

    def _write_meta(self) -> None:
        text = json.dumps(self._meta, ensure_ascii=False, indent=2, default=str)
        text = redact(text, *self._secrets)
        tmp = self._path / (META_FILE + ".tmp")
        try:
            tmp.write_text(text + "\n", encoding="utf-8", errors="replace")
            os.replace(tmp, self._path / META_FILE)
        except OSError as exc:
            raise FrameLogError(f"cannot write {META_FILE} in {str(self._path)!r}: {exc}") from exc

    def _open_files(self) -> None:
        try:
            self._frame_file = open(self._path / FRAMES_FILE, "ab", buffering=0)
            self._audio_files = {d: open(self._path / name, "ab", buffering=1 << 16) for d, name in AUDIO_FILES.items()}
        except OSError as exc:
            raise FrameLogError(f"cannot open the log files in {str(self._path)!r}: {exc}") from exc
        self._jsonl_bytes = self._frame_file.tell()
        self._closed = False

    def _close_files(self) -> None:
        for handle in (self._frame_file, *self._audio_files.values()):
            if handle is not None:
                handle.close()
        self._frame_file, self._audio_files = None, {}

