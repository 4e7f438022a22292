"""The wire format every speech engine speaks: PCM16 little-endian mono at 16 000 Hz, as ``bytes``."""

from amigo_lab.protocol.constants import SAMPLE_RATE
from amigo_lab.protocol.constants import SAMPLE_WIDTH_BYTES as SAMPLE_WIDTH
from amigo_lab.speech.errors import SpeechError

__all__ = ["BYTES_PER_MS", "SAMPLE_RATE", "SAMPLE_WIDTH", "as_bytes", "require_pcm16"]

BYTES_PER_MS = SAMPLE_RATE * SAMPLE_WIDTH // 1000
"""Bytes of PCM per millisecond of audio (32)."""


def as_bytes(pcm: bytes) -> bytes:
    """Return a chunk of a PCM16 stream as ``bytes`` (any length: a chunk may split a sample)."""
    if not isinstance(pcm, (bytes, bytearray, memoryview)):
        raise SpeechError(f"audio must be PCM16 bytes, got {type(pcm).__name__}")
    return bytes(pcm)


def require_pcm16(pcm: bytes) -> bytes:
    """Return ``pcm`` as ``bytes`` if it holds whole 16-bit samples; raise :class:`SpeechError` if not."""
    data = as_bytes(pcm)
    if len(data) % SAMPLE_WIDTH:
        raise SpeechError(f"PCM16 audio must have an even number of bytes, got {len(data)}")
    return data
