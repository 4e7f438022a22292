"""The turn-taking benchmark against the emulator reproduces its VAD rules (500 ms end silence, 200 ms speech)."""

import json

import pytest

from amigo_lab.experiments import turn_taking_bench
from amigo_lab.experiments.bench import _burst, predict_vad


def test_the_offline_prediction_follows_the_rules():
    # A pause well under the 500 ms end silence keeps one turn; one well over it makes two.
    from amigo_lab.experiments.speech import _with_pause, speech_samples

    text = "I would like to book an appointment"
    samples, alignment = speech_samples(text)
    assert predict_vad(_with_pause(samples, alignment, text, 300, None))["turns"] == 1
    assert predict_vad(_with_pause(samples, alignment, text, 900, None))["turns"] == 2
    # Under 200 ms of speech is discarded (reset-zero), more is a turn.
    assert predict_vad(_burst(60)) == {"turns": 0, "discarded": 1, "started": True}
    assert predict_vad(_burst(300))["turns"] == 1


@pytest.mark.slow
def test_bench_against_the_emulator_matches_its_vad_rules(tmp_path):
    result = turn_taking_bench(out=tmp_path, languages=["eng", "spa"], pauses_ms=(300, 900), bursts_ms=(80, 400),
                               backchannels=1, progress=False)
    assert result.matches_prediction, result.text()
    pauses = result.pauses.set_index(["language", "pause_ms"])["measured_rate"].to_dict()
    assert pauses == {("eng", 300.0): 0.0, ("eng", 900.0): 1.0, ("spa", 300.0): 0.0, ("spa", 900.0): 1.0}
    assert result.bursts.set_index("burst_ms")["measured_rate"].to_dict() == {80.0: 0.0, 400.0: 1.0}
    # Silence-only endpointing yields to any speech: every backchannel is a false barge-in.
    assert result.backchannels["measured_rate"].tolist() == [1.0, 1.0]
    assert result.barge_ins["yielded"].all()
    assert (result.barge_ins["agent_yields_ms"] < 400).all()
    # The response gap includes the 500 ms of end silence the VAD waits for.
    assert (result.gaps["gap_ms"] >= 500 - 40).all()
    summary = json.loads((tmp_path / "bench.json").read_text())
    assert summary["matches_prediction"] and summary["human_gap_ms"] == 200.0
    assert (tmp_path / "report.html").read_text().count("False cut-off rate") == 1
