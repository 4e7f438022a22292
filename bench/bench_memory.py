"""Memory of the emulator and of the client over a long microphone-rate voice session.

Run: ``python bench/bench_memory.py`` (offline, loopback only; a 10-minute session streamed at the client's
top rate, about 5 minutes). Options: ``--minutes 10`` (session length, in audio), ``--every 1`` (sample
every this many audio minutes).

The emulator runs in its own process (as ``amigo-lab emulator`` would) with ``tracemalloc`` on; the client
is the lab's own session (``amigo_lab.connect``) in this process, also traced. The session switches VAD on
and streams 20 ms PCM chunks, silence included, as a browser microphone does; every 8 s of audio holds one
of the service's English phrases, so the emulator detects speech, recognizes it and answers in voice
(unpaced). The stream is compressed in time: the session sends as fast as its 100 frames/s pacing allows,
about twice real time, so the emulator's own real-time input limit is lifted for the run.

At each sample the script prints, for both processes, the resident set size (RSS, from /proc) and the
Python heap traced by ``tracemalloc``; at the end, the growth per audio minute after the first minute
(warm-up: caches, recognizers, imports). The aim is flat: no growth per frame. The client's frame log writes
to disk by design; its in-memory part is what is measured here.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import tempfile
import time
import tracemalloc
from typing import Self

from amigo_lab.emulator import DEFAULT_ORG, DEFAULT_SERVICE_ID, DEFAULT_TOKEN
from amigo_lab.speech import Synthesizer

PHRASES = ["what time do you open", "do you take my insurance", "where are you located", "what is your address"]
CHUNK_MS = 20
BYTES_PER_MS = 32
CHUNK = CHUNK_MS * BYTES_PER_MS
TURN_EVERY_S = 8.0
#: Chunks a second the script hands the session: under its 100 frames/s pacing, so nothing piles up.
SEND_RATE = 90


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _serve(pipe) -> None:
    tracemalloc.start()
    from amigo_lab.emulator import Emulator, Limits
    from amigo_lab.emulator.recognition import SHARED_RECOGNITION

    limits = Limits(frames_per_second=10_000, max_audio_ahead_s=1e9, idle_timeout_s=3600)
    emulator = Emulator(realtime=False, limits=limits).start()
    pipe.send(emulator.port)
    while (request := pipe.recv()) != "stop":
        if request == "memory":
            gc.collect()
            current, _ = tracemalloc.get_traced_memory()
            workers = sum(_rss_mb(pid) for pid in SHARED_RECOGNITION.running)
            pipe.send((_rss_mb(os.getpid()), current / 2**20, workers, emulator.stats()))
    emulator.stop()


class EmulatorProcess:
    """An emulator in a child process that reports its memory on request."""

    def __enter__(self) -> Self:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), daemon=True)
        self._process.start()
        self.port = self._pipe.recv()
        return self

    def memory(self) -> tuple[float, float, float, dict]:
        self._pipe.send("memory")
        return self._pipe.recv()

    def __exit__(self, *exc_info: object) -> None:
        self._pipe.send("stop")
        self._process.join(timeout=20)
        if self._process.is_alive():
            self._process.kill()


def _client_memory() -> tuple[float, float]:
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    return _rss_mb(os.getpid()), current / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=1.0)
    args = parser.parse_args()

    import amigo_lab

    synthesizer = Synthesizer()
    speech = [synthesizer.synthesize(p, language="eng").pcm for p in PHRASES]
    chunks_per_turn = int(TURN_EVERY_S * 1000 / CHUNK_MS)
    total_chunks = int(args.minutes * 60_000 / CHUNK_MS)
    sample_every = int(args.every * 60_000 / CHUNK_MS)
    silence = bytes(CHUNK)

    rows: list[tuple[float, float, float, float, float, float, int, int]] = []
    with EmulatorProcess() as emulator, tempfile.TemporaryDirectory() as log_dir:
        tracemalloc.start()
        session = amigo_lab.connect(DEFAULT_ORG, DEFAULT_TOKEN, host=f"127.0.0.1:{emulator.port}",
                                    service_id=DEFAULT_SERVICE_ID, response_format="voice", audio_format="pcm",
                                    log_dir=log_dir, response_timeout=None)
        session.greeting.result(60)
        session.vad(True)
        started = time.monotonic()
        print(f"A {args.minutes:g}-minute microphone session, 20 ms chunks, VAD on, a phrase every "
              f"{TURN_EVERY_S:g} s of audio")
        print(f"{'audio min':>9} {'wall s':>7} | {'emulator RSS MB':>15} {'heap MB':>8} {'ASR workers MB':>14} | "
              f"{'client RSS MB':>13} {'heap MB':>8} | {'turns':>5} {'frames in':>9}")
        for index in range(total_chunks + 1):
            if index % sample_every == 0:
                time.sleep(0.5)  # let the answers in flight arrive
                e_rss, e_heap, workers, stats = emulator.memory()
                c_rss, c_heap = _client_memory()
                minute = index * CHUNK_MS / 60_000
                rows.append((minute, e_rss, e_heap, workers, c_rss, c_heap, int(stats["interactions"]),
                             int(stats["frames_in"])))
                print(f"{minute:9.1f} {time.monotonic() - started:7.0f} | {e_rss:15.1f} {e_heap:8.2f} "
                      f"{workers:14.1f} | "
                      f"{c_rss:13.1f} {c_heap:8.2f} | {stats['interactions']:5d} {stats['frames_in']:9d}",
                      flush=True)
            if index == total_chunks:
                break
            turn, offset = divmod(index, chunks_per_turn)
            phrase = speech[turn % len(speech)]
            start = (offset - 10) * CHUNK  # 200 ms of silence, then the phrase, then silence
            chunk = phrase[start:start + CHUNK] if 0 <= start < len(phrase) else silence
            session.send_chunk(chunk.ljust(CHUNK, b"\0"))
            delay = started + (index + 1) / SEND_RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        session.finish()
        tracemalloc.stop()

    first = next((row for row in rows if row[0] >= 1.0), rows[0])
    last = rows[-1]
    span = max(last[0] - first[0], 1e-9)
    print(f"Growth per audio minute after minute {first[0]:g} (over {span:g} minutes, "
          f"{last[7] - first[7]} frames in, {last[6] - first[6]} turns):")
    print(f"   emulator: RSS {(last[1] - first[1]) / span:+.2f} MB/min, heap {(last[2] - first[2]) / span * 1024:+.0f} "
          f"KB/min, recognition workers {(last[3] - first[3]) / span:+.2f} MB/min")
    print(f"   client:   RSS {(last[4] - first[4]) / span:+.2f} MB/min, heap {(last[5] - first[5]) / span * 1024:+.0f} "
          "KB/min")


if __name__ == "__main__":
    main()
