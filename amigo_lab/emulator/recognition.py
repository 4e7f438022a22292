"""Speech recognition for the emulator, in worker processes.

pocketsphinx keeps Python's global interpreter lock while it decodes. In a thread of the emulator's own
process that starves the event loop: every socket read and write gives the lock away and waits to get it
back, and with a few dozen voice sessions the loop falls seconds behind while the CPU is half idle. So
recognition runs in worker processes (:mod:`amigo_lab.emulator.asr_worker`) that every emulator of the
Python process shares. Calls here never block: requests are queued to a writer thread, answers arrive on a
reader thread and complete :class:`concurrent.futures.Future` objects (await them with
``asyncio.wrap_future``). If a worker dies, its waiting transcripts fail with
:class:`~amigo_lab.speech.SpeechError` and the next stream starts a new worker.

What the workers cost, and for how long (each holds a Python interpreter and its recognizers, about
100-200 MB):

* **lazy**: no worker runs until a connection sends audio or switches VAD on; a second one starts only
  when a stream opens while the first is busy with another (two users speaking at once);
* **shared**: one pool per Python process, whatever the number of emulators in it;
* **ending with their emulator**: each emulator holds the pool while it serves (:meth:`RecognitionWorker.acquire`
  / :meth:`~RecognitionWorker.release`); when the last one stops, the workers stop;
* **idle shutdown**: workers with no open stream for ``idle_s`` (default 120 s) stop even while an emulator
  still serves; the next utterance starts one again;
* a worker exits by itself when its parent dies (its input closes);
* **below the emulator's priority**: a worker lowers its own CPU priority (niceness +5, batch policy;
  :func:`amigo_lab.emulator.asr_worker.lower_priority`) so that on a busy machine the event loop, which
  every session's frames pass through, runs first and recognition takes the CPU that is left.

A cancelled utterance is dropped ahead of the work queued for it: its queued audio is never written to the
worker, and the worker skips audio already in its pipe once it has read the cancel.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import Future, InvalidStateError
from pathlib import Path

from amigo_lab.emulator.asr_worker import (
    CANCEL,
    ERROR,
    FEED,
    FINISH,
    OPEN,
    RESULT,
    WARM,
    read_frame,
    write_frame,
)
from amigo_lab.speech import SpeechError

logger = logging.getLogger("amigo_lab.emulator")

_STOP = object()
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

#: Worker processes per Python process at most: two, so simultaneous speech decodes in parallel (one on a
#: single-core machine). The second starts only when needed.
DEFAULT_PROCESSES = min(2, os.cpu_count() or 1)


class _Process:
    """One running worker process: its request queue and the transcripts waiting on it."""

    def __init__(self) -> None:
        # The worker imports amigo_lab from wherever this process found it, installed or not.
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        # A session of its own: Ctrl+C in a terminal, or Jupyter's "interrupt kernel", signals the whole
        # process group, and must not kill recognition mid-utterance. The worker still ends with us: it
        # exits when its stdin closes.
        self.popen = subprocess.Popen([sys.executable, "-c", "from amigo_lab.emulator.asr_worker import main; main()"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                      start_new_session=True)
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.waiting: dict[int, Future[str]] = {}
        # Streams cancelled while their requests still wait in the outbox: the writer skips their audio.
        self.cancelled: set[int] = set()
        self.skipped_feeds = 0
        self.lock = threading.Lock()
        self.exited = False
        threading.Thread(target=self._write, name="amigo-asr-writer", daemon=True).start()
        threading.Thread(target=self._read, name="amigo-asr-reader", daemon=True).start()

    @property
    def alive(self) -> bool:
        """False once the worker process has exited."""
        return not self.exited

    def send(self, op: int, stream_id: int, payload: bytes, future: Future[str] | None) -> None:
        """Queue a request; ``future`` (if any) gets its answer, or an error if the worker has exited."""
        if future is not None:
            with self.lock:
                if self.exited:
                    _settle(future, SpeechError("the speech recognition worker of this utterance exited"))
                    return
                self.waiting[stream_id] = future
        if op == CANCEL:
            with self.lock:
                self.cancelled.add(stream_id)
        self.outbox.put((op, stream_id, payload))

    def stop(self) -> None:
        """Ask the worker to exit (its input closes) and wait for it; kill it if it does not exit."""
        self.outbox.put(_STOP)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def _skip(self, item: tuple[int, int, bytes]) -> bool:
        """True for queued audio of a cancelled stream; the cancel itself ends the skipping."""
        op, stream_id, _ = item
        with self.lock:
            if op == CANCEL:
                self.cancelled.discard(stream_id)
                return False
            if op == FEED and stream_id in self.cancelled:
                self.skipped_feeds += 1
                return True
        return False

    def _write(self) -> None:
        stdin = self.popen.stdin
        assert stdin is not None
        try:
            # Everything queued goes out in one write: under load the event loop holds the interpreter lock
            # most of the time, and this thread gets it back only every few ms after each system call.
            while (item := self.outbox.get()) is not _STOP:
                stop = False
                while True:
                    if not self._skip(item):
                        write_frame(stdin, *item)
                    try:
                        item = self.outbox.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                stdin.flush()
                if stop:
                    break
        except OSError as exc:  # the worker died; the reader fails whoever waits
            logger.error("the speech recognition worker stopped taking requests: %s", exc)
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _read(self) -> None:
        stdout = self.popen.stdout
        assert stdout is not None
        while (frame := read_frame(stdout)) is not None:
            op, stream_id, payload = frame
            with self.lock:
                future = self.waiting.pop(stream_id, None)
            if future is None:
                continue
            if op == RESULT:
                _settle(future, payload.decode("utf-8"))
            elif op == ERROR:
                _settle(future, SpeechError(f"speech recognition failed: {payload.decode('utf-8', 'replace')}"))
        stdout.close()
        code = self.popen.wait()
        with self.lock:
            self.exited = True
            orphans, self.waiting = self.waiting, {}
        for future in orphans.values():
            _settle(future, SpeechError(f"the speech recognition worker exited with code {code}"))


#: Stop the workers after this long without an open stream (seconds).
DEFAULT_IDLE_S = 120.0


class RecognitionWorker:
    """A pool of recognition worker processes; thread-safe, shared by every emulator in the process.

    Open a stream with :meth:`open`, then :meth:`feed` it audio, then :meth:`finish` it for a future
    transcript (or :meth:`cancel` it). Each stream lives in one of at most ``processes`` workers: an idle
    running one if there is one, else a new one while fewer than ``processes`` run, else the least busy.
    Workers start on first use (or :meth:`prepare`) and stop when the last emulator holding the pool
    (:meth:`acquire`) releases it, after ``idle_s`` without an open stream, or at :meth:`close`.
    """

    def __init__(self, *, processes: int = DEFAULT_PROCESSES, idle_s: float = DEFAULT_IDLE_S) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        if not idle_s > 0:
            raise ValueError(f"idle_s must be positive, got {idle_s!r}")
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._slots: list[_Process | None] = [None] * processes
        self._streams: dict[int, _Process] = {}
        self._warm: dict[bytes, None] = {}  # phrase sets each new worker builds before its first stream
        self._users = 0
        self._idle_s = idle_s
        self._idle_timer: threading.Timer | None = None
        self._pid = os.getpid()

    # --- who holds the pool ------------------------------------------------------------------------------

    def acquire(self) -> None:
        """An emulator starts using the pool. Next: :meth:`release` when it stops."""
        with self._lock:
            self._users += 1

    def release(self) -> None:
        """An emulator stopped; when none is left, the workers stop now."""
        with self._lock:
            self._users = max(0, self._users - 1)
            last = self._users == 0
        if last:
            self.close()

    @property
    def running(self) -> list[int]:
        """Process ids of the workers running now."""
        with self._lock:
            return [p.popen.pid for p in self._slots if p is not None and p.alive]

    # --- streams -----------------------------------------------------------------------------------------------

    def warm(self, phrases: Iterable[str]) -> None:
        """Remember ``phrases`` so that every worker builds their recognizer as soon as it starts (a worker
        already running builds it now). Starts no worker by itself."""
        payload = _phrases(phrases)
        with self._lock:
            self._warm[payload] = None
            running = [p for p in self._slots if p is not None and p.alive]
        for process in running:
            process.send(WARM, 0, payload, None)

    def prepare(self) -> None:
        """Start one worker now if none runs (a connection is about to send speech)."""
        with self._lock:
            if any(p is not None and p.alive for p in self._slots):
                return
        self._running(0)
        self._arm_idle_timer()

    def open(self, phrases: Iterable[str]) -> int:
        """Start recognizing a new utterance that may be one of ``phrases``; return its stream id."""
        stream_id = next(self._ids)
        slot = self._pick_slot()
        process = self._running(slot)
        with self._lock:
            self._streams[stream_id] = process
            self._cancel_idle_timer()
        process.send(OPEN, stream_id, _phrases(phrases), None)
        return stream_id

    def feed(self, stream_id: int, pcm: bytes) -> None:
        """Queue more PCM16 16 kHz mono audio of the stream."""
        process = self._streams.get(stream_id)
        if process is not None:
            process.send(FEED, stream_id, bytes(pcm), None)

    def finish(self, stream_id: int) -> Future[str]:
        """End the stream; the future holds its lowercase transcript ("" when nothing was recognized)."""
        future: Future[str] = Future()
        with self._lock:
            process = self._streams.pop(stream_id, None)
        if process is None:
            _settle(future, SpeechError(f"recognition stream {stream_id} is not open"))
        else:
            process.send(FINISH, stream_id, b"", future)
        self._arm_idle_timer()
        return future

    def cancel(self, stream_id: int) -> None:
        """Drop the stream, ahead of any of its audio still queued."""
        with self._lock:
            process = self._streams.pop(stream_id, None)
        if process is not None:
            process.send(CANCEL, stream_id, b"", None)
        self._arm_idle_timer()

    @property
    def skipped_feeds(self) -> int:
        """Audio requests of cancelled streams never written to a worker (across running workers)."""
        with self._lock:
            return sum(p.skipped_feeds for p in self._slots if p is not None)

    def close(self) -> None:
        """Stop the worker processes (each exits when its input closes); the next stream starts one again."""
        with self._lock:
            processes, self._slots = self._slots, [None] * len(self._slots)
            self._streams.clear()
            self._cancel_idle_timer()
        for process in processes:
            if process is not None:
                process.stop()

    # --- internals -------------------------------------------------------------------------------------------

    def _pick_slot(self) -> int:
        with self._lock:
            self._forget_after_fork()
            load = [sum(p is process for p in self._streams.values()) if process is not None and process.alive
                    else None for process in self._slots]
        for slot, busy in enumerate(load):
            if busy == 0:
                return slot  # a running worker with nothing to do
        for slot, busy in enumerate(load):
            if busy is None:
                return slot  # every running worker is busy: start another
        return min(range(len(load)), key=lambda slot: load[slot] or 0)

    def _running(self, slot: int) -> _Process:
        with self._lock:
            self._forget_after_fork()
            process = self._slots[slot]
            if process is None or not process.alive:
                process = self._slots[slot] = _Process()
                for payload in self._warm:
                    process.send(WARM, 0, payload, None)
            return process

    def _forget_after_fork(self) -> None:
        if self._pid != os.getpid():
            # A forked child inherits the parent's workers but not the threads that talk to them.
            self._slots, self._streams, self._pid = [None] * len(self._slots), {}, os.getpid()
            self._idle_timer = None

    def _arm_idle_timer(self) -> None:
        """With no stream open, stop the workers after ``idle_s`` unless a stream opens first."""
        with self._lock:
            if self._streams or self._idle_timer is not None:
                return
            if not any(p is not None and p.alive for p in self._slots):
                return
            timer = threading.Timer(self._idle_s, lambda: self._idle_shutdown(timer))
            timer.daemon = True
            self._idle_timer = timer
            timer.start()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_shutdown(self, timer: threading.Timer) -> None:
        with self._lock:
            if self._idle_timer is not timer:
                return  # cancelled, or replaced by a newer timer
            self._idle_timer = None
            if self._streams:
                return  # a stream opened meanwhile
            if any(p is not None and p.waiting for p in self._slots):
                rearm = True  # a transcript is still being finished: look again later
            else:
                rearm = False
                processes, self._slots = self._slots, [None] * len(self._slots)
        if rearm:
            self._arm_idle_timer()
            return
        for process in processes:
            if process is not None:
                process.stop()


def _settle(future: Future[str], outcome: str | BaseException) -> None:
    """Complete a future unless its waiter gave up on it (a closed connection cancels it)."""
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except InvalidStateError:
        pass


def _phrases(phrases: Iterable[str]) -> bytes:
    return "\n".join(" ".join(p.split()) for p in phrases).encode("utf-8")


#: The pool every emulator in this process shares; workers start on first use and stop with the last emulator.
SHARED_RECOGNITION = RecognitionWorker()
atexit.register(SHARED_RECOGNITION.close)

__all__ = ["DEFAULT_IDLE_S", "DEFAULT_PROCESSES", "SHARED_RECOGNITION", "RecognitionWorker"]
