"""Comparing experiments, replaying a recorded call, and the many-session paths (DuckDB, Dask)."""

import shutil

import numpy as np
import pandas as pd
import pytest

from amigo_lab.experiments import (
    ExperimentError,
    compare,
    load_scenario,
    replay_session,
    run,
    session_metrics,
    session_metrics_pandas,
)
from amigo_lab.experiments.comparison import bootstrap_difference

from .conftest import TEXT_SCENARIO


@pytest.fixture(scope="module")
def experiment(emulator, tmp_path_factory):
    """Three runs of the text scenario, recorded once for the module."""
    folder = tmp_path_factory.mktemp("exp")
    (folder / "hours.yaml").write_text(__import__("textwrap").dedent(TEXT_SCENARIO))
    return run(folder / "hours.yaml", runs=3, out=folder / "a", emulator=emulator, progress=False)


def test_bootstrap_verdicts_follow_the_data():
    rng = np.random.default_rng(1)
    a = rng.normal(500, 20, 40)
    assert bootstrap_difference(a, a + 200, 50)[1] > 0          # the whole interval above zero: slower
    point, low, high = bootstrap_difference(a, rng.normal(500, 20, 40), 50)
    assert low < 0 < high and abs(point) < 30                   # no significant change
    assert bootstrap_difference(a, a - 200, 90)[2] < 0          # faster


def test_compare_two_experiments_turn_by_turn(experiment, emulator, tmp_path):
    scenario = tmp_path / "hours.yaml"
    scenario.write_text(__import__("textwrap").dedent(TEXT_SCENARIO))
    other = run(scenario, runs=3, out=tmp_path / "b", emulator=emulator, progress=False)
    comparison = compare(experiment.out, other)
    metrics = comparison.metrics.set_index("metric")
    assert {"p50_a", "p50_b", "p50_low", "p50_high", "verdict", "verdict_p90"} <= set(metrics.columns)
    assert set(metrics["verdict"]) <= {"faster", "slower", "no significant change"}
    assert metrics.loc["latency_complete_ms", "n_a"] == 6
    turns = comparison.turns
    assert list(turns["step"]) == [0, 1] and not turns["text_changed"].any()
    page = comparison.write_html(tmp_path / "compare.html").read_text()
    assert "bootstrap" in page and page.count("<audio") >= 2


def test_compare_refuses_unrelated_experiments(experiment, emulator, tmp_path, write_scenario):
    other = run(write_scenario("name: other\nrealtime: false\nturns:\n  - say: hi\n"), out=tmp_path / "o",
                emulator=emulator, progress=False)
    with pytest.raises(ExperimentError, match="share no scenario"):
        compare(experiment, other)


def test_replay_turns_the_user_side_into_a_scenario(experiment, emulator, tmp_path):
    session = experiment.out / "sessions" / "hours" / "run-0000"
    path = replay_session(session, out=tmp_path / "replay" / "call.yaml", version_set="release")
    scenario = load_scenario(path)
    assert [(s.kind, s.text) for s in scenario.steps] == [("say", "What are your opening hours?"), ("say", "goodbye")]
    assert scenario.steps[-1].expect[0].key == "conversation_completed"
    again = run(scenario.with_options(realtime=False), out=tmp_path / "again", emulator=emulator, progress=False)
    assert again.passed, (again.failures().to_dict("records"), again.summary, again.results["run_error"].tolist())
    replies = again.results[again.results["primary"] & (again.results["step"] >= 0)]["reply_text"]
    original = experiment.results
    first = original[(original["run"] == 0) & original["primary"] & (original["step"] >= 0)]["reply_text"]
    assert list(replies) == list(first)


def test_replay_keeps_spoken_audio_and_barge_ins(tmp_path):
    from amigo_lab.emulator import Emulator

    scenario_file = tmp_path / "talk.yaml"
    scenario_file.write_text("name: talk\nturns:\n  - speak: what is your address\n  - say: tell me about the clinic\n"
                             "  - barge_in: {after_ms: 600, speak: what are your opening hours}\n")
    with Emulator() as emu:
        recorded = run(scenario_file, out=tmp_path / "rec", emulator=emu, progress=False)
    path = replay_session(recorded.out / "sessions" / "talk" / "run-0000", out=tmp_path / "replay.yaml")
    steps = load_scenario(path).steps
    kinds = [s.kind for s in steps]
    assert kinds == ["vad", "audio", "say", "barge_in"]
    assert steps[1].path.is_file() and steps[3].path.is_file()
    assert 500 <= steps[3].after_ms <= 900


def test_duckdb_and_pandas_agree(experiment, tmp_path):
    # Many sessions: copies of the recorded runs' partitions under new run numbers.
    folder = tmp_path / "many"
    source = experiment.out / "turns" / "scenario=hours"
    for i in range(40):
        shutil.copytree(source / f"run={i % 3}", folder / "turns" / "scenario=hours" / f"run={i}")
    duck = session_metrics(folder)
    pand = session_metrics_pandas(folder)
    assert list(duck["metric"]) == list(pand["metric"])
    pd.testing.assert_frame_equal(duck.reset_index(drop=True), pand.reset_index(drop=True), check_dtype=False,
                                  rtol=1e-9)
    assert int(duck.set_index("metric").loc["latency_first_text_ms", "count"]) == 80
    by_run = session_metrics(folder, by=["scenario", "run"])
    assert by_run["run"].nunique() == 40


def test_duckdb_path_names_a_folder_without_runs(tmp_path):
    with pytest.raises(ExperimentError, match="turns/"):
        session_metrics(tmp_path)


@pytest.mark.slow
def test_dask_local_cluster_of_two_workers(write_scenario, tmp_path):
    path = write_scenario(TEXT_SCENARIO)
    result = run(path, runs=4, concurrency=2, out=tmp_path / "dask", scheduler="local", workers=2, progress=False)
    assert result.passed, result.failures()
    assert result.summary["scheduler"] == "local" and result.summary["runs"] == 4
    sessions = sorted(p.name for p in (tmp_path / "dask" / "sessions" / "hours").iterdir())
    assert sessions == ["run-0000", "run-0001", "run-0002", "run-0003"]
    duck = session_metrics(tmp_path / "dask").set_index("metric")
    assert int(duck.loc["latency_first_text_ms", "count"]) == 8


def test_replay_against_canary_finds_the_configured_slowdown(experiment, emulator, tmp_path):
    # The demo clinic's canary version set answers 0.8 s later than release (data/README.md).
    call = replay_session(experiment.out / "sessions" / "hours" / "run-0000", out=tmp_path / "call.yaml")
    scenario = load_scenario(call).with_options(realtime=False)
    release = run(scenario, runs=3, out=tmp_path / "release", emulator=emulator, progress=False)
    canary = run(scenario, runs=3, out=tmp_path / "canary", version_set="canary", emulator=emulator,
                 progress=False)
    verdicts = compare(release, canary).verdicts()
    assert verdicts["latency_first_text_ms"] == "slower"
    assert verdicts["latency_complete_ms"] == "slower"
    back = compare(canary, release).metrics.set_index("metric")
    assert back.loc["latency_first_text_ms", "verdict"] == "faster"
    assert -900 < back.loc["latency_first_text_ms", "p50_diff"] < -700
