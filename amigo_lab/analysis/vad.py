"""Who spoke when: user speech (server VAD, a reference VAD, the client's audio), agent speech, and events.

:func:`vad_segments` gives the data, :func:`vad_timeline` draws it on one time axis (seconds, log clock),
and :func:`reference_vad_segments` runs a local VAD over recorded user audio to check the server's.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from amigo_lab.analysis._frames import (
    CONNECTION_CLOSED,
    CONNECTION_RECONNECTING,
    LOCAL,
    PLAYBACK_FLUSHED,
    RECEIVED,
    SENT,
    Extracted,
    carries_audio,
    describe_error,
    extract,
    is_frame,
    num,
    opt_str,
    replay,
)
from amigo_lab.analysis.errors import AnalysisError
from amigo_lab.analysis.turns import turns
from amigo_lab.protocol import NewAudioMessage, ServerError, describe_close
from amigo_lab.protocol.constants import (
    SAMPLE_RATE,
    VAD_END_SILENCE_MS,
    VAD_MIN_SPEECH_MS,
)

__all__ = ["SEGMENT_COLUMNS", "reference_vad_segments", "vad_segments", "vad_timeline"]

#: Columns of :func:`vad_segments`. ``start_t == end_t`` for point events.
SEGMENT_COLUMNS = {
    "start_t": "float64",
    "end_t": "float64",
    "source": "string",
    "kind": "string",
    "message_id": "string",
    "label": "string",
    "detail": "string",
}

# Sent audio chunks closer than this belong to one stretch of client audio.
_CLIENT_AUDIO_GAP_S = 0.25
_LABEL_CHARS = 60


def _short(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def vad_segments(frames: pd.DataFrame, *, reference_vad: pd.DataFrame | None = None,
                 turns_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Speech segments and events of a frame log, one row each, on the log clock (seconds).

    ``source`` / ``kind``:

    - ``server-vad`` / ``speech``: user speech as the server's VAD reported it (``vad_ms`` placed on ``t``
      as :func:`~amigo_lab.analysis.turns` explains); ``reset``: speech the server discarded as too short.
    - ``client`` / ``audio``: stretches of audio the client sent; ``text``: a sent user text (a point).
    - ``agent`` / ``answer`` or ``filler``: one agent message, from its first piece to the estimated end of
      its audio (first piece + audio duration, or its last piece for text).
    - ``event`` / ``barge-in``, ``reset``, ``external-event``, ``audio-end``, ``playback-flushed``,
      ``error``, ``close``, ``reconnecting``: points.
    - ``reference`` / ``speech``: rows of ``reference_vad`` (from :func:`reference_vad_segments`), if given.

    ``turns_table``: the :func:`~amigo_lab.analysis.turns` table of the same log, when the caller already has it.

    Also ``message_id``, ``label`` (short text) and ``detail`` (hover text, HTML with texts escaped).
    Next: :func:`vad_timeline`.
    """
    extracted = extract(frames)
    table = turns(frames) if turns_table is None else turns_table
    rows = [*_server_vad(extracted), *_client(extracted), *_agent(extracted, _fillers(table, frames)),
            *_events(extracted, table)]
    if reference_vad is not None:
        rows += _reference(reference_vad)
    table = pd.DataFrame(rows, columns=list(SEGMENT_COLUMNS))
    table = table.sort_values(["start_t", "end_t"], kind="stable").reset_index(drop=True)
    return table.astype(SEGMENT_COLUMNS)


def _fillers(table: pd.DataFrame, frames: pd.DataFrame) -> set[str]:
    """The filler message ids of the turns table: which message is a filler is the fold's call (the one
    account of the conversation), not the drawing's."""
    if not isinstance(table, pd.DataFrame) or "interrupted" not in table.columns:
        raise AnalysisError("turns_table must be the DataFrame from turns(frames) of the same log")
    if "filler_message_ids" not in table.columns:
        # A table kept from before the column existed: ask the fold again.
        return {m for record in replay(frames).interactions for m in record.filler_message_ids}
    ids: set[str] = set()
    for value in table["filler_message_ids"]:
        # A tuple, or a list / array once the table went through Parquet; missing on rows without one.
        if isinstance(value, (tuple, list, np.ndarray)):
            ids.update(str(m) for m in value)
    return ids


def _row(start: float, end: float, source: str, kind: str, *, message_id: str | None = None,
         label: str | None = None, detail: str | None = None) -> dict[str, Any]:
    return {"start_t": start, "end_t": end, "source": source, "kind": kind, "message_id": message_id,
            "label": label, "detail": detail}


def _server_vad(ex: Extracted) -> list[dict[str, Any]]:
    out, started = [], None
    for mark in ex.vad_marks:
        if mark.kind == "started":
            started = mark
        elif started is not None:
            kind = "speech" if mark.kind == "ended" else "reset"
            detail = (f"server VAD {kind}: {started.audio_t:.3f}–{mark.audio_t:.3f} s "
                      f"({(mark.audio_t - started.audio_t) * 1000:.0f} ms); reported at {mark.t:.3f} s")
            out.append(_row(started.audio_t, mark.audio_t, "server-vad", kind, detail=detail))
            started = None
    return out


def _client(ex: Extracted) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    starts, ms = ex.chunk_t, ex.chunk_ms
    if len(starts):
        ends = starts + ms / 1000.0
        # A chunk opens a new stretch when it was sent more than the gap after everything sent before it ended
        # (the running maximum of the ends: a new stretch's own end is always beyond the earlier ones).
        reach = np.maximum.accumulate(ends)
        first = np.flatnonzero(np.concatenate([[True], starts[1:] - reach[:-1] > _CLIENT_AUDIO_GAP_S]))
        last = np.concatenate([first[1:], [len(starts)]]) - 1
        for a, b, n in zip(starts[first].tolist(), reach[last].tolist(), (last - first + 1).tolist(), strict=True):
            out.append(_row(a, b, "client", "audio", detail=f"client audio {a:.3f}–{b:.3f} s, {n} chunks"))
    for rec in ex.texts:
        t, text = float(rec["t"]), opt_str(rec["text"])
        out.append(_row(t, t, "client", "text", label=_short(text),
                        detail=f"user text at {t:.3f} s: {escape(text or '')}"))
    return out


def _agent(ex: Extracted, fillers: set[str]) -> list[dict[str, Any]]:
    out = []
    for message in ex.messages():
        is_filler = message.message_id in fillers
        kind = "filler" if is_filler else "answer"
        text = (message.filler_text or message.text) if is_filler else message.text
        detail = (f"agent {kind} {message.message_id}: {message.first_t:.3f}–{message.end_t:.3f} s, "
                  f"{len(message.pieces)} pieces, {message.audio_ms:.0f} ms audio<br>{escape(_short(text))}")
        out.append(_row(message.first_t, message.end_t, "agent", kind, message_id=message.message_id,
                        label=_short(text), detail=detail))
    return out


def _events(ex: Extracted, table: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in table[table["interrupted"].fillna(False).astype(bool)].itertuples(index=False):
        heard = "" if math.isnan(row.heard_ms) else f"; heard {row.heard_ms:.0f} ms ({row.heard_source})"
        out.append(_row(row.barge_in_t, row.barge_in_t, "event", "barge-in", message_id=row.answer_message_id,
                        label="barge-in", detail=f"barge-in at {row.barge_in_t:.3f} s on turn {row.turn}{heard}"))
    for mark in ex.vad_marks:
        if mark.kind == "reset":
            out.append(_row(mark.t, mark.t, "event", "reset", label="reset",
                            detail=f"server VAD reset-zero at {mark.t:.3f} s: speech too short, discarded"))
    event_seqs = {int(e["seq"]) for e in ex.events}
    for rec in ex.rows:
        t = float(rec["t"])
        if int(rec["seq"]) in event_seqs:
            out.append(_row(t, t, "event", "external-event", label=_short(opt_str(rec["text"])),
                            detail=f"external event at {t:.3f} s: {escape(opt_str(rec['text']) or '')}"))
        elif is_frame(rec, SENT, NewAudioMessage.TYPE) and not carries_audio(rec):
            out.append(_row(t, t, "event", "audio-end", label="audio end",
                            detail=f"client ended its audio (audio: null) at {t:.3f} s"))
        elif is_frame(rec, LOCAL, PLAYBACK_FLUSHED):
            out.append(_row(t, t, "event", "playback-flushed", message_id=opt_str(rec["message_id"]),
                            label="flushed", detail=f"playback flushed at {t:.3f} s after "
                                                    f"{num(rec['played_ms']):.0f} ms played"))
        elif is_frame(rec, RECEIVED, ServerError.TYPE):
            out.append(_row(t, t, "event", "error", label=describe_error(rec),
                            detail=f"server.error at {t:.3f} s: {escape(describe_error(rec))}"))
        elif is_frame(rec, LOCAL, CONNECTION_CLOSED):
            code = num(rec["close_code"])
            said = describe_close(None if math.isnan(code) else int(code), opt_str(rec["close_reason"]) or "")
            out.append(_row(t, t, "event", "close", label="closed", detail=f"at {t:.3f} s {escape(said)}"))
        elif is_frame(rec, LOCAL, CONNECTION_RECONNECTING):
            out.append(_row(t, t, "event", "reconnecting", label="reconnecting",
                            detail=f"reconnecting at {t:.3f} s"))
    return out


def _reference(reference: pd.DataFrame) -> list[dict[str, Any]]:
    if not isinstance(reference, pd.DataFrame) or not {"start_t", "end_t"} <= set(reference.columns):
        raise AnalysisError("reference_vad must be the DataFrame from reference_vad_segments(audio, sr=...)")
    spans = zip(reference["start_t"].astype(float), reference["end_t"].astype(float), strict=True)
    return [_row(s, e, "reference", "speech",
                 detail=f"reference VAD speech {s:.3f}–{e:.3f} s ({(e - s) * 1000:.0f} ms)") for s, e in spans]


# --- the figure ---------------------------------------------------------------------------------------

_LANES = {
    "event": "events",
    "agent": "agent",
    "server-vad": "user · server VAD",
    "reference": "user · reference VAD",
    "client": "user · client",
}
_COLOURS = {
    ("server-vad", "speech"): "#1f77b4", ("server-vad", "reset"): "#aec7e8",
    ("reference", "speech"): "#2ca02c", ("client", "audio"): "#b0b0b0", ("client", "text"): "#17becf",
    ("agent", "answer"): "#ff7f0e", ("agent", "filler"): "#9467bd",
    ("event", "barge-in"): "#d62728", ("event", "reset"): "#ff9896", ("event", "external-event"): "#2ca02c",
    ("event", "audio-end"): "#7f7f7f", ("event", "playback-flushed"): "#e377c2", ("event", "error"): "#000000",
    ("event", "close"): "#8c564b", ("event", "reconnecting"): "#bcbd22",
}
_SYMBOLS = {"barge-in": "star", "reset": "x", "external-event": "diamond", "audio-end": "triangle-left",
            "playback-flushed": "square", "error": "x-thin-open", "close": "line-ns-open",
            "reconnecting": "circle-open", "text": "circle"}
# Events drawn also as a vertical line across every lane.
_RULED = ("barge-in", "reset", "close")


def vad_timeline(frames: pd.DataFrame, *, reference_vad: pd.DataFrame | None = None,
                 title: str = "Who spoke when") -> go.Figure:
    """User speech, agent speech (fillers in their own colour) and events on one time axis (s, log clock).

    One lane per source of :func:`vad_segments`; hovering a bar or marker shows the frame details.
    Barge-ins, resets and closes also get a vertical line. ``reference_vad``: segments from
    :func:`reference_vad_segments` on the recorded user audio, drawn in their own lane. Returns the figure.
    """
    table = vad_segments(frames, reference_vad=reference_vad)
    figure = go.Figure()
    spans = table[table["end_t"] > table["start_t"]]
    points = table[~(table["end_t"] > table["start_t"])]
    for (source, kind), part in spans.groupby(["source", "kind"], sort=False):
        figure.add_trace(go.Bar(
            base=part["start_t"].to_numpy(float), x=(part["end_t"] - part["start_t"]).to_numpy(float),
            y=[_LANES[source]] * len(part), orientation="h", name=f"{source} {kind}", width=0.6,
            marker={"color": _COLOURS.get((source, kind), "#999999")},
            hovertext=part["detail"].fillna("").astype(object).to_numpy(), hoverinfo="text"))
    for (source, kind), part in points.groupby(["source", "kind"], sort=False):
        figure.add_trace(go.Scatter(
            x=part["start_t"].to_numpy(float), y=[_LANES[source]] * len(part), mode="markers",
            name=f"{source} {kind}", marker={"size": 12, "symbol": _SYMBOLS.get(kind, "circle"),
                                             "color": _COLOURS.get((source, kind), "#999999")},
            hovertext=part["detail"].fillna("").astype(object).to_numpy(), hoverinfo="text"))
        if kind in _RULED:
            for t in part["start_t"].to_numpy(float):
                figure.add_vline(x=t, line={"color": _COLOURS[(source, kind)], "width": 1, "dash": "dot"})
    lanes = [lane for source, lane in _LANES.items() if source in set(table["source"])]
    figure.update_layout(
        title=title, barmode="overlay", height=140 + 45 * max(len(lanes), 1),
        xaxis={"title": "time (s, log clock)", "rangemode": "tozero"},
        yaxis={"categoryorder": "array", "categoryarray": lanes[::-1]},
        margin={"l": 140, "r": 20, "t": 50, "b": 40}, legend={"orientation": "h", "y": -0.25},
        hoverlabel={"align": "left"})
    return figure


# --- a reference VAD over recorded audio --------------------------------------------------------------


def reference_vad_segments(audio: np.ndarray, *, sr: int, aggressiveness: int = 2,
                           t0: float = 0.0) -> pd.DataFrame:
    """Speech segments of ``audio`` by the lab's local VAD (webrtcvad), as a DataFrame.

    ``audio``: float samples in [-1, 1] at ``sr`` Hz (resampled to 16 kHz for the detector), e.g.
    ``session.audio_track("sent", sr=16000)``, whose sample 0 is ``t = 0`` of the log; ``t0`` shifts other
    audio onto the log clock. ``aggressiveness`` 0..3: higher rejects more non-speech. Speech ends after
    500 ms of silence and needs 200 ms of voice (protocol.md §6), so segments compare with the server's;
    each ends where its silence began.
    Columns: ``start_t``, ``end_t`` (seconds), ``source`` (``"reference"``), ``kind`` (``"speech"``).
    Next: ``vad_timeline(frames, reference_vad=...)``.
    """
    from amigo_lab.analysis._audio import float_audio
    from amigo_lab.audio import resample
    from amigo_lab.speech import VoiceActivityDetector

    samples = float_audio(audio, sr=sr)
    if sr != SAMPLE_RATE:
        samples = resample(samples, sr_in=sr, sr_out=SAMPLE_RATE)
    detector = VoiceActivityDetector(aggressiveness=aggressiveness, end_silence_ms=VAD_END_SILENCE_MS,
                                     min_speech_ms=VAD_MIN_SPEECH_MS)
    # Fed a few seconds at a time (the detector's events do not depend on how the stream is cut): an hour's
    # track is never held as PCM16 and float copies at once, and each block's conversion stays in cache.
    events = [event for i in range(0, len(samples), _VAD_BLOCK)
              for event in detector.feed(_pcm16(samples[i: i + _VAD_BLOCK]))]
    rows, start = [], None
    for event in events:
        if event.kind == "speech-started":
            start = event.audio_ms
        elif event.kind == "speech-ended" and start is not None:
            rows.append((t0 + start / 1000.0, t0 + event.audio_ms / 1000.0))
            start = None
        elif event.kind == "speech-reset-zero":
            start = None
    if start is not None:  # speech still going at the end of the audio
        rows.append((t0 + start / 1000.0, t0 + len(samples) / SAMPLE_RATE))
    table = pd.DataFrame(rows, columns=["start_t", "end_t"], dtype="float64")
    table["source"], table["kind"] = "reference", "speech"
    return table.astype({"source": "string", "kind": "string"})


_VAD_BLOCK = 10 * SAMPLE_RATE  # samples fed to the reference VAD at once


def _pcm16(samples: np.ndarray) -> bytes:
    """Float samples as PCM16 bytes, the same bytes ``audio.float_to_pcm16`` gives, in the samples' own dtype.

    Scaling by 32768 (a power of two) and rounding are exact in float32, so a float32 track needs no float64
    copy: an hour of audio converts in about a second instead of several.
    """
    scaled = np.rint(np.clip(samples, np.float32(-1.0), np.float32(1.0)) * np.float32(32768.0))
    np.minimum(scaled, np.float32(32767.0), out=scaled)
    return scaled.astype("<i2").tobytes()
