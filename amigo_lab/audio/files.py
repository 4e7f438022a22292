"""Reading audio files (WAV, FLAC, OGG, MP3, ...) into float arrays and writing WAV files, via soundfile."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import soundfile as sf

from amigo_lab.audio._checks import check_sample_rate
from amigo_lab.audio.errors import AudioError
from amigo_lab.audio.pcm import SAMPLE_RATE
from amigo_lab.audio.resample import resample, to_mono

_MAIN_FORMATS = ("WAV", "FLAC", "OGG", "MP3")


def _supported_formats() -> str:
    others = sorted(set(sf.available_formats()) - set(_MAIN_FORMATS) - {"RAW"})
    return f"{', '.join(_MAIN_FORMATS)} (also {', '.join(others)})"


def load_audio(
    path: str | os.PathLike[str], *, sr: int = SAMPLE_RATE, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 samples at ``sr`` Hz.

    Parameters
    ----------
    path
        A WAV, FLAC, OGG or MP3 file (or any other format libsndfile reads).
    sr
        Sample rate in Hz to return; the file is resampled if it differs. Default: the wire rate, 16 000.
    mono
        Average the channels into one (default). With ``False`` the result is ``(n, channels)``.

    Returns
    -------
    (samples, sr)
        float32 samples in ``[-1, 1]``, ``(n,)`` if ``mono`` else ``(n, channels)``, and the rate ``sr``.

    Next: `chunk()` to cut it into wire-sized pieces, or `float_to_pcm16()` / `encode_mp3()` to send it.
    """
    sr = check_sample_rate(sr)
    path = pathlib.Path(path)
    if not path.exists():
        where = "" if pathlib.Path(path).is_absolute() else f" (relative paths start at {os.getcwd()!r})"
        raise AudioError(f"no such audio file: {str(path)!r}; check the path{where}")
    if not path.is_file():
        raise AudioError(f"{str(path)!r} is not a file; pass the path of an audio file")
    try:
        frames, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as exc:
        raise AudioError(
            f"cannot read {str(path)!r} as audio ({exc}); supported formats: {_supported_formats()}"
        ) from exc
    samples = to_mono(frames) if mono else frames
    return resample(samples, sr_in=file_sr, sr_out=sr), sr


def write_wav(
    path: str | os.PathLike[str], x: np.ndarray, *, sr: int, subtype: str = "PCM_16"
) -> pathlib.Path:
    """Write samples to a WAV file, creating missing parent directories.

    Parameters
    ----------
    path
        Where to write; an existing file is replaced.
    x
        ``(n,)`` mono or ``(n, channels)`` samples: float in ``[-1, 1]`` (clipped when the subtype is
        integer PCM) or int16.
    sr
        Sample rate in Hz of ``x``.
    subtype
        A WAV subtype of libsndfile: ``"PCM_16"`` (default), ``"PCM_24"``, ``"FLOAT"``, ...

    Returns
    -------
    pathlib.Path
        The path written.

    Next: `load_audio()` reads it back; any audio player or editor opens it.
    """
    sr = check_sample_rate(sr)
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise AudioError(f"write_wav takes (n,) samples or (n, channels) frames, got an array of shape {x.shape}")
    if not sf.check_format("WAV", subtype):
        raise AudioError(
            f"{subtype!r} is not a WAV subtype; use one of {', '.join(sorted(sf.available_subtypes('WAV')))}"
        )
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # soundfile turns clipping on, so out-of-range floats saturate instead of wrapping around.
        sf.write(path, x, sr, subtype=subtype, format="WAV")
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"cannot write {str(path)!r} as WAV {subtype} at {sr} Hz: {exc}") from exc
    return path
