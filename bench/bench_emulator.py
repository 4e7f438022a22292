"""Measure the embedded emulator: voice turn latency, and how many real-time VAD voice sessions it holds,
next to a minimal echo server measured in the same run with the same clients (the anchor).

Run: ``python bench/bench_emulator.py`` (offline, loopback only; about ten minutes). Options:
``--levels 50,100,150,200`` (session counts to try), ``--seconds 20`` (measured time per level),
``--repeats 3`` (turns per phrase in the latency part), ``--only emulator|echo``.

The emulator runs in its own process (as ``amigo-lab emulator`` would), so its event loop, recognizer and
synthesizer compete only with each other; the clients run here on one asyncio loop. Every client behaves
like a browser microphone: it streams 20 ms PCM chunks on a real-time schedule, VAD on, silence included,
speaks one of the service's English phrases, keeps streaming silence while it listens to the whole answer,
pauses a random 0.3-3 s (so sessions do not all speak at once), then speaks again.

1. Latency: one session, phrases spoken in turn; time from ``server.vad-speech-ended`` reaching the client
   to the first audio piece of the answer, p50 and p95. This emulator does not pace agent audio (pacing
   never delays the first piece; it only makes each answer take as long to hear as it lasts).
2. Capacity: N sessions at once, N ramping up, first against the emulator, then against the echo
   anchor. The sessions of a level join evenly over 8 s (a crowd that all says its first sentence in the
   same second is a different test); then, over the measured window, a level **keeps up** when:
   * every session stays open without ``server.error`` (no disconnect, no 4429), and at least 95 % of
     its turns are answered (and, for the emulator, transcribed correctly);
   * speech-ended -> first answer audio has p95 <= 500 ms;
   * VAD lag (when speech-ended arrives, minus when the client sent the audio 500 ms past the reported end
     of speech, i.e. the earliest the end could be known) has p95 <= 250 ms;
   * agent audio keeps its schedule: with playback starting at a message's first piece, each piece is
     late by its arrival minus when it is due; p95 <= 100 ms.
   The clients check their own send schedule too: if they lag more than 100 ms (p95), the load generator,
   not the server, is the limit and the level is reported as inconclusive.

The echo anchor is the least a server must do for these clients: parse each JSON frame and decode its
audio, a plain energy detector for start and end of speech (500 ms of silence), and the user's own
utterance sent back as the answer in 160 ms pieces, paced like the emulator (at most 1 s ahead). No
recognition, no synthesis, no state machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import multiprocessing
import os
import random
import time
from dataclasses import dataclass, field
from typing import Self

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from amigo_lab.emulator import DEFAULT_SERVICE_ID
from amigo_lab.protocol import auth_subprotocol
from amigo_lab.speech import Synthesizer

PHRASES = [
    "what time do you open",
    "do you take my insurance",
    "where are you located",
    "what is your address",
    "are you open today",
    "which insurance do you take",
]
CHUNK_MS = 20
BYTES_PER_MS = 32
CHUNK = CHUNK_MS * BYTES_PER_MS
SILENCE_CHUNK = bytes(CHUNK)
END_SILENCE_MS = 500  # the emulator's VAD end-of-speech silence (protocol constant)
PAUSE_AFTER_ANSWER_S = (0.3, 3.0)  # a listener thinks a random while (seeded) before speaking again
DRAIN_S = 20.0  # how long a session may run past its window to hear out its last turn
LOST_TURN_S = 4.0  # no transcript this long after a phrase: count it unanswered and go on
LEVELS = (50, 100, 150, 200)
RAMP_S = 8.0  # sessions join evenly over this long before a level's measured window starts

LATENCY_P95_LIMIT_MS = 500.0
VAD_LAG_P95_LIMIT_MS = 250.0
LATE_PIECE_P95_LIMIT_MS = 100.0
CLIENT_LAG_LIMIT_MS = 100.0
ANSWERED_MIN = 0.95
CORRECT_MIN = 0.95


# --- the emulator in its own process ----------------------------------------------------------------------


def _serve(pipe, users: int, realtime: bool) -> None:
    from amigo_lab.emulator import Emulator

    tokens = {f"bench-token-{i}": f"bench-user-{i}" for i in range(users)}
    emulator = Emulator(tokens=tokens, realtime=realtime).start()
    pipe.send((emulator.port, os.getpid()))
    pipe.recv()  # any message: stop
    emulator.stop()


class EmulatorProcess:
    """An emulator serving in a child process; ``cpu_seconds()`` reads its CPU time from /proc."""

    def __init__(self, *, users: int, realtime: bool = True) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, users, realtime), daemon=True)

    def __enter__(self) -> Self:
        self._process.start()
        self.port, self.pid = self._pipe.recv()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pipe.send("stop")
        self._process.join(timeout=20)
        if self._process.is_alive():
            self._process.kill()

    def url(self) -> str:
        return (f"ws://127.0.0.1:{self.port}/v1/demo-org/conversation/converse_realtime"
                "?response_format=voice&audio_format=pcm")

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds used so far by the emulator process and by its children (the recognition worker)."""
        children = []
        for task in os.listdir(f"/proc/{self.pid}/task"):
            with open(f"/proc/{self.pid}/task/{task}/children") as listed:
                children += listed.read().split()
        return _cpu(self.pid), sum(_cpu(int(child)) for child in children)


def _machine_idle_s() -> float:
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")  # idle + iowait, all cores


def _cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- one simulated microphone -------------------------------------------------------------------------------


@dataclass
class SessionResult:
    turns_spoken: int = 0
    turns_answered: int = 0
    correct_transcripts: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    vad_lags_ms: list[float] = field(default_factory=list)
    worst_starve_ms: float = 0.0
    late_pieces_ms: list[float] = field(default_factory=list)
    client_lags_ms: list[float] = field(default_factory=list)
    failure: str | None = None


class MicSession:
    """Streams a microphone in real time (VAD on) and measures what comes back."""

    def __init__(self, url: str, token: str, speech: dict[str, bytes], first_phrase: int, until: float,
                 max_turns: int | None = None, measure_from: float = 0.0) -> None:
        self.url, self.token, self.speech, self.until, self.max_turns = url, token, speech, until, max_turns
        self.measure_from = measure_from  # loop time: samples before it (the ramp-up) are not counted
        self._random = random.Random(first_phrase)  # reproducible, different for every session
        self.phrase_index = first_phrase
        self.result = SessionResult()
        self._listening = asyncio.Event()  # set while the agent's answer is still coming
        self._answered = asyncio.Event()
        self._sent_at: list[float] = []  # send time of each chunk, by index (stream position / 20 ms)
        self._speech_ended_at: float | None = None
        self._awaiting_first_audio = False
        self._expected = ""
        self._messages: dict[str, tuple[float, float]] = {}  # message_id -> (first arrival, audio ms so far)
        self._phrase_done_at: float | None = None  # when the last chunk of the current phrase was sent

    async def run(self) -> SessionResult:
        try:
            async with connect(self.url, subprotocols=[auth_subprotocol(self.token)], max_size=None,
                               open_timeout=30) as ws:
                await ws.send(json.dumps({"type": "client.start-conversation", "service_id": DEFAULT_SERVICE_ID}))
                await ws.send(json.dumps({"type": "client.switch-vad-mode", "vad_mode_on": True}))
                self._listening.set()  # the greeting comes first
                reader = asyncio.create_task(self._read(ws))
                try:
                    await self._stream(ws)
                    await ws.send(json.dumps({"type": "client.finish-conversation"}))
                    await asyncio.wait_for(reader, timeout=5)
                except TimeoutError:
                    reader.cancel()
        except Exception as exc:  # a failed session is a result, reported below
            self.result.failure = self.result.failure or f"{type(exc).__name__}: {exc}"
        return self.result

    async def _stream(self, ws) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        index = 0
        pending: list[bytes] = []
        pause_until = 0.0
        while self.result.failure is None:
            # After the window (or the last turn) no new phrase starts; a turn in progress is heard out.
            done = loop.time() >= self.until or (
                self.max_turns is not None and self.result.turns_spoken >= self.max_turns)
            if done and not pending and (not self._listening.is_set() or loop.time() >= self.until + DRAIN_S):
                break
            due = start + index * CHUNK_MS / 1000
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            self.result.client_lags_ms.append(max(0.0, (loop.time() - due) * 1000))
            if not done and not pending and not self._listening.is_set() and loop.time() >= pause_until:
                if self._answered.is_set():
                    self._answered.clear()
                    pause_until = loop.time() + self._random.uniform(*PAUSE_AFTER_ANSWER_S)
                else:
                    phrase = PHRASES[self.phrase_index % len(PHRASES)]
                    self.phrase_index += 1
                    self._expected = phrase
                    audio = self.speech[phrase]
                    pending = [audio[i:i + CHUNK] for i in range(0, len(audio), CHUNK)]
                    pending[-1] = pending[-1].ljust(CHUNK, b"\0")
                    self.result.turns_spoken += 1
                    self._listening.set()  # from now until the answer is complete
            if (self._listening.is_set() and self._phrase_done_at is not None and not self._awaiting_first_audio
                    and loop.time() - self._phrase_done_at > LOST_TURN_S):
                self._listening.clear()  # the speech was not taken as a turn; speak the next phrase
                self._answered.set()
                self._phrase_done_at = None
            chunk = pending.pop(0) if pending else SILENCE_CHUNK
            if pending == [] and chunk is not SILENCE_CHUNK:
                self._phrase_done_at = loop.time()
            self._sent_at.append(loop.time())
            await ws.send(json.dumps({"type": "client.new-audio-message",
                                      "audio": base64.b64encode(chunk).decode("ascii")}))
            index += 1

    async def _read(self, ws) -> None:
        try:
            await self._read_frames(ws)
        except ConnectionClosed as exc:
            if exc.rcvd is None or exc.rcvd.code != 1000:
                self.result.failure = self.result.failure or f"closed: {exc}"

    async def _read_frames(self, ws) -> None:
        loop = asyncio.get_running_loop()
        async for text in ws:
            now = loop.time()
            frame = json.loads(text)
            kind = frame["type"]
            if kind == "server.vad-speech-ended":
                self._speech_ended_at = now
                # The chunk holding the last ms of the end-of-speech silence: the earliest the end is known.
                known_at = math.ceil((frame["audio_ms"] + END_SILENCE_MS) / CHUNK_MS) - 1
                if known_at < len(self._sent_at) and now >= self.measure_from:
                    self.result.vad_lags_ms.append((now - self._sent_at[known_at]) * 1000)
            elif kind == "server.user-message-available":
                self._awaiting_first_audio = True
                self._phrase_done_at = None
                if frame["user_message"] == self._expected:
                    self.result.correct_transcripts += 1
            elif kind == "server.new-message":
                self._on_piece(frame, now)
            elif kind == "server.interaction-complete":
                if self._awaiting_first_audio or self._speech_ended_at is not None:
                    self.result.turns_answered += 1
                self._awaiting_first_audio = False
                self._speech_ended_at = None
                self._listening.clear()
                self._answered.set()
            elif kind == "server.error":
                self.result.failure = f"server.error {frame}"

    def _on_piece(self, frame: dict, now: float) -> None:
        message_id = frame["message_id"]
        if self._awaiting_first_audio and self._speech_ended_at is not None:
            if self._speech_ended_at >= self.measure_from:
                self.result.latencies_ms.append((now - self._speech_ended_at) * 1000)
            self._awaiting_first_audio = False
        first, sent_ms = self._messages.get(message_id, (now, 0.0))
        late_ms = (now - (first + sent_ms / 1000)) * 1000
        if now >= self.measure_from:
            self.result.worst_starve_ms = max(self.result.worst_starve_ms, late_ms)
            self.result.late_pieces_ms.append(max(0.0, late_ms))
        self._messages[message_id] = (first, sent_ms + len(base64.b64decode(frame["message"])) / BYTES_PER_MS)


# --- reports --------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def synthesize_phrases() -> dict[str, bytes]:
    synthesizer = Synthesizer()
    return {phrase: synthesizer.synthesize(phrase, language="eng").pcm for phrase in PHRASES}


async def run_sessions(url: str, count: int, speech: dict[str, bytes], seconds: float, token_offset: int,
                       max_turns: int | None = None, ramp_s: float = 0.0) -> list[SessionResult]:
    """Run ``count`` sessions: they join evenly over ``ramp_s``, then all run ``seconds`` more (measured)."""
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + ramp_s
    until = measure_from + seconds
    sessions = [MicSession(url, f"bench-token-{token_offset + i}", speech, i, until, max_turns, measure_from)
                for i in range(count)]
    tasks = []
    for session in sessions:
        tasks.append(asyncio.create_task(session.run()))
        await asyncio.sleep(ramp_s / count)
    return await asyncio.gather(*tasks)


def bench_latency(speech: dict[str, bytes], repeats: int) -> None:
    print(f"1. Turn latency, one session: {len(PHRASES)} phrases x {repeats}, streamed in real time, VAD on")
    turns = repeats * len(PHRASES)
    # Unpaced agent audio: the first piece leaves just as early, and the answer does not take 5 s to listen to.
    with EmulatorProcess(users=1, realtime=False) as emulator:
        result = asyncio.run(run_sessions(emulator.url(), 1, speech, turns * 10.0, 0, max_turns=turns))[0]
    lat = result.latencies_ms
    print(f"   turns {result.turns_answered}/{result.turns_spoken} answered, "
          f"transcripts correct {result.correct_transcripts}/{result.turns_spoken}"
          + (f", failure: {result.failure}" if result.failure else ""))
    print(f"   speech-ended -> first answer audio: p50 {percentile(lat, 50):.0f} ms, p95 {percentile(lat, 95):.0f} ms,"
          f" max {max(lat, default=float('nan')):.0f} ms (n={len(lat)})")
    print(f"   VAD lag (end knowable -> speech-ended received): p50 {percentile(result.vad_lags_ms, 50):.0f} ms")


def judge(results: list[SessionResult], *, transcripts: bool = True) -> tuple[str, dict[str, float]]:
    latencies = [x for r in results for x in r.latencies_ms]
    vad_lags = [x for r in results for x in r.vad_lags_ms]
    client_lags = [x for r in results for x in r.client_lags_ms]
    failures = [r.failure for r in results if r.failure]
    spoken = sum(r.turns_spoken for r in results)
    answered = sum(r.turns_answered for r in results)
    figures = {
        "latency_p50": percentile(latencies, 50), "latency_p95": percentile(latencies, 95),
        "vad_lag_p95": percentile(vad_lags, 95), "starve_max": max((r.worst_starve_ms for r in results), default=0),
        "late_p95": percentile([x for r in results for x in r.late_pieces_ms], 95),
        "client_lag_p95": percentile(client_lags, 95), "answered": answered / spoken if spoken else 0.0,
        "correct": sum(r.correct_transcripts for r in results) / spoken if spoken else 0.0, "turns": spoken,
    }
    if figures["client_lag_p95"] > CLIENT_LAG_LIMIT_MS:
        return "inconclusive (load generator lagging)", figures
    problems = []
    if failures:
        problems.append(f"{len(failures)} sessions failed ({failures[0]})")
    if figures["answered"] < ANSWERED_MIN:
        problems.append(f"only {figures['answered']:.0%} of turns answered")
    if not figures["latency_p95"] <= LATENCY_P95_LIMIT_MS:
        problems.append(f"latency p95 {figures['latency_p95']:.0f} ms")
    if not figures["vad_lag_p95"] <= VAD_LAG_P95_LIMIT_MS:
        problems.append(f"VAD lag p95 {figures['vad_lag_p95']:.0f} ms")
    if transcripts and figures["correct"] < CORRECT_MIN:
        problems.append(f"only {figures['correct']:.0%} of transcripts correct")
    if not figures["late_p95"] <= LATE_PIECE_P95_LIMIT_MS:
        problems.append(f"agent audio p95 {figures['late_p95']:.0f} ms behind schedule")
    return ("keeps up" if not problems else "falls behind: " + "; ".join(problems)), figures


def bench_capacity(speech: dict[str, bytes], levels: tuple[int, ...], seconds: float, server: str) -> int:
    """Ramp the levels against ``server`` ("emulator" or "echo"); return the largest level that keeps up."""
    label = "the emulator" if server == "emulator" else "the echo anchor"
    print(f"2. Concurrent real-time VAD voice sessions against {label}, {seconds:.0f} s per level")
    best = 0
    offset = 0
    process = EmulatorProcess(users=sum(levels)) if server == "emulator" else EchoProcess()
    with process as target:
        for count in levels:
            cpu_before, wall_before = target.cpu_seconds(), time.monotonic()
            client_before, idle_before = time.process_time(), _machine_idle_s()
            results = asyncio.run(run_sessions(target.url(), count, speech, seconds, offset, ramp_s=RAMP_S))
            cpu_after, wall = target.cpu_seconds(), time.monotonic() - wall_before
            cpu, asr_cpu = ((after - before) / wall for after, before in zip(cpu_after, cpu_before, strict=True))
            client_cpu = (time.process_time() - client_before) / wall
            idle = (_machine_idle_s() - idle_before) / wall / (os.cpu_count() or 1)
            offset += count
            verdict, f = judge(results, transcripts=server == "emulator")
            print(f"   {count:4d} sessions: {verdict}")
            print(f"        turns {f['turns']}, answered {f['answered']:.0%}, transcripts correct {f['correct']:.0%}, "
                  f"latency p50 {f['latency_p50']:.0f} / p95 {f['latency_p95']:.0f} ms, "
                  f"VAD lag p95 {f['vad_lag_p95']:.0f} ms, agent audio behind schedule p95 {f['late_p95']:.0f} ms "
                  f"(worst {f['starve_max']:.0f} ms), client lag p95 {f['client_lag_p95']:.0f} ms")
            print(f"        CPU (100% = one core): server {cpu:.0%}, its recognition workers {asr_cpu:.0%}, "
                  f"load generator {client_cpu:.0%}; machine idle {idle:.0%} of {os.cpu_count()} cores", flush=True)
            if verdict != "keeps up":
                break
            best = count
            time.sleep(1.0)
    print(f"   largest level that keeps up ({label}): {best} sessions")
    return best


# --- the echo anchor ---------------------------------------------------------------------------------------------


ECHO_PIECE_MS = 160
ECHO_LEAD_S = 1.0
ECHO_RMS_THRESHOLD = 300.0
ECHO_START_FRAMES = 3  # 60 ms of energy starts speech
ECHO_END_FRAMES = END_SILENCE_MS // CHUNK_MS  # 500 ms of quiet ends it


async def _echo_session(ws) -> None:
    """One echo-anchor connection: the minimal server for the bench's clients (see the module docstring)."""
    import numpy as np

    loop = asyncio.get_running_loop()
    send_lock = asyncio.Lock()
    play_until = 0.0
    position_ms = 0.0
    loud = quiet = 0
    speaking = False
    utterance = bytearray()
    tasks: set[asyncio.Task] = set()

    async def send(frame: dict) -> None:
        async with send_lock:
            await ws.send(json.dumps(frame))

    async def answer(audio: bytes, *, greeting: bool = False) -> None:
        nonlocal play_until
        message_id = os.urandom(12).hex()
        if not greeting:
            await send({"type": "server.user-message-available", "message_id": os.urandom(12).hex(),
                        "user_message": ""})
        step = ECHO_PIECE_MS * BYTES_PER_MS
        parts = [audio[i:i + step] for i in range(0, len(audio), step)] or [bytes(step)]
        for number, part in enumerate(parts):
            delay = play_until - ECHO_LEAD_S - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await send({"type": "server.new-message", "message": base64.b64encode(part).decode("ascii"),
                        "transcript_alignment": None, "stop": number == len(parts) - 1, "sequence_number": number,
                        "message_id": message_id})
            play_until = max(play_until, loop.time()) + len(part) / BYTES_PER_MS / 1000
        await send({"type": "server.interaction-complete", "message_id": message_id,
                    "interaction_id": os.urandom(12).hex(), "full_message": "", "conversation_completed": False})

    def spawn(coro) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        async for text in ws:
            frame = json.loads(text)
            kind = frame.get("type")
            if kind == "client.new-audio-message" and frame.get("audio"):
                pcm = base64.b64decode(frame["audio"])
                rms = float(np.sqrt(np.mean(np.frombuffer(pcm, "<i2").astype(np.float32) ** 2))) if pcm else 0.0
                voiced = rms > ECHO_RMS_THRESHOLD
                if speaking:
                    utterance += pcm
                    quiet = 0 if voiced else quiet + 1
                    if quiet >= ECHO_END_FRAMES:
                        speaking = False
                        ended_ms = position_ms + CHUNK_MS - quiet * CHUNK_MS
                        await send({"type": "server.vad-speech-ended", "audio_ms": ended_ms})
                        spawn(answer(bytes(utterance[: len(utterance) - quiet * CHUNK])))
                else:
                    loud = loud + 1 if voiced else 0
                    if loud >= ECHO_START_FRAMES:
                        speaking, quiet, utterance = True, 0, bytearray(pcm)
                        await send({"type": "server.vad-speech-started", "audio_ms": position_ms - 2 * CHUNK_MS})
                position_ms += len(pcm) / BYTES_PER_MS
            elif kind == "client.start-conversation":
                await send({"type": "server.conversation-created", "conversation_id": os.urandom(12).hex()})
                spawn(answer(bytes(32_000), greeting=True))  # a one-second greeting
            elif kind == "client.switch-vad-mode":
                await send({"type": "server.vad-mode-switched", "vad_mode_on": bool(frame.get("vad_mode_on"))})
            elif kind == "client.finish-conversation":
                await ws.close(1000, "conversation finished")
    except ConnectionClosed:
        pass
    finally:
        for task in tasks:
            task.cancel()


def _serve_echo(pipe) -> None:
    from websockets.asyncio.server import serve

    async def serve_until_told() -> None:
        async with serve(_echo_session, "127.0.0.1", 0, compression=None, max_size=2**20,
                         select_subprotocol=lambda connection, offered: offered[0] if offered else None) as server:
            pipe.send((server.sockets[0].getsockname()[1], os.getpid()))
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)

    asyncio.run(serve_until_told())


class EchoProcess(EmulatorProcess):
    """The echo anchor serving in a child process."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve_echo, args=(child,), daemon=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", choices=("emulator", "echo"), help="measure one server only")
    args = parser.parse_args()
    speech = synthesize_phrases()
    levels = tuple(int(x) for x in args.levels.split(","))
    if args.only is None:
        bench_latency(speech, args.repeats)
    best = {server: bench_capacity(speech, levels, args.seconds, server)
            for server in ("emulator", "echo") if args.only in (None, server)}
    if len(best) == 2:
        print(f"3. Sessions kept up: emulator {best['emulator']}, echo anchor {best['echo']} "
              f"(ratio {best['emulator'] / best['echo'] if best['echo'] else float('nan'):.2f})")


if __name__ == "__main__":
    main()
