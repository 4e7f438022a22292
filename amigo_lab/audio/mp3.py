"""MP3 pieces for the wire: each one a complete, self-contained MP3 stream (LAME via soundfile).

Every piece starts with a LAME/Xing info frame that records the encoder delay and padding, so the
decoder trims them and a piece decodes to exactly as many samples as were encoded.
"""

from __future__ import annotations

import io
import numbers

import numpy as np
import soundfile as sf

from amigo_lab.audio._checks import check_sample_rate, is_int16
from amigo_lab.audio.errors import AudioError
from amigo_lab.audio.pcm import SAMPLE_RATE, pcm16_to_float
from amigo_lab.audio.resample import resample, to_mono

MP3_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
"""The sample rates in Hz that MPEG-1, 2 and 2.5 Layer III can carry."""


def _bitrate_range_kbps(sr: int) -> tuple[int, int]:
    """The bitrates libsndfile maps its compression level onto, for the MPEG version ``sr`` implies."""
    if sr >= 32000:
        return 32, 320
    if sr >= 16000:
        return 8, 160
    return 8, 64


def _encoder_options(sr: int, bitrate_kbps: int | None) -> dict[str, object]:
    if bitrate_kbps is None:
        return {}
    low, high = _bitrate_range_kbps(sr)
    whole = isinstance(bitrate_kbps, numbers.Integral) and not isinstance(bitrate_kbps, bool)
    if not whole or not low <= bitrate_kbps <= high:
        raise AudioError(
            f"bitrate_kbps must be a whole number from {low} to {high} at {sr} Hz, got {bitrate_kbps!r}; "
            "or pass None for the encoder's default quality"
        )
    # libsndfile sets bitrate = int(high - level * (high - low)); aim half a kbps above so the
    # truncation lands on the requested value. Constant bitrate is avoided on purpose: in that mode
    # libsndfile writes no info frame, and decoders then return the encoder delay as extra samples.
    level = (high - bitrate_kbps - 0.5) / (high - low)
    return {"bitrate_mode": "AVERAGE", "compression_level": min(1.0, max(0.0, float(level)))}


def _as_mono_float(x: np.ndarray | bytes | bytearray | memoryview) -> np.ndarray:
    if isinstance(x, (bytes, bytearray, memoryview)):
        return pcm16_to_float(x)
    x = np.asarray(x)
    if is_int16(x.dtype):
        x = pcm16_to_float(x)
    elif not np.issubdtype(x.dtype, np.floating):
        raise AudioError(f"encode_mp3 takes float samples, int16 samples or PCM16 bytes, got an array of {x.dtype}")
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise AudioError(f"encode_mp3 takes mono (n,) samples, got shape {x.shape}; downmix with to_mono() first")
    return x.astype(np.float32, copy=False)


def encode_mp3(
    x: np.ndarray | bytes, *, sr: int = SAMPLE_RATE, bitrate_kbps: int | None = None
) -> bytes:
    """Encode mono audio as one complete MP3 stream that decodes on its own.

    Parameters
    ----------
    x
        Mono float samples in ``[-1, 1]`` (``(n,)``), int16 samples, or PCM16 bytes; at least one sample.
    sr
        Sample rate in Hz of ``x``, one of `MP3_SAMPLE_RATES`. Default: the wire rate, 16 000.
    bitrate_kbps
        Target average bitrate in kbit/s (8 to 160 at 16 kHz). ``None`` uses LAME's default
        variable-bitrate quality: about 20 kbit/s for a pure tone, 40 for white noise at 16 kHz.

    Returns
    -------
    bytes
        The MP3 stream: an info frame followed by the audio frames.

    Next: send it as a wire piece; `decode_mp3()` turns it back into samples.
    """
    sr = check_sample_rate(sr)
    if sr not in MP3_SAMPLE_RATES:
        raise AudioError(
            f"MP3 cannot carry {sr} Hz; use one of {', '.join(map(str, MP3_SAMPLE_RATES))} Hz "
            f"(resample(x, sr_in={sr}, sr_out=16000) first)"
        )
    options = _encoder_options(sr, bitrate_kbps)
    samples = _as_mono_float(x)
    if samples.size == 0:
        raise AudioError("encode_mp3 got no samples; an MP3 stream needs at least one, so skip empty pieces")
    buffer = io.BytesIO()
    try:
        sf.write(buffer, samples, sr, format="MP3", subtype="MPEG_LAYER_III", **options)
    except (sf.SoundFileError, RuntimeError) as exc:
        raise AudioError(f"the MP3 encoder failed on {samples.size} samples at {sr} Hz: {exc}") from exc
    return buffer.getvalue()


def decode_mp3(data: bytes | bytearray | memoryview, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode one complete MP3 stream to float32 mono samples at ``sr`` Hz.

    Parameters
    ----------
    data
        The MP3 bytes, e.g. one wire piece or a whole ``.mp3`` file read into memory.
    sr
        Sample rate in Hz to return; the stream is resampled if it differs. Default: 16 000.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float32 samples, channels averaged.

    Next: `float_to_pcm16()` to compare it with PCM audio, `chunk()` to cut it up.
    """
    sr = check_sample_rate(sr)
    data = bytes(data)
    if not data:
        raise AudioError("decode_mp3 got 0 bytes; an MP3 piece holds at least one frame")
    try:
        with sf.SoundFile(io.BytesIO(data)) as stream:
            if stream.format != "MP3":
                raise AudioError(
                    f"decode_mp3 got {stream.format} audio, not MP3; "
                    "use load_audio() for files or the matching wire format"
                )
            frames = stream.read(dtype="float32", always_2d=True)
            stream_sr = stream.samplerate
    except (sf.SoundFileError, RuntimeError) as exc:
        raise AudioError(
            f"{len(data)} bytes starting {data[:8]!r} are not a decodable MP3 stream ({exc}); "
            "each MP3 piece must be a complete stream as encode_mp3() makes"
        ) from exc
    return resample(to_mono(frames), sr_in=stream_sr, sr_out=sr)
