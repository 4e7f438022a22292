"""Many sessions: load_sessions(), turns_many(), summary_many()."""

import pytest

from amigo_lab.analysis import AnalysisError, load_sessions, summary_many, turns_many

from .logs import Log, text_turn


def session_log(latencies: list[float]) -> Log:
    log = Log().opened(0.0).start(0.1)
    log.text_piece(0.4, "g", 0, "Hello!", stop=True).complete(0.5, "g", "Hello!", interaction_id="i0")
    for n, latency in enumerate(latencies, start=1):
        text_turn(log, 2.0 * n, f"question {n}", "an answer", latency=latency, n=n, pieces=1)
    return log


@pytest.fixture
def folder(tmp_path):
    session_log([0.1, 0.3]).save(tmp_path / "b-second")
    session_log([0.2]).save(tmp_path / "a-first")
    (tmp_path / "not-a-session").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    return tmp_path


def test_load_sessions_finds_recorded_folders_by_name(folder):
    sessions = load_sessions(folder, progress=False)
    assert list(sessions) == ["a-first", "b-second"]
    assert len(sessions["b-second"].frames) == len(session_log([0.1, 0.3]).frames())


def test_turns_many_and_summary_many(folder):
    table = turns_many(load_sessions(folder, progress=False))
    assert table.columns[0] == "session"
    assert table.groupby("session").size().to_dict() == {"a-first": 2, "b-second": 3}
    summary = summary_many(table).set_index("session")
    assert list(summary.index) == ["a-first", "b-second", "(all)"]
    assert summary.loc["b-second", "turns"] == 2  # greetings left out
    assert summary.loc["b-second", "latency_first_text_ms_p50"] == pytest.approx(200.0)
    assert summary.loc["(all)", "latency_first_text_ms_p50"] == pytest.approx(200.0)
    assert summary.loc["(all)", "latency_first_text_ms_p90"] == pytest.approx(280.0)
    assert summary.loc["a-first", "interrupted"] == 0


def test_turns_many_takes_dataframes_and_empty_mappings():
    table = turns_many({"x": session_log([0.25]).frames()})
    assert list(table["session"]) == ["x", "x"] and table["latency_first_text_ms"].iloc[1] == 250.0
    empty = turns_many({})
    assert len(empty) == 0 and "latency_complete_ms" in empty.columns


def test_clear_errors(tmp_path):
    with pytest.raises(AnalysisError, match="not a folder"):
        load_sessions(tmp_path / "missing", progress=False)
    with pytest.raises(AnalysisError, match="no recorded sessions"):
        load_sessions(tmp_path, progress=False)
    with pytest.raises(AnalysisError, match="frames"):
        turns_many({"x": 42})
