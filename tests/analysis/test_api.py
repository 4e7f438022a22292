"""The surface of amigo_lab.analysis: pinned, documented, and shaped like librosa (options keyword-only)."""

import inspect

import amigo_lab.analysis as aa

PINNED = [
    "LATENCY_METRICS", "UNDETERMINED", "AnalysisError", "detect_language", "language_figure", "languages",
    "latency_by_language", "latency_definition", "latency_summary", "load_sessions", "reference_vad_segments",
    "silence_gap_latency",
    "spectrogram", "spectrogram_figure", "summary_many", "turns", "turns_many", "vad_segments", "vad_timeline",
    "write_report",
]
# Data arguments that may be given by position although they have a default.
POSITIONAL_DATA = {("spectrogram_figure", "agent_audio"), ("write_report", "out_path")}


def test_all_is_pinned_and_documented():
    assert sorted(aa.__all__) == sorted(PINNED)
    for name in aa.__all__:
        value = getattr(aa, name)
        if callable(value):
            assert value.__doc__, name


def test_options_are_keyword_only_and_sr_is_explicit():
    for name in aa.__all__:
        value = getattr(aa, name)
        if not inspect.isfunction(value):
            continue
        for param in inspect.signature(value).parameters.values():
            if param.default is not inspect.Parameter.empty and (name, param.name) not in POSITIONAL_DATA:
                assert param.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}({param.name}=...) must be keyword-only"
            if param.name == "sr":
                assert param.kind is inspect.Parameter.KEYWORD_ONLY
                assert param.default is inspect.Parameter.empty, f"{name} must not default sr"


def test_analysis_errors_are_lab_errors_and_value_errors():
    from amigo_lab import AmigoError

    assert issubclass(aa.AnalysisError, AmigoError) and issubclass(aa.AnalysisError, ValueError)
