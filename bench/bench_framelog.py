"""What logging costs the client per frame: microseconds of CPU in FrameLog.record and bytes on disk.

Run: ``python bench/bench_framelog.py [--frames N]``. Three workloads mirror a voice session: the user's
20 ms PCM chunks (audio out of band), the agent's 160 ms PCM pieces with a transcript alignment, and text
turns. Prints one line per workload, then the cost of building the DataFrame and of the parquet export.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from amigo_lab.framelog import FrameLog
from amigo_lab.protocol import NewAudioMessage, NewMessage, NewTextMessage, serialize


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.suffix != ".parquet")


def _workloads() -> dict[str, tuple[str, object, bytes | None]]:
    rng = np.random.default_rng(0)
    chunk = (rng.standard_normal(320) * 3000).astype("<i2").tobytes()            # 20 ms
    piece = (rng.standard_normal(2560) * 3000).astype("<i2").tobytes()           # 160 ms
    alignment = tuple((i * 20.0, "abcdefgh"[i]) for i in range(8))
    return {
        "user audio chunk 20 ms pcm": ("sent", NewAudioMessage.from_bytes(chunk), chunk),
        "agent audio piece 160 ms pcm": ("received", NewMessage.audio_piece(
            piece, stop=False, sequence_number=3, message_id="6650a1b2c3d4e5f6a7b8c9d1",
            transcript_alignment=alignment), piece),
        "text turn": ("sent", NewTextMessage(text="I would like to book an appointment for Tuesday"), None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5000, help="frames per workload (default 5000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'workload':32} {'us/frame':>10} {'disk B/frame':>13} {'of which audio':>15} {'wire B':>8}")
        for name, (direction, frame, audio) in _workloads().items():
            folder = Path(tmp) / name.replace(" ", "-")
            log = FrameLog(folder)
            wire = serialize(frame)
            start = time.perf_counter()
            for _ in range(args.frames):
                log.record(direction, frame, raw_size=len(wire), audio_bytes=audio,
                           audio_format="pcm" if audio is not None else None)
            elapsed = time.perf_counter() - start
            on_disk = _folder_bytes(folder) - (folder / "meta.json").stat().st_size
            audio_share = len(audio or b"")
            print(f"{name:32} {elapsed / args.frames * 1e6:10.1f} {on_disk / args.frames:13.0f} "
                  f"{audio_share:15d} {len(wire):8d}")
            if audio is not None and direction == "received":
                start = time.perf_counter()
                log.to_dataframe()
                frame_ms = (time.perf_counter() - start) * 1000
                start = time.perf_counter()
                log.close()
                parquet_ms = (time.perf_counter() - start) * 1000
                print(f"{'':32} to_dataframe {frame_ms:.0f} ms, close + parquet {parquet_ms:.0f} ms "
                      f"for {args.frames} entries")
            else:
                log.close()


if __name__ == "__main__":
    main()
