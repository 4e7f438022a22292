"""A recorded session's user side as a scenario, so a real call can be replayed against another version set.

:func:`replay_session` reads the frame log and writes a scenario file plus one WAV per spoken turn:

- texts and external events become ``say`` and ``event`` steps; VAD switches become ``vad`` steps;
- the user's audio is cut into turns where it pauses for more than :data:`AUDIO_GAP_S` (or at the
  push-to-talk end, ``audio: null``) and saved with its timing inside the turn (its silences included);
- audio that began while the agent was answering becomes a ``barge_in`` with the original ``after_ms``
  (from that reply's first audio); idle time before a step (after the previous reply ended) becomes a
  ``wait_ms`` step, so the caller keeps the original pace.

Each step expects what the recorded call showed where the log says so: the conversation completing.
Next: ``amigo-lab run REPLAY.yaml --version-set canary``, then :func:`~amigo_lab.experiments.compare`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amigo_lab.experiments.experiment import ExperimentError

__all__ = ["AUDIO_GAP_S", "replay_session"]

#: A pause in the user's audio longer than this (seconds without a sent chunk) starts a new turn.
AUDIO_GAP_S = 0.5
#: Idle time shorter than this before a step is not written as a wait (the runner's own pace covers it).
MIN_WAIT_MS = 300.0


def _user_items(frames: pd.DataFrame) -> list[dict[str, Any]]:
    sent = frames[frames["direction"] == "sent"].sort_values("seq")
    items: list[dict[str, Any]] = []
    audio: dict[str, Any] | None = None
    for row in sent.itertuples():
        kind = row.type
        if kind == "client.new-audio-message":
            has_audio = pd.notna(row.audio_bytes) and int(row.audio_bytes) > 0
            if not has_audio:  # audio: null ends a push-to-talk turn
                if audio is not None:
                    audio["ptt_end"] = True
                    audio = None
                continue
            ms = float(row.audio_ms) if pd.notna(row.audio_ms) else 0.0
            if audio is None or row.t - audio["last_t"] > AUDIO_GAP_S + audio["last_ms"] / 1000.0:
                audio = {"kind": "audio", "t": float(row.t), "last_t": float(row.t), "last_ms": ms,
                         "end_t": float(row.t) + ms / 1000}
                items.append(audio)
            audio["last_t"], audio["last_ms"] = float(row.t), ms
            audio["end_t"] = max(audio["end_t"], float(row.t) + ms / 1000.0)
            continue
        audio = None
        if kind == "client.new-text-message":
            step = "event" if row.message_type == "external-event" else "say"
            items.append({"kind": step, "t": float(row.t), "text": str(row.text)})
        elif kind == "client.switch-vad-mode" and pd.notna(row.vad_mode_on):
            items.append({"kind": "vad", "t": float(row.t), "on": bool(row.vad_mode_on)})
    return items


def replay_session(session_dir: str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None,
                   version_set: str | None = None, name: str | None = None) -> Path:
    """Write the user side of a recorded session as a scenario (YAML + WAVs); returns the YAML path.

    ``out`` is the scenario file (default ``SESSION_DIR/replay/replay.yaml``); the WAVs go next to it.
    ``version_set`` replaces the recorded one. Next: :func:`amigo_lab.experiments.run` on the file.
    """
    import yaml

    from amigo_lab.analysis import turns
    from amigo_lab.audio import SAMPLE_RATE, write_wav
    from amigo_lab.framelog import FrameLogError, load_session

    try:
        recorded = load_session(session_dir)
    except FrameLogError as exc:
        raise ExperimentError(f"cannot replay {str(session_dir)!r}: {exc}") from None
    frames = recorded.frames
    items = _user_items(frames)
    if not items:
        raise ExperimentError(f"{str(session_dir)!r} has no user input to replay (no text, event or audio sent)")
    table = turns(frames)
    replies = table[table["user_kind"] != "greeting"]
    target = Path(out) if out is not None else Path(session_dir) / "replay" / "replay.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    track = recorded.audio_track("sent") if any(i["kind"] == "audio" for i in items) else np.zeros(0, np.float32)

    steps: list[dict[str, Any]] = []
    previous_end = _greeting_end(table)
    for number, item in enumerate(items):
        t = item["t"]
        streaming = replies[(replies["first_audio_t"] <= t) & (replies["complete_t"] > t)]
        if item["kind"] == "audio" and len(streaming):
            reply = streaming.iloc[0]
            step: dict[str, Any] = {"barge_in": {"after_ms": round((t - float(reply["first_audio_t"])) * 1000.0)}}
        else:
            idle = (t - previous_end) * 1000.0 if not math.isnan(previous_end) else 0.0
            if idle >= MIN_WAIT_MS and item["kind"] != "vad":
                steps.append({"wait_ms": round(idle)})
            step = {}
        if item["kind"] == "audio":
            file = target.parent / f"{target.stem}-turn-{number:02d}.wav"
            start, end = int(t * SAMPLE_RATE), math.ceil(item["end_t"] * SAMPLE_RATE)
            write_wav(file, track[start:end], sr=SAMPLE_RATE)
            if "barge_in" in step:
                step["barge_in"]["audio"] = file.name
            else:
                step["audio"] = file.name
        elif item["kind"] == "vad":
            step["vad"] = item["on"]
        else:
            step[item["kind"]] = item["text"]
        next_t = items[number + 1]["t"] if number + 1 < len(items) else math.inf
        answered = replies[(replies["user_end_t"] >= t - 0.05) & (replies["user_end_t"] < next_t)]
        if item["kind"] != "vad" and len(answered):
            reply = answered.iloc[0]
            if pd.notna(reply["conversation_completed"]) and bool(reply["conversation_completed"]):
                step["expect"] = {"conversation_completed": True}
            ended = reply["complete_t"]
            previous_end = float(ended) if pd.notna(ended) else previous_end
        steps.append(step)
    meta = recorded.meta
    scenario = {
        "name": name or f"replay-{Path(session_dir).resolve().name}",
        "description": f"The user side of the session recorded in {Path(session_dir).resolve()}",
        "version_set": version_set or meta.get("version_set") or "release",
        "vad": False,
        "turns": steps,
    }
    service = meta.get("service_id")
    if isinstance(service, str) and len(service) == 24:
        scenario["service_id"] = service
    target.write_text("# Written by amigo-lab replay: the recorded user side, with its timing.\n"
                      + yaml.safe_dump(scenario, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return target


def _greeting_end(table: pd.DataFrame) -> float:
    greeting = table[table["user_kind"] == "greeting"]
    if len(greeting) and pd.notna(greeting["complete_t"].iloc[0]):
        return float(greeting["complete_t"].iloc[0])
    return math.nan
