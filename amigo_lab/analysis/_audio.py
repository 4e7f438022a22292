"""Checks for audio arrays handed to the analysis helpers."""

from __future__ import annotations

from typing import Any

import numpy as np

from amigo_lab.analysis.errors import AnalysisError


def check_sr(sr: Any) -> int:
    """``sr`` as a positive int; raise AnalysisError otherwise."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise AnalysisError(f"sr must be a positive int sample rate in Hz (e.g. 16000), got {sr!r}")
    return int(sr)


def float_audio(audio: Any, *, sr: Any) -> np.ndarray:
    """``audio`` as a 1-D float32 array after checking it and ``sr``; raise AnalysisError if either is wrong."""
    check_sr(sr)
    try:
        samples = np.asarray(audio)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"audio must be a 1-D array of float samples, got {type(audio).__name__}") from exc
    if samples.ndim != 1:
        raise AnalysisError(f"audio must be mono (1-D), got shape {samples.shape}; mix it down with "
                            "amigo_lab.audio.to_mono first")
    if samples.dtype.kind not in "fiu":
        raise AnalysisError(f"audio must hold numbers, got dtype {samples.dtype}")
    if samples.dtype.kind in "iu":
        raise AnalysisError(f"audio must be float samples in [-1, 1], got {samples.dtype}; convert PCM16 "
                            "with amigo_lab.audio.pcm16_to_float")
    # min and max are NaN or infinite exactly when some sample is, and need no array of flags the track's size.
    if samples.size and not (np.isfinite(samples.min()) and np.isfinite(samples.max())):
        raise AnalysisError("audio holds NaN or infinite samples")
    return samples.astype(np.float32, copy=False)
