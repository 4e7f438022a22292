"""The turns table: one row per interaction, with its texts, timings, latencies, barge-in and languages.

The rows are the interactions of the protocol's fold (:mod:`amigo_lab.protocol.fold`), replayed from the log:
the same account the live session, its ``Reply.timings`` and the panel keep, so they cannot disagree. Start
with :func:`turns` on a frame log, then :func:`latency_summary` for p50/p90 per latency;
:func:`latency_definition` says what each latency column measures.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from amigo_lab.analysis._frames import NAN, REAL_TIME_PACE, measured_pace, replay
from amigo_lab.analysis.errors import AnalysisError
from amigo_lab.analysis.language_id import detect_language
from amigo_lab.protocol.fold import LATENCIES, Interaction, PendingInput
from amigo_lab.protocol.fold import latency_definition as _fold_definition

__all__ = ["LATENCY_METRICS", "NOT_REAL_TIME", "TURN_COLUMNS", "latency_definition", "latency_summary", "turns"]

#: The latency columns of :func:`turns`, in ms, named and defined by the fold's ``LATENCIES``: from the user's
#: end of speech (``latency_*``) and from the arrival of ``server.vad-speech-ended`` (``vad_latency_*``).
LATENCY_METRICS = tuple(LATENCIES)

#: Every column of :func:`turns` and its dtype. Times are seconds on the log clock ``t``; NaN = did not happen.
TURN_COLUMNS = {
    "turn": "int64",
    "status": "string",
    "interaction_id": "string",
    "answer_message_id": "string",
    "user_message_id": "string",
    "user_kind": "string",
    "user_start_t": "float64",
    "user_end_t": "float64",
    "vad_start_t": "float64",
    "vad_end_t": "float64",
    "vad_ended_t": "float64",
    "audio_end_t": "float64",
    "transcript": "string",
    "reply_text": "string",
    "filler_text": "string",
    "n_fillers": "int64",
    "filler_message_ids": "object",
    "first_text_t": "float64",
    "first_answer_text_t": "float64",
    "first_audio_t": "float64",
    "first_answer_audio_t": "float64",
    "first_heard_t": "float64",
    "complete_t": "float64",
    "real_time": "boolean",
    **dict.fromkeys(LATENCY_METRICS, "float64"),
    "reply_audio_ms": "float64",
    "interrupted": "boolean",
    "barge_in_t": "float64",
    "heard_ms": "float64",
    "heard_source": "string",
    "events": "object",
    "n_events": "int64",
    "conversation_completed": "boolean",
    "error": "string",
    "user_language": "string",
    "agent_language": "string",
}

#: The ``attrs["timing"]`` of a :func:`turns` table some of whose turns are not real time (``{n}``: how many).
NOT_REAL_TIME = ("{n} of {total} turns are not real time: the user's audio went faster than real time (or the "
                 "session was marked fast), so their latencies and times are compressed, not what a caller "
                 "would have experienced; see the real_time column")
_SPOKEN = ("audio", "voice")

# Fold stamp -> column.
_STAMP_COLUMNS = {
    "user_start": "user_start_t", "user_end": "user_end_t", "speech_start": "vad_start_t",
    "speech_end": "vad_end_t", "vad_end": "vad_ended_t", "audio_end": "audio_end_t",
    "first_text": "first_text_t", "first_answer_text": "first_answer_text_t", "first_audio": "first_audio_t",
    "first_answer_audio": "first_answer_audio_t", "first_heard": "first_heard_t", "complete": "complete_t",
    "barge_in": "barge_in_t",
}
# A voided interaction's status: an error or a refusal is an error; a close before completion left it incomplete;
# a turn the server skipped got no answer.
_VOIDED_STATUS = {"error": "error", "refused": "error", "closed": "incomplete", "skipped": "unanswered"}
_SOURCE_KIND = {"text": "text", "push-to-talk": "audio", "vad": "voice", "event": "event"}
# The table keeps its established name for push-to-talk input ("audio"); the fold's kind is "push-to-talk".
_KIND_LABEL = {"push-to-talk": "audio"}


def latency_definition(name: str) -> str:
    """What a latency column of :func:`turns` measures, in one line (e.g. ``"latency_first_audio_ms"``)."""
    try:
        return _fold_definition(name)
    except KeyError as exc:
        raise AnalysisError(str(exc.args[0])) from None


def turns(frames: pd.DataFrame, *, fast: bool | None = None) -> pd.DataFrame:
    """One row per interaction of a frame log, plus one per user input that got no interaction.

    The log is replayed through the protocol's interaction fold; the rules (what ends a user turn, which
    message is a filler, what an error voids, what a barge-in is) are stated once, in
    :mod:`amigo_lab.protocol.fold`. Every time is in seconds on the log's clock ``t``; every latency is in ms
    (to the µs) and named by the fold's ``LATENCIES`` (:func:`latency_definition` gives each definition).

    - ``user_kind``: ``greeting``, ``text``, ``audio`` (push-to-talk), ``voice`` (a segment of the server's VAD),
      ``event`` (started by external events alone) or ``agent`` (unprompted).
    - ``status``: ``complete``; ``error`` (voided by a server error, or a 400 that refused the input);
      ``incomplete`` (the log or the connection ended first); ``unanswered`` (no interaction at all).
    - ``user_start_t``, ``user_end_t`` (the user's actual end of speech, or the sent text; for the greeting the
      sent start-conversation; for events alone the last event), ``vad_start_t`` / ``vad_end_t`` (the server
      VAD's positions mapped onto ``t``), ``vad_ended_t`` (arrival of ``vad-speech-ended``), ``audio_end_t``.
    - ``first_text_t`` / ``first_audio_t`` (filler or answer), ``first_answer_text_t`` /
      ``first_answer_audio_t`` (the answer alone), ``first_heard_t`` (playback reports), ``complete_t``.
    - ``real_time``: False when this turn's timings are not real time. A spoken turn (``audio``, ``voice``) is
      judged by its own user audio: False when the chunks sent from its ``user_start_t`` to its ``user_end_t``
      went out faster than real time (less than 0.8 of it, as ``send_audio(realtime=False)`` or ``--fast``
      send them). Any other turn, and a spoken turn with too little audio to judge, takes the session's mark
      ``fast`` (False when ``fast`` is true). When any turn is not real time, ``attrs["timing"]`` says so in
      a sentence (else ``attrs["timing"]`` is ``"real time"``).
    - ``transcript`` (the server's ``user-message-available``, else what the client sent), ``reply_text``,
      ``filler_text``, ``n_fillers`` and ``filler_message_ids`` (a tuple, in order), ``reply_audio_ms``,
      ``interrupted``, ``barge_in_t``, ``heard_ms`` and ``heard_source`` (``playback`` or ``frames``),
      ``events`` / ``n_events`` (external events attached), ``conversation_completed``, ``error``,
      ``user_language`` / ``agent_language``.

    ``fast``: the session's own mark that its audio went faster than real time (``meta["fast"]``), which the
    rows do not carry. None (the default) takes it from ``frames.attrs["fast"]``, which ``session.frames`` and
    ``load_session(...).frames`` set; a table without it is judged from the log alone.

    Next: :func:`latency_summary`, :func:`~amigo_lab.analysis.vad_timeline`, :func:`~amigo_lab.analysis.languages`.
    """
    if fast is not None and not isinstance(fast, (bool, np.bool_)):
        raise AnalysisError(f"fast must be True, False or None (the session's meta['fast']), got {fast!r}")
    if fast is None:
        fast = bool(getattr(frames, "attrs", {}).get("fast", False))
    replayed = replay(frames)
    rows = [_interaction_row(r) for r in replayed.interactions]
    rows += [_unanswered_row(i) for i in replayed.unanswered]
    table = pd.DataFrame(rows, columns=[*TURN_COLUMNS, "_order_t"])
    # In time order of the user's end of turn; turns without one sit where the interaction began.
    order = table.pop("_order_t").astype(float)
    order = table["user_end_t"].astype(float).fillna(order)
    table = table.iloc[np.argsort(order.to_numpy(float), kind="stable")].reset_index(drop=True)
    table["turn"] = np.arange(len(table), dtype="int64")
    table["user_language"] = [_language(x) for x in table["transcript"]]
    table["agent_language"] = [_language(x) for x in table["reply_text"]]
    table["real_time"] = _real_time(table, measured_pace(replayed.scan), fast=bool(fast))
    table = table.astype(TURN_COLUMNS)
    late = int((~table["real_time"]).sum())
    table.attrs["timing"] = NOT_REAL_TIME.format(n=late, total=len(table)) if late else "real time"
    return table


def _real_time(table: pd.DataFrame, pace: Any, *, fast: bool) -> list[bool]:
    """Per turn: its own user audio's pace when it has enough to judge, else the session's mark."""
    out = []
    for kind, start, end in zip(table["user_kind"], table["user_start_t"].astype(float),
                                table["user_end_t"].astype(float), strict=True):
        if kind in _SPOKEN and not math.isnan(start) and not math.isnan(end) and end > start:
            measured = pace(start, end)
            if measured is not None:
                out.append(bool(measured >= REAL_TIME_PACE))
                continue
        out.append(not fast)
    return out


def _language(text: Any) -> str | None:
    return detect_language(text) if isinstance(text, str) and text.strip() else None


def _nan(value: float | None) -> float:
    return NAN if value is None else float(value)


def _interaction_row(record: Interaction) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TURN_COLUMNS)
    for stamp, column in _STAMP_COLUMNS.items():
        row[column] = _nan(record.stamps[stamp])
    for name in LATENCY_METRICS:
        row[name] = _nan(record.latencies[name])
    completed = record.status == "completed"
    voided = record.status == "voided"
    row.update(
        status="complete" if completed else _VOIDED_STATUS.get(_reason(record), "error") if voided else "incomplete",
        interaction_id=record.interaction_id,
        answer_message_id=record.answer_message_id,
        user_message_id=record.user_message_id,
        user_kind=_KIND_LABEL.get(record.kind, record.kind),
        transcript=record.user_text,
        reply_text=record.reply_text,
        filler_text=record.filler_text,
        n_fillers=len(record.filler_message_ids),
        filler_message_ids=tuple(record.filler_message_ids),
        reply_audio_ms=_nan(record.reply_audio_ms),
        interrupted=record.interrupted,
        heard_ms=_nan(record.heard_ms),
        heard_source=record.heard_source,
        events=record.event_texts,
        n_events=len(record.event_texts),
        conversation_completed=record.conversation_completed if completed else None,
        error=record.error,
        _order_t=record.started_t,
    )
    return row


def _reason(record: Interaction) -> str:
    """Why a voided interaction ended, from its description (the fold states it there)."""
    error = record.error or ""
    if error.startswith("the connection closed"):
        return "closed"
    if error.startswith("the server answered a later turn"):
        return "skipped"
    return "refused" if record.http_error_code == 400 else "error"


def _unanswered_row(pending: PendingInput) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TURN_COLUMNS)
    for column in _STAMP_COLUMNS.values():
        row[column] = NAN
    for name in LATENCY_METRICS:
        row[name] = NAN
    row.update(status="unanswered", user_kind=_SOURCE_KIND.get(pending.source, pending.source),
               user_start_t=_nan(pending.start_t), user_end_t=_nan(pending.end_t), transcript=pending.text,
               n_fillers=0, filler_message_ids=(), events=(), n_events=0, interrupted=False, reply_audio_ms=NAN,
               heard_ms=NAN, _order_t=_nan(pending.end_t))
    return row


def latency_summary(turns_df: pd.DataFrame, *, metrics: tuple[str, ...] = LATENCY_METRICS,
                    by: str | None = None, include_greeting: bool = False) -> pd.DataFrame:
    """p50, p90, mean and count of each latency of a :func:`turns` table (NaN latencies left out).

    Columns: [``by``,] ``metric``, ``count``, ``mean``, ``p50``, ``p90`` (ms; p90 by linear interpolation).
    The greeting is left out unless ``include_greeting``: its latency counts from start-conversation and
    includes creating the conversation. ``by`` names a column to group by, e.g. ``"user_language"``.
    """
    _require_columns(turns_df, [*metrics, "user_kind", *([by] if by else [])])
    table = turns_df if include_greeting else turns_df[turns_df["user_kind"] != "greeting"]
    groups = table.groupby(by, sort=True, dropna=False) if by else [(None, table)]
    out = []
    for key, part in groups:
        for metric in metrics:
            values = part[metric].astype(float).dropna().to_numpy()
            stats = {"metric": metric, "count": len(values),
                     "mean": float(values.mean()) if len(values) else NAN,
                     "p50": float(np.percentile(values, 50)) if len(values) else NAN,
                     "p90": float(np.percentile(values, 90)) if len(values) else NAN}
            out.append({by: key, **stats} if by else stats)
    columns = [*([by] if by else []), "metric", "count", "mean", "p50", "p90"]
    return pd.DataFrame(out, columns=columns).astype({"metric": "string", "count": "int64", "mean": "float64",
                                                      "p50": "float64", "p90": "float64"})


def _require_columns(table: Any, columns: list[str]) -> None:
    if not isinstance(table, pd.DataFrame):
        raise AnalysisError(f"expected the DataFrame from turns(frames), got {type(table).__name__}")
    absent = [c for c in columns if c not in table.columns]
    if absent:
        raise AnalysisError(f"the table lacks columns {absent}; pass the DataFrame from turns(frames)")
