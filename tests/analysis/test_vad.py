"""vad_segments(), vad_timeline() and reference_vad_segments()."""

import numpy as np
import plotly.graph_objects as go
import pytest

from amigo_lab.analysis import AnalysisError, reference_vad_segments, vad_segments, vad_timeline

from .logs import Log

SR = 16000


def busy_log() -> Log:
    """Greeting, a voice turn with a filler and a barge-in, a cough (reset), an event, an error, a close."""
    log = Log().opened(0.0).start(0.1)
    log.audio_piece(0.5, "g", 0, chars="Hi").audio_piece(0.66, "g", 1, stop=True).complete(0.9, "g", "Hi")
    log.stream(2.0, 4000)
    log.vad(2.6, "started", 300).vad(4.0, "ended", 1500)
    log.user_message(4.1, "what time do you open", "u1")
    log.action(4.2, "action-too-long", filler="One moment")
    log.audio_piece(4.3, "f", 0, ms=500, chars="One moment", stop=True)
    for k in range(4):  # 640 ms of audio, sent ahead of real time
        log.audio_piece(5.0 + k * 0.1, "m1", k)
    log.vad(5.4, "started", 3300)
    log.audio_piece(5.45, "m1", 4, ms=0, stop=True).complete(5.5, "m1", "We open")
    log.vad(5.9, "reset-zero", 3400)
    log.event(6.5, "order 42 shipped")
    log.error(6.6, 400, "unknown frame type")
    return log.closed(7.0, 4408, "idle")


def test_vad_segments_lists_speech_and_events():
    table = vad_segments(busy_log().frames())
    assert list(table.columns) == ["start_t", "end_t", "source", "kind", "message_id", "label", "detail"]
    by = {(s, k): g for (s, k), g in table.groupby(["source", "kind"])}
    speech = by[("server-vad", "speech")]
    assert list(zip(speech["start_t"].round(3), speech["end_t"].round(3), strict=True)) == [(2.3, 3.5)]
    reset = by[("server-vad", "reset")]
    assert list(zip(reset["start_t"].round(3), reset["end_t"].round(3), strict=True)) == [(5.3, 5.4)]
    client = by[("client", "audio")]
    assert client["start_t"].iloc[0] == 2.0 and client["end_t"].iloc[0] == pytest.approx(6.0)
    answers = by[("agent", "answer")].set_index("message_id")
    assert answers.loc["m1", "start_t"] == 5.0 and answers.loc["m1", "end_t"] == pytest.approx(5.64)
    filler = by[("agent", "filler")]
    assert filler["message_id"].iloc[0] == "f" and filler["end_t"].iloc[0] == pytest.approx(4.8)
    assert filler["label"].iloc[0] == "One moment"
    assert by[("event", "barge-in")]["start_t"].tolist() == [5.4]
    assert by[("event", "reset")]["start_t"].tolist() == [5.9]
    assert by[("event", "external-event")]["label"].tolist() == ["order 42 shipped"]
    assert by[("event", "error")]["label"].tolist() == ["400: unknown frame type"]
    close = by[("event", "close")]
    assert "4408" in close["detail"].iloc[0] and "idle" in close["detail"].iloc[0]
    assert table["start_t"].is_monotonic_increasing


def test_vad_timeline_draws_lanes_with_fillers_apart():
    figure = vad_timeline(busy_log().frames())
    assert isinstance(figure, go.Figure)
    traces = {trace.name: trace for trace in figure.data}
    assert {"agent answer", "agent filler", "server-vad speech", "event barge-in"} <= set(traces)
    assert traces["agent answer"].marker.color != traces["agent filler"].marker.color
    assert "One moment" in traces["agent filler"].hovertext[0]
    assert set(traces["server-vad speech"].y) == {"user · server VAD"}
    assert list(traces["agent answer"].base) == [0.5, 5.0]
    ruled = [shape.x0 for shape in figure.layout.shapes]
    assert 5.4 in ruled and 7.0 in ruled  # barge-in and close get vertical lines
    assert "user · reference VAD" not in figure.layout.yaxis.categoryarray


def voiced(seconds: float) -> np.ndarray:
    """A buzzy, amplitude-modulated harmonic tone that webrtcvad takes for speech."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(0.3 / k * np.sin(2 * np.pi * 150 * k * t) for k in range(1, 10)) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def test_reference_vad_finds_the_voiced_stretch():
    audio = np.concatenate([np.zeros(SR, np.float32), voiced(1.0), np.zeros(SR, np.float32)])
    table = reference_vad_segments(audio, sr=SR, t0=10.0)
    assert list(table.columns) == ["start_t", "end_t", "source", "kind"]
    assert len(table) == 1
    assert table["start_t"].iloc[0] == pytest.approx(11.0, abs=0.06)
    assert table["end_t"].iloc[0] == pytest.approx(12.0, abs=0.2)
    at_8k = reference_vad_segments(audio[::2].copy(), sr=8000)
    assert at_8k["start_t"].iloc[0] == pytest.approx(1.0, abs=0.06)
    assert len(reference_vad_segments(np.zeros(SR, np.float32), sr=SR)) == 0


def test_reference_lane_in_the_timeline():
    audio = np.concatenate([np.zeros(2 * SR, np.float32), voiced(1.5), np.zeros(SR, np.float32)])
    reference = reference_vad_segments(audio, sr=SR)
    figure = vad_timeline(busy_log().frames(), reference_vad=reference)
    traces = {trace.name: trace for trace in figure.data}
    assert traces["reference speech"].base[0] == pytest.approx(2.0, abs=0.06)
    assert "user · reference VAD" in figure.layout.yaxis.categoryarray
    with pytest.raises(AnalysisError, match="reference_vad_segments"):
        vad_timeline(busy_log().frames(), reference_vad=np.zeros(3))
