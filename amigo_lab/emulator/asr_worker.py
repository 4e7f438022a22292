"""The speech-recognition worker process: :func:`main` serves requests on stdin, answers on stdout.

It reads requests on stdin and answers on stdout, both as frames of a 9-byte header (``<BII``: operation,
stream id, payload length) followed by the payload. :mod:`amigo_lab.emulator.recognition` starts it and
speaks this protocol; nothing else should. Operations:

* ``OPEN`` (payload: the phrases, one per line): start a recognition stream listening for those phrases;
* ``FEED`` (payload: PCM16 16 kHz mono): decode more audio of the stream;
* ``FINISH``: end the stream and answer ``RESULT`` with the UTF-8 transcript;
* ``CANCEL``: drop the stream; ``WARM`` (payload: phrases): build that recognizer and a decoder ahead of use.

A request that fails answers ``ERROR`` with a UTF-8 message (for a stream nobody waits on, it is dropped).
The worker exits when stdin closes.

Requests are read by a thread of their own as they arrive and served in the order that answers soonest
(:class:`_Inbox`): a finishing stream's audio goes first, since someone waits for that transcript now; a
``CANCEL`` drops its stream's queued audio at once (a cancel never waits behind its own feeds).
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from collections import OrderedDict, deque
from typing import IO

HEADER = struct.Struct("<BII")
#: Phrase sets (one per service) whose recognizer a worker keeps ready; older ones are rebuilt on use.
MAX_RECOGNIZERS = 8
OPEN, FEED, FINISH, CANCEL, WARM, RESULT, ERROR = range(1, 8)


def read_frame(stream: IO[bytes]) -> tuple[int, int, bytes] | None:
    """One ``(op, stream_id, payload)`` frame, or None at end of input."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    op, stream_id, length = HEADER.unpack(header)
    payload = stream.read(length) if length else b""
    if len(payload) < length:
        return None
    return op, stream_id, payload


def write_frame(stream: IO[bytes], op: int, stream_id: int, payload: bytes = b"") -> None:
    """Write one frame (header and payload together)."""
    stream.write(HEADER.pack(op, stream_id, len(payload)) + payload)


class _Inbox:
    """Requests read ahead of the decoder, taken in the order that answers soonest.

    A request of a stream that is finishing (its ``FINISH`` has arrived) goes before the others: someone
    waits for that transcript now, while the other streams' users are still speaking and their audio can
    be decoded a moment later. A ``CANCEL`` drops the stream's queued audio at once. Within one stream the
    order never changes.
    """

    def __init__(self) -> None:
        self._queue: deque[tuple[int, int, bytes]] = deque()
        self._finishing: deque[int] = deque()
        self._ready = threading.Condition()
        self._closed = False

    def put(self, frame: tuple[int, int, bytes]) -> None:
        op, stream_id, _ = frame
        with self._ready:
            if op == CANCEL:
                self._queue = deque(f for f in self._queue if not (f[1] == stream_id and f[0] == FEED))
            elif op == FINISH:
                self._finishing.append(stream_id)
            self._queue.append(frame)
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()

    def get(self) -> tuple[int, int, bytes] | None:
        """The next request to serve, or None once input has ended and everything is served."""
        with self._ready:
            while not self._queue:
                if self._closed:
                    return None
                self._ready.wait()
            while self._finishing:
                urgent = self._finishing[0]
                for index, frame in enumerate(self._queue):
                    if frame[1] == urgent:
                        del self._queue[index]
                        if frame[0] == FINISH:
                            self._finishing.popleft()
                        return frame
                self._finishing.popleft()  # served meanwhile (cannot happen; keeps the loop finite)
            return self._queue.popleft()


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """Answer requests until ``requests`` ends."""
    from amigo_lab.speech import Recognizer

    # Bounded: each recognizer keeps up to MAX_IDLE_DECODERS decoders of a few MB; a long-lived worker
    # that saw many services keeps the most recently used phrase sets only.
    recognizers: OrderedDict[bytes, Recognizer] = OrderedDict()
    streams = {}

    def recognizer(phrases: bytes) -> Recognizer:
        if phrases in recognizers:
            recognizers.move_to_end(phrases)
        else:
            recognizers[phrases] = Recognizer(phrases.decode("utf-8").split("\n"))
            while len(recognizers) > MAX_RECOGNIZERS:
                recognizers.popitem(last=False)
        return recognizers[phrases]

    inbox = _Inbox()

    def read_ahead() -> None:
        while (frame := read_frame(requests)) is not None:
            inbox.put(frame)
        inbox.close()

    threading.Thread(target=read_ahead, name="amigo-asr-requests", daemon=True).start()
    while (frame := inbox.get()) is not None:
        op, stream_id, payload = frame
        try:
            if op == OPEN:
                streams[stream_id] = recognizer(payload).stream()
            elif op == FEED:
                if stream_id in streams:
                    streams[stream_id].feed(payload)
            elif op == FINISH:
                stream = streams.pop(stream_id, None)
                text = stream.finish() if stream is not None else ""
                write_frame(answers, RESULT, stream_id, text.encode("utf-8"))
                answers.flush()
            elif op == CANCEL:
                stream = streams.pop(stream_id, None)
                if stream is not None:
                    stream.cancel()
            elif op == WARM:
                recognizer(payload).preload(1)
        except Exception as exc:  # reported to the waiting side, the worker goes on
            broken = streams.pop(stream_id, None)
            if broken is not None:
                broken.cancel()
            write_frame(answers, ERROR, stream_id, f"{type(exc).__name__}: {exc}".encode())
            answers.flush()


#: How much lower than the emulator's own the worker's CPU priority is (Unix niceness added).
NICENESS = 5


def lower_priority() -> None:
    """Make this process yield the CPU to the emulator's event loop (and to whoever else is interactive).

    Recognition is throughput work that runs ahead of need: audio is decoded while the user still speaks,
    and only the last few hundred ms wait for the end of speech. The event loop is latency work: every
    20 ms frame of every session passes through it, and a loop kept waiting behind a decoder for the CPU
    makes VAD events and agent audio late for every session at once. With both at the same priority on a
    busy machine the kernel shares the CPU evenly and the loop spends most of its time runnable but not
    running; a lower priority (and the batch policy, which stops a worker from preempting on wake-up)
    lets the loop run as soon as it has work, and the workers take what is left.
    """
    try:
        os.nice(NICENESS)
    except (AttributeError, OSError):  # not Unix, or not allowed: run at the normal priority
        pass
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_BATCH"):
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except OSError:
            pass


def main() -> None:
    """Serve on stdin/stdout; anything else printed goes to stderr so it cannot corrupt the answers."""
    lower_priority()
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers)

