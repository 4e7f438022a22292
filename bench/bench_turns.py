"""The turns table's cost on long sessions, next to an anchor measured in the same run.

Run: ``python bench/bench_turns.py [--minutes 10 60]``.

A synthetic VAD voice session, as the frame log records it: per second 50 user chunks of 20 ms PCM; every
10 s a turn (vad-speech-started, vad-speech-ended, user-message-available, an action-too-long, a filler of 3
pieces, an answer of 20 pieces of 160 ms with alignments, interaction-complete) and a playback report per
piece. ``analysis.turns`` replays it through the protocol's interaction fold. The anchor is the least any
analysis of the log must do: ``DataFrame.to_dict("records")`` of the same table (one pass that touches every
row). Each length is measured twice: without the ``wire`` column (frames rebuilt from the columns) and with
it (frames parsed from the verbatim wire text, as a real log has). Figures: seconds for ``turns()``, seconds for
the anchor, their ratio, and microseconds per row; the per-row cost staying flat from the shortest to the longest
session is the linearity claim.
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import numpy as np
import pandas as pd

from amigo_lab import analysis
from amigo_lab.framelog import COLUMNS
from amigo_lab.protocol import NewAudioMessage, NewMessage, serialize

_CHUNK_WIRE = serialize(NewAudioMessage.from_bytes(bytes(640)))
_PIECE_AUDIO = bytes(5120)


def _wire(direction: str, type_: str, fields: dict) -> str | None:
    """The wire text a real log keeps for a row (local entries have none)."""
    if direction == "local":
        return None
    if type_ == NewAudioMessage.TYPE:
        return _CHUNK_WIRE
    if type_ == NewMessage.TYPE:
        alignment = tuple((float(ms), c) for ms, c in json.loads(fields["alignment"]))
        return serialize(NewMessage.audio_piece(_PIECE_AUDIO, stop=fields["stop"],
                                                sequence_number=fields["sequence_number"],
                                                message_id=fields["message_id"], transcript_alignment=alignment))
    obj = {"type": type_, **{k: v for k, v in fields.items() if k in ("conversation_id", "vad_mode_on", "message_id",
                                                                       "interaction_id", "conversation_completed")}}
    if "vad_ms" in fields:
        obj["audio_ms"] = fields["vad_ms"]
    if type_ == "server.user-message-available":
        obj["user_message"] = fields["text"]
    elif type_ == "server.interaction-complete":
        obj["full_message"] = fields["text"]
    elif type_ == "server.current-agent-action":
        obj["action"] = json.loads(fields["action"])
    elif type_ == "client.start-conversation":
        obj["service_id"] = "0" * 24
    return json.dumps(obj)


def session_log(minutes: int, *, wire: bool = False) -> pd.DataFrame:
    """A frame-log DataFrame of a ``minutes``-long VAD voice session (see the module docstring); ``wire``: with
    the verbatim wire text of each frame, as the frame log keeps it."""
    rows: list[dict] = []

    def add(t: float, direction: str, type_: str, **fields) -> None:
        row = {"t": t, "direction": direction, "type": type_, "size": 40, **fields}
        if wire:
            row["wire"] = _wire(direction, type_, fields)
        rows.append(row)

    add(0.0, "local", "connection.opened")
    add(0.01, "sent", "client.start-conversation")
    add(0.05, "received", "server.conversation-created", conversation_id="a" * 24)
    add(0.06, "sent", "client.switch-vad-mode", vad_mode_on=True)
    add(0.07, "received", "server.vad-mode-switched", vad_mode_on=True)
    alignment = json.dumps([[i * 20, c] for i, c in enumerate("abcdefgh")])
    position = 0.0
    for second in range(minutes * 60):
        base = 0.1 + second
        for k in range(50):
            add(base + k * 0.02, "sent", "client.new-audio-message", audio_bytes=640, audio_ms=20.0,
                audio_format="pcm")
        position += 1000.0
        if second % 10 == 9:
            n = second // 10
            add(base + 0.2, "received", "server.vad-speech-started", vad_ms=position - 3000)
            add(base + 0.5, "received", "server.vad-speech-ended", vad_ms=position - 600)
            add(base + 0.6, "received", "server.user-message-available", message_id=f"u{n}", text="what time is it")
            add(base + 0.61, "received", "server.current-agent-action", action_type="action-too-long",
                action=json.dumps({"type": "action-too-long", "filler": "One moment"}))
            for k in range(3):
                add(base + 0.62 + k * 0.01, "received", "server.new-message", message_id=f"f{n}", sequence_number=k,
                    stop=k == 2, audio_bytes=5120, audio_ms=160.0, audio_format="pcm", alignment=alignment)
            for k in range(20):
                t = base + 0.7 + k * 0.01
                add(t, "received", "server.new-message", message_id=f"m{n}", sequence_number=k, stop=k == 19,
                    audio_bytes=5120, audio_ms=160.0, audio_format="pcm", alignment=alignment)
                # The player reports in real time from the first piece on: 160 ms played per 160 ms.
                add(base + 0.7 + (k + 1) * 0.16, "local", "playback.progress", message_id=f"m{n}",
                    played_ms=160.0 * (k + 1))
            add(base + 0.95, "received", "server.interaction-complete", message_id=f"m{n}", interaction_id=f"i{n}",
                text="It is nine o'clock", conversation_completed=False)
    rows.sort(key=lambda row: row["t"])
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["seq"] = np.arange(len(table))
    table["wall"] = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(table["t"], unit="s")
    return table.astype(COLUMNS)


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, nargs="+", default=[10, 60])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'minutes':>7} {'wire':>5} {'rows':>9} {'turns':>6} {'turns() s':>10} {'anchor s':>9} {'ratio':>6} "
          f"{'us/row':>7}")
    for minutes in args.minutes:
        for wire in (False, True):
            log = session_log(minutes, wire=wire)
            table = analysis.turns(log)
            seconds = best_of(args.repeat, lambda log=log: analysis.turns(log))
            anchor = best_of(args.repeat, lambda log=log: log.to_dict("records"))
            print(f"{minutes:>7} {'yes' if wire else 'no':>5} {len(log):>9} {len(table):>6} {seconds:>10.3f} "
                  f"{anchor:>9.3f} {seconds / anchor:>6.2f} {seconds / len(log) * 1e6:>7.2f}")


if __name__ == "__main__":
    main()
