"""Wire audio dispatch on "pcm" / "mp3"."""

import numpy as np
import pytest

import amigo_lab.audio as audio
from amigo_lab.audio import AudioError, decode_wire_audio, encode_wire_audio


def test_public_api():
    assert sorted(audio.__all__) == sorted(
        [
            "SAMPLE_RATE", "AudioError", "chunk", "chunk_pcm16", "decode_mp3", "decode_wire_audio", "encode_mp3",
            "encode_wire_audio", "float_to_pcm16", "load_audio", "pcm16_duration_ms", "pcm16_to_float",
            "resample", "silence", "to_mono", "write_wav",
        ]
    )
    for name in audio.__all__:
        assert getattr(audio, name).__doc__ or name == "SAMPLE_RATE"


def test_pcm_round_trip():
    x = np.array([0.0, 0.5, -0.5], dtype=np.float32)
    data = encode_wire_audio(x, "pcm")
    assert data == b"\x00\x00\x00\x40\x00\xc0"
    np.testing.assert_array_equal(decode_wire_audio(data, "pcm"), x)


def test_mp3_round_trip():
    x = (0.5 * np.sin(2 * np.pi * 300 * np.arange(1600) / 16000)).astype(np.float32)
    y = decode_wire_audio(encode_wire_audio(x, "mp3"), "mp3")
    assert len(y) == len(x)


def test_unknown_format():
    with pytest.raises(AudioError, match=r"unknown audio format 'wav'.*'pcm', 'mp3'"):
        decode_wire_audio(b"", "wav")
    with pytest.raises(AudioError, match="unknown audio format 'opus'"):
        encode_wire_audio(np.zeros(4), "opus")


def test_pcm_must_be_mono():
    with pytest.raises(AudioError, match="mono"):
        encode_wire_audio(np.zeros((4, 2)), "pcm")
