"""MP3 pieces: round trip, self-contained pieces, bitrate and errors."""

import numpy as np
import pytest

from amigo_lab.audio import AudioError, chunk, decode_mp3, encode_mp3, float_to_pcm16

SR = 16000


def _sine(hz=440.0, seconds=1.0, amplitude=0.5):
    t = np.arange(int(SR * seconds)) / SR
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _best_lag(reference, decoded, max_lag):
    """Lag in samples (decoded later = positive) that best aligns ``decoded`` with ``reference``."""
    core = reference[max_lag:-max_lag]
    scores = [np.dot(core, decoded[max_lag + lag : max_lag + lag + len(core)]) for lag in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


def test_round_trip_of_a_sine():
    x = _sine()
    data = encode_mp3(x, sr=SR)
    assert data[:2] == b"\xff\xf3"  # MPEG-2 Layer III frame sync, no ID3 tag in front
    y = decode_mp3(data, sr=SR)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - len(x)) <= SR * 5 // 1000  # within 5 ms
    n = min(len(x), len(y))
    # Half a period of 440 Hz, so the search cannot jump to a neighbouring peak.
    lag = _best_lag(x[:n], y[:n], max_lag=18)
    aligned = y[max(lag, 0) : n + min(lag, 0)], x[max(-lag, 0) : n - max(lag, 0)]
    assert np.corrcoef(*aligned)[0, 1] > 0.99


def test_pcm16_bytes_in():
    x = _sine(seconds=0.1)
    y = decode_mp3(encode_mp3(float_to_pcm16(x)))
    assert len(y) == len(x)


def test_each_piece_decodes_on_its_own():
    x = _sine(seconds=0.2)
    pieces = [encode_mp3(p, sr=SR) for p in chunk(x, sr=SR, ms=20.0)]
    assert len(pieces) == 10
    decoded = [decode_mp3(p, sr=SR) for p in pieces]
    assert [len(d) for d in decoded] == [320] * 10
    # Out of order too: a piece does not depend on the one before it.
    np.testing.assert_allclose(decode_mp3(pieces[7]), decoded[7])


def test_bitrate_changes_size():
    x = np.random.default_rng(0).uniform(-0.3, 0.3, SR).astype(np.float32)
    small = encode_mp3(x, bitrate_kbps=16)
    large = encode_mp3(x, bitrate_kbps=64)
    assert 1500 < len(small) < 2600  # about 16 kbit/s for one second
    assert len(large) > 3 * len(small)
    assert len(decode_mp3(small)) == len(x)


def test_decode_resamples():
    assert len(decode_mp3(encode_mp3(_sine(seconds=0.5)), sr=8000)) == 4000


def test_garbage_is_rejected():
    with pytest.raises(AudioError, match="not a decodable MP3 stream"):
        decode_mp3(b"this is not an mp3 stream" * 20)
    with pytest.raises(AudioError, match="0 bytes"):
        decode_mp3(b"")


def test_wav_bytes_are_not_mp3(tmp_path):
    from amigo_lab.audio import write_wav

    path = write_wav(tmp_path / "a.wav", _sine(seconds=0.01), sr=SR)
    with pytest.raises(AudioError, match="WAV audio, not MP3"):
        decode_mp3(path.read_bytes())


def test_bad_encoder_input():
    with pytest.raises(AudioError, match="MP3 cannot carry 12345 Hz"):
        encode_mp3(_sine(seconds=0.01), sr=12345)
    with pytest.raises(AudioError, match="bitrate_kbps must be a whole number from 8 to 160"):
        encode_mp3(_sine(seconds=0.01), bitrate_kbps=500)
    with pytest.raises(AudioError, match="to_mono"):
        encode_mp3(np.zeros((100, 2), dtype=np.float32))
    with pytest.raises(AudioError, match="no samples"):
        encode_mp3(np.zeros(0, dtype=np.float32))
