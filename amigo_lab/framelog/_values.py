"""Scalar values of a frame-log row: the log uses pandas' nullable dtypes, so a missing value may be NA, None
or NaN. Every reader of rows (the replay into the fold, the analysis) reads them through these."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from amigo_lab.framelog._schema import pcm_ms

NAN = math.nan


_NEVER_MISSING = (str, int, bool)


def missing(value: Any) -> bool:
    """True for NA, None and NaN."""
    if value is None or value is pd.NA:
        return True
    # The common values first: a replay asks this of every column of every row.
    cls = value.__class__
    if cls is float:
        return bool(value != value)  # NaN is the only float unequal to itself
    if cls in _NEVER_MISSING:
        return False
    if isinstance(value, float):  # numpy's floats
        return bool(value != value)
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def num(value: Any) -> float:
    """The value as a float, NaN when missing."""
    return NAN if missing(value) else float(value)


def opt_str(value: Any) -> str | None:
    """The value as a str, None when missing."""
    return None if missing(value) else str(value)


def opt_bool(value: Any) -> bool | None:
    """The value as a bool, None when missing."""
    return None if missing(value) else bool(value)


def json_value(value: Any) -> Any:
    """Decode a JSON string column (``action``, ``alignment``, ``extra``); None when missing or not JSON."""
    text = opt_str(value)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def audio_ms_of(row: Mapping[str, Any]) -> float:
    """Milliseconds of audio a row's frame carried: ``audio_ms``, else its bytes as PCM16 at 16 kHz, else 0."""
    ms = num(row.get("audio_ms"))
    if not math.isnan(ms):
        return ms
    size = num(row.get("audio_bytes"))
    return 0.0 if math.isnan(size) else pcm_ms(int(size))
