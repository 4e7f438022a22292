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
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/browser/test_browser_live_lab.py::test_the_inspector_through_an_hour_of_microphone_traffic"


def main() -> int:
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
