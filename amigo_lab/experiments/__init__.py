"""Experiments: scenario files run against the emulator or the real service, checked, compared and benchmarked.

Start with a scenario file (see :mod:`amigo_lab.experiments.scenario` and ``data/scenarios/``)::

    from amigo_lab import experiments
    result = experiments.run("data/scenarios/opening-hours.yaml", runs=3, out="exp-a")
    result.passed, result.results, result.summary, result.report()

Then, for a regression or an A/B between version sets, :func:`compare` two experiment folders; for load,
``run(..., ramp=[1, 4, 8])``; for many sessions, :func:`session_metrics` (DuckDB over the Parquet files);
for a recorded call, :func:`replay_session` (its user side becomes a scenario); for end-of-turn behaviour,
:func:`turn_taking_bench`. The same is on the command line: ``amigo-lab run|compare|replay|bench``, and in
pytest: scenario files named ``*.scenario.yaml`` are collected as tests.

Every metric is a column of :func:`amigo_lab.analysis.turns` of the recorded sessions (one account of the
conversation); the barge-in measures are documented in :mod:`amigo_lab.experiments.metrics`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Scenario": "scenario", "ScenarioError": "scenario", "Step": "scenario", "Expectation": "scenario",
    "load_scenario": "scenario", "parse_scenario": "scenario", "LATENCY_NAMES": "scenario",
    "EXPECTATIONS": "scenario",
    "run": "experiment", "ExperimentResult": "experiment", "ExperimentError": "experiment",
    "load_experiment": "experiment", "load_scenarios": "experiment", "analyse_session": "experiment",
    "run_scenario_once": "runner",
    "compare": "comparison", "Comparison": "comparison",
    "replay_session": "replay",
    "session_metrics": "store", "session_metrics_pandas": "store",
    "turn_taking_bench": "bench", "BenchResult": "bench",
}

__all__ = [
    "EXPECTATIONS", "LATENCY_NAMES", "BenchResult", "Comparison", "Expectation", "ExperimentError",
    "ExperimentResult", "Scenario", "ScenarioError", "Step", "analyse_session", "compare", "load_experiment",
    "load_scenario", "load_scenarios", "parse_scenario", "replay_session", "run", "run_scenario_once",
    "session_metrics", "session_metrics_pandas", "turn_taking_bench",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"amigo_lab.experiments.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'amigo_lab.experiments' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__))
