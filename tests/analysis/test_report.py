"""write_report(): one self-contained HTML file."""

import re

from amigo_lab.analysis import write_report

from .logs import Log, text_turn
from .test_vad import busy_log

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXNlY3JldA"


def test_report_is_one_offline_file_with_every_section(tmp_path):
    log = busy_log()
    text_turn(log, 8.0, "hola, ¿a qué hora abren?", "Abrimos a las nueve", latency=0.3, n=7)
    folder = log.save(tmp_path / "session", meta={
        "organization": "acme", "service_id": "b" * 24, "response_format": "voice", "audio_format": "pcm",
        "token": TOKEN, "url": f"wss://example.invalid/v1/acme?token={TOKEN}"})
    path = write_report(folder, progress=False)
    assert path == folder / "report.html"
    page = path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=[\"']?https?://", page)
    assert not re.search(r"<link[^>]+href=[\"']?https?://", page)
    assert len(re.findall(r"<script>/\*\*\s*\* plotly.js v", page)) == 1  # plotly.js, embedded once
    assert TOKEN not in page and "c2lnbmF0dXJlLXNlY3JldA" not in page
    for text in ("what time do you open", "One moment", "We open", "hola, ¿a qué hora abren?",
                 "Abrimos a las nueve", "order 42 shipped", "unknown frame type", "4408", "acme", "b" * 24):
        assert text in page, text
    for heading in ("Turns", "Latency", "Who spoke when", "Spectrograms", "Languages", "Errors and closes"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count("class=\"plotly-graph-div\"") == 3


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
    assert "<h2>Spectrograms</h2>" not in page  # no audio, no spectrogram
    assert "420.0" in page
