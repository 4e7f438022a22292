"""One self-contained HTML report of a recorded session: :func:`write_report`.

The file opens offline: plotly's JavaScript is embedded once, inline, and nothing is fetched from the
network. It holds the session's meta (never a token), the turns table, the latency summary, the VAD
timeline, the spectrograms, the language view and the errors and closes.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from tqdm.auto import tqdm

from amigo_lab.analysis._frames import TROUBLE_TYPES, check_frames
from amigo_lab.analysis.errors import AnalysisError
from amigo_lab.analysis.languages import language_figure, languages, latency_by_language
from amigo_lab.analysis.spectrogram import silence_gap_latency, spectrogram_figure
from amigo_lab.analysis.turns import latency_summary, turns
from amigo_lab.analysis.vad import reference_vad_segments, vad_timeline
from amigo_lab.audio import SAMPLE_RATE
from amigo_lab.protocol import describe_close, redact

__all__ = ["REPORT_FILE", "write_report"]

#: The report's file name inside the session folder, when no ``out_path`` is given.
REPORT_FILE = "report.html"

# The meta fields shown in the header, in this order. Anything else in meta.json stays out of the report.
_META_FIELDS = ("organization", "region", "service_id", "response_format", "audio_format", "conversation_id",
                "started_at", "ended_at", "lab_version")
_TURN_VIEW = ("turn", "user_kind", "transcript", "reply_text", "filler_text", "latency_first_text_ms",
              "latency_first_audio_ms", "latency_first_answer_audio_ms", "latency_complete_ms", "interrupted",
              "heard_ms", "events", "status", "error", "user_language", "agent_language")
_SR = SAMPLE_RATE

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; }
dl.meta dt { font-weight: 600; } .note { color: #666; font-size: 0.9em; } .scroll { overflow-x: auto; }
"""


def write_report(session_dir: str | os.PathLike[str], out_path: str | os.PathLike[str] | None = None, *,
                 title: str | None = None, progress: bool = True) -> Path:
    """Write one self-contained HTML report of the recorded session in ``session_dir``; returns its path.

    ``out_path`` defaults to ``<session_dir>/report.html``. Sections: header (organization, service,
    formats, conversation id), turns, latency summary (overall and per language), VAD timeline (with a
    reference VAD over the user's audio when there is any), spectrograms and the audio cross-check of
    latency (voice sessions), languages, and errors and closes. A tqdm bar shows the steps unless
    ``progress=False``. Open the file in any browser; it needs no network.
    """
    from amigo_lab.framelog import load_session

    steps = tqdm(total=7, desc="report", unit="step", disable=not progress)
    try:
        steps.set_postfix_str("loading")
        session = load_session(session_dir)
        frames = check_frames(session.frames)
        steps.update()
        sections, figures = [], _Figures()

        steps.set_postfix_str("turns")
        table = turns(frames)
        sections.append(_section("Turns", _turns_html(table)))
        steps.update()

        steps.set_postfix_str("latency")
        summary = latency_summary(table)
        by_language = latency_by_language(table)
        sections.append(_section("Latency", _table(summary) + "<h3>By user language</h3>" + _table(by_language)
                                 + _LATENCY_NOTE))
        steps.update()

        steps.set_postfix_str("VAD timeline")
        user = session.audio_track("sent", sr=_SR)
        agent = session.audio_track("received", sr=_SR)
        reference = reference_vad_segments(user, sr=_SR) if len(user) else None
        sections.append(_section("Who spoke when", figures.add(vad_timeline(frames, reference_vad=reference))))
        steps.update()

        steps.set_postfix_str("spectrograms")
        if len(user) or len(agent):
            body = figures.add(spectrogram_figure(user, agent, sr=_SR, frames=frames))
            gaps = silence_gap_latency(user, agent, sr=_SR, frames=frames)
            if len(gaps):
                body += "<h3>Audio cross-check of latency</h3>" + _table(gaps) + _GAP_NOTE
            sections.append(_section("Spectrograms", body))
        steps.update()

        steps.set_postfix_str("languages")
        language_table = languages(frames)
        body = (figures.add(language_figure(frames)) + _table(language_table)) if len(language_table) else \
            "<p class='note'>No messages to detect languages in.</p>"
        sections.append(_section("Languages", body))
        steps.update()

        steps.set_postfix_str("writing")
        sections.append(_section("Errors and closes", _trouble_html(frames)))
        meta = _meta(session.meta, frames)
        heading = title or f"Session {meta.get('conversation_id') or Path(session.path).name}"
        target = Path(out_path) if out_path is not None else Path(session.path) / REPORT_FILE
        document = _document(heading, meta, sections)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(document, encoding="utf-8")
        except OSError as exc:
            raise AnalysisError(f"cannot write the report to {str(target)!r}: {exc}") from exc
        steps.update()
    finally:
        steps.close()
    return target


_LATENCY_NOTE = ("<p class='note'>Milliseconds from the user's end of turn (the sent text, else the earlier of "
                 "the server VAD's speech end and the client's audio end) to the agent's first text, first "
                 "audio (fillers included), first answer audio (fillers excluded) and interaction-complete. "
                 "The greeting is left out.</p>")
_GAP_NOTE = ("<p class='note'>From the audio alone: the end of the user's last active frame (RMS above -40 dBFS) "
             "to the agent's next onset, next to the frame log's latency to first audio (which counts from the "
             "user's end of turn).</p>")


class _Figures:
    """Renders figures to HTML, embedding plotly's JavaScript in the first one only."""

    def __init__(self) -> None:
        self._count = 0

    def add(self, figure: go.Figure) -> str:
        first = self._count == 0
        self._count += 1
        return figure.to_html(full_html=False, include_plotlyjs=True if first else False,
                              include_mathjax=False, config={"displaylogo": False, "responsive": True})


def _section(name: str, body: str) -> str:
    return f"<section><h2>{html.escape(name)}</h2>\n{body}\n</section>"


def _format(value: Any) -> Any:
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, tuple):
        return " | ".join(value)
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return value


def _table(table: pd.DataFrame) -> str:
    if not len(table):
        return "<p class='note'>None.</p>"
    shown = table.astype(object).map(_format)
    return "<div class='scroll'>" + shown.to_html(index=False, na_rep="", escape=True, border=0) + "</div>"


def _turns_html(table: pd.DataFrame) -> str:
    if not len(table):
        return "<p class='note'>No turns.</p>"
    compact = _table(table[list(_TURN_VIEW)])
    full = _table(table)
    return compact + f"<details><summary>Every column</summary>{full}</details>"


def _trouble_html(frames: pd.DataFrame) -> str:
    rows = frames[frames["type"].isin(TROUBLE_TYPES).fillna(False).astype(bool)]
    out = []
    for rec in rows.to_dict("records"):
        code = rec["http_error_code"] if not pd.isna(rec["http_error_code"]) else rec["close_code"]
        code = None if pd.isna(code) else int(code)
        text = next((rec[c] for c in ("error_description", "close_reason", "text") if not pd.isna(rec[c])), "")
        meaning = describe_close(code, text) if rec["type"] == "connection.closed" else ""
        out.append({"t": rec["t"], "direction": rec["direction"], "type": rec["type"], "code": code,
                    "description": text, "meaning": meaning})
    return _table(pd.DataFrame(out, columns=["t", "direction", "type", "code", "description", "meaning"]))


def _meta(meta: dict[str, Any], frames: pd.DataFrame) -> dict[str, str]:
    shown = {key: meta.get(key) for key in _META_FIELDS}
    if not shown.get("conversation_id"):
        ids = frames["conversation_id"].dropna()
        shown["conversation_id"] = ids.iloc[0] if len(ids) else None
    return {key: redact(str(value)) for key, value in shown.items() if value not in (None, "")}


def _document(heading: str, meta: dict[str, str], sections: list[str]) -> str:
    items = "".join(f"<dt>{html.escape(k.replace('_', ' '))}</dt><dd>{html.escape(v)}</dd>" for k, v in meta.items())
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<title>{html.escape(heading)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(heading)}</h1>\n<dl class='meta'>{items}</dl>\n"
            + "\n".join(sections) + "\n</body>\n</html>\n")
