"""The session panel in a real JupyterLab in headless Chromium, with a fake microphone that asks the
embedded emulator "what are your opening hours" again and again.

The tests run in order on one page: the speech reaches the emulator, the answer plays, the question coming
again while the answer plays interrupts it (barge-in flushes playback), MP3 pieces play, and both re-running
the panel's cell and closing the panel release the microphone.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

NOTEBOOK_CELLS = [
    ("import amigo_lab\n"
     "from amigo_lab.widgets import Player, SessionPanel\n"
     "\n"
     "session = amigo_lab.connect()          # the embedded emulator\n"
     "panel = SessionPanel(session, mode='vad')\n"
     "panel"),
    ("mp3_player = Player()\n"
     "mp3_player"),
]

# Kernel-side expressions the tests poll (JSON-able values only).
HEARD = ("[str(t) for t in session.frames.query(\"type == 'server.user-message-available'\")['text']]")
ANSWER_IDS = ("[str(m) for m in session.frames.query(\"type == 'server.interaction-complete'\")['message_id']]")
PLAYBACK = ("[[str(r.type), str(r.message_id), float(r.played_ms)] for r in session.frames.itertuples() "
            "if str(r.type).startswith('playback.')]")
MESSAGE_MS = ("{str(k): float(v) for k, v in session.frames.query(\"type == 'server.new-message'\")"
              ".groupby('message_id')['audio_ms'].sum().items()}")


@pytest.fixture(scope="module")
def lab(open_notebook):
    """The notebook open and run: panel connected, microphone started in VAD mode."""
    notebook = open_notebook("session_panel.ipynb", NOTEBOOK_CELLS)
    notebook.run_all()
    page = notebook.page
    page.wait_for_selector(".amigo-panel[data-state='connected']", timeout=90_000)
    page.click(".amigo-mic-start")
    notebook.wait_for("panel.mic.state == 'streaming'", timeout=30, what="the microphone to stream")
    yield notebook


def test_the_emulator_hears_the_speech(lab):
    heard = lab.wait_for(HEARD, timeout=60, what="a transcript of the microphone's speech")
    assert any("opening hours" in text.lower() for text in heard), heard
    assert lab.json("panel.mic.chunks_received") > 50                 # 20 ms chunks, > 1 s of audio
    lab.page.wait_for_selector(".amigo-panel-user >> text=/opening hours/i", timeout=10_000)


def test_the_answer_plays(lab):
    greeting = lab.json("session.greeting.result().message_id")

    def answer_progress():
        answers = set(lab.json(ANSWER_IDS)) - {greeting}
        return [p for p in lab.json(PLAYBACK) if p[1] in answers and p[0] == "playback.progress" and p[2] > 0]

    progress = lab.poll(answer_progress, timeout=60, what="playback progress of an answer")
    message_id = progress[-1][1]
    played = [p[2] for p in lab.json(PLAYBACK) if p[1] == message_id and p[0] == "playback.progress"]
    assert played == sorted(played) and played[-1] > 200               # the position advances
    assert lab.json("panel.player.played_ms") > 0


def test_barge_in_flushes_playback(lab, artifacts_dir):
    # The greeting may be interrupted too (the microphone starts while it plays); look for an answer.
    greeting = lab.json("session.greeting.result().message_id")
    flushed = lab.wait_for(f"[p for p in {PLAYBACK} if p[0] == 'playback.flushed' and p[2] > 0 "
                           f"and p[1] != {greeting!r}]",
                           timeout=60, what="the question, asked again, to interrupt the answer")
    _, message_id, played_ms = flushed[0]
    assert message_id in lab.json(ANSWER_IDS)
    sent_ms = lab.json(MESSAGE_MS)[message_id]
    assert 0 < played_ms < sent_ms                      # stopped part-way through what had arrived
    assert lab.json("int((session.frames['type'] == 'server.vad-speech-started').sum())") >= 2
    lab.page.wait_for_selector(".amigo-panel-interrupted", timeout=10_000)
    lab.page.screenshot(path=str(artifacts_dir / "browser-session-panel.png"))


def test_mp3_pieces_decode_and_play(lab):
    lab.run(
        "import numpy as np\n"
        "from amigo_lab.audio import encode_mp3\n"
        "tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype(np.float32)\n"
        "for i in range(3):\n"
        "    mp3_player.feed(encode_mp3(tone, sr=16000), message_id='mp3-tone', audio_format='mp3', stop=i == 2)\n")
    done = lab.wait_for("mp3_player.last_event == 'finished' and mp3_player.played_ms", timeout=30,
                        what="three MP3 pieces of 0.5 s to play to the end")
    assert 1400 <= done <= 1800                       # 1.5 s, give or take the MP3 codec's padding


TRACK_STATES = "() => window.__amigoTracks.map((t) => t.readyState)"
ALL_ENDED = "() => window.__amigoTracks.length > 0 && window.__amigoTracks.every((t) => t.readyState === 'ended')"


def test_rerunning_the_cell_releases_the_microphone(lab):
    assert "live" in lab.page.evaluate(TRACK_STATES)
    lab.page.evaluate("""() => {
      const notebook = window.jupyterapp.shell.currentWidget.content;
      notebook.activeCellIndex = 0;
      return window.jupyterapp.commands.execute('notebook:run-cell');
    }""")
    lab.page.wait_for_function(ALL_ENDED, timeout=30_000)
    # The new panel works as the old one did.
    lab.page.wait_for_selector(".amigo-panel[data-state='connected']", timeout=60_000)
    lab.page.click(".amigo-mic-start")
    lab.wait_for("panel.mic.state == 'streaming'", timeout=30, what="the new panel's microphone to stream")


def test_closing_the_panel_releases_the_microphone(lab):
    assert "live" in lab.page.evaluate(TRACK_STATES)
    lab.run("panel.close()")
    lab.page.wait_for_function(ALL_ENDED, timeout=10_000)
    lab.run("session.finish()")
