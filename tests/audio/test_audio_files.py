"""Loading and writing audio files."""

import numpy as np
import pytest
import soundfile as sf

from amigo_lab.audio import AudioError, encode_mp3, load_audio, write_wav


def test_multichannel_wav_is_downmixed_and_resampled(tmp_path):
    sr = 48000
    n = sr // 2
    left = np.full(n, 0.5, dtype=np.float32)
    right = np.full(n, -0.25, dtype=np.float32)
    path = write_wav(tmp_path / "nested" / "dir" / "stereo.wav", np.stack([left, right], axis=1), sr=sr)
    assert path.exists() and sf.info(path).channels == 2

    x, out_sr = load_audio(path)
    assert out_sr == 16000 and x.dtype == np.float32 and x.shape == (8000,)
    np.testing.assert_allclose(x[500:-500], 0.125, atol=1e-3)

    frames, _ = load_audio(path, sr=sr, mono=False)
    assert frames.shape == (n, 2)
    np.testing.assert_allclose(frames[:, 0], 0.5, atol=1 / 32768)


def test_write_wav_round_trip_pcm16(tmp_path):
    x = np.array([0.0, 0.5, -0.5, 1.5], dtype=np.float32)
    path = write_wav(str(tmp_path / "a.wav"), x, sr=16000)
    assert sf.info(path).subtype == "PCM_16"
    y, _ = load_audio(path)
    np.testing.assert_array_equal(y, [0.0, 0.5, -0.5, 32767 / 32768])


@pytest.mark.parametrize("fmt", ["FLAC", "OGG"])
def test_other_formats(tmp_path, fmt):
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, np.zeros(1600, dtype=np.float32), 16000, format=fmt)
    x, _ = load_audio(path)
    assert abs(len(x) - 1600) <= 1


def test_mp3_file(tmp_path):
    sr = 16000
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    path = tmp_path / "a.mp3"
    path.write_bytes(encode_mp3(x, sr=sr))
    y, _ = load_audio(path, sr=8000)
    assert len(y) == 8000


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match=r"no such audio file.*nope.wav"):
        load_audio(path)


def test_unreadable_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("not audio at all")
    with pytest.raises(AudioError, match=r"cannot read .*notes\.wav.*WAV, FLAC, OGG, MP3") as info:
        load_audio(path)
    assert isinstance(info.value.__cause__, sf.SoundFileError)


def test_bad_subtype(tmp_path):
    with pytest.raises(AudioError, match=r"not a WAV subtype.*PCM_16"):
        write_wav(tmp_path / "a.wav", np.zeros(4), sr=16000, subtype="MP3ISH")
