"""Every analysis function on sessions recorded against the embedded emulator, over loopback."""

import math

import numpy as np
import plotly.graph_objects as go
import pytest

import amigo_lab
from amigo_lab import analysis as aa
from amigo_lab.speech import Synthesizer

SR = 16000


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A text session (English, then Spanish) and a push-to-talk voice session, recorded in one folder."""
    folder = tmp_path_factory.mktemp("sessions")
    text = amigo_lab.connect(response_format="text", log_dir=folder / "text")
    text.greeting.result(timeout=30)
    replies = [text.say("hello there how are you").result(timeout=30),
               text.say("hola, ¿a qué hora abren?").result(timeout=30)]
    text.finish()
    voice = amigo_lab.connect(response_format="voice", audio_format="pcm", log_dir=folder / "voice")
    voice.greeting.result(timeout=30)
    speech = Synthesizer().synthesize("what are your opening hours", language="eng")
    replies.append(voice.send_audio(speech.pcm, sr=SR, realtime=False).result(timeout=60))
    voice.finish()
    return folder, replies


def test_text_session(recorded):
    folder, (english, spanish, _) = recorded
    frames = amigo_lab.load_session(folder / "text").frames
    table = aa.turns(frames)
    assert list(table["user_kind"]) == ["greeting", "text", "text"]
    assert list(table["status"]) == ["complete"] * 3
    assert list(table["transcript"].iloc[1:]) == ["hello there how are you", "hola, ¿a qué hora abren?"]
    assert list(table["reply_text"].iloc[1:]) == [english.text, spanish.text]
    # The session and the analysis give the same latency, under the same name, from the same fold.
    for row, reply in ((1, english), (2, spanish)):
        assert table["latency_first_text_ms"].iloc[row] == pytest.approx(reply.timings["latency_first_text_ms"],
                                                                         abs=0.01)
    assert table["latency_first_audio_ms"].isna().all()
    langs = aa.languages(frames)
    user = langs[langs["side"] == "user"]
    assert list(user["language"]) == ["eng", "spa"] and list(user["switched"]) == [False, True]
    assert langs[langs["side"] == "agent"]["language"].iloc[-1] == "spa"
    assert isinstance(aa.language_figure(frames), go.Figure)
    assert set(aa.latency_by_language(table)["user_language"]) == {"eng", "spa"}
    assert aa.latency_summary(table).set_index("metric").loc["latency_first_text_ms", "count"] == 2


@pytest.mark.slow
def test_voice_session(recorded):
    folder, (_, _, reply) = recorded
    session = amigo_lab.load_session(folder / "voice")
    table = aa.turns(session.frames)
    assert list(table["user_kind"]) == ["greeting", "audio"]
    row = table.iloc[1]
    assert row["transcript"] == reply.user_text and row["reply_text"] == reply.text
    for name in ("latency_first_audio_ms", "latency_first_answer_audio_ms", "latency_complete_ms"):
        assert row[name] == pytest.approx(reply.timings[name], abs=0.01), name
    assert row["reply_audio_ms"] == pytest.approx(len(reply.audio) * 1000 / reply.sr, abs=1)
    assert not row["interrupted"] and row["heard_ms"] == row["reply_audio_ms"]

    user, agent = session.audio_track("sent", sr=SR), session.audio_track("received", sr=SR)
    reference = aa.reference_vad_segments(user, sr=SR)
    assert len(reference) >= 1 and reference["start_t"].iloc[0] >= row["user_start_t"] - 0.05
    segments = aa.vad_segments(session.frames, reference_vad=reference)
    assert {"client", "agent", "reference"} <= set(segments["source"])
    assert isinstance(aa.vad_timeline(session.frames, reference_vad=reference), go.Figure)
    figure = aa.spectrogram_figure(session, sr=SR)
    assert sum(isinstance(trace, go.Heatmap) for trace in figure.data) == 2
    gaps = aa.silence_gap_latency(user, agent, sr=SR, frames=session.frames)
    assert len(gaps) == 1  # sent faster than real time: the tracks cannot time the gap
    assert math.isnan(gaps["silence_gap_ms"].iloc[0]) and gaps["note"].iloc[0] == "audio uploaded faster than real time"
    s_db, times, _ = aa.spectrogram(agent, sr=SR)
    assert np.isfinite(s_db).all() and times[-1] == pytest.approx(len(agent) / SR, abs=0.011)


@pytest.mark.slow
def test_many_sessions_and_the_report(recorded):
    folder, _ = recorded
    sessions = aa.load_sessions(folder, progress=False)
    assert list(sessions) == ["text", "voice"]
    table = aa.turns_many(sessions)
    summary = aa.summary_many(table).set_index("session")
    assert list(summary.index) == ["text", "voice", "(all)"] and summary.loc["(all)", "turns"] == 3
    path = aa.write_report(folder / "voice", progress=False)
    page = path.read_text(encoding="utf-8")
    assert path.name == "report.html" and "what are your opening hours" in page
    assert amigo_lab.load_session(folder / "voice").meta.get("organization", "") in page
