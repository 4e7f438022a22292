"""PCM16, the protocol's raw audio format: signed 16-bit little-endian samples, mono, 16 000 Hz.

Floats in ``[-1, 1)`` map to integers by a factor of 32768, so every int16 value survives a round trip
through float exactly: ``float_to_pcm16(pcm16_to_float(b)) == b``.
"""

from __future__ import annotations

import numpy as np

from amigo_lab.audio._checks import check_pcm16_length, check_sample_rate, is_int16
from amigo_lab.audio.errors import AudioError
from amigo_lab.protocol.constants import SAMPLE_RATE

__all__ = ["SAMPLE_RATE"]  # re-exported: the protocol's rate (16 000 Hz), PCM16 and MP3 alike

_PCM16 = np.dtype("<i2")
_FULL_SCALE = 32768.0
_SCALE = np.float32(1.0 / _FULL_SCALE)  # a power of two: multiplying is exact, the same as dividing


def pcm16_to_float(data: bytes | bytearray | memoryview | np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Convert PCM16 samples to float32 in ``[-1, 1)``.

    Parameters
    ----------
    data
        Raw little-endian PCM16 bytes (an even number of them), or an int16 array of any shape.
    out
        A float32 array of the same length to write the samples into (no new array), e.g. a slice of a track.

    Returns
    -------
    numpy.ndarray
        float32 samples, ``value / 32768``; the same shape as an array input, 1-D for bytes.

    Next: `resample()` if it is not at the rate you need, `chunk()` to cut it into pieces.
    """
    if isinstance(data, np.ndarray):
        if not is_int16(data.dtype):
            raise AudioError(
                f"pcm16_to_float takes int16 samples, got an array of {data.dtype}; "
                "float audio is already converted, other integers need scaling to int16 first"
            )
        return np.multiply(data, _SCALE, dtype=np.float32, out=out)
    try:
        view = memoryview(data)
    except TypeError:
        raise AudioError(
            f"pcm16_to_float takes bytes, bytearray, memoryview or an int16 array, got {type(data).__name__}"
        ) from None
    check_pcm16_length(view.nbytes)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    samples = np.frombuffer(view.cast("B"), dtype=_PCM16)
    # One pass and one float array: an hour of a side is 230 MB of float32, so no temporary copy of it.
    return np.multiply(samples, _SCALE, dtype=np.float32, out=out)


def float_to_pcm16(x: np.ndarray) -> bytes:
    """Convert float samples to PCM16 bytes, ready to send.

    Parameters
    ----------
    x
        Samples of any float dtype, nominally in ``[-1, 1]``; values outside are clipped (full scale
        positive becomes 32767). An int16 array is taken as PCM16 already and returned as its bytes.

    Returns
    -------
    bytes
        Little-endian signed 16-bit samples, 2 bytes each, in C order (interleaved if 2-D).

    Next: `chunk_pcm16()` to cut the bytes into wire-sized pieces.
    """
    x = np.asarray(x)
    if is_int16(x.dtype):
        return x.astype(_PCM16, copy=False).tobytes()
    if not np.issubdtype(x.dtype, np.floating):
        raise AudioError(
            f"float_to_pcm16 takes float samples in [-1, 1] (or int16 to pass through), got {x.dtype}; "
            "convert with x.astype(np.float32) / full_scale first"
        )
    # Scaling by 32768, a power of two, is exact in the samples' own float type (float32 stays float32, half
    # the memory traffic of a float64 copy), so int16 -> float -> int16 is lossless.
    work = x.astype(np.float32 if x.dtype.itemsize <= 4 else np.float64, copy=False)
    if work.size and np.isnan(work.min()):      # min propagates NaN without a flag array the track's size
        raise AudioError("float_to_pcm16 got NaN samples; there is no PCM16 value for them, fix the source audio")
    scaled = np.clip(work, -1.0, 1.0)
    scaled *= _FULL_SCALE
    np.rint(scaled, out=scaled)
    np.clip(scaled, -32768, 32767, out=scaled)
    return scaled.astype(_PCM16).tobytes()


def pcm16_duration_ms(data: bytes | bytearray | memoryview, *, sr: int = SAMPLE_RATE) -> float:
    """Duration in milliseconds of mono PCM16 bytes at ``sr`` Hz (640 bytes at 16 kHz = 20.0 ms).

    Next: `chunk_pcm16()` to cut them into pieces of a given duration.
    """
    sr = check_sample_rate(sr)
    n_bytes = memoryview(data).nbytes
    check_pcm16_length(n_bytes)
    return (n_bytes // 2) * 1000.0 / sr
