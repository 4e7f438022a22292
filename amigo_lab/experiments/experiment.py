"""An experiment: scenarios x runs (x concurrency levels), recorded, tabulated, checked and reported.

:func:`run` is what ``amigo-lab run`` does. It writes to ``out``::

    out/sessions/<scenario>/run-0007/      every run as a recorded session (frame log, audio, steps.json)
    out/turns/scenario=<s>/run=<n>/part-0.parquet   each run's rows, hive-partitioned (for DuckDB)
    out/results.parquet                    one row per turn per run: every metric, every expectation outcome
    out/checks.parquet                     one row per expectation per run (and per percentile limit)
    out/summary.json                       pass/fail per expectation, p50/p90/p95 per metric, load levels
    out/report.html                        the same, with latency distributions and the worst turns' audio

Runs go to threads of this process (``concurrency`` at once) or, with ``scheduler=``, to Dask distributed
(``"local"``: a local cluster; ``"tcp://host:8786"``: an existing one); each Dask worker records into the
same ``out`` (a shared folder, or an fsspec URL such as ``s3://bucket/run-1``). Interrupting (Ctrl+C,
Jupyter's stop button) stops starting runs and keeps those already recorded: the tables and the report
cover them and ``summary["interrupted"]`` is true.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amigo_lab.errors import AmigoError
from amigo_lab.experiments.metrics import (
    aggregate_checks,
    evaluate,
    metric_columns,
    read_steps,
    run_rows,
)
from amigo_lab.experiments.runner import CallerPool, RunRecord, run_scenario_once
from amigo_lab.experiments.scenario import Scenario, ScenarioError, load_scenario
from amigo_lab.experiments.speech import prepare_audio

logger = logging.getLogger("amigo_lab.experiments")

__all__ = ["ExperimentError", "ExperimentResult", "analyse_session", "load_experiment", "load_scenarios", "run"]

RESULTS_FILE, CHECKS_FILE = "results.parquet", "checks.parquet"
SUMMARY_FILE, REPORT_FILE = "summary.json", "report.html"
SESSIONS_DIR, TURNS_DIR = "sessions", "turns"
#: Percentiles reported for every metric.
PERCENTILES = (50, 90, 95)
#: A load level keeps up while its p50 first-audio latency stays within this factor of the lowest level's
#: and no run failed; the first level past it is where the agent stops keeping up.
KEEP_UP_FACTOR = 1.5


class ExperimentError(AmigoError):
    """An experiment could not run or be read (bad options, missing folder): what and what to do."""


def load_scenarios(sources: str | os.PathLike[str] | Scenario | Iterable[str | os.PathLike[str] | Scenario]
                   ) -> list[Scenario]:
    """Scenarios from files, folders (every ``*.yaml``/``*.yml`` inside) or :class:`Scenario` objects.

    Every file is validated first; all problems are raised together as one :class:`ScenarioError`.
    """
    items = [sources] if isinstance(sources, (str, os.PathLike, Scenario)) else list(sources)
    if not items:
        raise ExperimentError("no scenario given; pass a scenario .yaml file (see data/scenarios/)")
    scenarios: list[Scenario] = []
    problems: list[tuple[str, int | None, str, str]] = []
    for item in items:
        if isinstance(item, Scenario):
            scenarios.append(item)
            continue
        path = Path(item)
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        if path.is_dir() and not files:
            problems.append((str(path), None, "", "this folder has no .yaml scenario files"))
        for file in files:
            try:
                scenarios.append(load_scenario(file))
            except ScenarioError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ScenarioError(problems)
    names = [s.name for s in scenarios]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ExperimentError(f"two scenarios are named {twice[0]!r}; give each a different name: field")
    return scenarios


@dataclass
class ExperimentResult:
    """What :func:`run` (or :func:`load_experiment`) gives back.

    ``results``: one row per turn per run (every turns column, the step, the barge-in measures and one
    ``check:<expectation>`` column per expectation); ``checks``: one row per expectation per run;
    ``summary``: the summary.json dict; ``out``: the folder. ``passed`` is True when every expectation held.
    Next: :meth:`report` for the HTML report, :func:`amigo_lab.experiments.compare` against another run.
    """

    out: Path
    results: pd.DataFrame
    checks: pd.DataFrame
    summary: dict[str, Any]
    records: list[RunRecord] = field(default_factory=list, repr=False)

    @property
    def passed(self) -> bool:
        """True when every expectation of every run held (and the experiment was not interrupted)."""
        return bool(self.summary.get("passed"))

    def report(self) -> Path:
        """The self-contained HTML report (written on first call if missing); open it in a browser."""
        path = self.out / REPORT_FILE
        if not path.exists():
            from amigo_lab.experiments.report import write_experiment_report
            write_experiment_report(self, path)
        return path

    def failures(self) -> pd.DataFrame:
        """The checks that failed, with the measured value and what happened."""
        return self.checks[~self.checks["passed"].astype(bool)].reset_index(drop=True)

    def latency(self, *, by: Sequence[str] = ("scenario",)) -> pd.DataFrame:
        """count, mean, p50, p90, p95 of every metric over the primary rows, grouped ``by`` columns."""
        return metric_summary(self.results, by=list(by))

    def __repr__(self) -> str:
        s = self.summary
        return (f"<ExperimentResult {s.get('runs', 0)} runs of {len(s.get('scenarios', {}))} scenario(s): "
                f"{'PASSED' if self.passed else 'FAILED'}{' (interrupted)' if s.get('interrupted') else ''}, "
                f"{s.get('checks_failed', 0)} of {s.get('checks', 0)} checks failed; {str(self.out)!r}>")

    def _repr_html_(self) -> str:
        from amigo_lab.experiments.report import summary_html
        return summary_html(self)


def metric_summary(results: pd.DataFrame, *, by: list[str]) -> pd.DataFrame:
    """count, mean, p50, p90, p95 per metric (primary rows, greeting excluded), grouped by ``by``."""
    table = results[results["primary"].astype(bool) & (results["step"] >= 0)] if len(results) else results
    rows = []
    groups = table.groupby(by, sort=True, dropna=False) if by else [((), table)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        for metric in metric_columns(table):
            values = part[metric].astype(float).dropna().to_numpy()
            stats = {"metric": metric, "count": int(values.size),
                     "mean": float(values.mean()) if values.size else math.nan}
            for q in PERCENTILES:
                stats[f"p{q}"] = float(np.percentile(values, q)) if values.size else math.nan
            rows.append({**dict(zip(by, key, strict=True)), **stats})
    return pd.DataFrame(rows, columns=[*by, "metric", "count", "mean", *(f"p{q}" for q in PERCENTILES)])


def analyse_session(session_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One recorded run's rows: :func:`amigo_lab.analysis.turns` placed on the scenario's steps."""
    from amigo_lab.analysis import turns, vad_segments
    from amigo_lab.analysis.turns import TURN_COLUMNS
    from amigo_lab.framelog import FrameLogError, load_session

    steps = read_steps(session_dir)
    try:
        frames = load_session(session_dir).frames
        table, vad = turns(frames), vad_segments(frames)
    except FrameLogError:
        table, vad = pd.DataFrame({c: pd.Series(dtype=d) for c, d in TURN_COLUMNS.items()}), None
    rows = run_rows(table, steps, vad)
    rows.insert(0, "scenario", steps["scenario"])
    rows.insert(1, "run", int(steps["run"]))
    rows["version_set"] = steps.get("version_set")
    rows["run_error"] = steps.get("error")
    rows["session"] = str(Path(session_dir))
    rows["events"] = [list(e) if isinstance(e, (tuple, list)) else [] for e in rows["events"]]
    return rows


# --- where things go: a local folder or an fsspec URL -------------------------------------------------------

def _is_url(out: str | os.PathLike[str]) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", str(out)) is not None and not str(out).startswith("file://")


def _local(out: str | os.PathLike[str]) -> str:
    text = str(out)
    return text.removeprefix("file://")


def _session_name(scenario: str, run: int) -> str:
    return f"{SESSIONS_DIR}/{scenario}/run-{run:04d}"


def _partition(scenario: str, run: int) -> str:
    return f"{TURNS_DIR}/scenario={scenario}/run={run}/part-0.parquet"


def _write_partition(rows: pd.DataFrame, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # The partition columns live in the path (hive style), not in the file.
    rows.drop(columns=["scenario", "run"]).to_parquet(target, index=False)


def _upload(local: Path, url: str) -> None:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    if local.is_dir():
        # A trailing slash on both sides copies the folder's contents to the target, not the folder into it.
        fs.put(str(local).rstrip("/") + "/", root.rstrip("/") + "/", recursive=True)
    else:
        fs.put(str(local), root)


# --- one job: record, analyse, store ----------------------------------------------------------------------

def _job(scenario: Scenario, run: int, level: int, stage: Path, *, connect_options: dict[str, Any],
         pool: CallerPool | None, stop: threading.Event | None, audio: dict[int, Any] | None,
         url: str | None) -> tuple[RunRecord, pd.DataFrame]:
    session_dir = stage / _session_name(scenario.name, run)
    if session_dir.exists():
        shutil.rmtree(session_dir)
    options = dict(connect_options)
    token = pool.take() if pool is not None else None
    if token is not None:
        options["token"] = token
    try:
        record = run_scenario_once(scenario, session_dir, run=run, connect_options=options, stop=stop, audio=audio)
    finally:
        if token is not None and pool is not None:
            pool.give_back(token)
    rows = analyse_session(session_dir)
    rows["level"] = level
    rows["session"] = _session_name(scenario.name, run)
    _write_partition(rows, stage / _partition(scenario.name, run))
    if url is not None:
        _upload(session_dir, f"{url.rstrip('/')}/{_session_name(scenario.name, run)}")
        _upload(stage / _partition(scenario.name, run), f"{url.rstrip('/')}/{_partition(scenario.name, run)}")
    return record, rows


# Each Dask worker process keeps one emulator and one pool of caller tokens for all of its tasks.
_worker_lock = threading.Lock()
_worker_state: dict[str, Any] = {}


def _dask_job(scenario: Scenario, run: int, level: int, out: str, connect_options: dict[str, Any],
              emulator_options: dict[str, Any] | None) -> tuple[RunRecord, pd.DataFrame]:
    """A run on a Dask worker: against this worker's own emulator unless connect_options name a service."""
    options = dict(connect_options)
    pool = None
    if emulator_options is not None:
        with _worker_lock:
            if "emulator" not in _worker_state:
                from amigo_lab.emulator import Emulator
                _worker_state["emulator"] = Emulator(tokens=CallerPool.emulator_tokens(), **emulator_options).start()
                _worker_state["pool"] = CallerPool.for_emulator()
        options["emulator"] = _worker_state["emulator"]
        pool = _worker_state["pool"]
    if _is_url(out):
        stage = Path(tempfile.mkdtemp(prefix="amigo-worker-"))
        try:
            return _job(scenario, run, level, stage, connect_options=options, pool=pool, stop=None, audio=None,
                        url=out)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return _job(scenario, run, level, Path(_local(out)), connect_options=options, pool=pool, stop=None,
                audio=None, url=None)


# --- the experiment -----------------------------------------------------------------------------------------

def run(scenarios: Any, *, runs: int | None = None, concurrency: int = 1, ramp: Sequence[int] | None = None,
        out: str | os.PathLike[str] | None = None, version_set: str | None = None,
        scheduler: str | None = None, workers: int = 2, emulator: Any = None,
        emulator_options: dict[str, Any] | None = None, connect_options: dict[str, Any] | None = None,
        tokens: Sequence[str] | None = None, realtime: bool | None = None, progress: bool = True,
        report: bool = True) -> ExperimentResult:
    """Run scenarios and return an :class:`ExperimentResult` (also written to ``out``).

    Parameters
    ----------
    scenarios
        Scenario files, folders of them, or :class:`Scenario` objects; all validated before anything is sent.
    runs
        Runs of each scenario (default: each scenario's ``runs:``, else 1).
    concurrency, ramp
        Callers at once; ``ramp=[10, 50, 100]`` runs each level in turn (at each level ``level`` callers,
        each doing ``runs`` runs) and adds a ``level`` column and ``summary["load"]``.
    out
        Output folder or fsspec URL (default: a fresh folder under the temp directory).
    version_set
        Replace every scenario's version set (for A/B: run twice, then :func:`compare`).
    scheduler, workers
        None: threads of this process. ``"local"``: a Dask local cluster of ``workers`` processes;
        ``"tcp://host:8786"``: an existing Dask scheduler (its workers need amigo_lab and the same ``out``).
    emulator, emulator_options
        An :class:`~amigo_lab.emulator.Emulator` to use, or options for the one started here
        (e.g. ``{"profile": "realistic"}``). Ignored when ``connect_options`` has an org and token. A
        given emulator made with ``Emulator(tokens=CallerPool.emulator_tokens())`` gets a user per run
        (several callers at once, no rate limit on new conversations); otherwise its one token is used.
    connect_options, tokens
        The options of :func:`amigo_lab.connect` for the real service (organization, token, region, host,
        service_id); ``tokens``: one token per concurrent caller.
    realtime
        Override every scenario's ``realtime:`` (False streams audio as fast as allowed: quick, not timing).
    progress, report
        Show a progress bar (terminal or notebook); write report.html.

    Next: ``result.passed``, ``result.results``, ``result.report()``, :func:`compare`.
    """
    chosen = load_scenarios(scenarios)
    if version_set is not None:
        chosen = [s.with_options(version_set=version_set) for s in chosen]
    if realtime is not None:
        chosen = [s.with_options(realtime=bool(realtime)) for s in chosen]
    levels = [int(x) for x in (ramp or [concurrency])]
    if any(level < 1 for level in levels):
        raise ExperimentError(f"concurrency levels must be at least 1, got {levels}")
    if runs is not None and runs < 1:
        raise ExperimentError(f"runs must be at least 1, got {runs}")
    connect_options = dict(connect_options or {})
    remote = bool(connect_options.get("organization") or connect_options.get("token")) or (
        tokens is not None and emulator is None)
    if remote and tokens is None and connect_options.get("token"):
        tokens = [connect_options["token"]]
    if remote and tokens is not None and max(levels) > len(tokens):
        raise ExperimentError(f"{max(levels)} callers at once need {max(levels)} tokens (one user each: the service "
                              f"allows one open conversation per user and service); {len(tokens)} given")
    out_text = str(out) if out is not None else tempfile.mkdtemp(prefix="amigo-experiment-")
    url = out_text if _is_url(out_text) else None
    stage = Path(tempfile.mkdtemp(prefix="amigo-experiment-stage-")) if url else Path(_local(out_text))
    stage.mkdir(parents=True, exist_ok=True)

    jobs: list[tuple[Scenario, int, int]] = []
    for level in levels:
        for scenario in chosen:
            n = (runs or scenario.runs) * (level if ramp else 1)
            first = sum(1 for j in jobs if j[0] is scenario)
            jobs.extend([(scenario, first + i, level) for i in range(n)])
    audio = {s.name: prepare_audio(s) for s in chosen}  # every file and language checked before sending

    started = time.monotonic()
    records: list[RunRecord] = []
    frames: list[pd.DataFrame] = []
    interrupted = False
    bar = _progress(len(jobs), progress)
    own_emulator = None
    try:
        if scheduler is not None:
            interrupted = _run_dask(jobs, scheduler, workers, levels, out_text if url else str(stage),
                                    connect_options, None if remote else dict(emulator_options or {}),
                                    records, frames, bar)
        else:
            pool = CallerPool(list(tokens)) if tokens else None
            if not remote:
                if emulator is not None and pool is None and _accepts_callers(emulator):
                    # Each run as a user of its own: the protocol allows one open conversation per user and
                    # service, and a few new conversations a minute per user (4429 beyond that).
                    pool = CallerPool.for_emulator()
                if emulator is None:
                    from amigo_lab.emulator import Emulator
                    own_emulator = Emulator(tokens=CallerPool.emulator_tokens(),
                                            realtime=any(s.realtime for s in chosen),
                                            **dict(emulator_options or {})).start()
                    pool = CallerPool.for_emulator()
                connect_options["emulator"] = emulator or own_emulator
            interrupted = _run_threads(jobs, levels, stage, connect_options, pool, audio, url, records, frames, bar)
    finally:
        bar.close()
        if own_emulator is not None:
            own_emulator.stop()
    seconds = time.monotonic() - started
    result = _assemble(stage, chosen, records, frames, seconds=seconds, interrupted=interrupted,
                       ramp=bool(ramp), levels=levels, scheduler=scheduler)
    if report:
        result.report()
    if url is not None:
        for name in (RESULTS_FILE, CHECKS_FILE, SUMMARY_FILE, REPORT_FILE):
            if (stage / name).exists():
                _upload(stage / name, f"{url.rstrip('/')}/{name}")
    return result


def _accepts_callers(emulator: Any) -> bool:
    """True when an emulator accepts :class:`CallerPool`'s tokens (it was made with ``emulator_tokens()``)."""
    return all(emulator.accepts(token) for token in CallerPool.emulator_tokens(2))


def _progress(total: int, show: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="run", desc="amigo-lab run", disable=not show, leave=True)


def _run_threads(jobs: list[tuple[Scenario, int, int]], levels: list[int], stage: Path,
                 connect_options: dict[str, Any], pool: CallerPool | None, audio: dict[str, Any],
                 url: str | None, records: list[RunRecord], frames: list[pd.DataFrame], bar: Any) -> bool:
    stop = threading.Event()
    for level in levels:
        batch = [j for j in jobs if j[2] == level]
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=level, thread_name_prefix="amigo-caller")
        futures = [executor.submit(_job, s, r, lv, stage, connect_options=connect_options, pool=pool, stop=stop,
                                   audio=audio[s.name], url=url) for s, r, lv in batch]
        try:
            for future in concurrent.futures.as_completed(futures):
                record, rows = future.result()
                records.append(record)
                frames.append(rows)
                bar.update(1)
        except KeyboardInterrupt:
            # Runs in flight stop at their next step and are kept; runs not started never start.
            stop.set()
            for future in futures:
                future.cancel()
            for future in futures:
                if not future.cancelled():
                    try:
                        record, rows = future.result()
                    except BaseException as exc:  # an interrupted run's folder may be unreadable
                        logger.warning("an interrupted run could not be read back: %s", exc)
                        continue
                    if all(r is not record for r in records):
                        records.append(record)
                        frames.append(rows)
            executor.shutdown(wait=True)
            return True
        executor.shutdown(wait=True)
    return False


def _run_dask(jobs: list[tuple[Scenario, int, int]], scheduler: str, workers: int, levels: list[int], out: str,
              connect_options: dict[str, Any], emulator_options: dict[str, Any] | None,
              records: list[RunRecord], frames: list[pd.DataFrame], bar: Any) -> bool:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ExperimentError("scheduler= needs Dask distributed: pip install 'dask[distributed]'") from None
    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=workers, threads_per_worker=max(levels), processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        if not scheduler.startswith(("tcp://", "tls://", "inproc://", "ws://", "wss://")):
            raise ExperimentError(f"scheduler must be 'local' or an address such as tcp://host:8786, got {scheduler!r}")
        client = Client(scheduler)
    try:
        for level in levels:
            batch = [j for j in jobs if j[2] == level]
            futures = [client.submit(_dask_job, s, r, lv, out, connect_options, emulator_options, pure=False)
                       for s, r, lv in batch]
            try:
                for future in as_completed(futures):
                    record, rows = future.result()
                    records.append(record)
                    frames.append(rows)
                    bar.update(1)
            except KeyboardInterrupt:
                client.cancel(futures)
                return True
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return False


def _assemble(stage: Path, scenarios: list[Scenario], records: list[RunRecord], frames: list[pd.DataFrame], *,
              seconds: float, interrupted: bool, ramp: bool, levels: list[int], scheduler: str | None
              ) -> ExperimentResult:
    by_name = {s.name: s for s in scenarios}
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["scenario", "run", "step", "primary", "level"])
    checked, checks = [], []
    for name, part in results.groupby("scenario", sort=False) if len(results) else []:
        table, per_run = evaluate(part, by_name[str(name)])
        checked.append(table)
        checks.extend([per_run, aggregate_checks(table, by_name[str(name)])])
    if checked:
        results = pd.concat(checked, ignore_index=True).sort_values(["scenario", "run", "step", "turn"],
                                                                    na_position="last").reset_index(drop=True)
    check_table = pd.concat([c for c in checks if len(c)], ignore_index=True) if any(len(c) for c in checks) else \
        pd.DataFrame(columns=["scenario", "run", "step", "expectation", "key", "passed", "measured", "detail",
                              "line", "source"])
    summary = _summary(results, check_table, scenarios, records, seconds=seconds, interrupted=interrupted,
                       ramp=ramp, levels=levels, scheduler=scheduler, out=stage)
    stored = check_table.copy()
    stored["measured"] = stored["measured"].map(lambda v: None if v is None else str(v)).astype("string")
    results.to_parquet(stage / RESULTS_FILE, index=False)
    stored.to_parquet(stage / CHECKS_FILE, index=False)
    (stage / SUMMARY_FILE).write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    return ExperimentResult(out=stage, results=results, checks=check_table, summary=summary, records=records)


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _summary(results: pd.DataFrame, checks: pd.DataFrame, scenarios: list[Scenario], records: list[RunRecord],
             *, seconds: float, interrupted: bool, ramp: bool, levels: list[int], scheduler: str | None,
             out: Path) -> dict[str, Any]:
    per_scenario: dict[str, Any] = {}
    for scenario in scenarios:
        mine = checks[checks["scenario"] == scenario.name]
        expectations = []
        for (step, label), part in mine.groupby(["step", "expectation"], sort=True):
            failed = part[~part["passed"].astype(bool)]
            expectations.append({"step": int(step), "expectation": label, "line": _clean(part["line"].iloc[0]),
                                 "passed": failed.empty, "runs_failed": len(failed),
                                 "runs_checked": len(part),
                                 "first_failure": None if failed.empty else str(failed["detail"].iloc[0])})
        rows = results[results["scenario"] == scenario.name] if len(results) else results
        latency = metric_summary(rows, by=[]) if len(rows) else pd.DataFrame()
        per_scenario[scenario.name] = {
            "source": scenario.source, "version_set": scenario.version_set,
            "runs": int(rows["run"].nunique()) if len(rows) else 0,
            "passed": bool(all(e["passed"] for e in expectations)) and len(rows) > 0,
            "expectations": expectations,
            "latency": {r["metric"]: {k: _clean(r[k]) for k in ("count", "mean", "p50", "p90", "p95")}
                        for _, r in latency.iterrows()},
        }
    n_runs = len(records)
    summary: dict[str, Any] = {
        "passed": bool(per_scenario) and all(s["passed"] for s in per_scenario.values()) and not interrupted,
        "interrupted": interrupted, "runs": n_runs, "seconds": round(seconds, 3),
        "runs_per_minute": round(n_runs / seconds * 60.0, 3) if seconds > 0 else None,
        "checks": len(checks), "checks_failed": int((~checks["passed"].astype(bool)).sum()) if len(checks) else 0,
        "failed_runs": sum(1 for r in records if r.error), "scheduler": scheduler or "threads",
        "out": str(out), "scenarios": per_scenario,
    }
    if ramp:
        summary["load"] = load_levels(results)
    return summary


def load_levels(results: pd.DataFrame) -> dict[str, Any]:
    """p50/p95 of every metric per concurrency level, and the first level where the agent stops keeping up."""
    table = results[results["primary"].astype(bool) & (results["step"] >= 0)]
    levels = []
    for level, part in table.groupby("level", sort=True):
        entry: dict[str, Any] = {"level": int(level), "runs": int(part["run"].nunique()),
                                 "failed_steps": int(part["status"].isin(["no reply", "error", "incomplete"]).sum())}
        for metric in metric_columns(table):
            values = part[metric].astype(float).dropna().to_numpy()
            entry[metric] = {"p50": _clean(float(np.percentile(values, 50))) if values.size else None,
                             "p95": _clean(float(np.percentile(values, 95))) if values.size else None}
        levels.append(entry)
    key = "latency_first_audio_ms"
    base = levels[0][key]["p50"] if levels and key in levels[0] else None
    stops = None
    for entry in levels:
        p50 = entry.get(key, {}).get("p50")
        if entry["failed_steps"] or (base and p50 is not None and p50 > KEEP_UP_FACTOR * base):
            stops = entry["level"]
            break
    return {"levels": levels, "criterion": f"p50 {key} within {KEEP_UP_FACTOR}x the lowest level's, no failed step",
            "stops_keeping_up_at": stops}


def load_experiment(out: str | os.PathLike[str]) -> ExperimentResult:
    """Read an experiment folder written by :func:`run` back into an :class:`ExperimentResult`."""
    folder = Path(_local(out))
    for name in (RESULTS_FILE, SUMMARY_FILE):
        if not (folder / name).is_file():
            raise ExperimentError(f"{str(folder)!r} is not an experiment folder: it has no {name} "
                                  "(write one with amigo-lab run SCENARIO --out DIR)")
    results = pd.read_parquet(folder / RESULTS_FILE)
    checks = pd.read_parquet(folder / CHECKS_FILE) if (folder / CHECKS_FILE).exists() else pd.DataFrame()
    summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    return ExperimentResult(out=folder, results=results, checks=checks, summary=summary)
