"""The ``amigo-lab`` command: thin over the emulator, the demo and the report.

    amigo-lab emulator [--host 127.0.0.1] [--port 8765] [--org demo-org] [--token demo-token] [--profile P]
    amigo-lab demo [--out DIR] [--token T]
    amigo-lab report DIR [--out FILE]
    amigo-lab run SCENARIO... [--runs N] [--concurrency K | --ramp 1,4,8] [--out DIR] [--scheduler local|tcp://...]
    amigo-lab compare DIR_A DIR_B [--out FILE]
    amigo-lab replay SESSION_DIR [--out FILE.yaml]
    amigo-lab bench turn-taking [--out DIR] [--languages eng,spa]

Each subcommand maps to one library call, so everything here can also be done from Python.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from amigo_lab.errors import AmigoError
from amigo_lab.protocol import is_loopback_host


def _emulator(args: argparse.Namespace) -> int:
    from amigo_lab.emulator import DEFAULT_SERVICE_ID, Emulator

    async def serve() -> None:
        emu = Emulator(host=args.host, port=args.port, org=args.org, token=args.token,
                       services_dir=args.services, profile=args.profile)
        async with emu:
            print(f"amigo-lab emulator listening on {emu.base_url}", flush=True)
            print(f"  endpoint  {emu.url()}", flush=True)
            print(f"  org {args.org}   token {args.token}   service {DEFAULT_SERVICE_ID}   version set release",
                  flush=True)
            print("  press Ctrl+C to stop", flush=True)
            await asyncio.Event().wait()

    if not is_loopback_host(args.host):
        print(f"warning: binding {args.host}: the emulator is reachable from other machines", file=sys.stderr)
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        print("emulator stopped", flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from amigo_lab.demo import run_demo

    run_demo(out=Path(args.out), token=args.token, realtime=not args.fast)
    return 0


def _report(args: argparse.Namespace) -> int:
    from amigo_lab.analysis import write_report

    path = write_report(Path(args.session_dir), Path(args.out) if args.out else None)
    print(f"report written to {path}")
    return 0


def _profiles() -> list[str]:
    from amigo_lab.emulator import PROFILES

    return sorted(PROFILES)


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers of callers separated by commas, e.g. 1,4,8; got {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"every level must be at least 1 caller, got {text!r}")
    return levels


def _connect_options(args: argparse.Namespace) -> dict[str, object]:
    if not args.token and os.environ.get("AMIGO_TOKEN"):
        args.token = [os.environ["AMIGO_TOKEN"]]
    options = {"organization": args.org, "token": args.token[0] if args.token else None, "region": args.region,
               "host": args.host, "service_id": args.service}
    return {k: v for k, v in options.items() if v}


def _run(args: argparse.Namespace) -> int:
    from amigo_lab.experiments import run

    emulator_options = {"profile": args.profile} if args.profile else None
    result = run(args.scenarios, runs=args.runs, concurrency=args.concurrency, ramp=args.ramp, out=args.out,
                 version_set=args.version_set, scheduler=args.scheduler, workers=args.workers,
                 connect_options=_connect_options(args), tokens=args.token if len(args.token or []) > 1 else None,
                 emulator_options=emulator_options, realtime=False if args.fast else None,
                 progress=not args.quiet)
    print(_run_summary(result))
    if result.summary.get("interrupted"):
        return 130
    return 0 if result.passed else 1


def _run_summary(result) -> str:
    lines = []
    for name, scenario in result.summary["scenarios"].items():
        verdict = "PASS" if scenario["passed"] else "FAIL"
        lines.append(f"{verdict}  {name}  ({scenario['runs']} runs, {scenario['source']})")
        for e in scenario["expectations"]:
            if not e["passed"]:
                lines.append(f"      step {e['step']} line {e['line']}: {e['expectation']}: failed in "
                             f"{e['runs_failed']} of {e['runs_checked']} run(s): {e['first_failure']}")
    load = result.summary.get("load")
    if load:
        for level in load["levels"]:
            audio = level.get("latency_first_audio_ms", {})
            lines.append(f"  {level['level']:>4} callers: first audio p50 {audio.get('p50') or float('nan'):.0f} ms, "
                         f"p95 {audio.get('p95') or float('nan'):.0f} ms, {level['failed_steps']} failed step(s)")
        stops = load["stops_keeping_up_at"]
        lines.append(f"  stops keeping up at {stops} callers" if stops else "  kept up at every level")
    s = result.summary
    lines.append(f"{s['runs']} runs in {s['seconds']:.0f} s ({s['runs_per_minute'] or 0:.1f} runs/min); "
                 f"{s['checks_failed']} of {s['checks']} checks failed{'; INTERRUPTED' if s['interrupted'] else ''}")
    lines.append(f"results: {result.out}/results.parquet   report: {result.out}/report.html")
    return "\n".join(lines)


def _compare(args: argparse.Namespace) -> int:
    from amigo_lab.experiments import compare

    comparison = compare(args.dir_a, args.dir_b)
    out = Path(args.out) if args.out else Path(args.dir_b) / "compare.html"
    comparison.write_html(out)
    for row in comparison.metrics.itertuples():
        print(f"{row.scenario:<20} {row.metric:<34} p50 {row.p50_a:8.0f} -> {row.p50_b:8.0f} ms  "
              f"diff {row.p50_diff:+7.0f} [{row.p50_low:+.0f}, {row.p50_high:+.0f}]  {row.verdict}")
    changed = comparison.turns[comparison.turns["text_changed"]] if len(comparison.turns) else comparison.turns
    for row in changed.itertuples():
        print(f"  step {row.step} reply changed: {row.reply_a!r} -> {row.reply_b!r}")
    print(f"comparison written to {out}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from amigo_lab.experiments import replay_session

    path = replay_session(args.session_dir, out=args.out, version_set=args.version_set)
    print(f"scenario written to {path}; run it with: amigo-lab run {path}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from amigo_lab.experiments import turn_taking_bench

    result = turn_taking_bench(out=args.out, languages=args.languages.split(","), runs=args.runs,
                               progress=not args.quiet,
                               emulator_options={"profile": args.profile} if args.profile else None)
    print(result.text())
    print(f"report: {result.report_path}")
    return 0


def _add_connect_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the real service (default: the embedded emulator)")
    group.add_argument("--org", default=os.environ.get("AMIGO_ORG"), help="organization id (AMIGO_ORG)")
    group.add_argument("--token", action="append",
                       help="token (default AMIGO_TOKEN); repeat it, one per concurrent caller")
    group.add_argument("--region", default=os.environ.get("AMIGO_REGION"), help="us, eu, au or ca (AMIGO_REGION)")
    group.add_argument("--host", default=os.environ.get("AMIGO_HOST"), help="host[:port] instead of the region's")
    group.add_argument("--service", default=os.environ.get("AMIGO_SERVICE_ID"), help="service id for every scenario")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``amigo-lab`` (exposed for tests and for ``--help`` docs)."""
    parser = argparse.ArgumentParser(prog="amigo-lab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    emu = sub.add_parser("emulator", help="serve the embedded emulator until stopped")
    emu.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    emu.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    emu.add_argument("--org", default="demo-org", help="organization id clients must use")
    emu.add_argument("--token", default="demo-token", help="token clients must present")
    emu.add_argument("--services", default=os.environ.get("AMIGO_LAB_SERVICES"),
                     help="folder of service definitions (default: the repo's data/services)")
    emu.add_argument("--profile", default="instant", choices=_profiles(),
                     help="behaviour profile: instant (answers at once) or realistic (production-like timing)")
    emu.set_defaults(run=_emulator)

    demo = sub.add_parser("demo", help="run a scripted voice conversation against the embedded emulator")
    demo.add_argument("--out", default="demo-out", help="folder for the frame log, audio and report (default demo-out)")
    demo.add_argument("--token", default="demo-token", help="token used by both the emulator and the client")
    demo.add_argument("--fast", action="store_true", help="send audio as fast as allowed instead of in real time")
    demo.set_defaults(run=_demo)

    report = sub.add_parser("report", help="write one self-contained HTML report of a recorded session")
    report.add_argument("session_dir", help="a recorded session folder (has frames.jsonl)")
    report.add_argument("--out", help="HTML file to write (default: SESSION_DIR/report.html)")
    report.set_defaults(run=_report)

    runp = sub.add_parser("run", help="run scenario files and check their expectations (exit 1 when one fails)")
    runp.add_argument("scenarios", nargs="+", help="scenario .yaml files or folders of them")
    runp.add_argument("--runs", type=int, help="runs of each scenario (default: its runs:, else 1)")
    runp.add_argument("--concurrency", type=int, default=1, help="callers at once (default 1)")
    runp.add_argument("--ramp", type=_levels, help="concurrency levels in turn, e.g. 1,4,8: latency vs load")
    runp.add_argument("--out", default="experiment-out", help="output folder or fsspec URL (default experiment-out)")
    runp.add_argument("--version-set", help="run every scenario against this version set")
    runp.add_argument("--scheduler", help="Dask: 'local' (a local cluster) or tcp://host:8786")
    runp.add_argument("--workers", type=int, default=2, help="workers of the local Dask cluster (default 2)")
    runp.add_argument("--profile", choices=_profiles(), help="behaviour profile of the embedded emulator")
    runp.add_argument("--fast", action="store_true", help="stream audio as fast as allowed (quick, not timing)")
    runp.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_connect_flags(runp)
    runp.set_defaults(run=_run)

    comparep = sub.add_parser("compare", help="compare two experiment folders: per metric and turn by turn")
    comparep.add_argument("dir_a", help="experiment folder A (before)")
    comparep.add_argument("dir_b", help="experiment folder B (after)")
    comparep.add_argument("--out", help="HTML file to write (default: DIR_B/compare.html)")
    comparep.set_defaults(run=_compare)

    replayp = sub.add_parser("replay", help="turn a recorded session's user side into a scenario file")
    replayp.add_argument("session_dir", help="a recorded session folder (has frames.jsonl)")
    replayp.add_argument("--out", help="scenario file to write (default: SESSION_DIR/replay/replay.yaml)")
    replayp.add_argument("--version-set", help="version set the scenario targets (default: the session's)")
    replayp.set_defaults(run=_replay)

    benchp = sub.add_parser("bench", help="built-in benchmarks: turn-taking")
    benchp.add_argument("suite", choices=["turn-taking"], help="which benchmark")
    benchp.add_argument("--out", default="bench-turn-taking", help="output folder (default bench-turn-taking)")
    benchp.add_argument("--languages", default="eng,spa,fra", help="languages of the callers (default eng,spa,fra)")
    benchp.add_argument("--runs", type=int, default=1, help="repetitions of each case (default 1)")
    benchp.add_argument("--profile", choices=_profiles(), help="behaviour profile of the embedded emulator")
    benchp.add_argument("--quiet", action="store_true", help="no progress bar")
    benchp.set_defaults(run=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``amigo-lab`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except AmigoError as exc:
        print(f"amigo-lab {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
