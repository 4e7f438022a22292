"""The experiment commands of ``amigo-lab``, run as a user runs them: in a subprocess, on real sockets."""

import subprocess
import sys
import textwrap

CLI = [sys.executable, "-m", "amigo_lab.cli"]

HOURS = textwrap.dedent("""\
    name: hours
    realtime: false
    turns:
      - say: What are your opening hours?
        expect: {reply_matches: "(?i)open"}
      - say: goodbye
        expect: {conversation_completed: true}
""")


def _cli(*args, timeout=300):
    return subprocess.run(CLI + list(args), check=False, capture_output=True, text=True, timeout=timeout)


def test_help_lists_the_experiment_commands():
    out = _cli("--help").stdout
    for command in ("run", "compare", "replay", "bench"):
        assert command in out
    assert "--ramp" in _cli("run", "--help").stdout
    assert "--scheduler" in _cli("run", "--help").stdout


def test_bad_ramp_is_a_usage_error():
    run = _cli("run", "x.yaml", "--ramp", "10,fifty")
    assert run.returncode == 2 and "usage:" in run.stderr and "1,4,8" in run.stderr


def test_an_invalid_scenario_names_file_line_and_field(tmp_path):
    (tmp_path / "s.yaml").write_text("turns:\n  - say: hi\n    expect: {first_audio_ms: slow}\n")
    run = _cli("run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "s.yaml:3: turns[0].expect.first_audio_ms" in run.stderr and "nothing was sent" in run.stderr
    assert not (tmp_path / "out").exists()


def test_run_replay_and_compare(tmp_path):
    (tmp_path / "hours.yaml").write_text(HOURS)
    first = _cli("run", str(tmp_path / "hours.yaml"), "--runs", "2", "--out", str(tmp_path / "a"), "--quiet")
    assert first.returncode == 0, first.stdout + first.stderr
    replay = _cli("replay", str(tmp_path / "a" / "sessions" / "hours" / "run-0000"), "--out",
                  str(tmp_path / "replay.yaml"))
    assert replay.returncode == 0, replay.stderr
    assert "say: What are your opening hours?" in (tmp_path / "replay.yaml").read_text()
    second = _cli("run", str(tmp_path / "hours.yaml"), "--runs", "2", "--out", str(tmp_path / "b"), "--quiet")
    assert second.returncode == 0
    compared = _cli("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.html"))
    assert compared.returncode == 0, compared.stderr
    assert "latency_first_text_ms" in compared.stdout and (tmp_path / "c.html").is_file()
    assert any(v in compared.stdout for v in ("faster", "slower", "no significant change"))


def test_ramp_reports_each_level(tmp_path):
    (tmp_path / "hours.yaml").write_text(HOURS)
    run = _cli("run", str(tmp_path / "hours.yaml"), "--ramp", "1,2", "--out", str(tmp_path / "load"), "--quiet")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "   1 callers: first audio p50" in run.stdout and "   2 callers:" in run.stdout
    assert "keeping up" in run.stdout or "kept up" in run.stdout


def test_replay_of_a_folder_without_a_session_is_a_clear_error(tmp_path):
    run = _cli("replay", str(tmp_path))
    assert run.returncode == 2 and "cannot replay" in run.stderr and "Traceback" not in run.stderr


def test_interrupting_a_run_keeps_the_recorded_sessions(tmp_path):
    import json
    import signal
    import time

    (tmp_path / "slow.yaml").write_text(textwrap.dedent("""\
        name: slow
        turns:
          - say: What are your opening hours?
          - wait_ms: 1500
          - say: goodbye
    """))
    out = tmp_path / "out"
    proc = subprocess.Popen([*CLI, "run", str(tmp_path / "slow.yaml"), "--runs", "30", "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not list((out / "turns").glob("scenario=slow/run=*/*.parquet")):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "INTERRUPTED" in stdout and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and 1 <= summary["runs"] < 30
    assert (out / "results.parquet").is_file() and (out / "report.html").is_file()
