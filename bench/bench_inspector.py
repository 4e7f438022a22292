"""The event inspector in a real browser: an hour of microphone-rate traffic, 60 times faster than real time.

    .venv/bin/python bench/bench_inspector.py        # about 1.5 minutes; needs /usr/bin/chromium

It runs the browser test ``test_the_inspector_through_an_hour_of_microphone_traffic`` of
``tests/browser/test_browser_live_lab.py``
(JupyterLab + headless Chromium): a kernel thread feeds an ``EventInspector`` 3 600 simulated seconds of a VAD
session (50 user chunks of 20 ms a second, an agent piece of 160 ms every 160 ms, a turn every 10 s: about
205 000 entries) in about a minute. Figures, each printed next to its anchor measured on the same page just
before the traffic starts:

- frame rate: ``requestAnimationFrame`` callbacks per second, the lowest 5-second sample during the traffic,
  against the idle page's;
- page memory: the JS heap after a forced garbage collection, at the end, against the idle page's;
- DOM: element count and rows in the DOM at the end, against the idle page's element count;
- rows kept by the browser (its bounded window) for the entries fed.

The same figures land in ``test-artifacts/inspector-hour.json``.

``attach`` measures the kernel side instead: a ``SessionPanel`` attached to a session whose frame log already
holds ``--minutes`` (default 60) of a VAD voice session (``bench_turns.session_log``, recorded through a real
``FrameLog`` with its wire text and audio, still open as a live session's log is)::

    .venv/bin/python bench/bench_inspector.py attach [--minutes 60]

Figures: seconds from ``SessionPanel(session)`` to a panel showing the whole log (one read of the JSONL, one
fold replay, every widget filled), next to two anchors measured in the same run on the same log: a cold read
of the JSONL alone (``load_session(path).frames``) and ``analysis.turns`` on the log (read plus fold). It also
checks that the panel's turns are the ones ``analysis.turns`` finds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/browser/test_browser_live_lab.py::test_the_inspector_through_an_hour_of_microphone_traffic"


class _LoggedSession:
    """What a panel reads of a live session: its open frame log, its subscriptions, its parameters."""

    def __init__(self, log: object) -> None:
        self.log = log
        self.params = SimpleNamespace(response_format="voice", audio_format="pcm")
        self.conversation_id = "a" * 24
        self.state = "active"

    def on_frame(self, callback):  # type: ignore[no-untyped-def]
        return self.log.subscribe(callback)  # type: ignore[attr-defined]

    def on_event(self, _callback):  # type: ignore[no-untyped-def]
        return lambda: None          # nothing happens live: the log is all there is


def record_log(minutes: int, folder: Path) -> object:
    """A ``FrameLog`` in ``folder`` holding ``bench_turns.session_log(minutes)``, recorded frame by frame with
    its wire text and audio on a simulated clock, and left open (a live session's log)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_turns import session_log

    from amigo_lab.framelog import FrameLog
    from amigo_lab.protocol import NewAudioMessage, NewMessage, parse

    table = session_log(minutes, wire=True)
    clock = [0.0]
    log = FrameLog(folder, clock=lambda: clock[0], meta={"response_format": "voice", "audio_format": "pcm"})
    columns = ["t", "direction", "type", "wire", "message_id", "played_ms"]
    for row in table[columns].to_numpy(dtype=object, na_value=None).tolist():
        t, direction, kind, wire, message_id, played_ms = row
        clock[0] = float(t)
        if direction == "local":
            fields = {k: v for k, v in (("message_id", message_id), ("played_ms", played_ms)) if v is not None}
            log.record_local(kind, **fields)
            continue
        frame = parse(wire)
        audio = frame.audio_bytes() if isinstance(frame, (NewAudioMessage, NewMessage)) else None
        log.record(direction, frame, raw=wire, audio_bytes=audio, audio_format="pcm" if audio is not None else None)
    return log


def attach(minutes: int) -> int:
    """Time a panel attaching to a ``minutes``-long log, next to its anchors (see the module docstring)."""
    from amigo_lab import analysis
    from amigo_lab.framelog import load_session
    from amigo_lab.widgets import SessionPanel

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        log = record_log(minutes, Path(folder) / "session")
        print(f"recorded {len(log)} entries ({minutes} min) in {time.perf_counter() - started:.1f} s")  # type: ignore[arg-type]
        started = time.perf_counter()
        panel = SessionPanel(_LoggedSession(log))
        attach_s = time.perf_counter() - started
        started = time.perf_counter()
        frames = load_session(log.path).frames  # type: ignore[attr-defined]
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        turns = analysis.turns(load_session(log.path).frames)  # type: ignore[attr-defined]
        turns_s = time.perf_counter() - started
        shown = sorted(panel.view.records)
        completed = [t for t in panel.waterfall.turns if t["status"] == "completed"]
        print(f"panel attached: {attach_s:.2f} s for {len(frames)} entries; anchors, same log: cold JSONL read "
              f"{read_s:.2f} s, analysis.turns (read + fold) {turns_s:.2f} s; ratio to analysis.turns "
              f"{attach_s / turns_s:.2f}")
        print(f"turns: panel {len(shown)} (waterfall {len(completed)} completed), analysis.turns {len(turns)}")
        panel.close()
        print("where the time goes (the log already read once, so its DataFrame comes from the log's cache):")
        for stage, seconds in _stages(_LoggedSession(log)):
            print(f"  {stage:<44} {seconds:6.2f} s")
        log.close()  # type: ignore[attr-defined]
        return 0 if len(shown) == len(turns) else 1


def _stages(session: _LoggedSession) -> list[tuple[str, float]]:
    """Seconds of each step of an attach: the rows, the fold replay, each widget's replay."""
    from amigo_lab.widgets import EventInspector, LatencyWaterfall, LiveTimeline, SessionView
    from amigo_lab.widgets._fold_feed import log_records, shared_history

    stages = []
    started = time.perf_counter()
    frames = session.log.to_dataframe()  # type: ignore[attr-defined]
    stages.append(("DataFrame (cached)", time.perf_counter() - started))
    started = time.perf_counter()
    log_records(frames)
    stages.append(("rows as dicts, wire text of audio left out", time.perf_counter() - started))
    started = time.perf_counter()
    with shared_history(session):
        stages.append(("shared read + one fold replay (rows included)", time.perf_counter() - started))
        for widget in (EventInspector(), LatencyWaterfall(), LiveTimeline(), SessionView()):
            started = time.perf_counter()
            widget.follow(session)
            stages.append((f"{type(widget).__name__}.follow", time.perf_counter() - started))
            widget.close()
    return stages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("browser", "attach"), default="browser")
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args()
    if args.mode == "attach":
        return attach(args.minutes)
    done = subprocess.run([sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider"], cwd=ROOT, check=False)
    if done.returncode:
        print("the browser run failed; see its output above", file=sys.stderr)
        return done.returncode
    figures = json.loads((ROOT / "test-artifacts" / "inspector-hour.json").read_text())
    idle, end = figures["idle"], figures["end"]
    print(f"entries fed: {figures['entries']} ({figures['simulated_s']} s simulated at {figures['speed']}x, "
          f"{figures['wall_s']} s wall)")
    print(f"frame rate during traffic (lowest 5 s sample): {figures['fps_during_min']:.1f} fps; "
          f"anchor, idle page: {idle['fps']:.1f} fps")
    print(f"JS heap at the end: {end['heap_mb']:.1f} MB; anchor, idle page: {idle['heap_mb']:.1f} MB "
          f"(growth {figures['heap_growth_mb']:.1f} MB)")
    print(f"DOM elements at the end: {end['dom_nodes']}; anchor, idle page: {idle['dom_nodes']}; "
          f"inspector rows in the DOM: {end['dom_rows']}")
    print(f"rows kept by the browser: {end['rows']} (entries folded into runs; window 5000)")
    print(f"inspector redraws: {end['renders']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
