"""A recorded session read back: :func:`load_session` and :class:`RecordedSession`."""

from __future__ import annotations

import binascii
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amigo_lab import audio as _audio
from amigo_lab.framelog._reader import read_frames, read_meta, session_folder, write_parquet
from amigo_lab.framelog._schema import AUDIO_FILES, PARQUET_FILE, FrameLogError
from amigo_lab.protocol import decode_audio_base64

logger = logging.getLogger("amigo_lab.framelog")

_AUDIO_COLUMNS = ["seq", "t", "audio_offset", "audio_bytes", "audio_format", "message_id"]


@dataclass
class RecordedSession:
    """A recorded session read back from its folder: the frames DataFrame, the meta, and the audio.

    Get one from :func:`load_session`. Then: :attr:`frames` for analysis (:func:`frames_view` to read it),
    :meth:`audio_track` to listen to one side on the session clock, :meth:`message_audio` for one agent message.
    """

    path: Path
    frames: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"<RecordedSession {len(self.frames)} entries, conversation "
                f"{self.meta.get('conversation_id') or _first(self.frames, 'conversation_id')} at {str(self.path)!r}>")

    @property
    def fast(self) -> bool:
        """True when the session was recorded faster than real time (``--fast``): its timings are not real."""
        return bool(self.meta.get("fast"))

    def audio(self, direction: str) -> bytes:
        """All raw wire audio of one direction (``"sent"`` or ``"received"``), as recorded."""
        if direction not in AUDIO_FILES:
            raise FrameLogError(f"audio direction must be 'sent' or 'received', got {direction!r}")
        file = self.path / AUDIO_FILES[direction]
        blob = file.read_bytes() if file.exists() else b""
        return _recover_tail(self.frames, direction, blob)

    def _pieces(self, rows: pd.DataFrame, blob: bytes) -> list[tuple[float, np.ndarray]]:
        out = []
        for t, offset, size, fmt in zip(rows["t"], rows["audio_offset"], rows["audio_bytes"], rows["audio_format"],
                                    strict=True):
            data = blob[int(offset): int(offset) + int(size)]
            if len(data) != int(size):
                logger.warning("audio of an entry at t=%.3f is cut short (the session did not end cleanly)", t)
                data = data[: len(data) - len(data) % 2] if fmt == "pcm" else b""
            if fmt == "pcm" and len(data) % 2:
                data = data[:-1]  # an odd byte (a binary message cut mid-sample) cannot be a PCM16 sample
            if data:
                try:
                    out.append((float(t), _audio.decode_wire_audio(data, str(fmt))))
                except _audio.AudioError as exc:
                    logger.warning("audio of an entry at t=%.3f does not decode as %s: %s", t, fmt, exc)
        return out

    def _audio_rows(self, direction: str) -> pd.DataFrame:
        frames = self.frames
        mask = (frames["direction"] == direction) & (frames["audio_bytes"].fillna(0) > 0) \
            & frames["audio_offset"].notna()
        # Only the columns the audio needs: taking the wire text of an hour's chunks along costs more than the rest.
        return frames.loc[mask.fillna(False).astype(bool), _AUDIO_COLUMNS].sort_values("seq")

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
        rows = self._audio_rows(direction)
        blob = self.audio(direction)
        track = _pcm_track(rows, blob, base)
        if track is None:
            track = self._placed_track(rows, blob, base)
        if sr != base:
            track = _audio.resample(track, sr_in=base, sr_out=sr).astype(np.float32, copy=False)
        return track

    def _placed_track(self, rows: pd.DataFrame, blob: bytes, base: int) -> np.ndarray:
        pieces = self._pieces(rows, blob)
        placed: list[tuple[int, np.ndarray]] = []
        end = 0
        for t, samples in pieces:
            start = max(int(round(t * base)), end)
            placed.append((start, samples))
            end = start + len(samples)
        track = np.zeros(end, dtype=np.float32)
        for start, samples in placed:
            track[start: start + len(samples)] = samples
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
        return write_parquet(self.frames, Path(path) if path is not None else self.path / PARQUET_FILE)


def _pcm_track(rows: pd.DataFrame, blob: bytes, base: int) -> np.ndarray | None:
    """The track of a side whose audio is all PCM laid end to end in its file, decoded at once; None otherwise.

    Piece i starts at ``max(round(t_i * sr), end of piece i-1)``; with ``c_i`` the samples before it, that is
    ``c_i + max(s_j - c_j for j <= i)``, a running maximum, so no piece is decoded or placed on its own.
    """
    if not len(rows) or not (rows["audio_format"] == "pcm").all():
        return None
    sizes = rows["audio_bytes"].to_numpy(dtype="int64")
    offsets = rows["audio_offset"].to_numpy(dtype="int64")
    if (sizes % 2).any() or offsets[0] != 0 or (offsets[1:] != (offsets + sizes)[:-1]).any():
        return None
    total = int(sizes.sum())
    if len(blob) < total:
        return None  # cut short: the careful path says which piece
    samples = np.frombuffer(blob, dtype="<i2", count=total // 2)  # converted run by run, straight into the track
    lengths = sizes // 2
    before = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    wanted = np.rint(rows["t"].to_numpy(dtype="float64") * base).astype("int64")
    starts = before + np.maximum.accumulate(wanted - before)
    track = np.zeros(int(starts[-1] + lengths[-1]), dtype=np.float32)
    # Pieces whose shift (start - before) is the same sit end to end: copy each such run in one slice.
    shift = starts - before
    breaks = np.flatnonzero(np.diff(shift)) + 1
    for first, last in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [len(shift)]]), strict=True):
        a, b = int(before[first]), int(before[last - 1] + lengths[last - 1])
        _audio.pcm16_to_float(samples[a:b], out=track[a + int(shift[first]): b + int(shift[first])])
    return track


def _audio_from_wire(wire: Any, size: int) -> bytes | None:
    """The ``size`` audio bytes a wire text carries in base64 (under ``audio``, ``message`` or another key)."""
    if not isinstance(wire, str):
        return None
    try:
        payload = json.loads(wire)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    keys = ["audio", "message", *(k for k in payload if k not in ("audio", "message"))]
    for key in keys:
        text = payload.get(key)
        if isinstance(text, str) and len(text) >= size:
            try:
                data, _ = decode_audio_base64(text)  # in whatever base64 form the service sent it
            except (ValueError, binascii.Error):
                continue
            if len(data) == size:
                return data
    return None


def _recover_tail(frames: pd.DataFrame, direction: str, blob: bytes) -> bytes:
    """The audio file of one direction with a tail the writer had not flushed (it died) rebuilt from the wire
    texts, which hold the same bytes in base64 and were flushed line by line."""
    mask = ((frames["direction"] == direction) & (frames["audio_bytes"].fillna(0) > 0)
            & frames["audio_offset"].notna()).fillna(False).astype(bool)
    if not mask.any():
        return blob
    ends = frames.loc[mask, "audio_offset"].astype("int64") + frames.loc[mask, "audio_bytes"].astype("int64")
    if len(blob) >= int(ends.max()):
        return blob  # the usual case: nothing to rebuild, so the wire texts are not even selected
    rows = frames.loc[mask, ["audio_offset", "audio_bytes", "wire"]]
    out = bytearray(blob)
    for offset, size, wire in zip(rows["audio_offset"], rows["audio_bytes"], rows["wire"], strict=True):
        offset, size = int(offset), int(size)
        if offset + size <= len(out):
            continue
        data = _audio_from_wire(wire, size)
        if data is None or offset > len(out):
            logger.warning("audio of the %s side ends at byte %d; the rest was not written before the writer "
                           "stopped and its wire text does not hold it", direction, len(out))
            break
        out[offset: offset + size] = data
    return bytes(out)


def _first(frames: pd.DataFrame, column: str) -> Any:
    values = frames[column].dropna()
    return values.iloc[0] if len(values) else None


def load_session(path: str | os.PathLike[str]) -> RecordedSession:
    """Read a recorded session folder (also one whose writer crashed) into a :class:`RecordedSession`.

    ``path`` is the session's folder, a file in it, or a folder holding exactly one recorded session (such
    as the demo's output folder). ``frames.parquet`` is read when it is complete (written on close, nothing
    appended since); otherwise ``frames.jsonl``, whose torn last line (a crash mid-write) is dropped. Next:
    ``.frames`` with :func:`frames_view`, or :func:`amigo_lab.analysis.turns`.
    """
    folder = session_folder(path)
    meta = read_meta(folder)
    frames = read_frames(folder, meta)
    frames.attrs["fast"] = bool(meta.get("fast"))    # the rows cannot say it; analysis.turns reads this
    return RecordedSession(path=folder, frames=frames, meta=meta)
