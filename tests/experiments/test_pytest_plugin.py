"""The pytest plugin: scenario files as tests, failures that show expectation, value and frames."""

import subprocess
import sys
import textwrap


def _pytest(folder, *args):
    quiet = [] if "-v" in args else ["-q"]
    return subprocess.run([sys.executable, "-m", "pytest", str(folder), *quiet, "-p", "no:cacheprovider",
                           "-o", "addopts=", "-o", "testpaths=", *args],
                          check=False, capture_output=True, text=True, timeout=300, cwd=folder)


def test_scenario_files_are_collected_and_failures_explained(tmp_path):
    (tmp_path / "good.scenario.yaml").write_text(textwrap.dedent("""\
        name: good
        realtime: false
        turns:
          - say: What are your opening hours?
            expect: {reply_matches: "(?i)open"}
    """))
    (tmp_path / "bad.scenario.yaml").write_text(textwrap.dedent("""\
        name: bad
        realtime: false
        turns:
          - say: What are your opening hours?
            expect: {reply_contains: pizza}
    """))
    (tmp_path / "ignored.yaml").write_text("not: a scenario\n")
    run = _pytest(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 1 passed" in run.stdout
    # The failure: file and line, the expectation, the measured reply, and the turn's frames.
    assert "bad.scenario.yaml:5: step 0: expected reply_contains ('pizza',)" in run.stdout
    assert "We are open" in run.stdout
    assert "client.new-text-message" in run.stdout and "server.interaction-complete" in run.stdout


def test_one_test_per_expectation(tmp_path):
    (tmp_path / "two.scenario.yaml").write_text(textwrap.dedent("""\
        name: two
        realtime: false
        turns:
          - say: What are your opening hours?
            expect: {reply_matches: "(?i)open", first_text_ms: {max: 0.001}}
    """))
    run = _pytest(tmp_path, "--amigo-items=expectation", "-v")
    assert "step0-reply_matches-0 PASSED" in run.stdout
    assert "step0-latency_first_text_ms-1 FAILED" in run.stdout


def test_a_bad_scenario_file_is_a_collection_error_with_its_line(tmp_path):
    (tmp_path / "broken.scenario.yaml").write_text("turns:\n  - say: hi\n  - shout: hi\n")
    run = _pytest(tmp_path)
    assert run.returncode == 2
    assert "broken.scenario.yaml:3: turns[1]" in run.stdout
