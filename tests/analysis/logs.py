"""Build small frame logs by hand, as DataFrames of the frame-log schema, with times we choose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from amigo_lab.framelog import COLUMNS

SCHEMA = COLUMNS

CONVERSATION = "a" * 24


class Log:
    """Collects entries; each helper takes the entry's ``t`` in seconds. ``seq`` follows ``t``."""

    def __init__(self, *, audio_format: str | None = "pcm") -> None:
        self.rows: list[dict] = []
        self.audio_format = audio_format
        self.audio = {"sent": bytearray(), "received": bytearray()}

    def add(self, t: float, direction: str, type_: str, **fields) -> Log:
        row = {"t": float(t), "direction": direction, "type": type_, "size": 0 if direction == "local" else 40}
        row.update(fields)
        self.rows.append(row)
        return self

    # connection and lifecycle ---------------------------------------------------------------------------
    def opened(self, t: float) -> Log:
        return self.add(t, "local", "connection.opened")

    def start(self, t: float, *, created_after: float = 0.05) -> Log:
        self.add(t, "sent", "client.start-conversation")
        return self.add(t + created_after, "received", "server.conversation-created", conversation_id=CONVERSATION)

    def closed(self, t: float, code: int, reason: str = "") -> Log:
        return self.add(t, "local", "connection.closed", close_code=code, close_reason=reason, text=reason)

    # the user -------------------------------------------------------------------------------------------
    def say(self, t: float, text: str) -> Log:
        return self.add(t, "sent", "client.new-text-message", text=text, message_type="user-message")

    def event(self, t: float, text: str) -> Log:
        return self.add(t, "sent", "client.new-text-message", text=text, message_type="external-event")

    def _audio(self, direction: str, ms: float, freq: float | None) -> dict:
        """Append PCM16 (a 0.5-amplitude sine of ``freq`` Hz, or silence) to one side's audio file."""
        n = int(round(ms * 16))
        samples = 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / 16000) if freq else np.zeros(n)
        data = (samples * 32767).astype("<i2").tobytes()
        offset = len(self.audio[direction])
        self.audio[direction] += data
        return {"audio_bytes": len(data), "audio_ms": ms, "audio_format": self.audio_format, "audio_offset": offset}

    def chunk(self, t: float, ms: float = 20.0, *, freq: float | None = None) -> Log:
        return self.add(t, "sent", "client.new-audio-message", **self._audio("sent", ms, freq))

    def stream(self, t0: float, ms: float, *, chunk_ms: float = 20.0, speech: tuple[float, float] | None = None,
               freq: float = 300.0) -> Log:
        """Real-time audio: chunk k of ``chunk_ms`` sent at ``t0 + k * chunk_ms / 1000``.

        ``speech=(from_ms, to_ms)``: those ms of the stream are a tone, the rest silence.
        """
        for k in range(int(round(ms / chunk_ms))):
            voiced = speech is not None and speech[0] <= k * chunk_ms < speech[1]
            self.chunk(t0 + k * chunk_ms / 1000.0, chunk_ms, freq=freq if voiced else None)
        return self

    def audio_end(self, t: float) -> Log:
        return self.add(t, "sent", "client.new-audio-message", stop=True, audio_bytes=0, audio_ms=0.0)

    def vad(self, t: float, kind: str, audio_ms: float) -> Log:
        """``kind``: "started", "ended" or "reset-zero"."""
        return self.add(t, "received", f"server.vad-speech-{kind}", vad_ms=audio_ms)

    # the server -----------------------------------------------------------------------------------------
    def user_message(self, t: float, text: str, message_id: str = "u1") -> Log:
        return self.add(t, "received", "server.user-message-available", message_id=message_id, text=text)

    def action(self, t: float, action_type: str, **action) -> Log:
        return self.add(t, "received", "server.current-agent-action", action_type=action_type,
                        action=json.dumps({"type": action_type, **action}))

    def text_piece(self, t: float, message_id: str, n: int, text: str, *, stop: bool = False) -> Log:
        return self.add(t, "received", "server.new-message", message_id=message_id, sequence_number=n,
                        stop=stop, text=text)

    def audio_piece(self, t: float, message_id: str, n: int, *, ms: float = 160.0, stop: bool = False,
                    chars: str | None = None, freq: float = 440.0) -> Log:
        alignment = json.dumps([[i * 50, c] for i, c in enumerate(chars)]) if chars is not None else None
        return self.add(t, "received", "server.new-message", message_id=message_id, sequence_number=n,
                        stop=stop, alignment=alignment, **self._audio("received", ms, freq))

    def complete(self, t: float, message_id: str, full_message: str, *, interaction_id: str = "i1",
                 completed: bool = False) -> Log:
        return self.add(t, "received", "server.interaction-complete", message_id=message_id,
                        interaction_id=interaction_id, text=full_message, conversation_completed=completed)

    def error(self, t: float, code: int, description: str) -> Log:
        return self.add(t, "received", "server.error", http_error_code=code, error_description=description,
                        text=description)

    def playback(self, t: float, kind: str, message_id: str, played_ms: float) -> Log:
        return self.add(t, "local", f"playback.{kind}", message_id=message_id, played_ms=played_ms)

    # output ---------------------------------------------------------------------------------------------
    def frames(self) -> pd.DataFrame:
        # Entries are numbered in time order (stable), as a real log's are, whatever order they were added in.
        rows = sorted(self.rows, key=lambda row: row["t"])
        table = pd.DataFrame(rows, columns=list(SCHEMA))
        table["seq"] = np.arange(len(table))
        table["wall"] = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(table["t"], unit="s")
        table["conversation_id"] = table["conversation_id"].astype("string").fillna(CONVERSATION)
        return table.astype(SCHEMA)

    def save(self, folder: Path, *, meta: dict | None = None) -> Path:
        """Write a recorded-session folder (parquet, audio files, meta.json) that load_session reads."""
        folder.mkdir(parents=True, exist_ok=True)
        self.frames().to_parquet(folder / "frames.parquet", index=False)
        (folder / "audio-sent.bin").write_bytes(bytes(self.audio["sent"]))
        (folder / "audio-received.bin").write_bytes(bytes(self.audio["received"]))
        (folder / "meta.json").write_text(json.dumps(meta or {}), encoding="utf-8")
        return folder


def text_turn(log: Log, t: float, text: str, reply: str, *, latency: float, n: int = 1, pieces: int = 3,
              gap: float = 0.05) -> Log:
    """A user text at ``t`` answered by ``pieces`` text pieces, the first ``latency`` s later."""
    answer = f"m{n}"
    log.say(t, text).user_message(t + 0.01, text, f"u{n}")
    words = reply.split(" ")
    size = max(1, len(words) // pieces)
    parts = [" ".join(words[i:i + size]) + " " for i in range(0, len(words), size)]
    parts[-1] = parts[-1].rstrip()
    for k, part in enumerate(parts):
        log.text_piece(t + latency + k * gap, answer, k, part, stop=k == len(parts) - 1)
    return log.complete(t + latency + len(parts) * gap, answer, reply, interaction_id=f"i{n}")
