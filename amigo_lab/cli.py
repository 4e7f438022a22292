"""The ``amigo-lab`` command: thin over the emulator, the demo and the report.

    amigo-lab emulator [--host 127.0.0.1] [--port 8765] [--org demo-org] [--token demo-token]
    amigo-lab demo [--out DIR] [--token T]
    amigo-lab report DIR [--out FILE]

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
                       services_dir=args.services)
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
