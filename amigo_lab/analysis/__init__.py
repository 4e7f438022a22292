"""Analysis of recorded sessions: pure functions from frame-log DataFrames and audio to tables and figures.

Like librosa: data first, options keyword-only, ``sr`` always explicit when audio is involved; every
function returns a DataFrame, arrays or a plotly figure (call ``.show()`` yourself); nothing touches the
network or reads a file you did not name. Times are seconds on the frame log's monotonic clock ``t``.

A typical notebook::

    from amigo_lab import analysis as aa
    rec = amigo_lab.load_session("sessions/2025-…")
    table = aa.turns(rec.frames)                    # one row per interaction, latencies in ms
    aa.latency_summary(table)                       # p50 / p90 / mean / count
    aa.latency_definition("latency_first_audio_ms") # what a latency column measures
    aa.vad_timeline(rec.frames)                     # who spoke when
    aa.spectrogram_figure(rec, sr=16000)            # user and agent tracks, events overlaid
    aa.language_figure(rec.frames)                  # language switches
    aa.write_report(rec.path)                       # all of it in one offline HTML file

Many sessions: :func:`load_sessions`, :func:`turns_many`, :func:`summary_many`.
"""

from amigo_lab.analysis.errors import AnalysisError
from amigo_lab.analysis.language_id import UNDETERMINED, detect_language
from amigo_lab.analysis.languages import language_figure, languages, latency_by_language
from amigo_lab.analysis.report import write_report
from amigo_lab.analysis.sessions import load_sessions, summary_many, turns_many
from amigo_lab.analysis.spectrogram import silence_gap_latency, spectrogram, spectrogram_figure
from amigo_lab.analysis.turns import LATENCY_METRICS, latency_definition, latency_summary, turns
from amigo_lab.analysis.vad import reference_vad_segments, vad_segments, vad_timeline

__all__ = [
    "LATENCY_METRICS",
    "UNDETERMINED",
    "AnalysisError",
    "detect_language",
    "language_figure",
    "languages",
    "latency_by_language",
    "latency_definition",
    "latency_summary",
    "load_sessions",
    "reference_vad_segments",
    "silence_gap_latency",
    "spectrogram",
    "spectrogram_figure",
    "summary_many",
    "turns",
    "turns_many",
    "vad_segments",
    "vad_timeline",
    "write_report",
]
