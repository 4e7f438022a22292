"""Mel spectrograms of the user and agent tracks, and an audio-derived cross-check of latency.

:func:`spectrogram` computes one (plain numpy, no JIT compilation on first use), :func:`pooled_spectrogram`
one averaged down for a long track, :func:`spectrogram_figure` stacks the user and agent tracks of a session on
its time axis with VAD and turn events overlaid, and :func:`silence_gap_latency` measures, from the audio alone,
the silence between the user's speech and the agent's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from amigo_lab.analysis._audio import check_sr, float_audio
from amigo_lab.analysis._frames import REAL_TIME_PACE as _REAL_TIME_PACE
from amigo_lab.analysis._frames import check_frames, upload_pace
from amigo_lab.analysis.errors import AnalysisError
from amigo_lab.analysis.turns import turns
from amigo_lab.analysis.vad import vad_segments

__all__ = ["mel_filters", "mel_frequencies", "pooled_spectrogram", "silence_gap_latency", "spectrogram",
           "spectrogram_figure", "upload_pace"]

# Spectrogram values below this (dB re full scale) are floor; an all-silent track shows as this.
_FLOOR_DB = -100.0
_DISPLAY_RANGE_DB = 80.0


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    # The Slaney mel scale (librosa's default): linear below 1 kHz, logarithmic above.
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    above = hz >= _MIN_LOG_HZ
    return np.where(above, _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-12) / _MIN_LOG_HZ) / _LOGSTEP, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL)), _F_SP * mel)


_F_SP, _MIN_LOG_HZ = 200.0 / 3, 1000.0
_MIN_LOG_MEL, _LOGSTEP = _MIN_LOG_HZ / _F_SP, math.log(6.4) / 27.0


def mel_frequencies(n_mels: int, *, fmin: float = 0.0, fmax: float) -> np.ndarray:
    """``n_mels`` frequencies (Hz) evenly spaced on the Slaney mel scale from ``fmin`` to ``fmax``."""
    return _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels))


def mel_filters(*, sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters, area-normalised (Slaney), shape ``(n_mels, n_fft // 2 + 1)``.

    The same weights as ``librosa.filters.mel`` with its defaults, in plain numpy (no JIT compilation on
    first use). Next: ``filters @ power_spectrum``.
    """
    fmax = sr / 2.0 if fmax is None else fmax
    edges = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax)
    bins = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2: n_mels + 2] - edges[:n_mels]))[:, None]
    return weights.astype(np.float32)


# Frames transformed at once: bounds the memory of a long track (about 8 MB per block at n_fft 512).
_BLOCK_FRAMES = 4096


def _mel_power(samples: np.ndarray, *, sr: int, n_fft: int, hop: int, filters: np.ndarray,
               pool: int = 1) -> np.ndarray:
    """Mel power of centred, Hann-windowed frames (zero padding at the ends), averaged over ``pool`` frames."""
    samples = samples.astype(np.float32, copy=False)
    half = n_fft // 2
    # Frame k is centred on sample k * hop: as if the track were padded with n_fft // 2 zeros at each end,
    # but only the blocks at the ends are padded, so a long track is never copied whole.
    n = (len(samples) + 2 * half - n_fft) // hop + 1
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    step = max(pool, _BLOCK_FRAMES // pool * pool)
    out = []
    for start in range(0, n, step):
        count = min(step, n - start)
        first, last = start * hop - half, (start + count - 1) * hop - half + n_fft
        piece = samples[max(first, 0): min(last, len(samples))]
        if first < 0 or last > len(samples):
            piece = np.pad(piece, (max(-first, 0), max(last - len(samples), 0)))
        block = np.lib.stride_tricks.sliding_window_view(piece, n_fft)[::hop] * window
        power = np.abs(np.fft.rfft(block, axis=1)) ** 2
        mel = (power.astype(np.float32) @ filters.T).T
        if pool > 1:
            whole = mel.shape[1] // pool * pool
            pooled = mel[:, :whole].reshape(mel.shape[0], -1, pool).mean(axis=2)
            if whole < mel.shape[1]:
                pooled = np.concatenate([pooled, mel[:, whole:].mean(axis=1, keepdims=True)], axis=1)
            mel = pooled
        out.append(mel)
    return np.concatenate(out, axis=1) if out else np.zeros((filters.shape[0], 0), dtype=np.float32)


def _to_db(power: np.ndarray) -> np.ndarray:
    return (10.0 * np.log10(np.maximum(power, 10 ** (_FLOOR_DB / 10)))).astype(np.float32)


def spectrogram(audio: np.ndarray, *, sr: int, t0: float = 0.0, n_mels: int = 64, hop_ms: float = 10.0,
                n_fft: int | None = None, fmin: float = 0.0,
                fmax: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mel power spectrogram of ``audio`` in dB: ``(S_db, times, mel_freqs)``.

    ``S_db`` has shape ``(n_mels, n_frames)``: mel power in dB against a fixed reference of 1.0 (floored at
    -100 dB), so tracks and sessions compare; the values are those of ``librosa.feature.melspectrogram`` and
    ``power_to_db(ref=1.0)``, computed in plain numpy. ``times`` (seconds) are frame centres shifted by ``t0``,
    the time of sample 0 (0 for ``session.audio_track(...)``, which starts at the log's ``t = 0``).
    ``mel_freqs`` (Hz) are the centre frequencies of the mel bands. ``hop_ms`` sets the frame step; ``n_fft``
    defaults to the power of two at or above 25 ms of samples. Next: :func:`spectrogram_figure`.
    """
    samples = float_audio(audio, sr=sr)
    if n_mels < 1 or hop_ms <= 0:
        raise AnalysisError(f"n_mels must be >= 1 and hop_ms > 0, got n_mels={n_mels}, hop_ms={hop_ms}")
    hop = max(1, int(round(sr * hop_ms / 1000.0)))
    n_fft = n_fft or int(2 ** math.ceil(math.log2(max(sr * 0.025, 2))))
    fmax = sr / 2.0 if fmax is None else fmax
    mel_freqs = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax)[1:-1]
    if len(samples) == 0:
        return np.zeros((n_mels, 0), dtype=np.float32), np.zeros(0), mel_freqs
    filters = mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    s_db = _to_db(_mel_power(samples, sr=sr, n_fft=n_fft, hop=hop, filters=filters))
    times = t0 + np.arange(s_db.shape[1]) * hop / sr
    return s_db, times, mel_freqs


def pooled_spectrogram(audio: np.ndarray, *, sr: int, max_columns: int, n_mels: int = 64, hop_ms: float = 10.0,
                       t0: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`spectrogram` with its power averaged over neighbouring frames to at most ``max_columns`` columns.

    For long tracks: the full-resolution spectrogram is never held in memory, so an hour of audio costs
    tens of MB, not GB. ``times`` are the centres of the pooled columns. Next: draw it, or
    :func:`spectrogram_figure`.
    """
    samples = float_audio(audio, sr=sr)
    if max_columns < 1:
        raise AnalysisError(f"max_columns must be >= 1, got {max_columns}")
    hop = max(1, int(round(sr * hop_ms / 1000.0)))
    n_fft = int(2 ** math.ceil(math.log2(max(sr * 0.025, 2))))
    mel_freqs = mel_frequencies(n_mels + 2, fmax=sr / 2.0)[1:-1]
    n_frames = 1 + len(samples) // hop
    pool = max(1, math.ceil(n_frames / max_columns))
    if len(samples) == 0:
        return np.zeros((n_mels, 0), dtype=np.float32), np.zeros(0), mel_freqs
    filters = mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels)
    s_db = _to_db(_mel_power(samples, sr=sr, n_fft=n_fft, hop=hop, filters=filters, pool=pool))
    times = t0 + (np.arange(s_db.shape[1]) * pool + (pool - 1) / 2.0) * hop / sr
    return s_db, times, mel_freqs


def _tracks(source: Any, agent_audio: np.ndarray | None, *, sr: int,
            frames: pd.DataFrame | None) -> tuple[np.ndarray | None, np.ndarray | None, pd.DataFrame | None]:
    if hasattr(source, "audio_track") and hasattr(source, "frames"):  # a RecordedSession
        return (source.audio_track("sent", sr=sr), source.audio_track("received", sr=sr),
                source.frames if frames is None else frames)
    if source is None and agent_audio is None:
        raise AnalysisError("give audio: spectrogram_figure(session, sr=16000) or "
                            "spectrogram_figure(user_audio, agent_audio, sr=16000)")
    return source, agent_audio, frames


def spectrogram_figure(source: Any, agent_audio: np.ndarray | None = None, *, sr: int,
                       frames: pd.DataFrame | None = None, n_mels: int = 64, hop_ms: float = 10.0,
                       max_columns: int = 3000, title: str = "Spectrograms",
                       turns_table: pd.DataFrame | None = None) -> go.Figure:
    """User (top) and agent (bottom) mel spectrograms on the session's time axis (s, log clock).

    ``source`` is a RecordedSession (its ``audio_track("sent"/"received", sr=sr)`` and frames are used), or
    the user's audio with ``agent_audio`` next to it, both starting at the log's ``t = 0``. With ``frames``
    (or a session) the server VAD's user speech is shaded on the user track, and each turn's end of user
    turn (blue), first agent audio (orange) and barge-in (red) are drawn as vertical lines. Long sessions
    are averaged down to ``max_columns`` time columns. ``turns_table``: ``turns(frames)`` when you have it
    already (it is computed otherwise). Returns the figure.
    """
    check_sr(sr)
    user, agent, frames = _tracks(source, agent_audio, sr=sr, frames=frames)
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                           subplot_titles=("user (sent)", "agent (received)"))
    peak = _FLOOR_DB
    for row, track in ((1, user), (2, agent)):
        if track is None or len(track) == 0:
            figure.add_annotation(text="no audio", showarrow=False, xref="x domain", yref="y domain",
                                  x=0.5, y=0.5, row=row, col=1)
            continue
        s_db, times, mel_freqs = pooled_spectrogram(track, sr=sr, max_columns=max_columns, n_mels=n_mels,
                                                    hop_ms=hop_ms)
        peak = max(peak, float(s_db.max()))
        figure.add_trace(go.Heatmap(z=s_db, x=times, y=mel_freqs, coloraxis="coloraxis",
                                    hovertemplate="%{x:.2f} s, %{y:.0f} Hz: %{z:.0f} dB<extra></extra>"),
                         row=row, col=1)
    figure.update_layout(coloraxis={"colorscale": "Viridis", "cmax": peak,
                                    "cmin": max(_FLOOR_DB, peak - _DISPLAY_RANGE_DB),
                                    "colorbar": {"title": "dB"}},
                         title=title, height=560, margin={"l": 60, "r": 20, "t": 60, "b": 40})
    figure.update_yaxes(title_text="Hz (mel)")
    figure.update_xaxes(title_text="time (s, log clock)", row=2, col=1)
    if frames is not None:
        checked = check_frames(frames)
        _overlay(figure, checked, turns(checked) if turns_table is None else turns_table)
    return figure


#: Turn stamps drawn as vertical lines on the spectrograms: column -> colour.
TURN_MARKS = {"user_end_t": "#1f77b4", "first_audio_t": "#ff7f0e", "barge_in_t": "#d62728"}


def _overlay(figure: go.Figure, frames: pd.DataFrame, table: pd.DataFrame) -> None:
    # One shapes list set once: adding shapes one by one makes plotly re-validate every earlier shape,
    # which made a long session's figure cost quadratic time.
    shapes: list[dict[str, Any]] = []
    segments = vad_segments(frames)
    for row in segments[segments["source"] == "server-vad"].itertuples(index=False):
        shapes.append({"type": "rect", "xref": "x", "yref": "y domain", "x0": row.start_t, "x1": row.end_t,
                       "y0": 0, "y1": 1, "line": {"width": 0}, "opacity": 0.2, "layer": "above",
                       "fillcolor": "#1f77b4" if row.kind == "speech" else "#aec7e8"})
    for column, colour in TURN_MARKS.items():
        for t in table[column].dropna().to_numpy(float):
            for yref in ("y domain", "y2 domain"):
                shapes.append({"type": "line", "xref": "x", "yref": yref, "x0": t, "x1": t, "y0": 0, "y1": 1,
                               "line": {"color": colour, "width": 1, "dash": "dash"}})
    figure.update_layout(shapes=shapes)


def _active_frames(audio: np.ndarray, *, sr: int, frame_ms: float, threshold_db: float) -> tuple[np.ndarray, float]:
    """Which non-overlapping frames of ``frame_ms`` have an RMS level above ``threshold_db`` (dBFS)."""
    hop = max(1, int(round(sr * frame_ms / 1000.0)))
    n = len(audio) // hop
    if n == 0:
        return np.zeros(0, dtype=bool), hop / sr
    blocks = audio[: n * hop].reshape(n, hop)
    # Sum of squares per frame without a float64 copy of the track (an hour is 230 MB in float32 already);
    # einsum accumulates each frame's few hundred samples, so float32 keeps the level to far below 0.1 dB.
    power = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64) / hop
    return 10.0 * np.log10(np.maximum(power, 1e-24)) > threshold_db, hop / sr


def silence_gap_latency(user_audio: np.ndarray, agent_audio: np.ndarray, *, sr: int, frames: pd.DataFrame,
                        threshold_db: float = -40.0, frame_ms: float = 10.0, t0: float = 0.0,
                        turns_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per spoken turn, the silence between the end of the user's speech and the start of the agent's.

    A cross-check of the frame log from the audio alone. Both tracks start at log time ``t0`` (0 for
    ``session.audio_track(...)``). The audio is cut into ``frame_ms`` frames; a frame is *active* when its
    RMS level exceeds ``threshold_db`` dBFS. For each turn whose user spoke (``user_kind`` ``audio`` or
    ``voice``), within the turn (from its ``user_start_t`` to the next turn's):

    - ``user_energy_end_t``: the end of the last active user frame;
    - ``agent_energy_start_t``: the first agent onset (an active frame after an inactive one) after that;
    - ``silence_gap_ms`` = ``agent_energy_start_t - user_energy_end_t``,

    next to the frame log's ``latency_first_audio_ms`` (which counts from ``user_end_t``) and their
    ``difference_ms``. Times in s on the log clock, to ``frame_ms``. ``note`` says why a gap is missing:
    audio uploaded faster than real time has no real-time tracks to measure (``send_audio(realtime=False)``),
    or no user speech or agent onset was found. The agent is assumed silent while the user speaks.
    ``turns_table``: ``turns(frames)`` when you have it already.
    """
    check_sr(sr)
    user = float_audio(user_audio, sr=sr)
    agent = float_audio(agent_audio, sr=sr)
    user_active, step = _active_frames(user, sr=sr, frame_ms=frame_ms, threshold_db=threshold_db)
    agent_active, _ = _active_frames(agent, sr=sr, frame_ms=frame_ms, threshold_db=threshold_db)
    user_ends = t0 + (np.flatnonzero(user_active) + 1) * step
    onsets = t0 + np.flatnonzero(agent_active & ~np.concatenate([[False], agent_active[:-1]])) * step
    table = turns(frames) if turns_table is None else turns_table
    pace = upload_pace(check_frames(frames))
    starts = table["user_start_t"].to_numpy(float)
    # Each turn's window ends at the earliest start among the later turns: a running minimum from the end.
    later = np.minimum.accumulate(np.where(np.isnan(starts), np.inf, starts)[::-1])[::-1]
    untils = np.concatenate([later[1:], [np.inf]])
    out = []
    for row, until in zip(table.itertuples(index=False), untils.tolist(), strict=True):
        if row.user_kind not in ("audio", "voice") or math.isnan(row.user_start_t):
            continue
        user_end = agent_start = math.nan
        note: str | None
        if pace(row.user_start_t, row.user_end_t) < _REAL_TIME_PACE:
            note = "audio uploaded faster than real time"
        else:
            # Both arrays are sorted: each turn looks up its window instead of scanning the whole track.
            mine = user_ends[np.searchsorted(user_ends, row.user_start_t, side="right"):
                             np.searchsorted(user_ends, until, side="left")]
            if not len(mine):
                note = "no user speech above the threshold"
            else:
                user_end = float(mine[-1])
                first = np.searchsorted(onsets, user_end, side="left")
                after = onsets[first: np.searchsorted(onsets, until, side="left")]
                agent_start = float(after[0]) if len(after) else math.nan
                note = None if len(after) else "no agent onset above the threshold"
        gap = round((agent_start - user_end) * 1000.0, 3)
        out.append({"turn": row.turn, "user_end_t": row.user_end_t, "user_energy_end_t": user_end,
                    "agent_energy_start_t": agent_start, "silence_gap_ms": gap,
                    "latency_first_audio_ms": row.latency_first_audio_ms,
                    "difference_ms": round(gap - row.latency_first_audio_ms, 3), "note": note})
    columns = ["turn", "user_end_t", "user_energy_end_t", "agent_energy_start_t", "silence_gap_ms",
               "latency_first_audio_ms", "difference_ms", "note"]
    dtypes = {"turn": "int64", **dict.fromkeys(columns[1:-1], "float64"), "note": "string"}
    return pd.DataFrame(out, columns=columns).astype(dtypes)
