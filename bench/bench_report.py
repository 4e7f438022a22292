"""What a session's report costs, next to a minimal self-contained report of the same session, in one run.

Run: ``python bench/bench_report.py [--minutes 60] [--minutes-small 15] [--repeat 1] [--breakdown]``.

A voice session is simulated on a frame log (its clock driven by the script, so an hour takes seconds to
record): the microphone streams 20 ms PCM chunks all along with server VAD on, and every 10 s the user speaks
for 2 s and the agent answers with 2.9 s of audio in 18 pieces, played to the end. Then, each on the same
folder:

- ``write_report`` (every section, per-turn MP3 players), and with ``audio=False``;
- the anchor, a minimal self-contained report: load the session, compute the turns once, write one HTML page
  with the turns table, one SVG timeline (a bar per turn) and, in the audio variant, each side's whole track
  as one MP3 player.

Figures: seconds and page size (non-audio bytes and total) for each, the ratio report / anchor (goal: within
2x for 60 minutes), and the growth from ``--minutes-small`` to ``--minutes`` (linear: about the ratio of the
durations). ``--repeat N`` keeps the best of N runs of each; ``--breakdown`` times the report's main steps
once each, to show where the time goes.
"""

from __future__ import annotations

import argparse
import base64
import html
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from amigo_lab.analysis import reference_vad_segments, silence_gap_latency, turns, vad_segments, write_report
from amigo_lab.analysis.spectrogram import pooled_spectrogram
from amigo_lab.audio import encode_mp3, float_to_pcm16
from amigo_lab.framelog import FrameLog, load_session
from amigo_lab.protocol import (
    ConversationCreated,
    InteractionComplete,
    NewAudioMessage,
    NewMessage,
    StartConversation,
    SwitchVadMode,
    UserMessageAvailable,
    VadModeSwitched,
    VadSpeechEnded,
    VadSpeechStarted,
    serialize,
)

SR = 16000
TURN_S, SPEECH_AT, SPEECH_S, PIECES = 10.0, 1.0, 2.0, 18
_AUDIO_URI = re.compile(r"data:audio/mpeg;base64,[A-Za-z0-9+/=]+")


def _voice(seconds: float, freq: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * SR)
    t = np.arange(n) / SR
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2  # syllable-like loudness
    return (0.25 * envelope * (np.sin(2 * np.pi * freq * t) + 0.3 * rng.standard_normal(n))).astype(np.float32)


def simulate(folder: Path, minutes: float) -> Path:
    """Record a simulated VAD voice session of ``minutes`` minutes into ``folder``."""
    rng = np.random.default_rng(0)
    now = [0.0]
    log = FrameLog(folder, clock=lambda: now[0], meta={"response_format": "voice", "audio_format": "pcm"})

    def at(t: float, direction: str, frame, audio: bytes | None = None) -> None:
        now[0] = t
        if audio is None:
            log.record(direction, frame, raw=serialize(frame))
        else:
            log.record(direction, frame, raw=serialize(frame), audio_bytes=audio, audio_format="pcm",
                       audio_ms=len(audio) / 32.0)

    silence = float_to_pcm16(np.zeros(320, dtype=np.float32))
    speech = float_to_pcm16(_voice(SPEECH_S, 220.0, rng))
    reply = float_to_pcm16(_voice(PIECES * 0.16, 180.0, rng))
    now[0] = 0.0
    log.record_local("connection.opened")
    at(0.01, "sent", StartConversation(service_id="6650a1b2c3d4e5f6a7b8c9d0"))
    at(0.05, "received", ConversationCreated(conversation_id="c" * 24))
    at(0.06, "sent", SwitchVadMode(vad_mode_on=True))
    at(0.08, "received", VadModeSwitched(vad_mode_on=True))
    n_turns = int(minutes * 60 / TURN_S)
    events = []  # (t, direction, frame, audio) of the server and the player, merged with the chunks by time
    for k in range(n_turns):
        base = 0.1 + k * TURN_S
        start_ms, end_ms = (k * TURN_S + SPEECH_AT) * 1000, (k * TURN_S + SPEECH_AT + SPEECH_S) * 1000
        events.append((base + SPEECH_AT + 0.2, "received", VadSpeechStarted(audio_ms=start_ms), None))
        events.append((base + SPEECH_AT + SPEECH_S + 0.5, "received", VadSpeechEnded(audio_ms=end_ms), None))
        answer = f"{k:024x}"
        events.append((base + 3.6, "received", UserMessageAvailable(message_id=f"u{k}", user_message=f"question {k}"),
                       None))
        for n in range(PIECES):
            piece = reply[n * 5120:(n + 1) * 5120]
            frame = NewMessage.audio_piece(piece, stop=n == PIECES - 1, sequence_number=n, message_id=answer)
            events.append((base + 3.9 + n * 0.1, "received", frame, piece))
        events.append((base + 5.8, "received", InteractionComplete(
            message_id=answer, interaction_id=f"i{k}", full_message=f"answer {k}", conversation_completed=False),
            None))
        events.append((base + 3.9 + PIECES * 0.16, "local", ("playback.finished", answer, PIECES * 160.0), None))
    events.sort(key=lambda e: e[0])
    step = 0.02
    chunks = int(n_turns * TURN_S / step)
    e = 0
    for i in range(chunks):
        t = 0.1 + i * step
        while e < len(events) and events[e][0] <= t:
            when, direction, frame, audio = events[e]
            if direction == "local":
                now[0] = when
                log.record_local(frame[0], message_id=frame[1], played_ms=frame[2])
            else:
                at(when, direction, frame, audio)
            e += 1
        in_turn = (i * step) % TURN_S
        if SPEECH_AT <= in_turn < SPEECH_AT + SPEECH_S:
            offset = int(round((in_turn - SPEECH_AT) / step)) * 640
            chunk = speech[offset: offset + 640] or silence
        else:
            chunk = silence
        at(t, "sent", NewAudioMessage.from_bytes(chunk), chunk)
    log.close(wait=True)
    return folder


def minimal_report(folder: Path, out: Path, *, audio: bool) -> Path:
    """The anchor: the least a self-contained report of the session does."""
    session = load_session(folder)
    table = turns(session.frames)
    rows = table[["turn", "user_kind", "transcript", "reply_text", "latency_first_audio_ms"]]
    end = float(session.frames["t"].max()) or 1.0
    bars = "".join(f"<rect x='{1100 * s / end:.1f}' y='10' width='{max(1100 * (e - s) / end, 1):.1f}' height='20'/>"
                   for s, e in zip(table["user_start_t"].fillna(0), table["complete_t"].fillna(0), strict=True))
    players = ""
    if audio:
        for side in ("sent", "received"):
            track = session.audio_track(side)
            if len(track):
                data = base64.b64encode(encode_mp3(track, sr=SR, bitrate_kbps=24)).decode("ascii")
                players += f"<audio controls src='data:audio/mpeg;base64,{data}'></audio>"
    out.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>session</title></head><body>"
                   f"<h1>{html.escape(session.path.name)}</h1>{rows.to_html(index=False)}"
                   f"<svg width='1100' height='40'>{bars}</svg>{players}</body></html>", encoding="utf-8")
    return out


def _timed(fn) -> tuple[float, Path]:
    start = time.perf_counter()
    path = fn()
    return time.perf_counter() - start, path


def _sizes(path: Path) -> str:
    page = path.read_text(encoding="utf-8")
    return f"{len(_AUDIO_URI.sub('', page)) / 1e3:8,.0f} kB non-audio, {len(page) / 1e6:6.1f} MB in all"


def breakdown(folder: Path) -> None:
    """Time the report's main steps once each on ``folder``, to show where ``audio=False`` spends its time."""
    session = load_session(folder)
    steps: list[tuple[str, float]] = []

    def step(name: str, fn):
        start = time.perf_counter()
        value = fn()
        steps.append((name, time.perf_counter() - start))
        return value

    frames = step("load_session", lambda: load_session(folder).frames)
    table = step("turns (the fold's replay)", lambda: turns(frames, fast=session.fast))
    user = step("audio_track('sent')", lambda: session.audio_track("sent", sr=SR))
    agent = step("audio_track('received')", lambda: session.audio_track("received", sr=SR))
    reference = step("reference_vad_segments", lambda: reference_vad_segments(user, sr=SR))
    step("vad_segments", lambda: vad_segments(frames, reference_vad=reference, turns_table=table))
    # As the report draws them: 900 columns over the session, at most 32 analysis frames averaged per column.
    hop_ms = max(10.0, max(len(user), len(agent)) / SR * 1000.0 / 900 / 32)
    step("both spectrograms", lambda: [pooled_spectrogram(x, sr=SR, max_columns=900, hop_ms=hop_ms)
                                       for x in (user, agent)])
    step("silence_gap_latency", lambda: silence_gap_latency(user, agent, sr=SR, frames=frames, turns_table=table))
    print("  where the time goes (each step once): " + ", ".join(f"{name} {sec:.2f} s" for name, sec in steps))


def measure(tmp: Path, minutes: float, *, repeat: int = 1, steps: bool = False) -> dict[str, float]:
    """Time ``write_report`` and the anchor on one simulated session; with ``repeat`` > 1, each the best of
    that many runs, report and anchor alternating (on a shared machine the best run is the least disturbed)."""
    start = time.perf_counter()
    folder = simulate(tmp / f"session-{minutes:g}", minutes)
    frames = len(load_session(folder).frames)
    print(f"{minutes:g}-minute session: {frames:,} entries, simulated in {time.perf_counter() - start:.1f} s")
    figures = {}
    for audio in (True, False):
        label = "with audio" if audio else "audio left out"
        ours = anchor = float("inf")
        for _ in range(repeat):
            seconds, report = _timed(lambda audio=audio: write_report(folder, tmp / "report.html", progress=False,
                                                                            audio=audio))
            ours = min(ours, seconds)
            seconds, minimal = _timed(lambda audio=audio: minimal_report(folder, tmp / "minimal.html", audio=audio))
            anchor = min(anchor, seconds)
        best = f" (best of {repeat})" if repeat > 1 else ""
        print(f"  write_report, {label:15} {ours:7.1f} s   {_sizes(report)}{best}")
        print(f"  minimal report, {label:13} {anchor:7.1f} s   {_sizes(minimal)}{best}")
        print(f"  ratio report / anchor ({label}) {ours / anchor:5.2f}   (goal <= 2)")
        figures[label] = ours
    if steps:
        breakdown(folder)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the long session (60)")
    parser.add_argument("--minutes-small", type=float, default=15.0, help="length of the short one (15; 0 skips)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, the best kept (1)")
    parser.add_argument("--breakdown", action="store_true", help="also time the report's main steps once")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        small = (measure(Path(tmp), args.minutes_small, repeat=args.repeat, steps=args.breakdown)
                 if args.minutes_small else None)
        large = measure(Path(tmp), args.minutes, repeat=args.repeat, steps=args.breakdown)
        if small:
            for label, seconds in large.items():
                print(f"growth {args.minutes_small:g} -> {args.minutes:g} minutes ({label}): "
                      f"{seconds / small[label]:.1f}x for {args.minutes / args.minutes_small:.1f}x the length")


if __name__ == "__main__":
    main()
