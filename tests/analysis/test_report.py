"""write_report(): one small self-contained HTML file, per-turn audio, latency views, linear in turns."""

import base64
import re

import numpy as np

from amigo_lab.analysis import write_report
from amigo_lab.audio import decode_mp3
from amigo_lab.protocol.fold import LATENCIES

from .logs import Log, text_turn
from .test_vad import busy_log

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXNlY3JldA"
AUDIO_URI = re.compile(r"data:audio/mpeg;base64,([A-Za-z0-9+/=]+)")


def non_audio_bytes(page: str) -> int:
    return len(AUDIO_URI.sub("", page).encode("utf-8"))


def voice_log() -> Log:
    log = busy_log()
    text_turn(log, 8.0, "hola, ¿a qué hora abren?", "Abrimos a las nueve", latency=0.3, n=7)
    return log


def test_report_is_one_small_offline_file_with_every_section(tmp_path):
    folder = voice_log().save(tmp_path / "session", meta={
        "organization": "acme", "service_id": "b" * 24, "response_format": "voice", "audio_format": "pcm",
        "token": TOKEN, "url": f"wss://example.invalid/v1/acme?token={TOKEN}"})
    path = write_report(folder, progress=False)
    assert path == folder / "report.html"
    page = path.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=[\"']?https?://", page)  # nothing fetched: opens offline
    assert "<script" not in page  # and needs no script
    assert TOKEN not in page and "c2lnbmF0dXJlLXNlY3JldA" not in page
    for text in ("what time do you open", "One moment", "We open", "hola, ¿a qué hora abren?",
                 "Abrimos a las nueve", "order 42 shipped", "unknown frame type", "4408", "acme", "b" * 24):
        assert text in page, text
    for heading in ("Turns", "Latency", "Who spoke when", "Spectrograms", "Languages", "Errors and closes"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count("<svg") == 4  # distribution, waterfall, timeline, spectrograms
    assert page.count("data:image/png;base64,") == 2  # one spectrogram image per side
    assert non_audio_bytes(page) < 300_000
    assert "Not real time" not in page


def test_each_spoken_turn_has_players_for_what_was_said_and_heard(tmp_path):
    folder = voice_log().save(tmp_path / "session")
    page = write_report(folder, progress=False).read_text(encoding="utf-8")
    clips = [decode_mp3(base64.b64decode(data)) for data in AUDIO_URI.findall(page)]
    # The greeting as heard; the voice turn's user audio and its agent audio as heard.
    assert page.count("<audio controls") == len(clips) == 3
    greeting, user, agent = (len(c) / 16000 for c in clips)
    assert abs(greeting - 0.32) < 0.03
    assert abs(user - (1.2 + 2 * 0.15)) < 0.03  # the server VAD's 1.2 s of speech, 150 ms either side
    assert abs(agent - 1.1) < 0.03  # the filler from 4.3 s, then the answer until it was cut at 5.4 s
    assert "cut at the barge-in" in page
    # Received but not heard, on the timeline and over the agent's spectrogram: 5.4 s to the answer's end.
    assert page.count("turn 1: received 5.40–5.64 s but not heard") == 2
    without = write_report(folder, tmp_path / "quiet.html", progress=False, audio=False).read_text(encoding="utf-8")
    assert "<audio" not in without and "Audio left out of this report" in without


def test_latencies_carry_the_fold_names_and_definitions(tmp_path):
    folder = voice_log().save(tmp_path / "session")
    page = write_report(folder, progress=False).read_text(encoding="utf-8")
    for name, (_origin, _target, definition) in LATENCIES.items():
        assert f"<code>{name}</code>" in page and definition.replace("'", "&#x27;") in page
    assert "<h3>Waterfall per turn</h3>" in page and "<h3>Distribution</h3>" in page
    # The voice turn, from the user's end of speech: its first text and first audio landed together, so one dot
    # names both (two dots would hide one under the other).
    assert "turn 1: latency_first_text_ms, latency_first_audio_ms = 800 ms" in page
    assert "turn 1: latency_first_answer_audio_ms = 1500 ms" in page
    assert "turn 2: latency_first_text_ms = 300 ms" in page  # the text turn


def test_a_fast_session_says_its_timings_are_not_real_time(tmp_path):
    folder = voice_log().save(tmp_path / "session", meta={"fast": True})
    page = write_report(folder, progress=False).read_text(encoding="utf-8")
    assert "Not real time" in page and "--fast" in page


def test_report_of_a_text_session_to_a_chosen_path(tmp_path):
    log = Log().opened(0.0).start(0.1)
    log.text_piece(0.4, "g", 0, "Hello!", stop=True).complete(0.5, "g", "Hello!", interaction_id="i0")
    text_turn(log, 2.0, "hello there how are you", "Fine <b>thanks</b>", latency=0.42)
    folder = log.save(tmp_path / "text-session")
    path = write_report(folder, tmp_path / "out" / "r.html", title="My & title", progress=False)
    page = path.read_text(encoding="utf-8")
    assert path == tmp_path / "out" / "r.html"
    assert "<h1>My &amp; title</h1>" in page
    assert "Fine &lt;b&gt;thanks&lt;/b&gt;" in page  # texts are escaped
    assert "&amp;lt;" not in page and "&lt;br&gt;" not in page  # once: hover texts show the text, not markup
    assert "<h2>Spectrograms</h2>" not in page and "<audio" not in page  # no audio, no spectrogram
    assert "420.0" in page


def test_many_turns_cost_a_page_that_grows_linearly(tmp_path):
    def session(n: int) -> int:
        log = Log().opened(0.0).start(0.1)
        for k in range(n):
            text_turn(log, 1.0 + 3.0 * k, f"question number {k}", f"answer number {k}", latency=0.25, n=3)
        folder = log.save(tmp_path / f"s{n}")
        return non_audio_bytes(write_report(folder, progress=False, audio=False).read_text(encoding="utf-8"))

    small, large = session(20), session(80)
    per_turn = (large - small) / 60
    assert per_turn < 2_500, f"{per_turn:.0f} bytes of page per turn"
    assert np.isfinite(per_turn)
