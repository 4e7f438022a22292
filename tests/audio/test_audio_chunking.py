"""Chunking and silence."""

import numpy as np
import pytest

from amigo_lab.audio import AudioError, chunk, chunk_pcm16, silence


def test_chunk_lengths():
    pieces = chunk(np.arange(1000, dtype=np.float32))
    assert [len(p) for p in pieces] == [320, 320, 320, 40]
    np.testing.assert_array_equal(np.concatenate(pieces), np.arange(1000))


def test_chunk_pad():
    pieces = chunk(np.ones(1000, dtype=np.float32), sr=16000, ms=20.0, pad=True)
    assert [len(p) for p in pieces] == [320] * 4
    assert pieces[-1][:40].sum() == 40 and not pieces[-1][40:].any()
    assert pieces[-1].dtype == np.float32


def test_chunk_other_rate_and_frames():
    pieces = chunk(np.zeros((4410, 2)), sr=44100, ms=10.0)
    assert len(pieces) == 10 and pieces[0].shape == (441, 2)


def test_chunk_empty():
    assert chunk(np.zeros(0)) == []
    assert chunk_pcm16(b"") == []


def test_chunk_pcm16():
    data = bytes(range(256)) * 5  # 1280 bytes = 640 samples
    pieces = chunk_pcm16(data + b"\x01\x02")
    assert [len(p) for p in pieces] == [640, 640, 2]
    assert b"".join(pieces) == data + b"\x01\x02"


def test_bad_durations():
    with pytest.raises(AudioError, match="must be positive"):
        chunk(np.zeros(10), ms=0)
    with pytest.raises(AudioError, match="must be positive"):
        chunk_pcm16(b"\x00\x00", ms=-5)
    with pytest.raises(AudioError, match="less than one sample"):
        chunk(np.zeros(10), ms=0.01)
    with pytest.raises(AudioError, match="even number"):
        chunk_pcm16(b"\x00\x00\x00")


def test_silence():
    s = silence(20.0)
    assert s.dtype == np.float32 and s.shape == (320,) and not s.any()
    assert silence(0).shape == (0,)
    assert silence(10.0, sr=8000).shape == (80,)
    with pytest.raises(AudioError, match="zero or more"):
        silence(-1)
