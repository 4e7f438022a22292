"""Push-to-talk in a real browser: nothing is sent until the button is held, holding streams 20 ms chunks,
releasing ends the turn and the agent answers."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.browser

NOTEBOOK_CELLS = [
    ("import amigo_lab\n"
     "from amigo_lab.widgets import Microphone\n"
     "\n"
     "session = amigo_lab.connect(response_format='text')\n"
     "mic = Microphone(session)               # push-to-talk\n"
     "mic"),
]

SENT_AUDIO = ("[bool(s) if s is not None and str(s) != '<NA>' else False for s in "
              "session.frames.query(\"type == 'client.new-audio-message'\")['stop']]")
COMPLETED = "int((session.frames['type'] == 'server.interaction-complete').sum())"

HOLD_S = 3.0


def test_hold_to_talk_streams_and_release_ends_the_turn(open_notebook):
    notebook = open_notebook("push_to_talk.ipynb", NOTEBOOK_CELLS)
    notebook.run_all()
    page = notebook.page
    page.wait_for_selector(".amigo-mic-start", timeout=90_000)
    page.click(".amigo-mic-start")
    notebook.wait_for("mic.state == 'streaming'", timeout=30, what="the microphone to stream")
    time.sleep(1.0)
    assert notebook.json(SENT_AUDIO) == []                # open microphone, button not held: nothing sent
    answered_before = notebook.json(COMPLETED)

    page.hover(".amigo-mic-talk")
    page.mouse.down()
    time.sleep(HOLD_S)
    page.mouse.up()

    sent = notebook.wait_for(f"(lambda s: s if s and s[-1] else None)({SENT_AUDIO})", timeout=20,
                             what="the end of the push-to-talk turn")
    chunks = len(sent) - 1
    assert sent.count(True) == 1                          # exactly one end of audio, last
    assert 0.8 * HOLD_S * 50 <= chunks <= 1.3 * HOLD_S * 50 + 10   # 50 chunks/s while held (+ hangover)
    notebook.wait_for(f"{COMPLETED} > {answered_before}", timeout=60, what="the agent to answer the turn")
    notebook.run("mic.close()\nsession.finish()")
