"""The demo: a scripted voice conversation with the embedded emulator, recorded to a folder.

:func:`run_demo` is what ``amigo-lab demo`` runs. Every step uses the public API only (``connect``,
``Session``, ``load_session``, ``amigo_lab.analysis``), so it doubles as a worked example: read it top to
bottom to see how a voice session is driven from Python.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from amigo_lab.audio import SAMPLE_RATE, pcm16_to_float, write_wav

if TYPE_CHECKING:
    import pandas

#: What the user says or types at each step, in order. Spoken lines are synthesized English speech.
SPOKEN_QUESTION = "what are your opening hours"
SLOW_TOOL_REQUEST = "i would like to book an appointment"
EXTERNAL_EVENT = "the patient's insurance card was scanned at the front desk"
SPANISH_QUESTION = "hola, ¿a qué hora abren?"
LONG_ANSWER_REQUEST = "tell me about the clinic"
BARGE_IN_QUESTION = "what is your address"
FAREWELL = "goodbye"

STEP_COUNT = 10
#: A cough: this much of the start of a word, too short for the server's VAD to count as a turn.
COUGH_MS = 80


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its files, and the turns table it printed."""

    out: Path
    session_dir: Path
    report: Path
    turns: pandas.DataFrame  # a string, so importing this module does not import pandas


def run_demo(out: Path | str = "demo-out", *, token: str = "demo-token", realtime: bool = True,
             echo: Callable[[str], None] = print) -> DemoResult:
    """Run the scripted conversation against a fresh embedded emulator and write everything to ``out``.

    ``token`` is used by both the emulator and the client. ``realtime=False`` streams audio as fast as the
    emulator allows (for tests). Progress goes to ``echo``. Next: ``amigo_lab.load_session(out / "session")``
    or open ``out / "report.html"``.
    """
    from amigo_lab._connect import connect
    from amigo_lab.emulator import DEFAULT_ORG, DEFAULT_SERVICE_ID, Emulator
    from amigo_lab.session import SessionError
    from amigo_lab.speech import Synthesizer

    out = Path(out)
    session_dir = out / "session"
    if session_dir.exists():
        echo(f"replacing the previous recording in {session_dir}")
        shutil.rmtree(session_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = _Steps(echo)
    synth = Synthesizer()

    def speech(text: str) -> np.ndarray:
        # With VAD on, send_audio() appends the silence that lets the server hear the end of the turn.
        return pcm16_to_float(synth.synthesize(text, language="eng").pcm)

    echo("amigo-lab demo: a voice conversation with the embedded emulator (offline)")
    with Emulator(token=token) as emu:
        echo(f"  emulator {emu.base_url}  org {DEFAULT_ORG}  service {DEFAULT_SERVICE_ID}")
        session = connect(DEFAULT_ORG, token, host=f"127.0.0.1:{emu.port}", service_id=DEFAULT_SERVICE_ID,
                          response_format="voice", audio_format="pcm", log_dir=session_dir, emulator=emu)
        try:
            with steps.step("greeting"):
                assert session.greeting is not None  # connect() starts the conversation, greeting included
                steps.said(session.greeting.result(timeout=60))
                session.extend_timeout()  # what an idle client sends to keep the conversation open

            with steps.step(f"a {COUGH_MS} ms cough with VAD on: too short to be a turn"):
                session.vad(True)
                cough = session.send_audio(_cough(speech("what")), sr=SAMPLE_RATE, realtime=realtime)
                try:
                    cough.result(timeout=60)
                    steps.echo("      the server took the cough for a turn")
                except SessionError as exc:
                    steps.echo(f"      discarded by the server: {exc}")

            with steps.step(f"spoken question, streamed in real time with VAD on: {SPOKEN_QUESTION!r}"):
                steps.said(session.send_audio(speech(SPOKEN_QUESTION), sr=SAMPLE_RATE, realtime=realtime)
                           .result(timeout=120))

            with steps.step(f"slow tool with a filler: {SLOW_TOOL_REQUEST!r}"):
                reply = session.send_audio(speech(SLOW_TOOL_REQUEST), sr=SAMPLE_RATE,
                                           realtime=realtime).result(timeout=120)
                steps.said(reply, extra=f"filler {reply.filler_text!r}" if reply.filler_text else "no filler")

            with steps.step(f"external event: {EXTERNAL_EVENT!r}"):
                steps.said(session.event(EXTERNAL_EVENT).result(timeout=60))

            with steps.step(f"switch to Spanish: {SPANISH_QUESTION!r}"):
                steps.said(session.say(SPANISH_QUESTION).result(timeout=60))

            with steps.step("close the connection, reconnect and continue the same conversation"):
                before = session.conversation_id
                session.close()
                session.reconnect()
                same = "same" if session.conversation_id == before else "a DIFFERENT"
                steps.echo(f"      continued {same} conversation {session.conversation_id}")
                session.vad(True)

            with steps.step(f"barge-in: {BARGE_IN_QUESTION!r} spoken while the agent talks"):
                long_turn = session.say(LONG_ANSWER_REQUEST)
                _wait_for_agent_audio(session, timeout=30)
                interrupting = session.send_audio(speech(BARGE_IN_QUESTION), sr=SAMPLE_RATE, realtime=realtime)
                interrupted = long_turn.result(timeout=120)
                steps.said(interrupted, extra="interrupted" if interrupted.interrupted else "NOT interrupted")
                steps.said(interrupting.result(timeout=120))

            with steps.step(f"farewell: {FAREWELL!r}"):
                reply = session.send_audio(speech(FAREWELL), sr=SAMPLE_RATE, realtime=realtime).result(timeout=120)
                steps.said(reply, extra="conversation completed" if reply.conversation_completed else "still open")
        finally:
            # The farewell closed the socket; closing the log writes frames.parquet next to frames.jsonl.
            session.log.close()

    with steps.step(f"writing {out}"):
        result = _write_outputs(out, session_dir)
    echo("")
    echo(_format_turns(result.turns))
    if not realtime:
        echo("(--fast: the user's audio went faster than real time, so these latencies are not what a caller "
             "would experience)")
    echo("")
    echo(f"frame log: {session_dir}   report: {result.report}")
    return result


def _cough(word: np.ndarray) -> np.ndarray:
    """The first COUGH_MS of a spoken word, with silence around it."""
    voiced = np.flatnonzero(np.abs(word) > 0.02)
    start = int(voiced[0]) if voiced.size else 0
    burst = word[start: start + SAMPLE_RATE * COUGH_MS // 1000]
    pad = np.zeros(SAMPLE_RATE // 4, dtype=np.float32)
    return np.concatenate([pad, burst, pad])


def _wait_for_agent_audio(session, *, timeout: float) -> None:
    """Block until the agent's next audio piece arrives (so the user can talk over it)."""
    arrived = threading.Event()

    def watch(entry, frame) -> None:
        if entry.get("type") == "server.new-message" and entry.get("audio_bytes"):
            arrived.set()

    remove = session.on_frame(watch)
    try:
        if not arrived.wait(timeout):
            raise TimeoutError(f"no agent audio within {timeout} s")
        time.sleep(1.0)  # let some of the answer play before interrupting it
    finally:
        remove()


def _write_outputs(out: Path, session_dir: Path) -> DemoResult:
    from amigo_lab.analysis import turns, write_report
    from amigo_lab.framelog import load_session

    recorded = load_session(session_dir)
    recorded.export_parquet()
    user = recorded.audio_track("sent", sr=SAMPLE_RATE)
    agent = recorded.audio_track("received", sr=SAMPLE_RATE)
    n = max(len(user), len(agent))
    stereo = np.zeros((n, 2), dtype=np.float32)
    stereo[: len(user), 0] = user
    stereo[: len(agent), 1] = agent
    write_wav(out / "user.wav", user, sr=SAMPLE_RATE)
    write_wav(out / "agent.wav", agent, sr=SAMPLE_RATE)
    write_wav(out / "stereo.wav", stereo, sr=SAMPLE_RATE)
    report = write_report(session_dir, out / "report.html", progress=False)
    return DemoResult(out=out, session_dir=session_dir, report=report, turns=turns(recorded.frames))


def _format_turns(table) -> str:
    columns = [c for c in ("user_kind", "transcript", "reply_text", "latency_first_audio_ms",
                           "latency_first_answer_audio_ms", "latency_complete_ms", "interrupted", "user_language",
                           "agent_language")
               if c in table.columns]
    view = table[columns].copy()
    for column in ("transcript", "reply_text"):
        if column in view:
            view[column] = view[column].astype("string").str.slice(0, 30)
    for column in view.columns:
        if column.endswith("_ms"):
            view[column] = view[column].round(0).astype("Int64")     # to the millisecond, as measured
    return "turns and latencies (ms from the user's end of turn):\n" + view.to_string(index=False)


class _Steps:
    """Numbered progress lines: ``[3/8] slow tool ... done in 4.1 s``."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.n = 0

    def step(self, title: str) -> _Step:
        self.n += 1
        return _Step(self, f"[{self.n}/{STEP_COUNT}] {title}")

    def said(self, reply, *, extra: str = "") -> None:
        heard = f"heard {reply.user_text!r} -> " if reply.user_text else ""
        # The fold's named latency: from the user's end of speech (or sent text) to the first agent audio.
        name = "latency_first_audio_ms" if reply.audio.size else "latency_first_text_ms"
        latency = reply.timings.get(name)
        timing = f" ({name} {latency:.0f})" if isinstance(latency, (int, float)) else ""
        self.echo(f"      {heard}agent: {reply.text!r}{timing}{'; ' + extra if extra else ''}")


class _Step:
    def __init__(self, steps: _Steps, title: str) -> None:
        self.steps, self.title = steps, title

    def __enter__(self) -> None:
        self.start = time.monotonic()
        self.steps.echo(self.title)

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.steps.echo(f"      done in {time.monotonic() - self.start:.1f} s")
