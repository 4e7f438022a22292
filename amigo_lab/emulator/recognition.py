"""Speech recognition for the emulator, in a worker process.

pocketsphinx keeps Python's global interpreter lock while it decodes. In a thread of the emulator's own
process that starves the event loop: every socket read and write gives the lock away and waits to get it
back, and with a few dozen voice sessions the loop falls seconds behind while the CPU is half idle. So
recognition runs in one worker process per Python process (:mod:`amigo_lab.emulator.asr_worker`), which
every emulator shares. Calls here never block: requests are queued to a writer thread, answers arrive on
a reader thread and complete :class:`concurrent.futures.Future` objects (await them with
``asyncio.wrap_future``). If the worker dies, waiting transcripts fail with
:class:`~amigo_lab.speech.SpeechError` and the next stream starts a new worker.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import queue
import subprocess
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import Future

from amigo_lab.emulator.asr_worker import CANCEL, ERROR, FEED, FINISH, OPEN, RESULT, WARM, read_frame, write_frame
from amigo_lab.speech import SpeechError

logger = logging.getLogger("amigo_lab.emulator")

_STOP = object()


class _Process:
    """One running worker process: its request queue and the transcripts waiting on it."""

    def __init__(self) -> None:
        self.popen = subprocess.Popen([sys.executable, "-c", "from amigo_lab.emulator.asr_worker import main; main()"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.waiting: dict[int, Future[str]] = {}
        self.lock = threading.Lock()
        self.exited = False
        threading.Thread(target=self._write, name="amigo-asr-writer", daemon=True).start()
        threading.Thread(target=self._read, name="amigo-asr-reader", daemon=True).start()

    @property
    def alive(self) -> bool:
        return not self.exited

    def send(self, op: int, stream_id: int, payload: bytes, future: "Future[str] | None") -> None:
        if future is not None:
            with self.lock:
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
            while (item := self.outbox.get()) is not _STOP:
                write_frame(stdin, *item)
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
                future.set_result(payload.decode("utf-8"))
            elif op == ERROR:
                future.set_exception(SpeechError(f"speech recognition failed: {payload.decode('utf-8', 'replace')}"))
        code = self.popen.wait()
        self.exited = True
        with self.lock:
            orphans, self.waiting = self.waiting, {}
        for future in orphans.values():
            future.set_exception(SpeechError(f"the speech recognition worker exited with code {code}"))


class RecognitionWorker:
    """A client of the recognition worker process; thread-safe, shared by every emulator in the process.

    Open a stream with :meth:`open`, then :meth:`feed` it audio, then :meth:`finish` it for a future
    transcript (or :meth:`cancel` it). The process starts on first use and again if it dies.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._process: _Process | None = None

    def warm(self, phrases: Iterable[str]) -> None:
        """Start the worker and build the recognizer for ``phrases`` before the first user speaks."""
        self._running().send(WARM, 0, _phrases(phrases), None)

    def open(self, phrases: Iterable[str]) -> int:
        """Start recognizing a new utterance that may be one of ``phrases``; return its stream id."""
        stream_id = next(self._ids)
        self._running().send(OPEN, stream_id, _phrases(phrases), None)
        return stream_id

    def feed(self, stream_id: int, pcm: bytes) -> None:
        """Queue more PCM16 16 kHz mono audio of the stream."""
        self._running().send(FEED, stream_id, bytes(pcm), None)

    def finish(self, stream_id: int) -> "Future[str]":
        """End the stream; the future holds its lowercase transcript ("" when nothing was recognized)."""
        future: Future[str] = Future()
        self._running().send(FINISH, stream_id, b"", future)
        return future

    def cancel(self, stream_id: int) -> None:
        """Drop the stream."""
        self._running().send(CANCEL, stream_id, b"", None)

    def close(self) -> None:
        """Stop the worker process (it exits when its input closes)."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            process.stop()

    def _running(self) -> _Process:
        with self._lock:
            if self._process is None or not self._process.alive:
                self._process = _Process()
            return self._process


def _phrases(phrases: Iterable[str]) -> bytes:
    return "\n".join(" ".join(p.split()) for p in phrases).encode("utf-8")


#: The worker every emulator in this process shares; started on first use, stopped at exit.
SHARED_RECOGNITION = RecognitionWorker()
atexit.register(SHARED_RECOGNITION.close)

__all__ = ["SHARED_RECOGNITION", "RecognitionWorker"]
