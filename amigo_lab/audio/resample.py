"""Channel downmixing and sample-rate conversion (soxr), the steps between a file and the wire."""

from __future__ import annotations

import numpy as np
import soxr

from amigo_lab.audio._checks import check_sample_rate
from amigo_lab.audio.errors import AudioError
from amigo_lab.audio.pcm import SAMPLE_RATE


def to_mono(x: np.ndarray) -> np.ndarray:
    """Downmix to one channel by averaging the channels.

    Parameters
    ----------
    x
        ``(n,)`` mono samples, returned unchanged, or ``(n, channels)`` frames as soundfile reads them.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` samples; float input keeps its dtype, integer input becomes float64.

    Next: `resample()` to bring it to the wire rate.
    """
    x = np.asarray(x)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise AudioError(
            f"to_mono takes (n,) samples or (n, channels) frames, got an array of shape {x.shape}"
        )
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    return x.mean(axis=1, dtype=dtype)


def resample(x: np.ndarray, *, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Change the sample rate of ``x`` from ``sr_in`` to ``sr_out`` Hz with soxr (high quality).

    Parameters
    ----------
    x
        ``(n,)`` mono samples or ``(n, channels)`` frames, float; integers are converted to float32
        without rescaling (use `pcm16_to_float()` first for int16 PCM).
    sr_in, sr_out
        Sample rates in Hz. Equal rates return a float32 copy.

    Returns
    -------
    numpy.ndarray
        float32 samples, about ``n * sr_out / sr_in`` of them, same number of channels.

    Next: `float_to_pcm16()` or `encode_mp3()` to put it on the wire, `chunk()` to cut it up.
    """
    sr_in = check_sample_rate(sr_in, name="sr_in")
    sr_out = check_sample_rate(sr_out, name="sr_out")
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise AudioError(f"resample takes (n,) samples or (n, channels) frames, got an array of shape {x.shape}")
    if sr_in == sr_out:
        return np.array(x, dtype=np.float32)
    # soxr keeps float64 as float64; the toolkit works in float32 throughout.
    return soxr.resample(np.ascontiguousarray(x, dtype=np.float32), sr_in, sr_out)
