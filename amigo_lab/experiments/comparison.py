"""Comparing two experiments (A: before, B: after): turn by turn, and per metric with a bootstrap verdict.

For each metric the runs of A and B are resampled (with replacement, each side on its own, ``n_boot``
times, seeded) and the difference B - A of the p50 and of the p90 is taken each time; the 95 % interval of
those differences gives the verdict: ``slower`` when the whole interval of the p50 difference is above
zero, ``faster`` when below, else ``no significant change``. Start with :func:`compare`, then
``comparison.metrics``, ``comparison.turns`` and ``comparison.write_html(path)``.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amigo_lab.experiments.experiment import (
    ExperimentError,
    ExperimentResult,
    load_experiment,
)
from amigo_lab.experiments.metrics import metric_columns

__all__ = ["Comparison", "bootstrap_difference", "compare"]

#: Bootstrap resamples per metric, and the confidence level of the interval.
N_BOOT, LEVEL = 2000, 0.95


def bootstrap_difference(a: np.ndarray, b: np.ndarray, q: float, *, n_boot: int = N_BOOT, seed: int = 0
                         ) -> tuple[float, float, float]:
    """(point, low, high): the q-th percentile of ``b`` minus that of ``a``, with a 95 % bootstrap interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    sa = np.percentile(a[rng.integers(0, a.size, (n_boot, a.size))], q, axis=1)
    sb = np.percentile(b[rng.integers(0, b.size, (n_boot, b.size))], q, axis=1)
    diff = sb - sa
    tail = (1.0 - LEVEL) / 2.0 * 100.0
    return (float(np.percentile(b, q) - np.percentile(a, q)), float(np.percentile(diff, tail)),
            float(np.percentile(diff, 100.0 - tail)))


def _verdict(low: float, high: float) -> str:
    if math.isnan(low):
        return "not measured in both"
    if low > 0:
        return "slower"
    if high < 0:
        return "faster"
    return "no significant change"


@dataclass
class Comparison:
    """The difference between experiment A and experiment B.

    ``metrics``: per scenario and metric, count / p50 / p90 of each side, the p50 and p90 differences
    (B - A) with their 95 % bootstrap intervals, and ``verdict``. ``turns``: per scenario and step, the
    median of each metric on each side, the most common reply text of each and whether it changed, and
    the pass rate of the step's checks. Next: :meth:`write_html` (with both versions' audio).
    """

    a: ExperimentResult
    b: ExperimentResult
    metrics: pd.DataFrame
    turns: pd.DataFrame

    def verdicts(self) -> dict[str, str]:
        """``{metric: verdict}`` over all scenarios (``scenario/metric`` keys when there are several)."""
        several = self.metrics["scenario"].nunique() > 1
        return {(f"{r.scenario}/{r.metric}" if several else r.metric): r.verdict for r in self.metrics.itertuples()}

    def write_html(self, path: str | os.PathLike[str]) -> Path:
        """Write the comparison as one offline HTML page (distributions, turns, both audios); returns it."""
        return _write_html(self, Path(path))

    def _repr_html_(self) -> str:
        shown = self.metrics[["scenario", "metric", "p50_a", "p50_b", "p50_diff", "p50_low", "p50_high", "verdict"]]
        return shown.to_html(index=False, float_format=lambda x: f"{x:.0f}", na_rep="")


def _primary(result: ExperimentResult) -> pd.DataFrame:
    table = result.results
    return table[table["primary"].astype(bool) & (table["step"] >= 0)]


def _as_result(source: Any) -> ExperimentResult:
    return source if isinstance(source, ExperimentResult) else load_experiment(source)


def compare(a: Any, b: Any, *, n_boot: int = N_BOOT, seed: int = 0) -> Comparison:
    """Compare two experiments (folders written by ``amigo-lab run``, or :class:`ExperimentResult`).

    Only scenarios present in both are compared. Next: ``comparison.metrics``, ``comparison.write_html()``.
    """
    ra, rb = _as_result(a), _as_result(b)
    pa, pb = _primary(ra), _primary(rb)
    common = sorted(set(pa["scenario"]) & set(pb["scenario"]))
    if not common:
        raise ExperimentError("the two experiments share no scenario; compare runs of the same scenario files")
    metrics = [m for m in metric_columns(pa) if m in pb.columns]
    rows = []
    for scenario in common:
        sa, sb = pa[pa["scenario"] == scenario], pb[pb["scenario"] == scenario]
        for metric in metrics:
            va, vb = sa[metric].astype(float).dropna().to_numpy(), sb[metric].astype(float).dropna().to_numpy()
            if va.size == 0 and vb.size == 0:
                continue
            row: dict[str, Any] = {"scenario": scenario, "metric": metric, "n_a": va.size, "n_b": vb.size}
            for q in (50, 90):
                row[f"p{q}_a"] = float(np.percentile(va, q)) if va.size else math.nan
                row[f"p{q}_b"] = float(np.percentile(vb, q)) if vb.size else math.nan
                point, low, high = bootstrap_difference(va, vb, q, n_boot=n_boot, seed=seed)
                row.update({f"p{q}_diff": point, f"p{q}_low": low, f"p{q}_high": high})
            row["verdict"] = _verdict(row["p50_low"], row["p50_high"])
            row["verdict_p90"] = _verdict(row["p90_low"], row["p90_high"])
            rows.append(row)
    turn_rows = []
    checks = [c for c in pa.columns if c.startswith("check:")]
    for scenario in common:
        sa, sb = pa[pa["scenario"] == scenario], pb[pb["scenario"] == scenario]
        for step in sorted(set(sa["step"]) | set(sb["step"])):
            ta, tb = sa[sa["step"] == step], sb[sb["step"] == step]
            reply_a, reply_b = _mode(ta["reply_text"]), _mode(tb["reply_text"])
            entry: dict[str, Any] = {"scenario": scenario, "step": int(step),
                                     "title": (ta if len(ta) else tb)["step_title"].iloc[0],
                                     "reply_a": reply_a, "reply_b": reply_b, "text_changed": reply_a != reply_b}
            for metric in metrics:
                entry[f"{metric}_a"] = float(ta[metric].astype(float).median()) if len(ta) else math.nan
                entry[f"{metric}_b"] = float(tb[metric].astype(float).median()) if len(tb) else math.nan
            entry["checks_passed_a"] = _pass_rate(ta, checks)
            entry["checks_passed_b"] = _pass_rate(tb, [c for c in tb.columns if c.startswith("check:")])
            turn_rows.append(entry)
    return Comparison(a=ra, b=rb, metrics=pd.DataFrame(rows), turns=pd.DataFrame(turn_rows))


def _mode(values: pd.Series) -> str | None:
    values = values.dropna()
    return str(values.mode().iloc[0]) if len(values) else None


def _pass_rate(rows: pd.DataFrame, checks: list[str]) -> float:
    cells = rows[checks].to_numpy().ravel() if checks and len(rows) else np.array([])
    known = [bool(c) for c in cells
             if c is not pd.NA and c is not None and not (isinstance(c, float) and math.isnan(c))]
    return float(np.mean(known)) if known else math.nan


def _write_html(comparison: Comparison, path: Path) -> Path:
    import plotly.graph_objects as go

    from amigo_lab.experiments.report import (
        _Figures,
        _table,
        audio_tag,
        document,
        turn_audio,
    )

    figures = _Figures()
    pa, pb = _primary(comparison.a), _primary(comparison.b)
    label_a = f"A ({comparison.a.out.name})"
    label_b = f"B ({comparison.b.out.name})"
    plots = []
    for metric in comparison.metrics["metric"].unique() if len(comparison.metrics) else []:
        figure = go.Figure()
        figure.add_trace(go.Box(y=pa[metric].astype(float), name=label_a, boxpoints="all"))
        figure.add_trace(go.Box(y=pb[metric].astype(float), name=label_b, boxpoints="all"))
        figure.update_layout(title=f"{metric} (ms)", height=340, margin={"t": 40, "b": 30})
        plots.append(figures.add(figure))
    metrics = comparison.metrics.to_dict("records")
    turn_rows = []
    for entry in comparison.turns.to_dict("records"):
        audio = {}
        for side, table, result in (("a", pa, comparison.a), ("b", pb, comparison.b)):
            rows = table[(table["scenario"] == entry["scenario"]) & (table["step"] == entry["step"])]
            if len(rows):
                _user, agent = turn_audio(result.out / str(rows.iloc[0]["session"]), rows.iloc[0])
                audio[side] = audio_tag(agent)
        turn_rows.append({**entry, "agent A": audio.get("a", ""), "agent B": audio.get("b", "")})
    first = "latency_first_audio_ms"
    columns = ["scenario", "step", "title", f"{first}_a", f"{first}_b", "text_changed", "reply_a", "reply_b",
               "agent A", "agent B"]
    sections = [
        ("Per metric: B - A with a 95 % bootstrap interval",
         _table(metrics, ["scenario", "metric", "n_a", "n_b", "p50_a", "p50_b", "p50_diff", "p50_low", "p50_high",
                          "verdict", "p90_a", "p90_b", "p90_diff", "p90_low", "p90_high", "verdict_p90"])),
        ("Distributions", "".join(plots)),
        ("Turn by turn (medians over runs; the first run's audio)",
         _table(turn_rows, [c for c in columns if c in turn_rows[0]] if turn_rows else columns,
                raw=("agent A", "agent B"))),
    ]
    intro = (f"<p>A: <code>{html.escape(str(comparison.a.out))}</code><br>B: "
             f"<code>{html.escape(str(comparison.b.out))}</code></p>")
    path.write_text(document("amigo_lab comparison", sections, intro), encoding="utf-8")
    return path
