"""pytest plugin: scenario files named ``*.scenario.yaml`` (or ``.yml``) are collected as tests.

Registered through the ``pytest11`` entry point, so installing amigo_lab is enough::

    pytest tests/scenarios/                      # one test per scenario file
    pytest --amigo-items=expectation ...         # one test per expectation (the scenario runs once)
    pytest --amigo-runs=5 --amigo-fast ...       # runs per scenario; audio as fast as allowed

Each scenario runs against a fresh embedded emulator (``amigo_lab.experiments.run``), recorded under
pytest's temporary folder. A failure shows each failed expectation with its file line, the measured value,
what happened, and the frames of that turn (both directions), so the cause is on the screen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_SUFFIXES = (".scenario.yaml", ".scenario.yml")


def pytest_addoption(parser: pytest.Parser) -> None:
    """The plugin's command-line options (``--amigo-items``, ``--amigo-runs``, ``--amigo-fast``)."""
    group = parser.getgroup("amigo_lab", "amigo_lab scenario files")
    group.addoption("--amigo-items", choices=("scenario", "expectation"), default="scenario",
                    help="one test per scenario file (default) or per expectation")
    group.addoption("--amigo-runs", type=int, default=None, help="runs of each scenario (default: its runs:)")
    group.addoption("--amigo-fast", action="store_true", help="stream audio as fast as allowed (not timing)")


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> ScenarioFile | None:
    """Collect ``*.scenario.yaml`` files as :class:`ScenarioFile`."""
    if file_path.name.endswith(_SUFFIXES):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFailed(Exception):
    """Raised by a scenario test whose expectations failed; its text is the explanation."""


class ScenarioFile(pytest.File):
    """One scenario file: validated at collection (a bad file is a collection error with its line)."""

    _result: Any = None

    def collect(self) -> Any:
        from amigo_lab.experiments.scenario import load_scenario

        self.scenario = load_scenario(self.path)
        if self.config.getoption("amigo_items") == "expectation":
            for number, expectation in enumerate(self.scenario.expectations()):
                yield ExpectationItem.from_parent(self, name=f"step{expectation.step}-{expectation.key}-{number}",
                                                  expectation=expectation)
        else:
            yield ScenarioItem.from_parent(self, name=self.scenario.name)

    def result(self) -> Any:
        """The scenario's :class:`~amigo_lab.experiments.ExperimentResult`, run once per file."""
        if self._result is None:
            from amigo_lab.experiments import run

            out = self.config._tmp_path_factory.mktemp(f"scenario-{self.scenario.name}")  # type: ignore[attr-defined]
            fast = self.config.getoption("amigo_fast")
            self._result = run(self.scenario, runs=self.config.getoption("amigo_runs"), out=out, progress=False,
                               realtime=False if fast else None)
        return self._result


class ScenarioItem(pytest.Item):
    """A whole scenario: passes when every expectation held in every run."""

    def runtest(self) -> None:
        assert isinstance(self.parent, ScenarioFile)  # collect() makes every item a child of its file
        result = self.parent.result()
        if not result.passed:
            raise ScenarioFailed(explain(result, result.failures()))

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, 0, f"scenario {self.name}"


class ExpectationItem(pytest.Item):
    """One expectation of a scenario (the scenario runs once for all of them)."""

    def __init__(self, *, expectation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expectation = expectation

    def runtest(self) -> None:
        assert isinstance(self.parent, ScenarioFile)  # collect() makes every item a child of its file
        result = self.parent.result()
        checks = result.checks
        mine = checks[(checks["step"] == self.expectation.step) & (checks["key"] == self.expectation.key)]
        if self.expectation.value is not None and isinstance(self.expectation.value, dict):
            labels = [label for label in mine["expectation"].unique() if label.startswith(self.expectation.key)]
            mine = mine[mine["expectation"].isin(labels)]
        failed = mine[~mine["passed"].astype(bool)]
        if len(failed):
            raise ScenarioFailed(explain(result, failed))

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        line = (self.expectation.line or 1) - 1
        return self.path, line, f"{self.expectation.label} (step {self.expectation.step})"


def explain(result: Any, failed: Any, *, frames_per_turn: int = 30) -> str:
    """A failure's text: each failed check (file:line, expectation, measured, detail) and its turn's frames."""
    lines = []
    shown: set[tuple[str, int, int]] = set()
    for check in failed.itertuples():
        run = "over all runs" if check.run < 0 else f"run {check.run}"
        lines.append(f"{check.source}:{check.line}: step {check.step}: expected {check.expectation} ({run}); "
                     f"measured {check.measured!r}: {check.detail}")
        if check.run >= 0 and (check.scenario, check.run, check.step) not in shown:
            shown.add((check.scenario, check.run, check.step))
            lines.extend("    " + line for line in turn_frames(result, check.scenario, check.run, check.step,
                                                                  limit=frames_per_turn))
    lines.append(f"(sessions and report in {result.out})")
    return "\n".join(lines)


def turn_frames(result: Any, scenario: str, run: int, step: int, *, limit: int = 30) -> list[str]:
    """The frames of one step of one run, one line each: t, direction, type and the text that matters."""
    from amigo_lab.experiments.metrics import read_steps
    from amigo_lab.framelog import FrameLogError, load_session

    rows = result.results[(result.results["scenario"] == scenario) & (result.results["run"] == run)]
    if not len(rows):
        return ["(no rows recorded for this run)"]
    folder = result.out / str(rows["session"].iloc[0])
    try:
        frames = load_session(folder).frames
        marks = read_steps(folder)["steps"]
    except (FrameLogError, OSError, ValueError) as exc:
        return [f"(cannot read the session: {exc})"]
    start = marks[step]["t_start"] if 0 <= step < len(marks) else None
    later = [m["t_start"] for m in marks[step + 1:] if m["t_start"] is not None] if step >= 0 else []
    if start is None:
        return ["(the step was never sent)"]
    end = later[0] if later else float("inf")
    window = frames[(frames["t"] >= start - 0.01) & (frames["t"] < end)]
    # Audio chunks are many and alike: show the others in full, the audio as a count.
    audio = window["type"].isin(["client.new-audio-message"]) | (
        (window["type"] == "server.new-message") & (window["sequence_number"].fillna(0) > 0))
    out = [f"frames of step {step} (t {start:.3f} to {end:.3f} s; {int(audio.sum())} audio chunks not shown):"]
    for row in window[~audio.fillna(False).astype(bool)].head(limit).itertuples():
        text = next((str(v) for v in (row.text, row.error_description, row.close_reason)
                     if isinstance(v, str) and v), "")
        out.append(f"  {row.t:9.3f} {row.direction:<8} {row.type:<32} {text[:80]}")
    return out
