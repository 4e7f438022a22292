"""Argument checks shared by the audio modules, so every function rejects bad input the same way."""

from __future__ import annotations

import numbers

import numpy as np

from amigo_lab.audio.errors import AudioError


def check_sample_rate(sr: object, *, name: str = "sr") -> int:
    """Return ``sr`` as an ``int`` if it is a positive whole number of samples per second."""
    # bool is an Integral too, and sr=True is always a mistake.
    if isinstance(sr, bool) or not isinstance(sr, numbers.Integral) or sr <= 0:
        raise AudioError(f"{name} must be a positive whole number of samples per second (e.g. 16000), got {sr!r}")
    return int(sr)


def samples_in(ms: float, *, sr: int) -> int:
    """Number of samples, rounded to the nearest, that ``ms`` milliseconds last at ``sr`` Hz."""
    return int(round(sr * ms / 1000.0))


def check_pcm16_length(n_bytes: int) -> None:
    """Reject a PCM16 byte count that is odd, i.e. ends in the middle of a sample."""
    if n_bytes % 2:
        raise AudioError(
            f"PCM16 data must have an even number of bytes (2 per sample), got {n_bytes}; "
            "it was probably cut in the middle of a sample"
        )


def is_int16(dtype: np.dtype) -> bool:
    """True for 16-bit signed integers of either byte order."""
    return dtype.kind == "i" and dtype.itemsize == 2
