"""Downmixing and resampling."""

import numpy as np
import pytest

from amigo_lab.audio import AudioError, resample, to_mono


def _peak_hz(x, sr):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)]


def test_resample_keeps_frequency():
    sr_in = 44100
    t = np.arange(sr_in) / sr_in
    x = np.sin(2 * np.pi * 1000 * t)
    y = resample(x, sr_in=sr_in, sr_out=16000)
    assert y.dtype == np.float32
    assert abs(len(y) - 16000) <= 1
    assert abs(_peak_hz(y, 16000) - 1000) <= 1
    assert 0.95 < np.max(np.abs(y[1000:-1000])) < 1.05


def test_resample_multichannel():
    x = np.zeros((4410, 2), dtype=np.float32)
    assert resample(x, sr_in=44100, sr_out=16000).shape == (1600, 2)


def test_resample_same_rate_is_copy():
    x = np.arange(5, dtype=np.float64)
    y = resample(x, sr_in=16000, sr_out=16000)
    assert y.dtype == np.float32 and y is not x
    np.testing.assert_array_equal(y, x)


def test_resample_rejects_bad_rate():
    with pytest.raises(AudioError, match="sr_in must be a positive whole number"):
        resample(np.zeros(10), sr_in=-1)


def test_to_mono():
    mono = np.array([0.1, 0.2], dtype=np.float32)
    assert to_mono(mono) is mono
    stereo = np.array([[1.0, 0.0], [0.5, -0.5]], dtype=np.float32)
    out = to_mono(stereo)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0.5, 0.0])
    with pytest.raises(AudioError, match="shape"):
        to_mono(np.zeros((2, 2, 2)))
