"""Running scenarios: one session per run, recorded to a folder, locally in threads or on Dask.

:func:`run_scenario_once` drives one conversation through the public session API (``connect``,
``say``/``event``/``send_audio``/``vad``/``finish``) and writes the session folder plus ``steps.json``
(when each step began). The caller side waits, after each step, until every turn of the session has ended
(answered, failed or timed out), so steps do not overlap unless the scenario says so (``barge_in``).

Each run gets a token of its own, so concurrent callers are different users: the protocol allows one
unfinished conversation per user and service. Against the embedded emulator the tokens are made up; against
the real service pass as many tokens as the concurrency (``tokens=[...]``).

Next: :func:`amigo_lab.experiments.run` (the whole experiment: runs, tables, report).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amigo_lab.experiments.metrics import STEPS_FILE
from amigo_lab.experiments.scenario import Scenario, Step
from amigo_lab.experiments.speech import prepare_audio
from amigo_lab.protocol.constants import VAD_END_SILENCE_MS

__all__ = ["CallerPool", "RunRecord", "run_scenario_once"]

logger = logging.getLogger("amigo_lab.experiments")

#: Silence the caller keeps streaming after each utterance with VAD on, so the server hears it end (its end
#: silence, with margin): what a microphone left open would send.
TRAILING_SILENCE_MS = VAD_END_SILENCE_MS + 300

#: Tokens the runner's own emulator accepts, one user each (more callers at once than this are refused).
EMULATOR_CALLERS = 256


class CallerPool:
    """Hands out one token per concurrent caller; an emulator started here accepts all of them."""

    def __init__(self, tokens: list[str]) -> None:
        self._free = list(tokens)
        self._lock = threading.Condition()

    @classmethod
    def for_emulator(cls, n: int = EMULATOR_CALLERS) -> CallerPool:
        """A pool of ``n`` made-up tokens (pair it with :meth:`emulator_tokens`)."""
        return cls([f"caller-{i:03d}" for i in range(n)])

    @staticmethod
    def emulator_tokens(n: int = EMULATOR_CALLERS) -> dict[str, str]:
        """The ``Emulator(tokens=...)`` mapping for :meth:`for_emulator`."""
        return {f"caller-{i:03d}": f"caller-{i:03d}" for i in range(n)}

    def take(self, timeout: float = 600.0) -> str:
        """A free token, waiting for one (a caller finishing) up to ``timeout`` seconds."""
        with self._lock:
            if not self._lock.wait_for(lambda: bool(self._free), timeout):
                raise TimeoutError("no free caller token: every token is in a conversation")
            return self._free.pop(0)

    def give_back(self, token: str) -> None:
        """Return a token taken with :meth:`take`."""
        with self._lock:
            self._free.append(token)
            self._lock.notify()


@dataclass
class RunRecord:
    """One recorded run: where its session is, and how the client side went."""

    scenario: str
    run: int
    session_dir: Path
    started: float
    seconds: float
    error: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)


def _wait_quiet(session: Any, *, until_t: float, timeout: float, stop: threading.Event | None) -> str | None:
    """Wait until the streaming is over (``until_t`` on the log clock) and every turn has ended."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    while True:
        if stop is not None and stop.is_set():
            return "stopped"
        pending = [turn for turn in session.turns if not turn.done()]
        now = session.log.now()
        if not pending and now >= until_t:
            # A VAD turn the server is about to start would appear as a new Turn: hold on a moment.
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 0.15:
                return None
        else:
            quiet_since = None
        if time.monotonic() > deadline:
            return f"timed out after {timeout:g} s waiting for the agent ({len(pending)} turn(s) pending)"
        if pending:
            # A turn that timed out or was cancelled still counts as ended: only waiting matters here.
            with contextlib.suppress(Exception):
                pending[0].exception(timeout=0.1)
        else:
            time.sleep(0.02)


class _AgentAudio:
    """Flags the first agent audio that arrives after :meth:`arm` (a barge-in waits for it)."""

    def __init__(self, session: Any) -> None:
        self.arrived = threading.Event()
        self.at: float | None = None
        self._armed = False
        self.remove = session.on_frame(self._watch)

    def arm(self) -> None:
        self.arrived.clear()
        self.at = None
        self._armed = True

    def _watch(self, entry: dict[str, Any], frame: Any) -> None:
        if self._armed and entry.get("type") == "server.new-message" and (entry.get("audio_bytes") or 0) > 0:
            self._armed = False
            self.at = time.monotonic()
            self.arrived.set()


class _Microphone:
    """Streams one step's audio as a live microphone would: 20 ms chunks, all of it, then silence.

    With server VAD on the caller keeps talking whatever the server does meanwhile (a turn the server
    ends during a pause must not stop the rest of the sentence), so chunks go through
    ``session.send_chunk`` from a thread of their own, paced in real time (or as fast as allowed).
    """

    CHUNK_MS = 20

    def __init__(self, session: Any, samples: Any, *, realtime: bool) -> None:
        import numpy as np

        from amigo_lab.audio import SAMPLE_RATE, chunk, float_to_pcm16, silence

        padded = np.concatenate([np.asarray(samples, np.float32), silence(TRAILING_SILENCE_MS)])
        self._chunks = [float_to_pcm16(c) for c in chunk(padded, sr=SAMPLE_RATE, ms=self.CHUNK_MS) if c.size]
        self._session, self._realtime = session, realtime
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="amigo-microphone", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        try:
            for index, data in enumerate(self._chunks):
                if self._realtime:
                    delay = start + index * self.CHUNK_MS / 1000.0 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                self._session.send_chunk(data)
        except Exception as exc:  # the session closed under the caller: say so in the step
            self.error = f"streaming stopped: {exc}"

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _send(session: Any, step: Step, audio: dict[int, Any], realtime: bool) -> Any:
    from amigo_lab.audio import SAMPLE_RATE

    if step.kind == "say" or (step.kind == "barge_in" and step.text is not None and not step.spoken):
        return session.say(step.text)
    if step.kind == "event":
        return session.event(step.text)
    if session.vad_on:
        return _Microphone(session, audio[step.index], realtime=realtime)
    return session.send_audio(audio[step.index], sr=SAMPLE_RATE, realtime=realtime)


def _duration_s(step: Step, audio: dict[int, Any], realtime: bool) -> float:
    from amigo_lab.audio import SAMPLE_RATE
    if step.index not in audio:
        return 0.0
    seconds = len(audio[step.index]) / SAMPLE_RATE + TRAILING_SILENCE_MS / 1000.0
    return seconds if realtime else seconds / 2.0  # 20 ms chunks at the protocol's 100 frames/s


def run_scenario_once(scenario: Scenario, session_dir: str | os.PathLike[str], *, run: int = 0,
                      connect_options: dict[str, Any] | None = None, stop: threading.Event | None = None,
                      audio: dict[int, Any] | None = None, on_step: Callable[[Step], None] | None = None
                      ) -> RunRecord:
    """Drive one conversation of ``scenario`` and record it to ``session_dir`` (frames, audio, steps.json).

    ``connect_options`` go to :func:`amigo_lab.connect` (``emulator=``, ``token=``, org, host, ...).
    ``stop`` (a threading.Event) ends the run between steps, keeping what was recorded. Client-side
    failures (a turn timing out, a refused connect) are recorded, not raised. Next:
    :func:`amigo_lab.experiments.metrics.run_rows` on ``analysis.turns`` of the folder.
    """
    from amigo_lab._connect import connect

    folder = Path(session_dir)
    audio = prepare_audio(scenario) if audio is None else audio
    options = dict(connect_options or {})
    options.setdefault("response_format", scenario.response_format)
    options.setdefault("audio_format", scenario.audio_format)
    options.setdefault("version_set", scenario.version_set)
    if scenario.service_id:
        options.setdefault("service_id", scenario.service_id)
    started, clock = time.time(), time.monotonic()
    marks: list[dict[str, Any]] = [{"index": s.index, "kind": s.kind, "title": s.title, "t_start": None,
                                    "error": None} for s in scenario.steps]
    record = RunRecord(scenario.name, run, folder, started, 0.0, steps=marks)
    session = None
    try:
        session = connect(log_dir=folder, timeout=scenario.timeout_s, **options)
        if not scenario.realtime and any(s.index in audio for s in scenario.steps):
            session.log.update_meta(fast=True)  # the report then says its timings are not real time
        assert session.greeting is not None  # connect() starts the conversation, greeting included
        session.greeting.exception(timeout=scenario.timeout_s)
        if scenario.vad and any(s.index in audio for s in scenario.steps):
            session.vad(True)
        watcher = _AgentAudio(session)
        microphones: list[_Microphone] = []
        steps = list(scenario.steps)
        for position, step in enumerate(steps):
            if stop is not None and stop.is_set():
                record.error = "stopped before the end"
                break
            if on_step is not None:
                on_step(step)
            upcoming = steps[position + 1] if position + 1 < len(steps) else None
            mark = marks[step.index]
            if step.kind == "wait_ms":
                mark["t_start"] = session.log.now()
                time.sleep(step.wait_ms / 1000.0)
                continue
            if step.kind == "vad":
                mark["t_start"] = session.log.now()
                session.vad(bool(step.vad))
                continue
            if step.kind == "barge_in":
                for microphone in microphones:  # one caller, one voice: the previous speech ends first
                    microphone.join(scenario.timeout_s)
                if not watcher.arrived.wait(scenario.timeout_s):
                    mark["error"] = "the agent sent no audio to barge in on"
                    continue
                assert watcher.at is not None
                delay = watcher.at + step.after_ms / 1000.0 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if upcoming is not None and upcoming.kind == "barge_in":
                watcher.arm()
            mark["t_start"] = session.log.now()
            try:
                turn = _send(session, step, audio, scenario.realtime)
            except Exception as exc:  # the session said what is wrong; record it, go on
                mark["error"] = str(exc)
                continue
            if isinstance(turn, _Microphone):
                microphones.append(turn)
            if upcoming is not None and upcoming.kind == "barge_in":
                continue  # the next step talks over this one's reply; wait after it
            for microphone in microphones:
                microphone.join(scenario.timeout_s)
            error = _wait_quiet(session, until_t=mark["t_start"] + _duration_s(step, audio, scenario.realtime),
                                timeout=scenario.timeout_s, stop=stop)
            if isinstance(turn, _Microphone):
                error = error or turn.error
            elif error is None and turn.done() and not turn.cancelled() and turn.exception() is not None:
                error = str(turn.exception())
            microphones.clear()
            mark["error"] = error
        watcher.remove()
    except Exception as exc:  # a failed run is a result (its rows say so), not a crash
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        if session is not None:
            try:
                if session.state not in ("closed", "failed"):
                    session.finish()
            except Exception as exc:  # the conversation may already be over
                logger.debug("finishing run %d of %s: %s", run, scenario.name, exc)
            session.log.close()
            # The Parquet copy may be written in the background; the run is over when it is on disk.
            wait_closed = getattr(session.log, "wait_closed", None)
            if wait_closed is not None:
                wait_closed()
        record.seconds = time.monotonic() - clock
        folder.mkdir(parents=True, exist_ok=True)
        (folder / STEPS_FILE).write_text(json.dumps({
            "scenario": scenario.name, "source": scenario.source, "run": run, "started": started,
            "seconds": record.seconds, "error": record.error, "version_set": scenario.version_set,
            "service_id": scenario.service_id, "steps": marks}, indent=1), encoding="utf-8")
    return record
