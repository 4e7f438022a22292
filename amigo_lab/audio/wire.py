"""The protocol's two audio formats, ``"pcm"`` and ``"mp3"``: both mono at 16 000 Hz."""

from __future__ import annotations

import numpy as np

from amigo_lab.audio.errors import AudioError
from amigo_lab.audio.mp3 import decode_mp3, encode_mp3
from amigo_lab.audio.pcm import SAMPLE_RATE, float_to_pcm16, pcm16_to_float

WIRE_FORMATS = ("pcm", "mp3")
"""The values of ``audio_format`` the protocol knows."""


def _unknown_format(audio_format: object) -> AudioError:
    return AudioError(f"unknown audio format {audio_format!r}; use one of {', '.join(map(repr, WIRE_FORMATS))}")


def decode_wire_audio(data: bytes, audio_format: str) -> np.ndarray:
    """Turn one piece of wire audio into float32 mono samples at 16 000 Hz.

    Parameters
    ----------
    data
        The piece: PCM16 bytes for ``"pcm"``, a complete MP3 stream for ``"mp3"``.
    audio_format
        ``"pcm"`` or ``"mp3"``.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float32 samples in ``[-1, 1]``.

    Next: `np.concatenate()` the pieces of a turn, then `write_wav(path, x, sr=SAMPLE_RATE)` to listen.
    """
    if audio_format == "pcm":
        return pcm16_to_float(data)
    if audio_format == "mp3":
        return decode_mp3(data, sr=SAMPLE_RATE)
    raise _unknown_format(audio_format)


def encode_wire_audio(x: np.ndarray, audio_format: str) -> bytes:
    """Turn float32 mono samples at 16 000 Hz into one piece of wire audio.

    Parameters
    ----------
    x
        ``(n,)`` samples in ``[-1, 1]`` at 16 000 Hz; `resample()` and `to_mono()` other audio first.
    audio_format
        ``"pcm"`` for PCM16 bytes or ``"mp3"`` for a complete MP3 stream that decodes on its own.

    Returns
    -------
    bytes
        The piece, ready to send.

    Next: send it; for a stream, `chunk()` the audio first and encode each piece.
    """
    if audio_format == "pcm":
        x = np.asarray(x)
        if x.ndim != 1:
            raise AudioError(f"wire audio is mono: expected (n,) samples, got shape {x.shape}; use to_mono() first")
        return float_to_pcm16(x)
    if audio_format == "mp3":
        return encode_mp3(x, sr=SAMPLE_RATE)
    raise _unknown_format(audio_format)
