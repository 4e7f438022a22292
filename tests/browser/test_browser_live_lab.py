"""The live lab in a real JupyterLab in headless Chromium: a question typed as a user types it, the latency
waterfall against ``analysis.turns``, the event inspector under an hour of microphone-rate traffic, and what
the panel shows after re-running its cell and after a kernel restart.
"""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.browser

QUESTION_CELLS = [
    "%load_ext amigo_lab",
    "%amigo connect",
    "%amigo say What are your opening hours?",
    "%amigo say ¿Cuál es el horario?",
]

_CELL_OUTPUT = """
(index) => {
  const cells = window.jupyterapp.shell.currentWidget.content.widgets;
  const cell = cells[index];
  return cell && cell.model.executionCount !== null ? cell.node.querySelector('.jp-Cell-outputArea')?.innerText ?? ''
                                                      : null;
}
"""


def _output(notebook, index: int, *, timeout: float = 90) -> str:
    return notebook.poll(lambda: notebook.page.evaluate(_CELL_OUTPUT, index) or None, timeout=timeout,
                         what=f"the output of cell {index}")


def _answer(notebook, index: int, what: str) -> str:
    try:
        # The say cell returns while the reply streams; its line is the complete reply once it ends without "…".
        return notebook.poll(lambda: (lambda out: "agent:" in out and not out.rstrip().endswith("…") and out)(
            _output(notebook, index) or ""), timeout=180, what=what)
    except AssertionError:
        outputs = [notebook.page.evaluate(_CELL_OUTPUT, i) for i in range(len(QUESTION_CELLS))]
        raise AssertionError(f"{what}: no answer; cell outputs {outputs!r}; console {notebook.console[-10:]}") \
            from None


def test_a_question_typed_with_its_question_mark(open_notebook, artifacts_dir):
    notebook = open_notebook("question.ipynb", QUESTION_CELLS)
    notebook.run_all()
    answer = _answer(notebook, 2, "the answer to the question")
    assert "not found" not in answer
    assert "We are open" in answer, answer
    spanish = _answer(notebook, 3, "the answer to the Spanish question")
    assert "not found" not in spanish
    sent = notebook.json("[str(t) for t in amigo_session.frames.query(\"type == 'client.new-text-message'\")['text']]")
    assert sent == ["What are your opening hours?", "¿Cuál es el horario?"]
    notebook.page.screenshot(path=str(artifacts_dir / "browser-question-mark.png"))
    notebook.run("get_ipython().run_line_magic('amigo', 'finish')")


WATERFALL_CELLS = [
    ("import amigo_lab\n"
     "from amigo_lab import analysis\n"
     "from amigo_lab.widgets import LatencyWaterfall\n"
     "session = amigo_lab.connect()\n"
     "session.greeting.result()\n"
     "for text in ['what are your opening hours', 'where are you located', 'can I book an appointment']:\n"
     "    session.say(text).result()\n"
     "waterfall = LatencyWaterfall(session)\n"
     "waterfall"),
]

_BARS = """
() => [...document.querySelectorAll('.amigo-waterfall-turn')].map((row) => ({
  index: Number(row.dataset.index),
  bars: Object.fromEntries([...row.querySelectorAll('.amigo-waterfall-bar')]
    .map((b) => [b.dataset.latency, Number(b.dataset.ms)])),
  chips: Object.fromEntries([...row.querySelectorAll('.amigo-waterfall-value')]
    .map((c) => [c.dataset.latency, c.textContent])),
}))
"""

ANALYSIS = ("(lambda t: [{k: (None if v != v else float(v)) for k, v in row.items()} for row in "
            "t[['latency_first_text_ms', 'latency_first_audio_ms', 'latency_first_answer_audio_ms']]"
            ".to_dict('records')])(analysis.turns(session.frames))")


def test_the_waterfall_shows_the_numbers_of_analysis_turns(open_notebook, artifacts_dir):
    notebook = open_notebook("waterfall.ipynb", WATERFALL_CELLS)
    notebook.run_all()
    page = notebook.page
    page.wait_for_function("() => document.querySelectorAll('.amigo-waterfall-turn').length >= 4", timeout=120_000)
    shown = page.evaluate(_BARS)
    expected = notebook.json(ANALYSIS)
    assert len(shown) == len(expected) == 4
    for row, want in zip(shown, expected, strict=True):
        for name, value in want.items():
            assert row["bars"][name] == pytest.approx(value, abs=0.001), (row, want)
            assert row["chips"][name].endswith(f"{round(value)} ms")
    p50 = page.evaluate("() => document.querySelector(\"tr[data-latency='latency_first_audio_ms'] "
                        ".amigo-waterfall-p50\").textContent")
    want_p50 = notebook.json("waterfall.summary['latency_first_audio_ms']['p50']")
    assert p50 == f"{round(want_p50)} ms"
    page.screenshot(path=str(artifacts_dir / "browser-waterfall.png"))
    notebook.run("session.finish()")


# An hour of a VAD microphone session: 50 chunks a second up, the agent's pieces ~6 a second down, a turn every
# ten seconds, fed into the inspector 60 times faster than real time from a kernel thread.
HOUR_CELLS = [
    ("import threading, time\n"
     "from amigo_lab.widgets import EventInspector\n"
     "inspector = EventInspector()\n"
     "inspector"),
    ("SIM_S, SPEED = 3600, 60\n"
     "state = {'fed': 0, 'done': False}\n"
     "def traffic():\n"
     "    seq, t = 0, 0.0\n"
     "    def entry(direction, kind, **fields):\n"
     "        nonlocal seq\n"
     "        seq += 1\n"
     "        return dict(seq=seq, t=t, direction=direction, type=kind, **fields)\n"
     "    while t < SIM_S:\n"
     "        for step in range(500):                     # ten simulated seconds, 20 ms per step\n"
     "            t += 0.02\n"
     "            yield entry('sent', 'client.new-audio-message', audio_bytes=640, audio_ms=20.0,\n"
     "                        wire='{\"type\":\"client.new-audio-message\",\"audio\":\"' + 'A' * 852 + '\"}')\n"
     "            turn = int(t // 10)\n"
     "            if step == 100: yield entry('received', 'server.vad-speech-started')\n"
     "            if step == 200: yield entry('received', 'server.vad-speech-ended', vad_ms=t * 1000)\n"
     "            if step == 210: yield entry('received', 'server.user-message-available', text=f'question {turn}',\n"
     "                                         message_id=f'u{turn}')\n"
     "            if step % 8 == 0:\n"
     "                yield entry('received', 'server.new-message', message_id=f'a{turn}', audio_bytes=5120,\n"
     "                            audio_ms=160.0, sequence_number=step // 8, alignment='[[0.0,\"w\"],[80.0,\"o\"]]')\n"
     "            if step == 499: yield entry('received', 'server.interaction-complete', message_id=f'a{turn}',\n"
     "                                         text=f'answer {turn}')\n"
     "def run():\n"
     "    start = time.monotonic()\n"
     "    for e in traffic():\n"
     "        ahead = e['t'] / SPEED - (time.monotonic() - start)\n"
     "        if ahead > 0.005: time.sleep(ahead)\n"
     "        inspector.feed(e)\n"
     "        state['fed'] += 1\n"
     "    state['done'] = True\n"
     "feeder = threading.Thread(target=run, daemon=True)"),
]

_FPS = """
() => {
  window.__amigoFrames = [];
  let last = performance.now();
  const tick = (now) => { window.__amigoFrames.push(now - last); last = now; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}
"""
_STATS = """
() => {
  const root = document.querySelector('.amigo-inspector');
  const frames = window.__amigoFrames.splice(0);
  const total = frames.reduce((a, b) => a + b, 0);
  return { fps: total ? 1000 * frames.length / total : 0, worst_frame_ms: Math.max(0, ...frames),
           entries: Number(root.dataset.entries), rows: Number(root.dataset.rows),
           renders: Number(root.dataset.renders), dom_rows: Number(root.dataset.domRows),
           dom_nodes: document.getElementsByTagName('*').length };
}
"""


def _heap_mb(cdp) -> float:
    cdp.send("HeapProfiler.collectGarbage")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return metrics["JSHeapUsedSize"] / 1e6


def test_the_inspector_through_an_hour_of_microphone_traffic(open_notebook, artifacts_dir):
    notebook = open_notebook("inspector_hour.ipynb", HOUR_CELLS)
    notebook.run_all()
    page = notebook.page
    page.wait_for_selector(".amigo-inspector", timeout=90_000)
    notebook.wait_for("'feeder' in globals()", timeout=60, what="the traffic cell")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    page.evaluate(_FPS)
    time.sleep(3)
    idle = page.evaluate(_STATS)
    idle["heap_mb"] = _heap_mb(cdp)
    notebook.run("feeder.start()")
    samples = []
    started = time.monotonic()
    while not notebook.json("state['done']"):
        time.sleep(5)
        sample = page.evaluate(_STATS)
        sample["simulated_min"] = round(notebook.json("state['fed']") / 56.6 / 60, 1)
        samples.append(sample)
        assert time.monotonic() - started < 600, "an hour at 60x should take about a minute"
    fed = notebook.json("state['fed']")
    page.wait_for_function(f"() => Number(document.querySelector('.amigo-inspector').dataset.entries) === {fed}",
                           timeout=30_000)
    end = page.evaluate(_STATS)
    end["heap_mb"] = _heap_mb(cdp)
    window = notebook.json("inspector.window")
    figures = {"simulated_s": 3600, "speed": 60, "entries": fed, "wall_s": round(time.monotonic() - started, 1),
               "idle": idle, "end": end, "samples": samples,
               "fps_during_min": min(s["fps"] for s in samples), "heap_growth_mb": end["heap_mb"] - idle["heap_mb"]}
    (artifacts_dir / "inspector-hour.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps({k: v for k, v in figures.items() if k != "samples"}, indent=2))
    page.screenshot(path=str(artifacts_dir / "browser-inspector-hour.png"))

    assert end["entries"] == fed > 190_000
    assert end["rows"] <= window * 1.1 + 50                 # the browser keeps a bounded window
    assert end["dom_rows"] < 100                            # only the rows on screen are in the DOM
    assert end["dom_nodes"] < idle["dom_nodes"] + 200
    # The last minute shows the last turn: the newest rows are there, folded.
    last = page.evaluate("() => [...document.querySelectorAll('.amigo-inspector-row[data-seq]')]"
                         ".filter((r) => r.style.display !== 'none').map((r) => r.innerText)")
    assert any("audio ×" in text for text in last)


PANEL_CELLS = [
    "%load_ext amigo_lab\n%amigo connect",
    "%amigo mic --vad",
]


def test_rerunning_and_restarting_leave_no_stale_state(open_notebook, artifacts_dir):
    notebook = open_notebook("rerun_states.ipynb", PANEL_CELLS)
    notebook.run_all()
    page = notebook.page
    page.wait_for_selector(".amigo-panel[data-state='connected']", timeout=90_000)
    page.click(".amigo-mic-start")
    notebook.wait_for("amigo_session.vad_on", timeout=30, what="the VAD microphone to switch the server's VAD on")

    # The cell, edited to push-to-talk and run again: the old panel's VAD must not stay on.
    page.evaluate("""() => {
      const notebook = window.jupyterapp.shell.currentWidget.content;
      notebook.activeCellIndex = 1;
      notebook.activeCell.model.sharedModel.setSource('%amigo mic');
      return window.jupyterapp.commands.execute('notebook:run-cell');
    }""")
    notebook.wait_for("not amigo_session.vad_on", timeout=30, what="the server's VAD to go off")
    page.wait_for_selector(".amigo-mic-mode", timeout=30_000)
    assert page.eval_on_selector(".amigo-mic-mode", "s => s.value") == "push-to-talk"

    # A kernel restart: the views stay on the page, and must say they are dead.
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    page.wait_for_selector(".amigo-panel[data-kernel='gone']", timeout=60_000)
    page.wait_for_selector(".amigo-mic[data-kernel='gone']", timeout=10_000)
    assert page.eval_on_selector(".amigo-mic-start", "b => b.disabled")
    assert "kernel" in page.inner_text(".amigo-panel-state")
    page.screenshot(path=str(artifacts_dir / "browser-kernel-restarted.png"))


REPLAY_CELLS = [
    "%load_ext amigo_lab\n%amigo connect\n%amigo say what are your opening hours",
    "%amigo mic",
]


def test_replaying_a_turn_from_the_transcript(open_notebook, artifacts_dir):
    notebook = open_notebook("replay.ipynb", REPLAY_CELLS)
    notebook.run_all()
    page = notebook.page
    page.wait_for_selector(".amigo-panel[data-state='connected']", timeout=120_000)
    answer_id = notebook.json("amigo_session.turns[-1].result().message_id")
    button = f".amigo-panel-agent[data-message-id='{answer_id}'] .amigo-panel-replay"
    page.wait_for_selector(button, timeout=30_000)
    page.click(button)
    index = int(page.get_attribute(f".amigo-panel-agent[data-message-id='{answer_id}']", "data-index"))
    finished = notebook.wait_for(
        f"get_ipython().find_magic('amigo').__self__.panel.player.last_event == 'finished' and "
        f"get_ipython().find_magic('amigo').__self__.panel.player.message_id == 'local-replay-{index}' and "
        f"get_ipython().find_magic('amigo').__self__.panel.player.played_ms",
        timeout=60, what="the replay to play to the end")
    answer_ms = notebook.json("len(amigo_session.turns[-1].result().audio) / 16")
    assert abs(finished - answer_ms) < 250                  # the whole answer played, give or take a buffer
    assert notebook.json("int(amigo_session.frames['message_id'].astype(str).str.startswith('local-').sum())") == 0
    page.screenshot(path=str(artifacts_dir / "browser-session-panel-replay.png"), full_page=True)
    notebook.run("get_ipython().run_line_magic('amigo', 'finish')")


LOST_CELLS = [
    ("import amigo_lab\n"
     "from amigo_lab.emulator import Emulator\n"
     "from amigo_lab.session import Backoff\n"
     "from amigo_lab.widgets import SessionPanel\n"
     "emulator = Emulator(realtime=False).start()\n"
     "session = amigo_lab.connect(emulator=emulator, backoff=Backoff(initial=0.05, maximum=0.2, attempts=3))\n"
     "panel = SessionPanel(session, mode='vad')\n"
     "panel"),
]


def test_a_reconnect_that_fails_is_shown_and_stops_the_microphone(open_notebook, artifacts_dir):
    notebook = open_notebook("lost.ipynb", LOST_CELLS)
    notebook.run_all()
    page = notebook.page
    page.wait_for_selector(".amigo-panel[data-state='connected']", timeout=90_000)
    page.click(".amigo-mic-start")
    notebook.wait_for("panel.mic.state == 'streaming'", timeout=30, what="the microphone to stream")
    notebook.run("emulator.stop()")                    # the server goes away for good
    page.wait_for_selector(".amigo-panel[data-state='error']", timeout=60_000)
    assert "Connect" in page.inner_text(".amigo-panel-error")
    notebook.wait_for("panel.mic.state != 'streaming'", timeout=30, what="the microphone to stop")
    page.screenshot(path=str(artifacts_dir / "browser-reconnect-failed.png"))


FIND_CELLS = [
    ("import amigo_lab\n"
     "from amigo_lab.widgets import EventInspector\n"
     "session = amigo_lab.connect()\n"
     "session.say('what are your opening hours').result()\n"
     "inspector = EventInspector(session)\n"
     "inspector"),
]

_VISIBLE = """
() => [...document.querySelectorAll('.amigo-inspector-viewport .amigo-inspector-row')]
  .filter((r) => r.style.display !== 'none')
  .map((r) => ({ type: r.dataset.type, seq: Number(r.dataset.seq),
                 audio: r.classList.contains('amigo-inspector-audio') }))
"""


def test_finding_a_frame_and_reading_its_wire_json(open_notebook, artifacts_dir):
    notebook = open_notebook("find_frame.ipynb", FIND_CELLS)
    notebook.run_all()
    page = notebook.page
    page.wait_for_selector(".amigo-inspector-row[data-type='server.interaction-complete']", timeout=90_000)
    complete = notebook.json("[int(s) for s in session.frames.query(\"type == 'server.interaction-complete'\")['seq']]")
    wire = notebook.json(f"str(session.frames.set_index('seq').loc[{complete[-1]}, 'wire'])")

    page.fill(".amigo-inspector-search", f"#{complete[-1]}")
    page.wait_for_function("() => document.querySelector('.amigo-inspector').dataset.shown === '1'", timeout=10_000)
    assert page.evaluate(_VISIBLE) == [{"type": "server.interaction-complete", "seq": complete[-1], "audio": False}]
    page.click(f".amigo-inspector-row[data-seq='{complete[-1]}']")
    page.wait_for_function("() => !document.querySelector('.amigo-inspector-detail').textContent.includes('loading')",
                           timeout=10_000)
    detail = page.inner_text(".amigo-inspector-detail")
    shown_json = json.loads(detail.split("\n", 1)[1])
    assert shown_json == json.loads(wire)                        # the exact frame, as it crossed the wire

    page.fill(".amigo-inspector-search", "")
    page.check(".amigo-inspector-hide-audio input")
    page.wait_for_function("() => Number(document.querySelector('.amigo-inspector').dataset.shown) < "
                           "Number(document.querySelector('.amigo-inspector').dataset.rows)", timeout=10_000)
    assert not any(row["audio"] for row in page.evaluate(_VISIBLE))
    page.uncheck(".amigo-inspector-hide-audio input")
    page.click(".amigo-inspector-chip[data-type='server.new-message']")          # only this type
    page.wait_for_function("() => [...document.querySelectorAll('.amigo-inspector-viewport .amigo-inspector-row')]"
                           ".filter((r) => r.style.display !== 'none')"
                           ".every((r) => r.dataset.type === 'server.new-message')", timeout=10_000)
    rows = page.evaluate(_VISIBLE)
    assert len(rows) == 2 and all(row["audio"] for row in rows)   # the greeting and the answer, each folded
    page.screenshot(path=str(artifacts_dir / "browser-inspector-find.png"))
    notebook.run("session.finish()")


MP3_PANEL_CELLS = [
    ("import amigo_lab\n"
     "from amigo_lab.widgets import SessionPanel\n"
     "session = amigo_lab.connect(audio_format='mp3')\n"
     "session.greeting.result()\n"
     "panel = SessionPanel(session)\n"
     "panel.timeline.span_s = 120\n"
     "panel"),
]

_METERS = """
() => {
  const root = document.querySelector('.amigo-timeline');
  return { out: Number(root.dataset.levelOut), peak_out: Number(root.dataset.peakOut),
           wave_out: Number(root.dataset.waveOut), meter: document.querySelector('.amigo-timeline-out')
             .style.getPropertyValue('--level') };
}
"""
_TIP = """
() => {
  const tip = document.querySelector('.amigo-timeline-tip');
  if (!tip || tip.style.display === 'none' || !tip.dataset.loaded) return null;
  return { text: tip.innerText,
           frames: [...tip.querySelectorAll('.amigo-timeline-tip-frame')].map((f) => ({
             seq: Number(f.dataset.seq), type: f.dataset.type, text: f.innerText })) };
}
"""
# The agent lane's middle, in CSS pixels from the canvas's top (timeline.js: TOP + LEVEL_H + 2 lanes + half).
_AGENT_LANE_Y = 4 + 34 + 2 * (14 + 4) + 7


def test_the_strip_meters_mp3_audio_and_its_hover_lists_the_frames(open_notebook, artifacts_dir):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    notebook = open_notebook("strip_mp3.ipynb", MP3_PANEL_CELLS)
    notebook.run_all()
    page = notebook.page
    page.wait_for_selector(".amigo-panel[data-state='connected']", timeout=120_000)
    page.wait_for_selector(".amigo-timeline-canvas", timeout=30_000)
    notebook.run("turn = session.say('what are your opening hours')")
    # The meter follows the agent's MP3 audio as it plays: several different levels, loud ones among them.
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len({round(s["out"]) for s in seen if s["out"] > -60}) < 3:
        seen.append(page.evaluate(_METERS))
        time.sleep(0.1)
    loud = {round(s["out"]) for s in seen if s["out"] > -60}
    assert len(loud) >= 3, seen[-5:]
    assert max(s["wave_out"] for s in seen) > 0                       # the waveform draws the agent's side
    page.wait_for_function("() => Number(document.querySelector('.amigo-timeline').dataset.waveOut) > 20",
                           timeout=30_000)                               # ... as it plays on (a bin is 50 ms)
    page.screenshot(path=str(artifacts_dir / "browser-strip-mp3-meters.png"))
    answer = notebook.json("turn.result().message_id")
    pieces = notebook.json(f"[int(s) for s in session.frames.query(\"message_id == '{answer}' and "
                           "type == 'server.new-message'\")['seq']]")

    # Hovering the answer's segment lists its frames: the pieces, folded into one audio run.
    box = page.locator(".amigo-timeline-canvas").bounding_box()
    tip, tips = None, []
    for px in range(94, int(box["width"]) - 4, 3):          # from the strip's start (its labels are 92 px)
        page.mouse.move(box["x"] + px, box["y"] + _AGENT_LANE_Y)
        try:
            tip = page.wait_for_function(_TIP, timeout=500).json_value()
        except PlaywrightTimeout:
            continue
        tips.append(tip)
        if any(f["seq"] == pieces[0] for f in tip["frames"]):
            break
        tip = None
    if tip is None:
        page.screenshot(path=str(artifacts_dir / "browser-strip-hover-missed.png"))
    segments = notebook.json("[s for s in panel.timeline.segments() if s['lane'] == 'agent']")
    assert tip is not None, f"no hover listed the answer's frames {pieces}: tips {tips}, segments {segments}"
    [run] = [f for f in tip["frames"] if f["seq"] == pieces[0]]
    assert run["type"] == "server.new-message"
    assert f"audio ×{len(pieces)}," in run["text"] and "↓" in run["text"]
    page.screenshot(path=str(artifacts_dir / "browser-strip-hover.png"))
    # A click inside the answer's segment (a few pixels past where the hover first lists it) finds it in the
    # inspector.
    page.mouse.click(box["x"] + px + 6, box["y"] + _AGENT_LANE_Y)
    notebook.wait_for(f"panel.inspector.search == '#{pieces[0]}'", timeout=15, what="the inspector to find it")
    notebook.run("session.finish()")
