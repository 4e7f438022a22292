"""Many recorded sessions at once: load a folder of them, one turns table, p50/p90 per session.

Start with :func:`load_sessions`, then :func:`turns_many` and :func:`summary_many`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from amigo_lab.analysis.errors import AnalysisError
from amigo_lab.analysis.turns import LATENCY_METRICS, TURN_COLUMNS, turns

__all__ = ["load_sessions", "summary_many", "turns_many"]

#: The ``session`` value of the row that :func:`summary_many` computes over every session together.
ALL_SESSIONS = "(all)"


def load_sessions(folder: str | os.PathLike[str], *, progress: bool = True) -> dict[str, Any]:
    """Every recorded session in the subfolders of ``folder``: ``{subfolder name: RecordedSession}``.

    A subfolder counts when it holds ``frames.jsonl`` or ``frames.parquet`` (what a session's ``log_dir``
    or ``session.save(dir)`` writes); others are skipped. Sorted by name; a tqdm bar shows progress unless
    ``progress=False``. Next: :func:`turns_many`.
    """
    from amigo_lab.framelog import FRAMES_FILE, PARQUET_FILE, load_session

    root = Path(folder)
    if not root.is_dir():
        raise AnalysisError(f"{str(root)!r} is not a folder; give the folder that holds recorded session folders")
    found = sorted(p for p in root.iterdir()
                   if p.is_dir() and ((p / FRAMES_FILE).exists() or (p / PARQUET_FILE).exists()))
    if not found:
        raise AnalysisError(f"no recorded sessions in {str(root)!r}: expected subfolders holding {FRAMES_FILE}")
    return {path.name: load_session(path)
            for path in tqdm(found, desc="loading sessions", unit="session", disable=not progress)}


def turns_many(sessions: Mapping[str, Any], *, progress: bool = False) -> pd.DataFrame:
    """One :func:`~amigo_lab.analysis.turns` table over many sessions, with a leading ``session`` column.

    ``sessions`` maps a name to a RecordedSession, a Session (anything with ``.frames``) or a frame-log
    DataFrame, e.g. the result of :func:`load_sessions`. A RecordedSession's ``fast`` mark reaches each table's
    ``real_time`` column (see :func:`~amigo_lab.analysis.turns`). Next: :func:`summary_many`.
    """
    if not isinstance(sessions, Mapping):
        raise AnalysisError(f"sessions must map names to sessions (see load_sessions), got {type(sessions).__name__}")
    tables = []
    for name, session in tqdm(sessions.items(), desc="turns", unit="session", disable=not progress):
        frames = session if isinstance(session, pd.DataFrame) else getattr(session, "frames", None)
        if frames is None:
            raise AnalysisError(f"session {name!r} has no frames; pass RecordedSession or DataFrame values")
        # A RecordedSession knows whether it was marked fast (meta.json); a bare DataFrame does not.
        fast = getattr(session, "fast", None)
        table = turns(frames, fast=fast if isinstance(fast, bool) else None)
        table.insert(0, "session", pd.array([str(name)] * len(table), dtype="string"))
        tables.append(table)
    if not tables:
        return pd.DataFrame(columns=["session", *TURN_COLUMNS]).astype({"session": "string", **TURN_COLUMNS})
    return pd.concat(tables, ignore_index=True)


def summary_many(turns_df: pd.DataFrame, *, metrics: tuple[str, ...] = LATENCY_METRICS,
                 include_greeting: bool = False) -> pd.DataFrame:
    """One row per session of a :func:`turns_many` table, and a last row ``"(all)"`` over all of them.

    Columns: ``session``, ``turns`` (counted), ``interrupted`` (how many), then ``<metric>_p50`` and
    ``<metric>_p90`` (ms) for each latency. The greeting is left out unless ``include_greeting``.
    """
    if not isinstance(turns_df, pd.DataFrame) or not {"session", "user_kind", *metrics} <= set(turns_df.columns):
        raise AnalysisError("pass the DataFrame from turns_many(sessions)")
    table = turns_df if include_greeting else turns_df[turns_df["user_kind"] != "greeting"]
    parts = [(str(name), part) for name, part in table.groupby("session", sort=True)]
    parts.append((ALL_SESSIONS, table))
    rows = []
    for name, part in parts:
        row: dict[str, Any] = {"session": name, "turns": len(part),
                               "interrupted": int(part["interrupted"].fillna(False).astype(bool).sum())}
        for metric in metrics:
            values = part[metric].astype(float).dropna().to_numpy()
            row[f"{metric}_p50"] = float(np.percentile(values, 50)) if len(values) else np.nan
            row[f"{metric}_p90"] = float(np.percentile(values, 90)) if len(values) else np.nan
        rows.append(row)
    return pd.DataFrame(rows).astype({"session": "string", "turns": "int64", "interrupted": "int64"})
