"""The reader: frames.jsonl and frames.parquet back to the log's DataFrame, fast and tolerant of a torn end."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from amigo_lab.framelog._schema import (
    COLUMNS,
    FLAG_INVALID_UNICODE,
    FRAMES_FILE,
    META_FILE,
    PARQUET_FILE,
    FrameLogError,
)

logger = logging.getLogger("amigo_lab.framelog")

# Columns added after the first recorded sessions; older files lack them and read as null.
_LATER_COLUMNS = ("flags", "wire")
_ARROW_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "Int64": pa.int64(),
                "Float64": pa.float64(), "boolean": pa.bool_()}
# ``wall`` is left to inference: new logs store epoch seconds, older ones ISO 8601 strings.
_SCHEMA = pa.schema([(name, _ARROW_TYPES[dtype]) for name, dtype in COLUMNS.items() if name != "wall"])
_PANDAS_TYPES = {pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype(), pa.int64(): pd.Int64Dtype(),
                 pa.float64(): pd.Float64Dtype(), pa.bool_(): pd.BooleanDtype()}
# Blocks of JSONL parsed in parallel; a line must fit in one, so a longer one is read again in the big size.
_BLOCK, _BIG_BLOCK = 16 << 20, 1 << 30
_SURROGATE = re.compile("[\ud800-\udfff]")


def empty_frames() -> pd.DataFrame:
    """An empty frames table with the log's columns and dtypes."""
    return pd.DataFrame({name: pd.array([], dtype=dtype) for name, dtype in COLUMNS.items()}, columns=list(COLUMNS))


def _wall_series(values: pd.Series) -> Any:
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.astype("float64")
        return pd.to_datetime(numbers * 1e9, unit="ns", utc=True).astype(COLUMNS["wall"]).array
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = values if isinstance(values.dtype, pd.DatetimeTZDtype) else values.dt.tz_localize("UTC")
        return stamps.astype(COLUMNS["wall"]).array
    return pd.to_datetime(values.astype(object), utc=True, format="ISO8601").astype(COLUMNS["wall"]).array


def entries_to_dataframe(entries: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Build the log's DataFrame from entry dicts (missing keys are null). Columns and dtypes: :data:`COLUMNS`.

    ``wall`` may be a datetime, an ISO 8601 string or epoch seconds. Next: :func:`frames_view`.
    """
    if not entries:
        return empty_frames()
    data: dict[str, Any] = {}
    for name, dtype in COLUMNS.items():
        values = [entry.get(name) for entry in entries]
        if name == "wall":
            if all(isinstance(v, (int, float)) for v in values):
                data[name] = _wall_series(pd.Series(values, dtype="float64"))
            else:
                converted = [v.isoformat() if isinstance(v, datetime) else v for v in values]
                data[name] = _wall_series(pd.Series(converted, dtype=object))
        else:
            data[name] = pd.array(values, dtype=dtype)
    return pd.DataFrame(data, columns=list(COLUMNS))


def _from_arrow(table: pa.Table) -> pd.DataFrame:
    data: dict[str, Any] = {}
    n = table.num_rows
    names = set(table.column_names)
    for name, dtype in COLUMNS.items():
        if name not in names:
            data[name] = pd.array([None] * n, dtype=dtype)
            continue
        column = table.column(name)
        if name == "wall":
            data[name] = _wall_series(column.to_pandas())
        elif dtype in ("int64", "float64"):
            data[name] = column.to_numpy().astype(dtype, copy=False)
        else:
            data[name] = column.to_pandas(types_mapper=_PANDAS_TYPES.get).astype(dtype).array
    return pd.DataFrame(data, columns=list(COLUMNS))


def _whole_lines(data: bytes, source: Path | str) -> int:
    """How many bytes of ``data`` are whole lines (the rest is a torn last line, dropped with a warning)."""
    cut = data.rfind(b"\n") + 1
    if cut < len(data) and data[cut:].strip():
        # The entry in flight when the writer died (possibly inside a multi-byte character); the rest is whole.
        logger.warning("ignoring a partial last line in %s (%d bytes)", source, len(data) - cut)
    return cut


def _slow_lines(data: bytes, source: Path | str) -> pd.DataFrame:
    """Line by line, for what the vectorised reader refuses: old files, escaped lone surrogates, damage."""
    entries: list[dict[str, Any]] = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line.decode("utf-8"))
        except ValueError as exc:
            raise FrameLogError(f"{str(source)!r} line {number} is not a JSON entry ({exc}); the file is damaged "
                                "there (only a torn last line is skipped)") from exc
        if not isinstance(entry, dict):
            raise FrameLogError(f"{str(source)!r} line {number} is not a JSON object; the file is damaged there")
        flagged = False
        for key, value in entry.items():
            if isinstance(value, str) and _SURROGATE.search(value):
                entry[key] = _SURROGATE.sub("\ufffd", value)
                flagged = True
        if flagged and FLAG_INVALID_UNICODE not in (entry.get("flags") or ""):
            entry["flags"] = ",".join(filter(None, [entry.get("flags"), FLAG_INVALID_UNICODE]))
        entries.append(entry)
    return entries_to_dataframe(entries)


def read_jsonl_bytes(data: bytes, *, source: Path | str = FRAMES_FILE) -> pd.DataFrame:
    """The DataFrame of whole JSONL lines in ``data`` (a torn last line is dropped with a warning)."""
    cut = _whole_lines(data, source)
    if cut == 0 or (not data[: min(cut, 4096)].strip() and not data[:cut].strip()):  # blank lines only
        return empty_frames()
    whole = pa.py_buffer(data)[:cut]  # no copy of what may be gigabytes
    for block in (_BLOCK, _BIG_BLOCK):
        try:
            table = pa_json.read_json(
                pa.BufferReader(whole),
                read_options=pa_json.ReadOptions(block_size=min(max(cut, 1 << 20), block), use_threads=True),
                parse_options=pa_json.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="infer"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            if "straddling" in str(exc).lower() and block != _BIG_BLOCK:
                continue  # a line longer than a block: read again in bigger blocks
            return _slow_lines(data[:cut], source)
        return _from_arrow(table)
    return _slow_lines(data[:cut], source)


def _conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Give a DataFrame read from elsewhere (parquet) exactly the log's columns and dtypes."""
    for name in _LATER_COLUMNS:
        if name not in frame.columns:
            frame[name] = pd.array([None] * len(frame), dtype=COLUMNS[name])
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise FrameLogError(f"the frames table lacks columns {missing}; it was not written by amigo_lab")
    if list(frame.columns) != list(COLUMNS):
        frame = frame[list(COLUMNS)]
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0:
        frame = frame.reset_index(drop=True)
    wrong = {c: d for c, d in COLUMNS.items() if str(frame[c].dtype) != d}
    return frame.astype(wrong) if wrong else frame


def write_parquet(frame: pd.DataFrame, target: Path) -> Path:
    """Write ``frame`` to ``target`` atomically (a reader never sees half a file)."""
    tmp = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, target)
    except (OSError, ValueError, ImportError, pa.ArrowException) as exc:
        raise FrameLogError(f"cannot write parquet {str(target)!r}: {exc}") from exc
    return target


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``frames.parquet`` written by the lab, with the log's columns and dtypes."""
    try:
        return _conform(pd.read_parquet(path))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise FrameLogError(f"cannot read {str(path)!r}: {exc}") from exc


def parquet_is_complete(folder: Path, meta: Mapping[str, Any]) -> bool:
    """True when ``frames.parquet`` holds every entry of ``frames.jsonl`` (written on close, nothing after)."""
    parquet, jsonl = folder / PARQUET_FILE, folder / FRAMES_FILE
    if not parquet.exists():
        return False
    if not jsonl.exists():
        return True
    written = (meta.get("parquet") or {}).get("jsonl_bytes") if isinstance(meta.get("parquet"), dict) else None
    try:
        return written is not None and int(written) == jsonl.stat().st_size
    except (OSError, TypeError, ValueError):
        return False


def _holds_session(folder: Path) -> bool:
    return (folder / FRAMES_FILE).is_file() or (folder / PARQUET_FILE).is_file()


def session_folder(path: str | os.PathLike[str]) -> Path:
    """The recorded-session folder ``path`` names: itself, the folder of a file in it, or the one session
    folder inside it (up to two levels down, e.g. the demo's output folder). Raises FrameLogError naming the
    paths that would work otherwise."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise FrameLogError(f"no recorded session at {str(folder)!r}: not a folder")
    if _holds_session(folder):
        return folder
    found = sorted({p.parent for pattern in (f"*/{FRAMES_FILE}", f"*/{PARQUET_FILE}", f"*/*/{FRAMES_FILE}",
                                             f"*/*/{PARQUET_FILE}") for p in folder.glob(pattern)})
    if len(found) == 1:
        return found[0]
    if found:
        shown = ", ".join(repr(str(p)) for p in found[:5]) + (" ..." if len(found) > 5 else "")
        raise FrameLogError(f"{str(folder)!r} holds {len(found)} recorded sessions; load one of them: {shown} "
                            "(or all with amigo_lab.analysis.load_sessions)")
    raise FrameLogError(f"no recorded session at {str(folder)!r}: neither {FRAMES_FILE} nor {PARQUET_FILE} in it "
                        "or its sub-folders; pass the folder a session wrote (session.log.path)")


def read_meta(folder: Path) -> dict[str, Any]:
    """``meta.json`` of a session folder ({} when absent)."""
    meta_file = folder / META_FILE
    if not meta_file.exists():
        return {}
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise FrameLogError(f"{str(meta_file)!r} is not JSON ({exc})") from exc
    return meta if isinstance(meta, dict) else {}


def read_frames(folder: Path, meta: Mapping[str, Any]) -> pd.DataFrame:
    """The frames of a session folder: its Parquet when complete, else its JSONL, else a Parquet alone."""
    jsonl, parquet = folder / FRAMES_FILE, folder / PARQUET_FILE
    if parquet_is_complete(folder, meta):
        try:
            return read_parquet(parquet)
        except FrameLogError as exc:
            if not jsonl.exists():
                raise
            logger.warning("%s; reading %s instead", exc, jsonl)
    try:
        data = jsonl.read_bytes()
    except OSError as exc:
        raise FrameLogError(f"cannot read {str(jsonl)!r}: {exc}") from exc
    return read_jsonl_bytes(data, source=jsonl)
