"""Mel spectrograms, the spectrogram figure and the audio cross-check of latency."""

import numpy as np
import plotly.graph_objects as go
import pytest

from amigo_lab.analysis import AnalysisError, silence_gap_latency, spectrogram, spectrogram_figure

from .logs import Log

SR = 16000


def tone(freq: float, seconds: float, *, sr: int = SR) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_a_sine_peaks_in_the_mel_band_centred_nearest_it(freq):
    s_db, times, mel_freqs = spectrogram(tone(freq, 1.0), sr=SR)
    assert s_db.shape == (64, len(times)) and len(mel_freqs) == 64
    peak = int(np.argmax(s_db[:, 10:-10].mean(axis=1)))
    assert peak == int(np.argmin(np.abs(mel_freqs - freq)))


def test_times_follow_hop_and_offset():
    s_db, times, mel_freqs = spectrogram(tone(500.0, 0.5), sr=SR, t0=2.0, hop_ms=20, n_mels=32)
    assert s_db.shape[0] == 32 and len(mel_freqs) == 32
    assert times[0] == pytest.approx(2.0) and times[1] - times[0] == pytest.approx(0.02)
    assert len(times) == 26  # 0.5 s at 20 ms, centred frames


def test_silence_is_the_floor_and_empty_audio_is_empty():
    s_db, _, _ = spectrogram(np.zeros(1600, dtype=np.float32), sr=SR)
    np.testing.assert_allclose(s_db, -100.0, atol=1e-3)
    s_db, times, mel_freqs = spectrogram(np.zeros(0, dtype=np.float32), sr=SR)
    assert s_db.shape == (64, 0) and len(times) == 0 and len(mel_freqs) == 64


def test_bad_audio_or_rate_is_a_clear_error():
    with pytest.raises(AnalysisError, match="sr must be"):
        spectrogram(tone(440.0, 0.1), sr=0)
    with pytest.raises(AnalysisError, match="mono"):
        spectrogram(np.zeros((2, 100), dtype=np.float32), sr=SR)
    with pytest.raises(AnalysisError, match="pcm16_to_float"):
        spectrogram(np.zeros(100, dtype=np.int16), sr=SR)
    with pytest.raises(TypeError):
        spectrogram(tone(440.0, 0.1), SR)  # sr is keyword-only


def spoken_turn() -> tuple[Log, np.ndarray, np.ndarray]:
    """User speech 1.0–2.0 s; the server's VAD end is reported 300 ms late; agent audio from 2.5 s."""
    log = Log().opened(0.0).add(0.01, "sent", "client.start-conversation")
    log.stream(1.0, 2000, speech=(0, 1000))
    log.vad(1.2, "started", 0).vad(2.35, "ended", 1300)
    log.user_message(2.4, "hello", "u1")
    for k in range(5):
        log.audio_piece(2.5 + k * 0.16, "m1", k, stop=k == 4)
    log.complete(3.4, "m1", "Hi there")
    user = np.zeros(4 * SR, dtype=np.float32)
    user[1 * SR: 2 * SR] = tone(300.0, 1.0)
    agent = np.zeros(4 * SR, dtype=np.float32)
    agent[int(2.5 * SR): int(3.3 * SR)] = tone(440.0, 0.8)
    return log, user, agent


def test_silence_gap_latency_measures_the_gap_from_audio():
    log, user, agent = spoken_turn()
    table = silence_gap_latency(user, agent, sr=SR, frames=log.frames())
    assert len(table) == 1
    row = table.iloc[0]
    assert row["user_energy_end_t"] == pytest.approx(2.0)
    assert row["agent_energy_start_t"] == pytest.approx(2.5)
    assert row["silence_gap_ms"] == pytest.approx(500.0)
    assert row["latency_first_audio_ms"] == pytest.approx(200.0)  # the log counts from the late VAD end (2.3 s)
    assert row["difference_ms"] == pytest.approx(300.0)


def test_silence_gap_latency_of_the_recorded_tracks(tmp_path):
    from amigo_lab.framelog import load_session

    log, _, _ = spoken_turn()
    session = load_session(log.save(tmp_path / "s"))
    user, agent = session.audio_track("sent", sr=SR), session.audio_track("received", sr=SR)
    row = silence_gap_latency(user, agent, sr=SR, frames=session.frames).iloc[0]
    assert row["silence_gap_ms"] == pytest.approx(500.0)


def test_spectrogram_figure_stacks_tracks_with_events(tmp_path):
    log, user, agent = spoken_turn()
    figure = spectrogram_figure(user, agent, sr=SR, frames=log.frames())
    assert isinstance(figure, go.Figure)
    heatmaps = [trace for trace in figure.data if isinstance(trace, go.Heatmap)]
    assert len(heatmaps) == 2
    assert heatmaps[0].x[0] == pytest.approx(0.0) and heatmaps[0].x[-1] == pytest.approx(4.0, abs=0.011)
    rects = [s for s in figure.layout.shapes if s.type == "rect"]
    lines = [s for s in figure.layout.shapes if s.type == "line"]
    assert [(r.x0, r.x1) for r in rects] == [(pytest.approx(1.0), pytest.approx(2.3))]
    assert sorted(round(line.x0, 3) for line in lines)[:2] == [2.3, 2.3]  # end of turn, on both tracks
    from amigo_lab.framelog import load_session

    session = load_session(log.save(tmp_path / "s"))
    from_session = spectrogram_figure(session, sr=SR, max_columns=100)
    assert len([t for t in from_session.data if isinstance(t, go.Heatmap)]) == 2
    assert len(from_session.data[0].x) <= 100


def test_spectrogram_figure_of_a_text_session_says_no_audio():
    figure = spectrogram_figure(np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32), sr=SR)
    assert not figure.data and [a.text for a in figure.layout.annotations].count("no audio") == 2


def test_a_pooled_spectrogram_averages_the_power_of_the_full_one():
    from amigo_lab.analysis.spectrogram import pooled_spectrogram

    audio = np.concatenate([tone(440.0, 1.0), np.zeros(SR, dtype=np.float32), tone(2000.0, 1.0)])
    full, times, freqs = spectrogram(audio, sr=SR)
    pooled, pooled_times, pooled_freqs = pooled_spectrogram(audio, sr=SR, max_columns=31)  # 301 frames, 10 a column
    assert pooled.shape == (64, 31) and len(pooled_times) == 31
    np.testing.assert_array_equal(freqs, pooled_freqs)
    power = 10 ** (full[:, :300].astype(np.float64) / 10)
    expected = 10 * np.log10(power.reshape(64, 30, 10).mean(axis=2))
    audible = expected > -80.0  # below, the full spectrogram's floor already clipped what is averaged
    np.testing.assert_allclose(pooled[:, :30][audible], expected[audible], atol=0.01)  # float32 power
    assert pooled_times[0] == pytest.approx(times[:10].mean())


def test_the_figure_draws_turn_marks_as_one_shapes_list():
    log, user, agent = spoken_turn()
    figure = spectrogram_figure(user, agent, sr=SR, frames=log.frames())
    lines = [s for s in figure.layout.shapes if s.type == "line"]
    assert {s.yref for s in lines} == {"y domain", "y2 domain"}  # across both tracks
    assert len(lines) == 2 * 2  # end of user turn and first agent audio, on both rows
    assert any(s.type == "rect" for s in figure.layout.shapes)  # the server VAD's speech, shaded
