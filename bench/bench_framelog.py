"""The frame log's costs, each next to an anchor measured in the same run.

Run: ``python bench/bench_framelog.py [--record-frames N] [--load-frames N]``.

1. Recording. A voice session's mix (per second: 50 user chunks of 20 ms PCM, 6 agent pieces of 160 ms PCM
   with a transcript alignment, and a few text frames) goes through ``FrameLog.record`` with the exact wire
   text, as the session calls it. The anchor is a minimal durable log doing the least such a log must: one
   JSON line per frame (seq, t, wall clock, direction, the wire text, and where its audio is) appended and
   flushed, and the frame's audio appended to a second file and flushed. Figure: frames per second, and the
   ratio log / anchor (goal >= 0.8). The same pair is also measured on the client's receive path, each
   frame parsed (``protocol.parse``) and its audio decoded from base64 before it is logged, as the session does.
2. Loading. The same mix, ``--load-frames`` entries (default 1,000,000), recorded and closed; then
   ``load_session(dir).frames`` next to ``pandas.read_parquet`` of the Parquet file the log wrote (goal: within
   2x), and the JSONL path (the Parquet ignored, as after a crash) next to the same anchor.
3. Closing: how long ``close()`` keeps the caller (the session's event loop) when called on a running loop,
   and how long the Parquet takes to land in the background.

Absolute times drift on a shared machine; the ratios are the figures to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from amigo_lab.framelog import FrameLog, load_session
from amigo_lab.protocol import NewAudioMessage, NewMessage, NewTextMessage, parse, serialize


def _mix(seconds: int = 20) -> list[tuple[str, object, str, bytes | None, float | None]]:
    """``seconds`` of a voice session, every frame distinct: (direction, frame, wire text, audio bytes, audio ms).

    Per second: 50 user chunks of 20 ms, 6 agent pieces of 160 ms with an alignment, one text frame.
    """
    rng = np.random.default_rng(0)
    out = []
    for second in range(seconds):
        pieces = []
        for n in range(6):
            piece = (rng.standard_normal(2560) * 2000).astype("<i2").tobytes()
            frame = NewMessage.audio_piece(piece, stop=n == 5, sequence_number=n, message_id=f"{second:024x}",
                                           transcript_alignment=tuple((i * 20.0, "abcdefgh"[i]) for i in range(8)))
            pieces.append(("received", frame, serialize(frame), piece, 160.0))
        for i in range(50):
            chunk = (rng.standard_normal(320) * 2000).astype("<i2").tobytes()
            frame = NewAudioMessage.from_bytes(chunk)
            out.append(("sent", frame, serialize(frame), chunk, 20.0))
            if i % 8 == 7 and pieces:
                out.append(pieces.pop(0))
        text = NewTextMessage(text=f"I would like to book an appointment for Tuesday, turn {second}")
        out.append(("sent", text, serialize(text), None, None))
    return out


def _record_log(folder: Path, n: int, mix: list, receive: bool = False) -> float:
    log = FrameLog(folder)
    start = time.perf_counter()
    for i in range(n):
        direction, frame, wire, audio, ms = mix[i % len(mix)]
        if receive:
            frame, audio = _receive(wire)
        if audio is None:
            log.record(direction, frame, raw=wire)
        else:
            log.record(direction, frame, raw=wire, audio_bytes=audio, audio_format="pcm", audio_ms=ms)
    elapsed = time.perf_counter() - start
    log.close(wait=True)
    return elapsed


def _receive(wire: str) -> tuple[object, bytes | None]:
    frame = parse(wire)
    if isinstance(frame, NewMessage):
        return frame, frame.audio_bytes()
    if isinstance(frame, NewAudioMessage) and frame.audio is not None:
        return frame, base64.b64decode(frame.audio)
    return frame, None


def _record_anchor(folder: Path, n: int, mix: list, receive: bool = False) -> float:
    folder.mkdir(parents=True)
    t0 = time.monotonic()
    with open(folder / "log.jsonl", "a", encoding="utf-8") as lines, open(folder / "audio.bin", "ab") as audio_file:
        offset = 0
        start = time.perf_counter()
        for i in range(n):
            direction, _frame, wire, audio, _ms = mix[i % len(mix)]
            if receive:
                _frame, audio = _receive(wire)
            record = {"seq": i, "t": time.monotonic() - t0, "wall": time.time(), "direction": direction, "wire": wire}
            if audio:
                record["audio_offset"], record["audio_bytes"] = offset, len(audio)
                audio_file.write(audio)
                audio_file.flush()
                offset += len(audio)
            lines.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            lines.flush()
        return time.perf_counter() - start


def bench_record(tmp: Path, n: int, repeats: int, receive: bool = False) -> None:
    mix = _mix()
    ours, anchor = [], []
    for r in range(repeats):  # interleaved, so drift on the machine hits both alike
        anchor.append(_record_anchor(tmp / f"anchor-{r}", n, mix, receive))
        ours.append(_record_log(tmp / f"log-{r}", n, mix, receive))
        shutil.rmtree(tmp / f"anchor-{r}")
        shutil.rmtree(tmp / f"log-{r}")
    best_ours, best_anchor = min(ours), min(anchor)
    where = "on the receive path (parse + decode + log)" if receive else "the log alone"
    print(f"record, {n} frames of a voice mix, {where}, best of {repeats}:")
    print(f"  FrameLog.record          {n / best_ours:10,.0f} frames/s  ({best_ours / n * 1e6:.1f} us/frame)")
    print(f"  minimal durable log      {n / best_anchor:10,.0f} frames/s  ({best_anchor / n * 1e6:.1f} us/frame)")
    print(f"  ratio log / anchor       {best_anchor / best_ours:10.2f}   (goal >= 0.8)")


def _timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_load(tmp: Path, n: int, repeats: int) -> None:
    folder = tmp / "big"
    mix = _mix()
    start = time.perf_counter()
    log = FrameLog(folder)
    for i in range(n):
        direction, frame, wire, audio, ms = mix[i % len(mix)]
        log.record(direction, frame, raw=wire, audio_bytes=audio, audio_format="pcm" if audio else None,
                   audio_ms=ms)
    recorded = time.perf_counter() - start

    async def close_on_loop() -> float:
        begin = time.perf_counter()
        log.close()
        return time.perf_counter() - begin

    held = asyncio.run(close_on_loop())
    begin = time.perf_counter()
    log.wait_closed()
    background = time.perf_counter() - begin + held
    parquet = folder / "frames.parquet"
    jsonl_mb = (folder / "frames.jsonl").stat().st_size / 1e6
    print(f"load, {n:,} entries recorded in {recorded:.1f} s ({jsonl_mb:,.0f} MB of JSONL, "
          f"{parquet.stat().st_size / 1e6:,.0f} MB of Parquet):")
    print(f"  close() on the event loop held it {held * 1000:.1f} ms; the Parquet landed {background:.1f} s later")
    pd.read_parquet(parquet)  # both read from a warm page cache
    ours = anchor = float("inf")
    for _ in range(repeats):  # interleaved, so drift on the machine hits both alike
        ours = min(ours, _timed(lambda: load_session(folder).frames, 1))
        anchor = min(anchor, _timed(lambda: pd.read_parquet(parquet), 1))
    print(f"  load_session(dir).frames       {ours:7.2f} s")
    print(f"  pandas.read_parquet (anchor)   {anchor:7.2f} s")
    print(f"  ratio                          {ours / anchor:7.2f}   (goal <= 2)")
    meta = json.loads((folder / "meta.json").read_text())
    meta.pop("parquet")  # as if the writer had died before close: the JSONL is the source
    (folder / "meta.json").write_text(json.dumps(meta))
    jsonl = _timed(lambda: load_session(folder).frames, 1)
    print(f"  JSONL only (no complete Parquet) {jsonl:5.2f} s  ({jsonl / anchor:.1f}x the anchor)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record-frames", type=int, default=50_000, help="frames per recording run (50,000)")
    parser.add_argument("--load-frames", type=int, default=1_000_000, help="entries of the load test (1,000,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure, best kept (3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_record(Path(tmp), args.record_frames, args.repeats)
        bench_record(Path(tmp), args.record_frames, args.repeats, receive=True)
        if args.load_frames:
            bench_load(Path(tmp), args.load_frames, args.repeats)


if __name__ == "__main__":
    main()
