"""The turns table: one row per interaction, with its texts, timings, latencies, barge-in and languages.

Start with :func:`turns` on a frame log, then :func:`latency_summary` for p50/p90 per latency.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from amigo_lab.analysis._frames import (
    NAN,
    PLAYBACK_FLUSHED,
    Extracted,
    Interaction,
    Utterance,
    carries_audio,
    describe_error,
    extract,
    num,
    opt_bool,
    opt_str,
    piece_has_text,
)
from amigo_lab.analysis.errors import AnalysisError
from amigo_lab.analysis.language_id import detect_language

__all__ = ["LATENCY_METRICS", "TURN_COLUMNS", "latency_summary", "turns"]

#: The latency columns of :func:`turns`, each in ms from the user's end of turn.
LATENCY_METRICS = (
    "latency_first_text_ms",
    "latency_first_audio_ms",
    "latency_first_answer_audio_ms",
    "latency_complete_ms",
)

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
    "audio_end_t": "float64",
    "transcript": "string",
    "reply_text": "string",
    "filler_text": "string",
    "n_fillers": "int64",
    "first_text_t": "float64",
    "first_answer_text_t": "float64",
    "first_audio_t": "float64",
    "first_answer_audio_t": "float64",
    "complete_t": "float64",
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

# A server VAD end placed on the log clock can sit a hair after the user-message-available it caused
# (chunk send times are taken before the bytes leave); allow this much when pairing them.
_PAIRING_SLACK_S = 0.05


def turns(frames: pd.DataFrame) -> pd.DataFrame:
    """One row per interaction of a frame log, plus one per user turn that got no interaction.

    Every time is in seconds on the log's monotonic clock ``t``; every latency is in ms (to the µs).

    The user's side (``user_kind``: ``text``, ``audio`` = push-to-talk, ``voice`` = server VAD, ``event`` =
    started by external events alone, ``greeting``, ``agent`` = unprompted, ``unknown`` = the log lacks it):

    - ``vad_start_t`` / ``vad_end_t``: the server VAD's speech start/end. The server reports them as
      ``vad_ms``, a position on the *user's audio clock* (ms of audio sent on this connection since VAD was
      switched on); the lab maps a position to ``t`` of the sent chunk that carried it plus the offset inside
      the chunk. For audio streamed in real time that is ``t`` of the first sent audio chunk + ``vad_ms / 1000``.
    - ``audio_end_t``: ``t`` of the sent ``client.new-audio-message`` with ``audio: null`` (push-to-talk end).
    - ``user_start_t``: the sent text, the first audio chunk (push-to-talk), or ``vad_start_t``.
    - ``user_end_t``, **the user's end of turn**, from which every latency counts: the sent text; else the
      earlier of ``vad_end_t`` and ``audio_end_t``; for the greeting the sent start/continue-conversation; for
      an interaction started by external events alone the last of those events.
    - ``transcript``: the server's ``user-message-available`` text (else what the client sent).

    The agent's side (fillers are messages other than the one ``interaction-complete`` names):

    - ``first_text_t``: the first ``server.new-message`` piece carrying text (a text piece, or audio with a
      transcript alignment), filler or answer. ``latency_first_text_ms`` = ``first_text_t - user_end_t``.
    - ``first_answer_text_t``: the same for the answer alone (fillers excluded).
    - ``first_audio_t``: the first piece carrying audio, filler or answer. ``latency_first_audio_ms`` =
      ``first_audio_t - user_end_t``: when the user first hears anything.
    - ``first_answer_audio_t``: the first audio piece of the answer, fillers excluded.
      ``latency_first_answer_audio_ms`` = ``first_answer_audio_t - user_end_t``.
    - ``complete_t``: ``server.interaction-complete``. ``latency_complete_ms`` = ``complete_t - user_end_t``.
    - ``reply_text`` (the complete's ``full_message``), ``filler_text``, ``n_fillers``, ``reply_audio_ms``
      (audio received for the answer), ``conversation_completed``.

    Barge-in: ``interrupted`` is true when a ``server.vad-speech-started`` arrived while the agent's reply
    was streaming (from its first piece to interaction-complete: the server then cuts the reply short), or
    the client flushed the answer's playback (``playback.flushed``, e.g. the user spoke over audio still
    playing after the interaction completed). ``barge_in_t`` is when. ``heard_ms`` is how much of the answer the
    user heard: the largest ``played_ms`` of the answer's ``playback.*`` entries when present
    (``heard_source`` ``"playback"``); else, if interrupted, the answer audio received before the barge-in,
    capped at the time since its first audio piece (``"frames"``); else all of its audio (``"frames"``).

    Also ``events`` (texts of the external events attached: those sent before the interaction began and
    after the previous one did), ``status`` (``complete``/``error``/``incomplete``/``unanswered``),
    ``error``, and ``user_language``/``agent_language`` from :func:`detect_language`.

    Next: :func:`latency_summary`, :func:`~amigo_lab.analysis.vad_timeline`, :func:`~amigo_lab.analysis.languages`.
    """
    extracted = extract(frames)
    pairs = _pair(extracted)
    event_owner = _attach_events(extracted)
    rows = [_interaction_row(extracted, inter, pairs.get(inter.index),
                             [e for e, owner in zip(extracted.events, event_owner) if owner == inter.index])
            for inter in extracted.interactions]
    paired = {id(u) for u in pairs.values()}
    unanswered = [u for u in extracted.utterances if id(u) not in paired]
    rows += [_unanswered_row(extracted, u) for u in unanswered]
    table = pd.DataFrame(rows, columns=[*TURN_COLUMNS, "_order_t"])
    # In time order of the user's end of turn; turns without one sit where the server began them.
    order = table.pop("_order_t").astype(float)
    order = table["user_end_t"].astype(float).fillna(order)
    table = table.iloc[np.argsort(order.to_numpy(float), kind="stable")].reset_index(drop=True)
    table["turn"] = np.arange(len(table), dtype="int64")
    for metric, column in zip(LATENCY_METRICS, ("first_text_t", "first_audio_t", "first_answer_audio_t",
                                                "complete_t")):
        # Rounded to the microsecond: differences of float seconds carry noise far below that.
        table[metric] = ((table[column].astype(float) - table["user_end_t"].astype(float)) * 1000.0).round(3)
    table["user_language"] = [_language(x) for x in table["transcript"]]
    table["agent_language"] = [_language(x) for x in table["reply_text"]]
    return table.astype(TURN_COLUMNS)


def _language(text: Any) -> str | None:
    return detect_language(text) if isinstance(text, str) and text.strip() else None


def _norm(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


def _pair(ex: Extracted) -> dict[int, Utterance]:
    """Which user turn each interaction answers.

    The server answers turns in order, each with one user-message-available. Each interaction takes the
    earliest unpaired turn that ended before its user-message-available: a sent text with the same text
    first; else one the server did not refuse (no stray server.error between its end and this interaction).
    """
    pairs: dict[int, Utterance] = {}
    free = sorted(ex.utterances, key=lambda u: u.end_t)
    for inter in ex.interactions:
        if inter.uma is None:
            continue
        at = float(inter.uma["t"]) + _PAIRING_SLACK_S
        candidates = [u for u in free if u.end_t <= at]
        if not candidates:
            continue
        said = _norm(opt_str(inter.uma["text"]))
        pick = next((u for u in candidates if u.kind == "text" and _norm(u.text) == said), None)
        if pick is None:
            accepted = [u for u in candidates if not any(u.end_t <= float(e["t"]) <= at for e in ex.stray_errors)]
            pick = (accepted or candidates)[0]
        pairs[inter.index] = pick
        free.remove(pick)
    return pairs


def _attach_events(ex: Extracted) -> list[int | None]:
    """The interaction each external event went to: the first one that began after it was sent."""
    owners: list[int | None] = []
    for event in ex.events:
        t = float(event["t"])
        owners.append(next((i.index for i in ex.interactions if i.anchor_t >= t), None))
    return owners


def _streaming(inter: Interaction) -> tuple[float, float]:
    """From the interaction's first agent piece to its end (complete, voiding error or last frame)."""
    messages = list(inter.messages.values())
    if not messages:
        return NAN, NAN
    return min(m.first_t for m in messages), inter.end_t


def _interaction_row(ex: Extracted, inter: Interaction, user: Utterance | None,
                     events: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TURN_COLUMNS)
    row.update(_user_fields(user))
    event_times = [float(e["t"]) for e in events]
    if user is None:
        if events:
            kind, start, end = "event", event_times[0], event_times[-1]
        elif inter.uma is None and inter.after_start:
            kind, start, end = "greeting", ex.start_t, ex.start_t
        else:
            kind, start, end = ("unknown" if inter.uma is not None else "agent"), NAN, NAN
        row.update(user_kind=kind, user_start_t=start, user_end_t=end)
    complete, answer = inter.complete, inter.answer
    messages = list(inter.messages.values())
    fillers = inter.fillers
    row.update(
        status="complete" if complete is not None else "error" if inter.error is not None else "incomplete",
        interaction_id=opt_str(complete["interaction_id"]) if complete is not None else None,
        answer_message_id=answer.message_id if answer is not None else None,
        user_message_id=opt_str(inter.uma["message_id"]) if inter.uma is not None else None,
        transcript=opt_str(inter.uma["text"]) if inter.uma is not None else row["transcript"],
        reply_text=(opt_str(complete["text"]) if complete is not None
                    else answer.text if answer is not None else None),
        filler_text=" / ".join(f.filler_text or f.text for f in fillers) or None,
        n_fillers=len(fillers),
        first_text_t=min((m.first_t_where(piece_has_text) for m in messages), default=NAN, key=_nan_last),
        first_answer_text_t=answer.first_t_where(piece_has_text) if answer is not None else NAN,
        first_audio_t=min((m.first_t_where(carries_audio) for m in messages), default=NAN, key=_nan_last),
        first_answer_audio_t=answer.first_t_where(carries_audio) if answer is not None else NAN,
        complete_t=float(complete["t"]) if complete is not None else NAN,
        reply_audio_ms=answer.audio_ms if answer is not None and answer.has_audio else NAN,
        events=tuple(opt_str(e["text"]) or "" for e in events),
        n_events=len(events),
        conversation_completed=opt_bool(complete["conversation_completed"]) if complete is not None else None,
        error=describe_error(inter.error) if inter.error is not None else None,
        _order_t=inter.anchor_t,
    )
    row.update(_barge_in(ex, inter, row))
    return row


def _nan_last(x: float) -> float:
    return math.inf if math.isnan(x) else x


def _user_fields(user: Utterance | None) -> dict[str, Any]:
    if user is None:
        return {}
    return {"user_kind": user.kind, "user_start_t": user.start_t, "user_end_t": user.end_t,
            "vad_start_t": user.vad_start_t, "vad_end_t": user.vad_end_t, "audio_end_t": user.audio_end_t,
            "transcript": user.text}


def _barge_in(ex: Extracted, inter: Interaction, row: dict[str, Any]) -> dict[str, Any]:
    answer = inter.answer
    begin, end = _streaming(inter)
    barge_in_t = next((m.t for m in ex.vad_marks if m.kind == "started" and begin <= m.t <= end), NAN)
    playback = ex.playback.get(answer.message_id, []) if answer is not None else []
    flushed = [float(p["t"]) for p in playback if p["type"] == PLAYBACK_FLUSHED]
    if math.isnan(barge_in_t) and flushed:
        barge_in_t = flushed[0]
    interrupted = not math.isnan(barge_in_t)
    played = [num(p["played_ms"]) for p in playback if not math.isnan(num(p["played_ms"]))]
    if played:
        heard, source = max(played), "playback"
    elif answer is None or not answer.has_audio:
        heard, source = NAN, None
    elif interrupted:
        before = sum(num(p["audio_ms"]) for p in answer.pieces if float(p["t"]) < barge_in_t
                     and not math.isnan(num(p["audio_ms"])))
        elapsed = max(barge_in_t - row["first_answer_audio_t"], 0.0) * 1000.0
        heard, source = min(before, elapsed), "frames"
    else:
        heard, source = answer.audio_ms, "frames"
    return {"interrupted": interrupted, "barge_in_t": barge_in_t, "heard_ms": heard, "heard_source": source}


def _unanswered_row(ex: Extracted, user: Utterance) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TURN_COLUMNS)
    row.update(_user_fields(user))
    later = [u.end_t for u in ex.utterances if u.end_t > user.end_t]
    until = min(later, default=math.inf)
    refusal = next((e for e in ex.stray_errors if user.end_t <= float(e["t"]) < until), None)
    row.update(status="error" if refusal is not None else "unanswered", n_fillers=0, events=(), n_events=0,
               error=describe_error(refusal) if refusal is not None else None,
               interrupted=False, _order_t=user.end_t)
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
