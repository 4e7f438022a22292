"""Speech recognition for the emulator, in worker processes.

pocketsphinx keeps Python's global interpreter lock while it decodes. In a thread of the emulator's own
process that starves the event loop: every socket read and write gives the lock away and waits to get it
back, and with a few dozen voice sessions the loop falls seconds behind while the CPU is half idle. So
recognition runs in worker processes (:mod:`amigo_lab.emulator.asr_worker`, two by default) that every
emulator of the Python process shares. Calls here never block: requests are queued to a writer thread,
answers arrive on a reader thread and complete :class:`concurrent.futures.Future` objects (await them
with ``asyncio.wrap_future``). If a worker dies, its waiting transcripts fail with
:class:`~amigo_lab.speech.SpeechError` and the next stream starts a new worker.
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

#: Worker processes per Python process: two, so a burst of simultaneous speech decodes in parallel
#: (one on a single-core machine).
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
        self.outbox.put((op, stream_id, payload))

    def stop(self) -> None:
        self.outbox.put(_STOP)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.popen.kill()

    def _write(self) -> None:
        stdin = self.popen.stdin
        assert stdin is not None
        try:
            # Everything queued goes out in one write: under load the event loop holds the interpreter lock
            # most of the time, and this thread gets it back only every few ms after each system call.
            while (item := self.outbox.get()) is not _STOP:
                stop = False
                while True:
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


class RecognitionWorker:
    """A client of the recognition worker processes; thread-safe, shared by every emulator in the process.

    Open a stream with :meth:`open`, then :meth:`feed` it audio, then :meth:`finish` it for a future
    transcript (or :meth:`cancel` it). Each stream lives in one of ``processes`` workers (the least busy
    when it opens), so bursts of simultaneous speech decode in parallel. Workers start on first use and
    again if one dies.
    """

    def __init__(self, *, processes: int = DEFAULT_PROCESSES) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._slots: list[_Process | None] = [None] * processes
        self._streams: dict[int, _Process] = {}
        self._pid = os.getpid()

    def warm(self, phrases: Iterable[str]) -> None:
        """Start the workers and build the recognizer for ``phrases`` before the first user speaks."""
        payload = _phrases(phrases)
        for slot in range(len(self._slots)):
            self._running(slot).send(WARM, 0, payload, None)

    def open(self, phrases: Iterable[str]) -> int:
        """Start recognizing a new utterance that may be one of ``phrases``; return its stream id."""
        stream_id = next(self._ids)
        with self._lock:
            load = [sum(p is process for p in self._streams.values()) for process in self._slots]
        process = self._running(load.index(min(load)))
        with self._lock:
            self._streams[stream_id] = process
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
        return future

    def cancel(self, stream_id: int) -> None:
        """Drop the stream."""
        with self._lock:
            process = self._streams.pop(stream_id, None)
        if process is not None:
            process.send(CANCEL, stream_id, b"", None)

    def close(self) -> None:
        """Stop the worker processes (each exits when its input closes)."""
        with self._lock:
            processes, self._slots = self._slots, [None] * len(self._slots)
            self._streams.clear()
        for process in processes:
            if process is not None:
                process.stop()

    def _running(self, slot: int) -> _Process:
        with self._lock:
            if self._pid != os.getpid():
                # A forked child inherits the parent's workers but not the threads that talk to them.
                self._slots, self._streams, self._pid = [None] * len(self._slots), {}, os.getpid()
            process = self._slots[slot]
            if process is None or not process.alive:
                process = self._slots[slot] = _Process()
            return process


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


#: The worker every emulator in this process shares; started on first use, stopped at exit.
SHARED_RECOGNITION = RecognitionWorker()
atexit.register(SHARED_RECOGNITION.close)

__all__ = ["DEFAULT_PROCESSES", "SHARED_RECOGNITION", "RecognitionWorker"]
