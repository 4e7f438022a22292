"""One self-contained HTML report of a recorded session: :func:`write_report`.

The file opens offline and needs no script: the figures are inline SVG (hover a mark for its frame details)
and the spectrograms PNG images, so the page stays small (no plotting library is embedded) and costs time
linear in the session's length. It holds the session's meta (never a token), a banner when the timings are
not real time (a session recorded with ``--fast``), the turns with per-turn audio players (the user's audio,
and the agent's as heard: cut where playback was flushed), the latency waterfall per turn and the latency
distribution under the fold's names (:data:`amigo_lab.protocol.fold.LATENCIES`), who spoke when, the
spectrograms, the audio cross-check of latency, the languages and the errors and closes. Audio is MP3;
``audio=False`` leaves it out.
"""

from __future__ import annotations

import base64
import html
import math
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from amigo_lab.analysis._frames import REAL_TIME_PACE, TROUBLE_TYPES, check_frames
from amigo_lab.analysis.errors import AnalysisError
from amigo_lab.analysis.languages import languages, latency_by_language
from amigo_lab.analysis.spectrogram import TURN_MARKS, pooled_spectrogram, silence_gap_latency, upload_pace
from amigo_lab.analysis.turns import LATENCY_METRICS, latency_definition, latency_summary, turns
from amigo_lab.analysis.vad import reference_vad_segments, vad_segments
from amigo_lab.audio import SAMPLE_RATE, encode_mp3
from amigo_lab.protocol import describe_close, redact

__all__ = ["REPORT_FILE", "write_report"]

#: The report's file name inside the session folder, when no ``out_path`` is given.
REPORT_FILE = "report.html"

# The meta fields shown in the header, in this order. Anything else in meta.json stays out of the report.
_META_FIELDS = ("organization", "region", "service_id", "response_format", "audio_format", "conversation_id",
                "started_at", "ended_at", "lab_version")
_TURN_VIEW = ("turn", "user_kind", "transcript", "reply_text", "filler_text", "latency_first_text_ms",
              "latency_first_audio_ms", "latency_first_answer_audio_ms", "latency_complete_ms", "interrupted",
              "heard_ms", "n_events", "status", "real_time", "error", "user_language", "agent_language")
# The full turns table is shown too up to this many turns; beyond, the compact one keeps the page light.
_FULL_TABLE_TURNS = 60
_SR = SAMPLE_RATE
_MP3_KBPS = 24
# User audio kept around a turn's speech, so its first and last syllables are not clipped.
_USER_MARGIN_S = 0.15
_MAX_CLIP_S = 120.0
_SPECTROGRAM_COLUMNS = 900
_FRAMES_PER_COLUMN = 32

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; }
dl.meta dt { font-weight: 600; } .note { color: #666; font-size: 0.9em; } .scroll { overflow-x: auto; }
.tall { max-height: 520px; overflow-y: auto; } .banner { background: #fff3cd; border: 1px solid #e0c36c;
padding: 0.6em 1em; margin: 1em 0; } audio { height: 28px; width: 220px; } svg text { font-size: 11px; }
.turns td:nth-child(n+3):nth-child(-n+5) { min-width: 14em; }
"""


def write_report(session_dir: str | os.PathLike[str], out_path: str | os.PathLike[str] | None = None, *,
                 title: str | None = None, progress: bool = True, audio: bool = True) -> Path:
    """Write one self-contained HTML report of the recorded session in ``session_dir``; returns its path.

    ``out_path`` defaults to ``<session_dir>/report.html``. Sections: header (organization, service,
    formats, conversation id, and a banner when the timings are not real time), turns (their ``real_time``
    column marks each turn whose timings are not) with per-turn audio players (``audio=False`` leaves the
    players out; what is drawn from the audio stays), latency (summary, per language, a waterfall per turn and
    the distribution, each latency under its fold name with its definition), who spoke when (with a
    reference VAD over the user's audio when there is any), spectrograms and the audio cross-check of latency
    (voice sessions), languages, and errors and closes. A tqdm bar shows the steps unless ``progress=False``.
    Open the file in any browser; it needs no network and no script.
    """
    from amigo_lab.framelog import load_session

    steps = tqdm(total=7, desc="report", unit="step", disable=not progress)
    try:
        steps.set_postfix_str("loading")
        session = load_session(session_dir)
        frames = check_frames(session.frames)
        steps.update()
        sections = []

        steps.set_postfix_str("turns")
        table = turns(frames, fast=session.fast)  # once: every section below reads this table
        # Decoded even with audio=False: the players are left out, not what is drawn or measured from the
        # audio (the spectrograms, the reference VAD lane and the audio cross-check of latency).
        user = session.audio_track("sent", sr=_SR)
        agent = session.audio_track("received", sr=_SR)
        fast = _not_real_time(session.meta, frames, table)
        sections.append(_section("Turns", _turns_html(table, user if audio else None, agent if audio else None)))
        steps.update()

        steps.set_postfix_str("latency")
        summary = latency_summary(table)
        by_language = latency_by_language(table)
        sections.append(_section("Latency", _latency_html(table, summary, by_language)))
        steps.update()

        steps.set_postfix_str("VAD timeline")
        reference = reference_vad_segments(user, sr=_SR) if len(user) else None
        segments = vad_segments(frames, reference_vad=reference, turns_table=table)
        sections.append(_section("Who spoke when", _timeline_svg(segments, table)))
        steps.update()

        steps.set_postfix_str("spectrograms")
        if len(user) or len(agent):
            body = _spectrogram_svg(user, agent, table, segments)
            gaps = silence_gap_latency(user, agent, sr=_SR, frames=frames, turns_table=table)
            if len(gaps):
                body += "<h3>Audio cross-check of latency</h3>" + _table(gaps) + _GAP_NOTE
            sections.append(_section("Spectrograms", body))
        steps.update()

        steps.set_postfix_str("languages")
        language_table = languages(frames, turns_table=table)
        body = _table(language_table) if len(language_table) else \
            "<p class='note'>No messages to detect languages in.</p>"
        sections.append(_section("Languages", body))
        steps.update()

        steps.set_postfix_str("writing")
        sections.append(_section("Errors and closes", _trouble_html(frames)))
        meta = _meta(session.meta, frames)
        heading = title or f"Session {meta.get('conversation_id') or Path(session.path).name}"
        target = Path(out_path) if out_path is not None else Path(session.path) / REPORT_FILE
        document = _document(heading, meta, sections, banner=fast)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(document, encoding="utf-8")
        except OSError as exc:
            raise AnalysisError(f"cannot write the report to {str(target)!r}: {exc}") from exc
        steps.update()
    finally:
        steps.close()
    return target


def _not_real_time(meta: dict[str, Any], frames: pd.DataFrame, table: pd.DataFrame) -> str | None:
    """Why this session's timings are not real time, or None when they are."""
    if meta.get("fast"):
        return ("Recorded with --fast: audio went faster than real time, so the latencies, the timeline and "
                "the spectrograms show compressed time, not what a caller would have experienced (the turns "
                "table's real_time column says which turns).")
    late = int((~table["real_time"].astype(bool)).sum())
    if late:
        return (f"The user's audio of {late} of {len(table)} turns was sent faster than real time (real_time is "
                "false in the turns table), so their latencies and the timeline are not real-time figures.")
    sent = frames[(frames["direction"] == "sent") & (frames["audio_bytes"].fillna(0) > 0).astype(bool)]
    if len(sent) >= 50 and upload_pace(frames)(-math.inf, math.inf) < REAL_TIME_PACE:
        return ("The user's audio was sent faster than real time, so the voice latencies and the timeline are "
                "not real-time figures.")
    return None


_LATENCY_NOTE = ("<p class='note'>Each latency is named as in the session's live view and "
                 "<code>analysis.turns</code>; the definitions are below. The greeting is left out of the "
                 "summary.</p>")
_GAP_NOTE = ("<p class='note'>From the audio alone: the end of the user's last active frame (RMS above -40 dBFS) "
             "to the agent's next onset, next to the frame log's latency to first audio (which counts from the "
             "user's end of turn).</p>")


def _section(name: str, body: str) -> str:
    return f"<section><h2>{html.escape(name)}</h2>\n{body}\n</section>"


def _format(value: Any) -> Any:
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, tuple):
        return " | ".join(str(v) for v in value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return value


def _table(table: pd.DataFrame) -> str:
    if not len(table):
        return "<p class='note'>None.</p>"
    # Written by hand, one line per row: DataFrame.to_html indents every cell on a line of its own, which
    # made most of a long session's table bytes whitespace.
    head = "".join(f"<th>{html.escape(str(name))}</th>" for name in table.columns)
    columns = [table[name].astype(object).tolist() for name in table.columns]
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(str(_format(v)))}</td>" for v in row) + "</tr>"
                     for row in zip(*columns, strict=True))
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>"


# --- turns and their audio ----------------------------------------------------------------------------------


def _clip(track: np.ndarray | None, start: float, end: float) -> np.ndarray | None:
    if track is None or not len(track) or math.isnan(start) or math.isnan(end) or end <= start:
        return None
    end = min(end, start + _MAX_CLIP_S)
    a, b = max(0, int(start * _SR)), min(len(track), int(math.ceil(end * _SR)))
    piece = track[a:b]
    return piece if len(piece) >= _SR // 20 else None


def _player(samples: np.ndarray | None, label: str) -> str:
    if samples is None:
        return ""
    data = base64.b64encode(encode_mp3(samples, sr=_SR, bitrate_kbps=_MP3_KBPS)).decode("ascii")
    seconds = len(samples) / _SR
    return (f"<audio controls preload='none' title='{html.escape(label)} ({seconds:.1f} s)' "
            f"src='data:audio/mpeg;base64,{data}'></audio>")


def _yes(value: Any) -> bool:
    return value is not None and value is not pd.NA and bool(value)


def _heard_span(row: Any) -> tuple[float, float]:
    """Where the agent's audio of a turn sits on the received track (fillers first), as far as it was heard."""
    start = row.first_audio_t
    if math.isnan(start):
        return math.nan, math.nan
    answer = row.first_answer_audio_t if not math.isnan(row.first_answer_audio_t) else start
    heard = row.heard_ms if not math.isnan(row.heard_ms) else row.reply_audio_ms
    if not math.isnan(heard):
        return start, answer + heard / 1000.0
    return start, row.barge_in_t if _yes(row.interrupted) else math.nan


def _unheard_spans(table: pd.DataFrame) -> list[tuple[float, float, int]]:
    """Per interrupted turn, the agent audio received but not heard: from the cut to the end of the reply."""
    out = []
    for row in table.itertuples(index=False):
        if not _yes(row.interrupted):
            continue
        _, heard_end = _heard_span(row)
        answer = row.first_answer_audio_t if not math.isnan(row.first_answer_audio_t) else row.first_audio_t
        received_end = answer + row.reply_audio_ms / 1000.0 if not math.isnan(row.reply_audio_ms) else math.nan
        if not math.isnan(heard_end) and not math.isnan(received_end) and received_end > heard_end:
            out.append((heard_end, received_end, int(row.turn)))
    return out


def _unheard_svg(table: pd.DataFrame, axis: _Axis, y: float, height: float) -> list[str]:
    return [f"<rect x='{axis.x(a):.1f}' y='{y:.0f}' width='{max(axis.x(b) - axis.x(a), 1):.1f}' height='{height:.0f}' "
            f"fill='#ffffff' fill-opacity='0.6' stroke='#d62728' stroke-dasharray='2 2'><title>turn {turn}: received "
            f"{a:.2f}–{b:.2f} s but not heard (playback cut at the barge-in)</title></rect>"
            for a, b, turn in _unheard_spans(table)]


def _turns_html(table: pd.DataFrame, user: np.ndarray | None, agent: np.ndarray | None) -> str:
    if not len(table):
        return "<p class='note'>No turns.</p>"
    body = "<div class='turns'>" + _table(table[list(_TURN_VIEW)]) + "</div>"
    if len(table) <= _FULL_TABLE_TURNS:
        body += f"<details><summary>Every column</summary>{_table(table)}</details>"
    if user is None and agent is None:
        return body + "<p class='note'>Audio left out of this report.</p>"
    rows = []
    for row in table.itertuples(index=False):
        spoken = row.user_kind in ("audio", "voice")
        said = _player(_clip(user, row.user_start_t - _USER_MARGIN_S, row.user_end_t + _USER_MARGIN_S),
                       f"turn {row.turn}, user") if spoken else ""
        heard = _player(_clip(agent, *_heard_span(row)), f"turn {row.turn}, agent as heard")
        if not said and not heard:
            continue
        cut = " (cut at the barge-in)" if _yes(row.interrupted) else ""
        rows.append(f"<tr><td>{row.turn}</td><td>{html.escape(str(_format(row.transcript)))}<br>{said}</td>"
                    f"<td>{html.escape(str(_format(row.reply_text)))}{cut}<br>{heard}</td></tr>")
    if not rows:
        return body
    return (body + "<h3>Listen to each turn</h3><p class='note'>The user's audio as sent; the agent's as heard "
            "(cut where playback was flushed when a player reported it, else as received). MP3, "
            f"{_MP3_KBPS} kbit/s.</p><div class='tall'><table><tr><th>turn</th><th>user</th><th>agent</th></tr>"
            + "".join(rows) + "</table></div>")


# --- SVG figures ------------------------------------------------------------------------------------------------

_WIDTH, _LEFT, _RIGHT = 1150, 210, 20


def _ticks(t_max: float, n: int = 10) -> list[float]:
    raw = max(t_max, 1e-9) / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(t_max / step) + 1)]


class _Axis:
    """A linear map from seconds (or ms) to x pixels."""

    def __init__(self, t_max: float) -> None:
        self.t_max = max(t_max, 1e-3)
        self.scale = (_WIDTH - _LEFT - _RIGHT) / self.t_max

    def x(self, t: float) -> float:
        return _LEFT + max(0.0, min(t, self.t_max)) * self.scale

    def svg(self, y: float, unit: str) -> str:
        parts = [f"<line x1='{_LEFT}' x2='{_WIDTH - _RIGHT}' y1='{y}' y2='{y}' stroke='#888'/>"]
        for tick in _ticks(self.t_max):
            x = self.x(tick)
            parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{y}' y2='{y + 4}' stroke='#888'/>"
                         f"<text x='{x:.1f}' y='{y + 15}' text-anchor='middle'>{tick:g}</text>")
        parts.append(f"<text x='{_WIDTH - _RIGHT}' y='{y + 28}' text-anchor='end'>{html.escape(unit)}</text>")
        return "".join(parts)


def _svg(height: float, body: Iterable[str], label: str) -> str:
    return (f"<div class='scroll'><svg xmlns='http://www.w3.org/2000/svg' role='img' aria-label='{html.escape(label)}' "
            f"width='{_WIDTH}' height='{height:.0f}' viewBox='0 0 {_WIDTH} {height:.0f}'>" + "".join(body)
            + "</svg></div>")


_LANES = {"event": "events", "agent": "agent", "server-vad": "user · server VAD",
          "reference": "user · reference VAD", "client": "user · client"}
_COLOURS = {
    ("server-vad", "speech"): "#1f77b4", ("server-vad", "reset"): "#aec7e8",
    ("reference", "speech"): "#2ca02c", ("client", "audio"): "#b0b0b0", ("client", "text"): "#17becf",
    ("agent", "answer"): "#ff7f0e", ("agent", "filler"): "#9467bd",
    ("event", "barge-in"): "#d62728", ("event", "reset"): "#ff9896", ("event", "external-event"): "#2ca02c",
    ("event", "audio-end"): "#7f7f7f", ("event", "playback-flushed"): "#e377c2", ("event", "error"): "#000000",
    ("event", "close"): "#8c564b", ("event", "reconnecting"): "#bcbd22",
}
_MARK_NAMES = {"user_end_t": "user's end of turn", "first_audio_t": "first agent audio", "barge_in_t": "barge-in"}


def _marks(table: pd.DataFrame, axis: _Axis, top: float, bottom: float) -> list[str]:
    """The turn stamps as vertical lines: one path per kind of stamp, however many turns."""
    out = []
    for column, colour in TURN_MARKS.items():
        xs = table[column].dropna().to_numpy(float)
        if len(xs):
            d = " ".join(f"M{axis.x(t):.1f} {top:.0f}V{bottom:.0f}" for t in xs)
            out.append(f"<path d='{d}' stroke='{colour}' stroke-width='1' stroke-dasharray='4 3' fill='none'>"
                       f"<title>{_MARK_NAMES[column]}</title></path>")
    return out


def _legend(items: Iterable[tuple[str, str]], y: float) -> tuple[list[str], float]:
    """Colour keys in rows that fit the width; returns them and the y below the last row."""
    out, x = [], float(_LEFT)
    for label, colour in items:
        width = 24 + 6.5 * len(label)
        if x + width > _WIDTH and x > _LEFT:
            x, y = float(_LEFT), y + 16
        out.append(f"<rect x='{x:.0f}' y='{y - 9}' width='10' height='10' fill='{colour}'/>"
                   f"<text x='{x + 14:.0f}' y='{y}'>{html.escape(label)}</text>")
        x += width
    return out, y + 12


def _timeline_svg(segments: pd.DataFrame, table: pd.DataFrame) -> str:
    if not len(segments):
        return "<p class='note'>Nothing happened on the timeline.</p>"
    present = set(segments["source"].astype(str))
    lanes = [source for source in _LANES if source in present]
    lane_h, top = 34, 10
    axis = _Axis(float(np.nanmax(segments["end_t"].to_numpy(float))) * 1.01)
    body = []
    for i, source in enumerate(lanes):
        y = top + i * lane_h
        body.append(f"<text x='{_LEFT - 8}' y='{y + lane_h / 2 + 4}' text-anchor='end'>{_LANES[source]}</text>"
                    f"<line x1='{_LEFT}' x2='{_WIDTH - _RIGHT}' y1='{y + lane_h}' y2='{y + lane_h}' stroke='#eee'/>")
    row_of = {source: i for i, source in enumerate(lanes)}
    # One group per colour holds its marks (in time order, as before), so no mark repeats its fill.
    groups: dict[str, list[str]] = {}
    for rec in zip(segments["start_t"].to_numpy(float), segments["end_t"].to_numpy(float),
                   segments["source"].astype(str), segments["kind"].astype(str),
                   segments["detail"].fillna("").astype(str), strict=True):
        start, end, source, kind, detail = rec
        marks = groups.setdefault(_COLOURS.get((source, kind), "#999999"), [])
        y = top + row_of[source] * lane_h + 6
        tip = f"<title>{_tip(detail)}</title>" if detail else ""
        if end > start:
            x0 = axis.x(start)
            marks.append(f"<rect x='{x0:.1f}' y='{y}' width='{max(axis.x(end) - x0, 1.0):.1f}' "
                         f"height='{lane_h - 12}'>{tip}</rect>")
        else:
            marks.append(f"<circle cx='{axis.x(start):.1f}' cy='{y + (lane_h - 12) / 2:g}' r='5'>{tip}</circle>")
    body += [f"<g fill='{colour}' fill-opacity='0.85'>{''.join(marks)}</g>" for colour, marks in groups.items()]
    if "agent" in row_of:
        body += _unheard_svg(table, axis, top + row_of["agent"] * lane_h + 6, lane_h - 12)
    bottom = top + len(lanes) * lane_h
    body += _marks(table, axis, top, bottom)
    body.append(axis.svg(bottom + 4, "time (s, log clock)"))
    kinds = segments[["source", "kind"]].drop_duplicates().astype(str).itertuples(index=False)
    keys, end = _legend([(f"{s} {k}", _COLOURS.get((s, k), "#999999")) for s, k in kinds]
                        + [(name, TURN_MARKS[c]) for c, name in _MARK_NAMES.items()]
                        + ([("received, not heard", "#f4c7c7")] if _unheard_spans(table) else []), bottom + 52)
    return _svg(end, body + keys, "who spoke when") + (
        "<p class='note'>Hover a bar or a dot for its frames. Dashed lines: each turn's "
        + ", ".join(f"<span style='color:{TURN_MARKS[c]}'>{n}</span>" for c, n in _MARK_NAMES.items()) + ".</p>")


def _tip(detail: str) -> str:
    """A segment's hover text (HTML for the plotly timeline: escaped texts, ``<br>`` lines) as SVG title text."""
    return html.escape(html.unescape(detail.replace("<br>", "\n")), quote=False)


_LATENCY_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _latency_names(table: pd.DataFrame) -> list[str]:
    return [name for name in LATENCY_METRICS if name in table.columns and table[name].notna().any()]


def _waterfall_svg(table: pd.DataFrame, names: list[str]) -> str:
    """Per turn, a bar to the slowest latency with a mark at each one: where each stage landed."""
    rows = table[table[names].notna().any(axis=1)]
    if not len(rows):
        return ""
    values = rows[names].to_numpy(float)
    axis = _Axis(float(np.nanmax(values)) * 1.05)
    row_h, top = 16, 8
    body = []
    # The dots go in one group per colour (drawn in the names' order, as each turn's were), so each dot
    # carries no fill of its own.
    dots: list[list[str]] = [[] for _ in names]
    labels, bars = [], []
    for i, (turn, kind, line) in enumerate(zip(rows["turn"], rows["user_kind"].astype(str), values, strict=True)):
        y = top + i * row_h
        labels.append(f"<text x='{_LEFT - 8}' y='{y + 11}'>turn {turn} ({html.escape(kind)})</text>")
        reach = np.nanmax(line)
        bars.append(f"<rect x='{_LEFT}' y='{y + 4}' width='{axis.x(reach) - _LEFT:.1f}' height='6'/>")
        # Latencies of the same value (to the ms) are one dot naming them all: drawn apart, the last would hide
        # the others and their names. It keeps the colour of the one drawn last, the one that showed.
        at: dict[tuple[str, str], tuple[int, list[str]]] = {}
        for k, (name, value) in enumerate(zip(names, line, strict=False)):
            if k < len(_LATENCY_COLOURS) and not math.isnan(value):
                key = (f"{axis.x(value):.1f}", f"{value:.0f}")
                at[key] = (k, [*at.get(key, (k, []))[1], name])
        for (x, ms), (k, same) in at.items():
            # The definitions are listed once below the figure; a dot names its latencies only.
            dots[k].append(f"<circle cx='{x}' cy='{y + 7}' r='4'><title>turn {turn}: {', '.join(same)} = "
                           f"{ms} ms</title></circle>")
    body += [f"<g text-anchor='end'>{''.join(labels)}</g>", f"<g fill='#e6e6e6'>{''.join(bars)}</g>"]
    body += [f"<g fill='{colour}'>{''.join(group)}</g>"
             for group, colour in zip(dots, _LATENCY_COLOURS, strict=False) if group]
    bottom = top + len(rows) * row_h
    body.append(axis.svg(bottom + 4, "ms"))
    keys, end = _legend(zip(names, _LATENCY_COLOURS, strict=False), bottom + 52)
    return "<div class='tall'>" + _svg(end, body + keys, "latency waterfall per turn") + "</div>"


def _distribution_svg(table: pd.DataFrame, names: list[str]) -> str:
    """Per latency, a box from p25 to p75 with the median, whiskers p10 to p90, and every turn as a dot."""
    spoken = table[table["user_kind"].astype(str) != "greeting"]
    columns = [(name, spoken[name].dropna().to_numpy(float)) for name in names]
    columns = [(name, v) for name, v in columns if len(v)]
    if not columns:
        return ""
    axis = _Axis(max(float(v.max()) for _, v in columns) * 1.05)
    row_h, top = 30, 8
    body = []
    for i, ((name, v), colour) in enumerate(zip(columns, _LATENCY_COLOURS, strict=False)):
        y = top + i * row_h + row_h / 2
        p10, p25, p50, p75, p90 = np.percentile(v, [10, 25, 50, 75, 90])
        tip = (f"<title>{name}: p10 {p10:.0f}, p25 {p25:.0f}, p50 {p50:.0f}, p75 {p75:.0f}, p90 {p90:.0f} ms over "
               f"{len(v)} turns ({html.escape(latency_definition(name))})</title>")
        body.append(f"<text x='{_LEFT - 8}' y='{y + 4}' text-anchor='end'>{name.replace('_ms', '')}</text>")
        dots = " ".join(f"M{axis.x(x):.1f} {y - 9:.0f}v4" for x in v)
        body.append(f"<path d='{dots}' stroke='{colour}' stroke-opacity='0.5'/>")
        body.append(f"<line x1='{axis.x(p10):.1f}' x2='{axis.x(p90):.1f}' y1='{y}' y2='{y}' stroke='{colour}'/>"
                    f"<rect x='{axis.x(p25):.1f}' y='{y - 6}' width='{max(axis.x(p75) - axis.x(p25), 1):.1f}' "
                    f"height='12' fill='{colour}' fill-opacity='0.35' stroke='{colour}'>{tip}</rect>"
                    f"<line x1='{axis.x(p50):.1f}' x2='{axis.x(p50):.1f}' y1='{y - 6}' y2='{y + 6}' "
                    f"stroke='{colour}' stroke-width='2'/>")
    bottom = top + len(columns) * row_h
    body.append(axis.svg(bottom + 4, "ms"))
    return _svg(bottom + 36, body, "latency distribution")


def _latency_html(table: pd.DataFrame, summary: pd.DataFrame, by_language: pd.DataFrame) -> str:
    names = _latency_names(table)
    parts = [_table(summary), "<h3>By user language</h3>", _table(by_language), _LATENCY_NOTE]
    if names:
        parts += ["<h3>Distribution</h3><p class='note'>Box p25–p75 with the median, whiskers p10–p90, a tick "
                  "per turn (the greeting left out).</p>", _distribution_svg(table, names),
                  "<h3>Waterfall per turn</h3><p class='note'>Where each stage of a turn landed, in ms from "
                  "its origin; hover a dot for its name (definitions below).</p>", _waterfall_svg(table, names)]
    definitions = "".join(f"<dt><code>{name}</code></dt><dd>{html.escape(latency_definition(name))}</dd>"
                          for name in LATENCY_METRICS)
    parts.append(f"<h3>Definitions</h3><dl class='meta'>{definitions}</dl>")
    return "".join(parts)


# --- spectrograms as images ---------------------------------------------------------------------------------

# Viridis at ten stops, interpolated to a 256-entry table.
_VIRIDIS_STOPS = ("440154", "482878", "3e4989", "31688e", "26828e", "1f9e89", "35b779", "6ece58", "b5de2b",
                  "fde725")
_STOPS = np.array([[int(h[i: i + 2], 16) for i in (0, 2, 4)] for h in _VIRIDIS_STOPS], dtype=float)
_LUT = np.stack([np.interp(np.linspace(0, 9, 256), np.arange(10), _STOPS[:, c]) for c in range(3)],
                axis=1).astype(np.uint8)
_FLOOR_DB, _RANGE_DB = -100.0, 80.0


def _png(rgb: np.ndarray) -> bytes:
    """A PNG file of an ``(h, w, 3)`` uint8 image."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _spectrogram_svg(user: np.ndarray, agent: np.ndarray, table: pd.DataFrame, segments: pd.DataFrame) -> str:
    duration = max(len(user), len(agent)) / _SR
    axis = _Axis(duration)
    tracks: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    peak = _FLOOR_DB
    for name, track in (("user (sent)", user), ("agent (received)", agent)):
        if len(track):
            # The same time scale for both: each column covers the same span of either track.
            columns = max(1, int(_SPECTROGRAM_COLUMNS * len(track) / (duration * _SR)))
            # At most _FRAMES_PER_COLUMN analysis frames are averaged into a column: an hour-long track is
            # sampled every 125 ms instead of every 10 ms, which its 4 s columns cannot show anyway.
            hop_ms = max(10.0, duration * 1000.0 / _SPECTROGRAM_COLUMNS / _FRAMES_PER_COLUMN)
            s_db, _, _ = pooled_spectrogram(track, sr=_SR, max_columns=columns, hop_ms=hop_ms)
            peak = max(peak, float(s_db.max()))
            tracks.append((name, track, s_db))
        else:
            tracks.append((name, track, None))
    low = max(_FLOOR_DB, peak - _RANGE_DB)
    band_h, top, gap = 120, 8, 26
    body = []
    for i, (name, track, levels) in enumerate(tracks):
        y = top + i * (band_h + gap)
        body.append(f"<text x='{_LEFT - 8}' y='{y + band_h / 2}' text-anchor='end'>{name}</text>")
        if levels is None:
            body.append(f"<text x='{_LEFT + 10}' y='{y + band_h / 2}'>no audio</text>")
            continue
        scaled = np.clip((levels - low) / max(peak - low, 1e-6), 0, 1)
        rgb = _LUT[(scaled[::-1] * 255).astype(np.uint8)]  # low frequencies at the bottom
        data = base64.b64encode(_png(np.ascontiguousarray(rgb))).decode("ascii")
        width = axis.x(len(track) / _SR) - _LEFT
        body.append(f"<image x='{_LEFT}' y='{y}' width='{width:.1f}' height='{band_h}' preserveAspectRatio='none' "
                    f"href='data:image/png;base64,{data}'/>")
        if i == 1:
            body += _unheard_svg(table, axis, y, band_h)
        if i == 0:
            speech = segments[(segments["source"] == "server-vad") & (segments["kind"] == "speech")]
            spans = zip(speech["start_t"].to_numpy(float), speech["end_t"].to_numpy(float), strict=True)
            bars = [f"<rect x='{axis.x(start):.1f}' y='{y - 5}' width='{max(axis.x(end) - axis.x(start), 1):.1f}' "
                    f"height='4'><title>server VAD speech {start:.2f}–{end:.2f} s</title></rect>"
                    for start, end in spans]
            body.append(f"<g fill='#1f77b4'>{''.join(bars)}</g>")
    bottom = top + len(tracks) * (band_h + gap) - gap
    body += _marks(table, axis, top, bottom)
    body.append(axis.svg(bottom + 4, "time (s, log clock)"))
    return _svg(bottom + 40, body, "spectrograms") + (
        f"<p class='note'>Mel spectrograms (64 bands, 0–8 kHz), {low:.0f} to {peak:.0f} dB; long sessions are "
        "averaged down to the page's width. Blue bars: the server VAD's user speech; dashed lines as on the "
        "timeline; veiled in red dashes, agent audio received but not heard (cut at a barge-in). The agent's "
        "track lays its pieces end to end from their arrival, as a gapless player would.</p>")


# --- errors, meta, document ---------------------------------------------------------------------------------


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


def _document(heading: str, meta: dict[str, str], sections: list[str], *, banner: str | None) -> str:
    items = "".join(f"<dt>{html.escape(k.replace('_', ' '))}</dt><dd>{html.escape(v)}</dd>" for k, v in meta.items())
    warning = f"<p class='banner' role='note'><strong>Not real time.</strong> {html.escape(banner)}</p>" \
        if banner else ""
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<title>{html.escape(heading)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(heading)}</h1>\n<dl class='meta'>{items}</dl>\n{warning}\n"
            + "\n".join(sections) + "\n</body>\n</html>\n")
