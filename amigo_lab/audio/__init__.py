"""Audio for the lab: PCM16 and MP3 wire audio, files, resampling and chunking (numpy, soxr, soundfile).

The wire carries mono 16 000 Hz audio as PCM16 (signed 16-bit little-endian) or as MP3 pieces that each
decode on their own. Inside the lab audio is float32 in ``[-1, 1]``. A typical path from a file to the wire::

    x, sr = load_audio("hello.flac")                 # float32, mono, 16 kHz
    pieces = [encode_wire_audio(p, "pcm") for p in chunk(x, sr=sr, ms=20.0)]

and back: ``np.concatenate([decode_wire_audio(p, "pcm") for p in pieces])``.
"""

from amigo_lab.audio.chunking import chunk, chunk_pcm16, silence
from amigo_lab.audio.errors import AudioError
from amigo_lab.audio.files import load_audio, write_wav
from amigo_lab.audio.mp3 import decode_mp3, encode_mp3
from amigo_lab.audio.pcm import SAMPLE_RATE, float_to_pcm16, pcm16_duration_ms, pcm16_to_float
from amigo_lab.audio.resample import resample, to_mono
from amigo_lab.audio.wire import decode_wire_audio, encode_wire_audio

__all__ = [
    "SAMPLE_RATE",
    "AudioError",
    "chunk",
    "chunk_pcm16",
    "decode_mp3",
    "decode_wire_audio",
    "encode_mp3",
    "encode_wire_audio",
    "float_to_pcm16",
    "load_audio",
    "pcm16_duration_ms",
    "pcm16_to_float",
    "resample",
    "silence",
    "to_mono",
    "write_wav",
]
