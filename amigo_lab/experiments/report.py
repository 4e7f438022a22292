"""The experiment report: one self-contained HTML file (plotly embedded once, audio as data URLs).

Sections: pass / fail per expectation (with the file line), latency distributions per metric with p50,
p90 and p95, the load curve when the run had a ramp, and the worst turns with the caller's and the agent's
audio. :func:`write_experiment_report` is what :meth:`ExperimentResult.report` calls.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from amigo_lab.experiments.experiment import ExperimentResult

__all__ = ["audio_tag", "summary_html", "turn_audio", "write_experiment_report"]

#: How many of the slowest turns the report plays back.
WORST_TURNS = 5

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}
.pass{color:#1a7f37;font-weight:600}.fail{color:#c62828;font-weight:600}.note{color:#666}
.scroll{overflow-x:auto}audio{height:32px;vertical-align:middle}
"""


def _wav(samples: np.ndarray, sr: int = 16000) -> bytes:
    from amigo_lab.audio import float_to_pcm16

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sr)
        out.writeframes(float_to_pcm16(np.asarray(samples, dtype=np.float32)))
    return buffer.getvalue()


def audio_tag(samples: np.ndarray, sr: int = 16000) -> str:
    """An ``<audio>`` element playing ``samples`` (a data URL; empty text when there is no audio)."""
    if samples is None or len(samples) == 0:
        return "<span class='note'>no audio</span>"
    data = base64.b64encode(_wav(samples, sr)).decode("ascii")
    return f"<audio controls preload='none' src='data:audio/wav;base64,{data}'></audio>"


def turn_audio(session_dir: str | os.PathLike[str], row: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The caller's audio of a results row (its span on the sent track) and the agent's answer audio."""
    from amigo_lab.framelog import FrameLogError, load_session

    try:
        recorded = load_session(session_dir)
    except FrameLogError:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    user = np.zeros(0, np.float32)
    start, end = row.get("user_start_t"), row.get("user_end_t")
    if row.get("user_kind") in ("voice", "audio") and pd.notna(start) and pd.notna(end):
        track = recorded.audio_track("sent")
        user = track[max(0, int((float(start) - 0.2) * 16000)): int((float(end) + 0.3) * 16000)]
    answer = row.get("answer_message_id")
    agent = recorded.message_audio(str(answer)) if isinstance(answer, str) and answer else np.zeros(0, np.float32)
    return user, agent


def _fmt(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 10 else f"{value:.2f}"
    return html.escape(str(value))


def _table(rows: list[dict[str, Any]], columns: list[str], raw: tuple[str, ...] = ()) -> str:
    if not rows:
        return "<p class='note'>None.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{r.get(c, '') if c in raw else _fmt(r.get(c))}</td>" for c in columns)
                   + "</tr>" for r in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def _expectations_html(result: ExperimentResult) -> str:
    parts = []
    for name, scenario in result.summary.get("scenarios", {}).items():
        verdict = "<span class='pass'>PASS</span>" if scenario["passed"] else "<span class='fail'>FAIL</span>"
        rows = [{"step": e["step"], "line": e["line"], "expectation": e["expectation"],
                 "result": "<span class='pass'>pass</span>" if e["passed"] else "<span class='fail'>fail</span>",
                 "runs failed": f"{e['runs_failed']} / {e['runs_checked']}",
                 "first failure": e["first_failure"]} for e in scenario["expectations"]]
        parts.append(f"<h3>{html.escape(name)} {verdict} <small class='note'>{html.escape(scenario['source'])}, "
                     f"{scenario['runs']} run(s), version set {html.escape(str(scenario['version_set']))}</small></h3>"
                     + _table(rows, ["step", "line", "expectation", "result", "runs failed", "first failure"],
                              raw=("result",)))
    return "".join(parts)


def _distributions_html(result: ExperimentResult, figures: _Figures) -> str:
    import plotly.graph_objects as go

    from amigo_lab.experiments.metrics import metric_columns

    table = result.results
    if not len(table):
        return "<p class='note'>No turns were recorded.</p>"
    primary = table[table["primary"].astype(bool) & (table["step"] >= 0)]
    metrics = [m for m in metric_columns(primary) if primary[m].notna().any()]
    stats = result.latency(by=["scenario"])
    stats = stats[stats["metric"].isin(metrics)]
    out = [_table(stats.to_dict("records"), list(stats.columns))]
    if metrics:
        figure = go.Figure()
        for metric in metrics:
            figure.add_trace(go.Box(y=primary[metric].astype(float), name=metric, boxpoints="all", jitter=0.4))
        figure.update_layout(title="Latency distributions over all runs and steps (ms)", height=420,
                             margin={"t": 40, "l": 50, "r": 10, "b": 120}, showlegend=False)
        out.append(figures.add(figure))
    return "".join(out)


def _load_html(result: ExperimentResult, figures: _Figures) -> str:
    import plotly.graph_objects as go

    load = result.summary.get("load")
    if not load:
        return ""
    figure = go.Figure()
    levels = [e["level"] for e in load["levels"]]
    metrics = [m for m in load["levels"][0] if m.endswith("_ms")] if load["levels"] else []
    for metric in metrics:
        for q, dash in (("p50", "solid"), ("p95", "dot")):
            ys = [e[metric][q] for e in load["levels"]]
            if any(y is not None for y in ys):
                figure.add_trace(go.Scatter(x=levels, y=ys, mode="lines+markers", name=f"{metric} {q}",
                                            line={"dash": dash}))
    figure.update_layout(title="Latency vs concurrency (ms)", xaxis_title="callers at once", height=420)
    stops = load.get("stops_keeping_up_at")
    note = (f"<p>Stops keeping up at <b>{stops}</b> callers ({html.escape(load['criterion'])}).</p>" if stops
            else f"<p>Kept up at every level ({html.escape(load['criterion'])}).</p>")
    return "<section><h2>Load</h2>" + note + figures.add(figure) + "</section>"


def _worst_html(result: ExperimentResult) -> str:
    table = result.results
    metric = "latency_first_audio_ms"
    if not len(table) or metric not in table:
        return "<p class='note'>None.</p>"
    primary = table[table["primary"].astype(bool) & (table["step"] >= 0) & table[metric].notna()]
    worst = primary.sort_values(metric, ascending=False).head(WORST_TURNS)
    rows = []
    for _, row in worst.iterrows():
        user, agent = turn_audio(result.out / str(row["session"]), row)
        rows.append({"scenario": row["scenario"], "run": row["run"], "step": row["step_title"],
                     metric: row[metric], "heard": row.get("transcript"), "reply": row.get("reply_text"),
                     "caller": audio_tag(user), "agent": audio_tag(agent)})
    return _table(rows, ["scenario", "run", "step", metric, "heard", "reply", "caller", "agent"],
                  raw=("caller", "agent"))


class _Figures:
    """Renders figures, embedding plotly's JavaScript in the first one only (the file stays offline)."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, figure: Any) -> str:
        first = self.count == 0
        self.count += 1
        return figure.to_html(full_html=False, include_plotlyjs=first, include_mathjax=False,
                              config={"displaylogo": False, "responsive": True})


def document(title: str, sections: list[tuple[str, str]], intro: str = "") -> str:
    """A complete HTML page from ``(heading, body html)`` sections."""
    body = "".join(f"<section><h2>{html.escape(h)}</h2>{b}</section>" if h else b for h, b in sections)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{intro}{body}</body></html>\n")


def summary_html(result: ExperimentResult) -> str:
    """The verdict and the expectations table (what a notebook shows for an ExperimentResult)."""
    s = result.summary
    verdict = "<span class='pass'>PASSED</span>" if result.passed else "<span class='fail'>FAILED</span>"
    extra = " (interrupted: the tables cover the runs recorded before)" if s.get("interrupted") else ""
    return (f"<div><p>{verdict}{extra}: {s.get('runs', 0)} runs, {s.get('checks_failed', 0)} of "
            f"{s.get('checks', 0)} checks failed, {s.get('runs_per_minute') or 0:.1f} runs/min; "
            f"<code>{html.escape(str(result.out))}</code></p>{_expectations_html(result)}</div>")


def write_experiment_report(result: ExperimentResult, path: str | os.PathLike[str]) -> Path:
    """Write the experiment's report.html to ``path``; returns it. Open it in any browser, offline."""
    figures = _Figures()
    sections = [("Expectations", _expectations_html(result)),
                ("Latency distributions (p50 / p90 / p95)", _distributions_html(result, figures)),
                ("", _load_html(result, figures)),
                (f"The {WORST_TURNS} slowest turns (first audio), with their audio", _worst_html(result))]
    s = result.summary
    intro = (f"<p>{'<span class=pass>PASSED</span>' if result.passed else '<span class=fail>FAILED</span>'}: "
             f"{s.get('runs', 0)} runs in {s.get('seconds', 0):.0f} s ({s.get('runs_per_minute') or 0:.1f} runs/min, "
             f"{html.escape(str(s.get('scheduler')))}){'; interrupted' if s.get('interrupted') else ''}. "
             "Latencies are in ms from the user's end of turn (amigo_lab.analysis.turns).</p>")
    target = Path(path)
    target.write_text(document("amigo_lab experiment", sections, intro), encoding="utf-8")
    return target
