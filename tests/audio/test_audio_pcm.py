"""PCM16 <-> float conversion: exact values, clipping, round trips and bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from amigo_lab.audio import SAMPLE_RATE, AudioError, float_to_pcm16, pcm16_duration_ms, pcm16_to_float


def test_sample_rate_is_16k():
    assert SAMPLE_RATE == 16000


def test_known_values_to_float():
    data = np.array([0, 16384, -16384, 32767, -32768, 1], dtype="<i2").tobytes()
    x = pcm16_to_float(data)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, np.array([0.0, 0.5, -0.5, 32767 / 32768, -1.0, 1 / 32768], dtype=np.float32))


def test_known_values_to_pcm16():
    out = float_to_pcm16(np.array([0.0, 0.5, -0.5, -1.0, 1 / 32768], dtype=np.float32))
    assert np.frombuffer(out, dtype="<i2").tolist() == [0, 16384, -16384, -32768, 1]
    assert float_to_pcm16(np.array([0.5])) == b"\x00\x40"  # little-endian 16384


def test_clipping_saturates():
    out = float_to_pcm16(np.array([1.0, 1.5, -1.5, np.inf, -np.inf], dtype=np.float64))
    assert np.frombuffer(out, dtype="<i2").tolist() == [32767, 32767, -32768, 32767, -32768]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_any_float_dtype(dtype):
    assert float_to_pcm16(np.array([0.25, -0.25], dtype=dtype)) == np.array([8192, -8192], "<i2").tobytes()


def test_int16_array_passes_through():
    samples = np.array([1, -2, 300], dtype=np.int16)
    assert float_to_pcm16(samples) == samples.astype("<i2").tobytes()
    np.testing.assert_array_equal(pcm16_to_float(samples), samples / 32768)


def test_big_endian_int16_array():
    samples = np.array([16384, -1], dtype=">i2")
    np.testing.assert_array_equal(pcm16_to_float(samples), [0.5, -1 / 32768])
    assert float_to_pcm16(samples) == np.array([16384, -1], dtype="<i2").tobytes()


def test_accepts_bytearray_and_memoryview():
    data = np.array([16384, -16384], dtype="<i2").tobytes()
    for form in (bytearray(data), memoryview(data), memoryview(np.frombuffer(data, dtype="<i2"))):
        np.testing.assert_array_equal(pcm16_to_float(form), [0.5, -0.5])


def test_empty():
    assert pcm16_to_float(b"").shape == (0,)
    assert float_to_pcm16(np.zeros(0, dtype=np.float32)) == b""


@given(st.binary(max_size=2048).map(lambda b: b[: len(b) // 2 * 2]))
def test_bytes_survive_round_trip(data):
    assert float_to_pcm16(pcm16_to_float(data)) == data


def test_odd_byte_count_is_rejected():
    with pytest.raises(AudioError, match=r"even number of bytes.*got 3"):
        pcm16_to_float(b"\x00\x01\x02")


def test_wrong_dtypes_are_rejected():
    with pytest.raises(AudioError, match="int16"):
        pcm16_to_float(np.zeros(4, dtype=np.int32))
    with pytest.raises(AudioError, match="float"):
        float_to_pcm16(np.zeros(4, dtype=np.int32))
    with pytest.raises(AudioError, match="NaN"):
        float_to_pcm16(np.array([0.0, np.nan]))


def test_audio_error_is_amigo_and_value_error():
    from amigo_lab.errors import AmigoError

    assert issubclass(AudioError, AmigoError)
    assert issubclass(AudioError, ValueError)


def test_duration():
    assert pcm16_duration_ms(b"\x00" * 640) == 20.0
    assert pcm16_duration_ms(b"\x00" * 640, sr=8000) == 40.0
    with pytest.raises(AudioError, match="even number"):
        pcm16_duration_ms(b"\x00" * 3)
    with pytest.raises(AudioError, match="positive whole number"):
        pcm16_duration_ms(b"", sr=0)
