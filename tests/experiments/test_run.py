"""Running scenarios against the real emulator: results table, checks, summary, report, exit status."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from amigo_lab.experiments import ExperimentError, ScenarioError, load_experiment, run
from amigo_lab.experiments.runner import CallerPool

from .conftest import TEXT_SCENARIO

CLI = [sys.executable, "-m", "amigo_lab.cli"]


def test_a_passing_scenario_writes_every_output(emulator, write_scenario, tmp_path):
    path = write_scenario(TEXT_SCENARIO)
    result = run(path, runs=2, concurrency=2, out=tmp_path / "out", emulator=emulator, progress=False)
    assert result.passed, result.failures()
    out = tmp_path / "out"
    for name in ("results.parquet", "checks.parquet", "summary.json", "report.html"):
        assert (out / name).is_file()
    assert sorted(p.name for p in (out / "sessions" / "hours").iterdir()) == ["run-0000", "run-0001"]
    table = pd.read_parquet(out / "results.parquet")
    # One row per turn per run: the greeting and two answered steps, in each of two runs.
    assert len(table) == 6 and set(table["run"]) == {0, 1}
    assert {"latency_first_text_ms", "latency_complete_ms", "check:reply_matches",
            "check:latency_first_text_ms", "check:conversation_completed"} <= set(table.columns)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] and summary["runs"] == 2
    assert summary["scenarios"]["hours"]["latency"]["latency_first_text_ms"]["count"] == 4
    html = (out / "report.html").read_text()
    assert "PASS" in html and "p95" in html


def test_a_failing_expectation_says_what_was_measured(emulator, write_scenario, tmp_path):
    path = write_scenario("""\
        name: strict
        realtime: false
        turns:
          - say: What are your opening hours?
            expect: {reply_matches: "(?i)closed on sundays", first_text_ms: {max: 0.001}}
    """)
    result = run(path, out=tmp_path / "out", emulator=emulator, progress=False)
    assert not result.passed
    failed = result.failures().set_index("key")
    assert set(failed.index) == {"reply_matches", "latency_first_text_ms"}
    assert "open" in failed.loc["reply_matches", "measured"].lower()
    assert failed.loc["latency_first_text_ms", "measured"] > 0.001
    assert failed.loc["latency_first_text_ms", "line"] == 5


def test_percentile_limits_are_checked_over_runs(emulator, write_scenario, tmp_path):
    path = write_scenario("""\
        name: p90
        realtime: false
        turns:
          - say: What are your opening hours?
            expect: {first_text_ms: {p90_max: 60000}, complete_ms: {p50_max: 0.001}}
    """)
    result = run(path, runs=3, out=tmp_path / "out", emulator=emulator, progress=False)
    overall = result.checks[result.checks["run"] == -1].set_index("key")
    assert bool(overall.loc["latency_first_text_ms", "passed"]) is True
    assert bool(overall.loc["latency_complete_ms", "passed"]) is False
    assert "of 3 runs" in overall.loc["latency_complete_ms", "detail"]


def test_results_read_back_from_the_folder(emulator, write_scenario, tmp_path):
    result = run(write_scenario(TEXT_SCENARIO), out=tmp_path / "out", emulator=emulator, progress=False)
    again = load_experiment(tmp_path / "out")
    assert again.passed == result.passed
    assert len(again.results) == len(result.results)
    with pytest.raises(ExperimentError, match="not an experiment folder"):
        load_experiment(tmp_path)


def test_spoken_steps_pauses_and_a_discarded_cough(write_scenario, tmp_path):
    from amigo_lab.audio import write_wav
    from amigo_lab.emulator import Emulator
    from amigo_lab.experiments.bench import _burst

    write_wav(tmp_path / "cough.wav", _burst(60), sr=16000)
    path = write_scenario("""\
        name: spoken
        turns:
          - speak: what are your opening hours
            expect: {transcript_matches: "opening hours", reply_matches: "(?i)open", cut_off: false}
          - speak: what is your address
            pause_inside_ms: 900
            expect: {cut_off: true}
          - audio: cough.wav
            expect: {discarded: true}
    """)
    with Emulator(realtime=False) as emu:
        result = run(path, out=tmp_path / "out", emulator=emu, progress=False)
    assert result.passed, result.failures()
    rows = result.results[result.results["step"] == 1]
    assert rows["cut_off"].all() and int(rows["vad_speech"].iloc[0]) == 2


def test_bad_input_is_refused_before_anything_is_sent(write_scenario, tmp_path):
    path = write_scenario("turns:\n  - say: hi\n  - audio: missing.wav\n")
    with pytest.raises(ScenarioError, match=r"scenario.yaml:3: turns\[1\].audio"):
        run(path, out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "sessions").exists()


def test_concurrent_callers_are_different_users():
    pool = CallerPool.for_emulator(3)
    taken = {pool.take(), pool.take(), pool.take()}
    assert len(taken) == 3
    with pytest.raises(TimeoutError):
        pool.take(timeout=0.05)


def test_the_command_exits_0_on_pass_and_1_on_failure(write_scenario, tmp_path):
    good = write_scenario(TEXT_SCENARIO, "good.yaml")
    bad = write_scenario("name: bad\nrealtime: false\nturns:\n  - say: hello\n    expect: {reply_matches: nope}\n",
                         "bad.yaml")
    passed = subprocess.run([*CLI, "run", str(good), "--out", str(tmp_path / "a"), "--quiet"],
                            check=False, capture_output=True, text=True, timeout=240)
    assert passed.returncode == 0, passed.stderr
    assert "PASS  hours" in passed.stdout
    failed = subprocess.run([*CLI, "run", str(bad), "--out", str(tmp_path / "b"), "--quiet"],
                            check=False, capture_output=True, text=True, timeout=240)
    assert failed.returncode == 1
    assert "FAIL  bad" in failed.stdout and "reply_matches nope" in failed.stdout
    refused = subprocess.run([*CLI, "run", str(tmp_path / "absent.yaml")], check=False, capture_output=True, text=True)
    assert refused.returncode == 2 and "no such file" in refused.stderr and "Traceback" not in refused.stderr


def test_an_fsspec_url_receives_the_sessions_and_tables(emulator, write_scenario):
    import fsspec

    result = run(write_scenario(TEXT_SCENARIO), runs=2, out="memory://amigo-tests/exp", emulator=emulator,
                 progress=False)
    assert result.passed
    fs = fsspec.filesystem("memory")
    for name in ("results.parquet", "summary.json", "report.html"):
        assert fs.exists(f"/amigo-tests/exp/{name}")
    assert fs.exists("/amigo-tests/exp/sessions/hours/run-0001/frames.jsonl")
    assert fs.exists("/amigo-tests/exp/turns/scenario=hours/run=1/part-0.parquet")
