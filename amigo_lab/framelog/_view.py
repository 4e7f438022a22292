"""A readable view of a frame log: audio runs folded into one row, a compact column set, type filters."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from amigo_lab.framelog._schema import FLAG_RESERIALIZED, FrameLogError

#: The columns of the compact view, in order.
VIEW_COLUMNS = ("seq", "t", "direction", "type", "message_id", "n", "summary")
#: A pattern in ``include`` / ``exclude`` that means every entry carrying audio (whatever its type).
AUDIO = "audio"
_SUMMARY_CHARS = 80


def _patterns(value: str | Iterable[str] | None, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    try:
        patterns = tuple(value)
    except TypeError:
        raise FrameLogError(f"{name} takes a type or a list of types (globs like 'server.vad-*', or 'audio'), "
                            f"got {value!r}") from None
    if not all(isinstance(p, str) for p in patterns):
        raise FrameLogError(f"{name} takes type names or globs as strings, got {value!r}")
    return patterns


def _matches(types: pd.Series, is_audio: np.ndarray, patterns: tuple[str, ...]) -> np.ndarray:
    hit = np.zeros(len(types), dtype=bool)
    names = types.fillna("").astype(str)
    unique = names.unique()
    for pattern in patterns:
        if pattern == AUDIO:
            hit |= is_audio
            continue
        chosen = [name for name in unique if fnmatch.fnmatchcase(name, pattern)]
        hit |= names.isin(chosen).to_numpy()
    return hit


def _cut(text: Any) -> str:
    if text is None or text is pd.NA or (isinstance(text, float) and np.isnan(text)):
        return ""
    line = str(text).replace("\n", " ")
    return line if len(line) <= _SUMMARY_CHARS else line[: _SUMMARY_CHARS - 1] + "…"


def _summary(row: dict[str, Any]) -> str:
    parts = []
    for column, label in (("http_error_code", ""), ("close_code", ""), ("vad_ms", "at "), ("played_ms", "played ")):
        value = row.get(column)
        if value is not None:
            unit = " ms" if column in ("vad_ms", "played_ms") else ""
            parts.append(f"{label}{value:.0f}{unit}" if isinstance(value, float) else f"{label}{value}{unit}")
    if row.get("vad_mode_on") is not None:
        parts.append("VAD on" if row["vad_mode_on"] else "VAD off")
    if str(row.get("type") or "").startswith("server.conversation-") and row.get("conversation_id"):
        parts.append(f"conversation {row['conversation_id']}")
    for column in ("text", "error_description", "close_reason", "action_type"):
        value = _cut(row.get(column))
        if value and value not in parts:
            parts.append(value)
            break
    if row.get("type") == "client.new-audio-message" and row.get("stop") is True:
        parts.append("end of audio")
    elif row.get("stop") is True:
        parts.append("(stop)")
    if not parts and row.get("extra") is not None and row.get("extra") is not pd.NA:
        parts.append(_cut(row["extra"]))
    flags = [f for f in (row.get("flags") or "").split(",") if f and f != FLAG_RESERIALIZED]
    if flags:
        parts.append(f"[{','.join(flags)}]")
    return " ".join(parts)


_SUMMARY_COLUMNS = ("type", "http_error_code", "close_code", "vad_ms", "played_ms", "vad_mode_on", "conversation_id",
                    "text", "error_description", "close_reason", "action_type", "stop", "extra", "flags")


def _records(frames: pd.DataFrame) -> list[dict[str, Any]]:
    columns = [c for c in _SUMMARY_COLUMNS if c in frames.columns]
    values = [[None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v
               for v in frames[c].astype(object).tolist()] for c in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def frames_view(frames: pd.DataFrame, *, include: str | Iterable[str] | None = None,
                exclude: str | Iterable[str] | None = None, full: bool = False,
                fold_audio: bool = True) -> pd.DataFrame:
    """A readable view of a frame log: what ``session.frames`` and ``%amigo log`` show by default.

    Runs of audio entries (same direction, type and message, not interrupted by any other kind of entry)
    fold into one row whose ``summary`` reads ``"audio ×250, 5.0 s"``; every other entry is one row with a
    short ``summary`` of its payload. Columns: :data:`VIEW_COLUMNS` (``n`` counts the entries a row stands
    for). ``include`` / ``exclude`` take types or globs (``"server.vad-*"``, ``"playback.*"``) and ``"audio"``
    for every audio entry; exclude wins. ``full=True`` returns the whole table (every column, one row per
    entry) filtered the same way; ``fold_audio=False`` keeps audio rows apart in the compact view.
    Next: find a row's ``seq`` in the full table to read its exact ``wire`` JSON.
    """
    if not isinstance(frames, pd.DataFrame) or not {"seq", "t", "direction", "type"} <= set(frames.columns):
        raise FrameLogError("frames_view takes a frame-log DataFrame: session.frames or load_session(path).frames")
    if not frames["seq"].is_monotonic_increasing:
        frames = frames.sort_values("seq", kind="stable")
    frames = frames.reset_index(drop=True)
    audio_bytes = frames["audio_bytes"] if "audio_bytes" in frames.columns else pd.Series(0, index=frames.index)
    is_audio = (audio_bytes.fillna(0).to_numpy(dtype="int64") > 0)
    keep = np.ones(len(frames), dtype=bool)
    wanted = _patterns(include, "include")
    if wanted:
        keep &= _matches(frames["type"], is_audio, wanted)
    unwanted = _patterns(exclude, "exclude")
    if unwanted:
        keep &= ~_matches(frames["type"], is_audio, unwanted)
    frames, is_audio = frames[keep].reset_index(drop=True), is_audio[keep]
    if full:
        return frames
    n = len(frames)
    rows = pd.DataFrame({"seq": frames["seq"], "t": frames["t"], "direction": frames["direction"],
                         "type": frames["type"],
                         "message_id": frames["message_id"] if "message_id" in frames.columns else pd.NA, "n": 1})
    others = np.flatnonzero(~is_audio) if fold_audio else np.arange(n)
    summaries = pd.Series("", index=frames.index, dtype=object)
    if len(others):
        summaries.iloc[others] = [_summary(r) for r in _records(frames.iloc[others])]
    if not fold_audio:
        audio_at = np.flatnonzero(is_audio)
        if len(audio_at):
            ms = frames["audio_ms"].iloc[audio_at].astype("Float64").fillna(0).to_numpy(float)
            summaries.iloc[audio_at] = [f"audio {m / 1000:.2f} s" for m in ms]
        rows["summary"] = summaries
        return rows[list(VIEW_COLUMNS)].astype({"n": "int64", "summary": "string"})
    rows["summary"] = summaries
    plain = rows.iloc[others]
    audio_at = np.flatnonzero(is_audio)
    if not len(audio_at):
        return plain[list(VIEW_COLUMNS)].reset_index(drop=True).astype({"n": "int64", "summary": "string"})
    # A run breaks at any entry that is not audio; within a stretch, each (direction, type, message) is one run.
    stretch = np.cumsum(~is_audio)[audio_at]
    audio = frames.iloc[audio_at]
    ms = audio["audio_ms"].astype("Float64").fillna(0).to_numpy(float) if "audio_ms" in audio else np.zeros(len(audio))
    keys = pd.DataFrame({"stretch": stretch, "direction": audio["direction"].astype(object).to_numpy(),
                         "type": audio["type"].astype(object).to_numpy(),
                         "message_id": (audio["message_id"].astype(object).fillna("").to_numpy()
                                        if "message_id" in audio else ""),
                         "seq": audio["seq"].to_numpy(), "t": audio["t"].to_numpy(), "ms": ms})
    grouped = keys.groupby(["stretch", "direction", "type", "message_id"], sort=False)
    runs = grouped.agg(seq=("seq", "first"), t=("t", "first"), n=("seq", "size"), ms=("ms", "sum")).reset_index()
    runs["summary"] = [f"audio ×{count}, {total / 1000:.1f} s"
                       for count, total in zip(runs["n"], runs["ms"], strict=True)]
    runs["message_id"] = runs["message_id"].replace("", None)
    folded = pd.concat([plain[list(VIEW_COLUMNS)], runs[list(VIEW_COLUMNS)]], ignore_index=True)
    folded = folded.sort_values("seq", kind="stable").reset_index(drop=True)
    return folded.astype({"seq": "int64", "t": "float64", "direction": "string", "type": "string",
                          "message_id": "string", "n": "int64", "summary": "string"})
