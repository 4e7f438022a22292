"""Experiment figures: scenario runs per minute on this machine, and DuckDB vs pandas over 1,000 sessions.

    .venv/bin/python bench/bench_experiments.py               # about 3 minutes on 2 cores
    .venv/bin/python bench/bench_experiments.py --sessions 200 --runs 6

1. **Runs per minute**: ``amigo_lab.experiments.run`` of two scenarios against one embedded emulator, with
   ``--concurrency`` callers: a text scenario (three text turns) streamed as fast as allowed, and a voice
   scenario (two spoken turns in real time with server VAD, the agent's audio paced in real time). The
   anchor, measured in the same run, is the same text conversation driven by hand with ``connect`` /
   ``say`` / ``finish`` and no experiment machinery: the difference is what recording, tabulating, checking
   and reporting cost per run.
2. **Many sessions**: the rows of one recorded run copied into ``--sessions`` hive partitions, then the
   per-metric count / mean / p50 / p90 / p95 table computed by :func:`session_metrics` (DuckDB) and by
   :func:`session_metrics_pandas` (pandas reading every file). The anchor is one ``pandas.read_parquet``
   of a single partition (median of five warm reads), times the number of sessions.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import textwrap
import time
from pathlib import Path

TEXT = textwrap.dedent("""\
    name: text
    realtime: false
    turns:
      - say: What are your opening hours?
        expect: {reply_matches: "(?i)open"}
      - event: the patient's insurance card was scanned
      - say: goodbye
        expect: {conversation_completed: true}
""")
VOICE = textwrap.dedent("""\
    name: voice
    turns:
      - speak: what is your address
        expect: {transcript_matches: address}
      - speak: goodbye
        expect: {conversation_completed: true}
""")


def runs_per_minute(work: Path, runs: int, concurrency: int) -> None:
    import amigo_lab
    from amigo_lab.emulator import DEFAULT_TOKEN, DEFAULT_USER, Emulator
    from amigo_lab.experiments import run
    from amigo_lab.experiments.runner import CallerPool

    (work / "text.yaml").write_text(TEXT)
    (work / "voice.yaml").write_text(VOICE)
    tokens = {DEFAULT_TOKEN: DEFAULT_USER, **CallerPool.emulator_tokens()}
    with Emulator(realtime=False, tokens=tokens) as emu:
        start = time.perf_counter()
        for i in range(runs):
            session = amigo_lab.connect(emulator=emu, token=f"caller-{i:03d}", log_dir=work / f"anchor-{i}")
            session.greeting.result(60)
            session.say("What are your opening hours?").result(60)
            session.event("the patient's insurance card was scanned").result(60)
            session.say("goodbye").result(60)
            session.finish()
        anchor = time.perf_counter() - start
        text = run(work / "text.yaml", runs=runs, concurrency=concurrency, out=work / "text", emulator=emu,
                   progress=False)
    with Emulator(realtime=True, tokens=tokens) as emu:
        voice = run(work / "voice.yaml", runs=runs, concurrency=concurrency, out=work / "voice", emulator=emu,
                    progress=False)
    print(f"anchor: the text conversation by hand, sequential: {runs / anchor * 60:.1f} conversations/min "
          f"({anchor / runs:.2f} s each)")
    for name, result in (("text", text), ("voice", voice)):
        s = result.summary
        print(f"{name:>5} scenario, {runs} runs, concurrency {concurrency}: {s['runs_per_minute']:.1f} runs/min "
              f"({s['seconds']:.1f} s; passed: {result.passed})")


def many_sessions(work: Path, sessions: int) -> None:
    import pandas as pd

    from amigo_lab.emulator import Emulator
    from amigo_lab.experiments import run, session_metrics, session_metrics_pandas

    (work / "one.yaml").write_text(TEXT.replace("name: text", "name: one"))
    with Emulator(realtime=False) as emu:
        run(work / "one.yaml", out=work / "one", emulator=emu, progress=False)
    source = work / "one" / "turns" / "scenario=one" / "run=0"
    target = work / "many" / "turns" / "scenario=one"
    for i in range(sessions):
        shutil.copytree(source, target / f"run={i}")
    reads = []
    for _ in range(6):  # the first read also loads pyarrow's readers: the median of the rest is the anchor
        start = time.perf_counter()
        pd.read_parquet(source / "part-0.parquet")
        reads.append(time.perf_counter() - start)
    one_file = sorted(reads[1:])[len(reads[1:]) // 2]
    timings = {}
    for name, fn in (("duckdb", session_metrics), ("pandas", session_metrics_pandas)):
        fn(work / "many")  # warm the page cache and imports once
        start = time.perf_counter()
        table = fn(work / "many")
        timings[name] = time.perf_counter() - start
        timings[name + "_rows"] = int(table["count"].max())
    print(f"anchor: one partition read with pandas: {one_file * 1000:.1f} ms (x {sessions} = "
          f"{one_file * sessions:.2f} s)")
    print(f"{sessions} sessions, metrics table: DuckDB {timings['duckdb']:.2f} s, pandas {timings['pandas']:.2f} s "
          f"({timings['pandas'] / timings['duckdb']:.1f}x), {timings['duckdb_rows']} turns per metric")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="runs of each scenario (default 8)")
    parser.add_argument("--concurrency", type=int, default=4, help="callers at once (default 4)")
    parser.add_argument("--sessions", type=int, default=1000, help="sessions for the DuckDB figure (default 1000)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-experiments-"))
    try:
        runs_per_minute(work, args.runs, args.concurrency)
        many_sessions(work, args.sessions)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
