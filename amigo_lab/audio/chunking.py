"""Cutting audio into consecutive fixed-duration pieces, the way it is streamed over the wire."""

from __future__ import annotations

import numpy as np

from amigo_lab.audio._checks import check_pcm16_length, check_sample_rate, samples_in
from amigo_lab.audio.errors import AudioError
from amigo_lab.audio.pcm import SAMPLE_RATE


def _samples_per_chunk(ms: float, sr: int) -> int:
    if not ms > 0:
        raise AudioError(f"chunk duration ms must be positive, got {ms!r}; 20.0 is a typical streaming size")
    n = samples_in(ms, sr=sr)
    if n < 1:
        raise AudioError(f"{ms} ms is less than one sample at {sr} Hz; use at least {1000.0 / sr:.4g} ms")
    return n


def chunk(
    x: np.ndarray, *, sr: int = SAMPLE_RATE, ms: float = 20.0, pad: bool = False
) -> list[np.ndarray]:
    """Cut samples into consecutive pieces of ``ms`` milliseconds (20 ms at 16 kHz = 320 samples).

    Parameters
    ----------
    x
        ``(n,)`` samples or ``(n, channels)`` frames; cut along the first axis.
    sr
        Sample rate in Hz of ``x``. Default: the wire rate, 16 000.
    ms
        Duration of each piece in milliseconds, rounded to the nearest whole sample.
    pad
        Zero-pad the last piece to full length. By default it is just shorter.

    Returns
    -------
    list of numpy.ndarray
        The pieces in order, empty for empty input. Unpadded pieces are views into ``x``.

    Next: `float_to_pcm16()` or `encode_wire_audio()` on each piece to send it.
    """
    sr = check_sample_rate(sr)
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise AudioError(f"chunk takes (n,) samples or (n, channels) frames, got an array of shape {x.shape}")
    size = _samples_per_chunk(ms, sr)
    pieces = [x[start : start + size] for start in range(0, x.shape[0], size)]
    if pad and pieces and pieces[-1].shape[0] < size:
        last = pieces[-1]
        padded = np.zeros((size, *last.shape[1:]), dtype=last.dtype)
        padded[: last.shape[0]] = last
        pieces[-1] = padded
    return pieces


def chunk_pcm16(data: bytes | bytearray | memoryview, *, sr: int = SAMPLE_RATE, ms: float = 20.0) -> list[bytes]:
    """Cut mono PCM16 bytes into consecutive pieces of ``ms`` milliseconds (20 ms at 16 kHz = 640 bytes).

    Pieces never split a sample; the last one is shorter when the data does not divide evenly.

    Parameters
    ----------
    data
        Little-endian PCM16 bytes, an even number of them.
    sr
        Sample rate in Hz. Default: the wire rate, 16 000.
    ms
        Duration of each piece in milliseconds, rounded to the nearest whole sample.

    Returns
    -------
    list of bytes
        The pieces in order, empty for empty input.

    Next: send each piece; `pcm16_duration_ms()` tells how long one lasts.
    """
    sr = check_sample_rate(sr)
    data = bytes(data)
    check_pcm16_length(len(data))
    size = 2 * _samples_per_chunk(ms, sr)
    return [data[start : start + size] for start in range(0, len(data), size)]


def silence(ms: float, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Return ``ms`` milliseconds of silence: float32 zeros, rounded to the nearest whole sample.

    Next: `np.concatenate()` it with speech to pad a turn, or `float_to_pcm16()` to send it.
    """
    sr = check_sample_rate(sr)
    if not ms >= 0:
        raise AudioError(f"silence duration ms must be zero or more, got {ms!r}")
    return np.zeros(samples_in(ms, sr=sr), dtype=np.float32)
