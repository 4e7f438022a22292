"""Which language each message is in, where the conversation switches, and latency per language.

Language is never a wire field: the lab detects it per message, among the six languages the emulator's
services speak (ISO 639-3 ``eng spa fra deu ita por``, protocol.md §7). Start with :func:`detect_language`
on a text, :func:`languages` on a frame log, then :func:`language_figure` to see the switches and
:func:`latency_by_language` to compare speeds.
"""

from __future__ import annotations

import math
from html import escape

import pandas as pd
import plotly.graph_objects as go

from amigo_lab.analysis._frames import check_frames
from amigo_lab.analysis.language_id import UNDETERMINED, detect_language
from amigo_lab.analysis.turns import LATENCY_METRICS, latency_summary, turns
from amigo_lab.protocol.constants import LANGUAGES

__all__ = ["UNDETERMINED", "detect_language", "language_figure", "languages", "latency_by_language"]


def languages(frames: pd.DataFrame, *, turns_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every user and agent message over time, with its detected language and whether it switched.

    One row per message (fillers left out): ``t`` (user: end of turn; agent: the answer's first text, else
    its first audio, else completion; all on the log clock), ``side`` (``"user"``/``"agent"``), ``turn``,
    ``message_id``, ``text``, ``language`` (see :func:`detect_language`) and ``switched``: true when the
    language differs from that side's previous determined language (``"und"`` never switches).
    ``turns_table``: the :func:`~amigo_lab.analysis.turns` table of the same log, when the caller already has it.
    Next: :func:`language_figure`.
    """
    table = turns(check_frames(frames)) if turns_table is None else turns_table
    out = []
    for row in table.itertuples(index=False):
        user_t = row.user_end_t if not math.isnan(row.user_end_t) else row.user_start_t
        if isinstance(row.transcript, str) and row.transcript.strip():
            out.append((user_t, "user", row.turn, row.user_message_id, row.transcript, row.user_language))
        if isinstance(row.reply_text, str) and row.reply_text.strip():
            agent_t = next((x for x in (row.first_answer_text_t, row.first_answer_audio_t, row.complete_t)
                            if not math.isnan(x)), math.nan)
            out.append((agent_t, "agent", row.turn, row.answer_message_id, row.reply_text, row.agent_language))
    result = pd.DataFrame(out, columns=["t", "side", "turn", "message_id", "text", "language"])
    result = result.sort_values(["turn", "side"], ascending=[True, False], kind="stable").reset_index(drop=True)
    result["switched"] = _switched(result)
    return result.astype({"t": "float64", "side": "string", "turn": "int64", "message_id": "string",
                          "text": "string", "language": "string", "switched": "boolean"})


def _switched(table: pd.DataFrame) -> list[bool]:
    last: dict[str, str] = {}
    flags = []
    for side, language in zip(table["side"], table["language"], strict=True):
        flags.append(language != UNDETERMINED and side in last and last[side] != language)
        if language != UNDETERMINED:
            last[side] = language
    return flags


_SIDE_COLOURS = {"user": "#1f77b4", "agent": "#ff7f0e"}


def language_figure(frames: pd.DataFrame, *, title: str = "Languages over time") -> go.Figure:
    """A timeline of each side's language (one lane per language), with switch points marked.

    Built on :func:`languages`; hover shows the text. Returns the figure; call ``.show()`` yourself.
    """
    table = languages(frames)
    figure = go.Figure()
    for side, part in table.groupby("side", sort=False):
        figure.add_trace(go.Scatter(
            x=part["t"].to_numpy(float), y=part["language"].astype(object), mode="lines+markers", name=side,
            line={"shape": "hv", "color": _SIDE_COLOURS.get(side)}, marker={"size": 8},
            customdata=[(turn, escape(text)) for turn, text in zip(part["turn"], part["text"], strict=True)],
            hovertemplate=f"{side} turn %{{customdata[0]}}<br>%{{y}} at %{{x:.2f}} s<br>%{{customdata[1]}}"
                          "<extra></extra>"))
    switches = table[table["switched"].fillna(False).astype(bool)]
    if len(switches):
        figure.add_trace(go.Scatter(
            x=switches["t"].to_numpy(float), y=switches["language"].astype(object), mode="markers",
            name="switch", marker={"symbol": "star", "size": 16, "color": "#d62728"},
            customdata=[(side, escape(text)) for side, text in zip(switches["side"], switches["text"], strict=True)],
            hovertemplate="%{customdata[0]} switched to %{y} at %{x:.2f} s<br>%{customdata[1]}<extra></extra>"))
    present = [lang for lang in (*LANGUAGES, UNDETERMINED) if lang in set(table["language"].dropna())]
    figure.update_layout(title=title, xaxis_title="time (s, log clock)", yaxis_title="language",
                         yaxis={"categoryorder": "array", "categoryarray": present}, height=320,
                         margin={"l": 60, "r": 20, "t": 50, "b": 40})
    return figure


def latency_by_language(turns_df: pd.DataFrame, *, metrics: tuple[str, ...] = LATENCY_METRICS) -> pd.DataFrame:
    """p50/p90/mean/count of each latency per user language (``user_language`` of :func:`turns`).

    Same columns as :func:`latency_summary` with a leading ``user_language`` column. Next: compare the rows.
    """
    return latency_summary(turns_df, metrics=metrics, by="user_language")
