"""The turns table says which turns' timings are not real time: the real_time column and attrs["timing"]."""

from html.parser import HTMLParser

import pandas as pd
import pytest

import amigo_lab
from amigo_lab import analysis as aa
from amigo_lab.analysis import AnalysisError, turns, vad_segments, write_report
from amigo_lab.analysis.turns import NOT_REAL_TIME
from amigo_lab.speech import Synthesizer

from .logs import Log, text_turn
from .test_turns import greeting, voice_turn_with_filler

SR = 16000


def push_to_talk(log: Log, t0: float, *, spacing_s: float, n: int = 60, k: int = 1) -> Log:
    """``n`` 20 ms chunks from ``t0``, ``spacing_s`` apart (0.02: real time; 0.01: twice as fast), then the
    end of the audio and a text answer 0.3 s later."""
    for i in range(n):
        log.chunk(t0 + i * spacing_s, 20, freq=300.0)
    end = t0 + n * spacing_s
    log.audio_end(end).user_message(end + 0.1, f"question {k}", f"u{k}")
    log.text_piece(end + 0.3, f"m{k}", 0, f"answer {k}", stop=True)
    return log.complete(end + 0.4, f"m{k}", f"answer {k}", interaction_id=f"i{k}")


class _Tables(HTMLParser):
    """Each <table> of a page as a list of rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def turns_view(page: str) -> pd.DataFrame:
    """The report's turns table (the first table of the page) as a DataFrame of strings."""
    parser = _Tables()
    parser.feed(page)
    header, *rows = parser.tables[0]
    return pd.DataFrame(rows, columns=header)


def test_audio_sent_faster_than_real_time_marks_its_turn_alone():
    log = greeting(Log())
    push_to_talk(log, 2.0, spacing_s=0.02, k=1)  # 1.2 s of audio over 1.2 s
    push_to_talk(log, 5.0, spacing_s=0.01, k=2)  # 1.2 s of audio over 0.6 s
    text_turn(log, 8.0, "and on sunday", "closed on sunday", latency=0.2, n=3)
    table = turns(log.frames())
    assert list(table["user_kind"]) == ["greeting", "audio", "audio", "text"]
    assert table["real_time"].dtype == "boolean"
    assert list(table["real_time"]) == [True, True, False, True]
    assert table.attrs["timing"] == NOT_REAL_TIME.format(n=1, total=4)
    assert table.attrs["timing"].startswith("1 of 4 turns are not real time")


def test_the_session_mark_covers_the_turns_the_log_cannot_judge():
    log = greeting(Log())
    push_to_talk(log, 2.0, spacing_s=0.02, k=1)
    text_turn(log, 5.0, "and on sunday", "closed on sunday", latency=0.2, n=3)
    frames = log.frames()
    # Marked fast, the greeting and the text turn have no user audio of their own to clear them; the spoken
    # turn's audio went out in real time, which the log shows.
    assert list(turns(frames, fast=True)["real_time"]) == [False, True, False]
    assert list(turns(frames, fast=False)["real_time"]) == [True, True, True]
    assert turns(frames)["real_time"].all() and turns(frames).attrs["timing"] == "real time"


def test_a_text_session_marked_fast_has_no_real_time_turn():
    log = greeting(Log())
    text_turn(log, 2.0, "hello there", "hi", latency=0.3, n=1)
    table = turns(log.frames(), fast=True)
    assert not table["real_time"].any()
    assert table.attrs["timing"].startswith("2 of 2 turns are not real time")


def test_fast_must_be_a_bool_or_none():
    with pytest.raises(AnalysisError, match=r"fast must be True, False or None"):
        turns(greeting(Log()).frames(), fast="yes")


def test_filler_message_ids_name_the_fold_fillers():
    table = turns(voice_turn_with_filler(greeting(Log())).frames())
    assert list(table["filler_message_ids"]) == [(), ("f",)]
    assert list(table["n_fillers"]) == [0, 1]


def test_vad_segments_take_the_fillers_from_the_table_even_through_parquet(tmp_path):
    frames = voice_turn_with_filler(greeting(Log())).frames()
    table = turns(frames)
    table.to_parquet(tmp_path / "turns.parquet")
    stored = pd.read_parquet(tmp_path / "turns.parquet")  # the tuples come back as arrays
    older = table.drop(columns=["filler_message_ids"])  # a table kept from before the column existed
    expected = vad_segments(frames)
    agent = expected[expected["source"] == "agent"]
    assert list(agent["kind"]) == ["answer", "filler", "answer"]
    for given in (table, stored, older):
        pd.testing.assert_frame_equal(vad_segments(frames, turns_table=given), expected)


def test_the_report_turns_table_shows_which_turns_are_not_real_time(tmp_path):
    log = greeting(Log())
    push_to_talk(log, 2.0, spacing_s=0.02, k=1)
    push_to_talk(log, 5.0, spacing_s=0.01, k=2)
    page = write_report(log.save(tmp_path / "session"), progress=False, audio=False).read_text(encoding="utf-8")
    view = turns_view(page)
    assert list(view["real_time"]) == ["True", "True", "False"]
    assert "Not real time" in page and "--fast" not in page  # not marked: the log shows it
    assert "The user&#x27;s audio of 1 of 3 turns was sent faster than real time" in page


def test_a_session_recorded_with_fast_audio_against_the_emulator(open_session, tmp_path, scaled):
    live = open_session(log_dir=tmp_path / "mixed")
    live.greeting.result(timeout=scaled(30))
    speech = Synthesizer().synthesize("what are your opening hours", language="eng")
    live.send_audio(speech.pcm, sr=SR).result(timeout=scaled(60))  # in real time
    live.send_audio(speech.pcm, sr=SR, realtime=False).result(timeout=scaled(60))  # as fast as allowed
    live.say("thank you").result(timeout=scaled(30))
    live.finish()

    recorded = amigo_lab.load_session(tmp_path / "mixed")
    assert recorded.fast and recorded.meta["fast"] is True  # the session's mark, in meta.json
    table = turns(recorded.frames, fast=recorded.fast)
    assert list(table["user_kind"]) == ["greeting", "audio", "audio", "text"]
    # The spoken turns are judged by their own audio; the others carry the session's mark.
    assert list(table["real_time"]) == [False, True, False, False]
    assert table.attrs["timing"].startswith("3 of 4 turns are not real time")
    # The frames carry the session's mark, so turns() alone agrees, live and recorded; without it, the log alone.
    assert list(turns(recorded.frames)["real_time"]) == [False, True, False, False]
    assert list(turns(live.frames)["real_time"]) == [False, True, False, False]
    assert list(turns(recorded.frames, fast=False)["real_time"]) == [True, True, False, True]
    many = aa.turns_many({"mixed": recorded})
    assert list(many["real_time"]) == [False, True, False, False]

    page = write_report(recorded.path, progress=False, audio=False).read_text(encoding="utf-8")
    assert list(turns_view(page)["real_time"]) == ["False", "True", "False", "False"]
    assert "Not real time" in page and "--fast" in page
