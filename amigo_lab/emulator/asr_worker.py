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

Requests are read by a thread of their own as they arrive, so a ``CANCEL`` is seen at once: the audio
already queued for that stream is skipped rather than decoded (a cancel never waits behind its own feeds).
"""

from __future__ import annotations

import os
import queue
import struct
import sys
import threading
from typing import BinaryIO

HEADER = struct.Struct("<BII")
OPEN, FEED, FINISH, CANCEL, WARM, RESULT, ERROR = range(1, 8)


def read_frame(stream: BinaryIO) -> tuple[int, int, bytes] | None:
    """One ``(op, stream_id, payload)`` frame, or None at end of input."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    op, stream_id, length = HEADER.unpack(header)
    payload = stream.read(length) if length else b""
    if len(payload) < length:
        return None
    return op, stream_id, payload


def write_frame(stream: BinaryIO, op: int, stream_id: int, payload: bytes = b"") -> None:
    """Write one frame (header and payload together)."""
    stream.write(HEADER.pack(op, stream_id, len(payload)) + payload)


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer requests until ``requests`` ends."""
    from amigo_lab.speech import Recognizer

    recognizers: dict[bytes, Recognizer] = {}
    streams = {}

    def recognizer(phrases: bytes) -> Recognizer:
        if phrases not in recognizers:
            recognizers[phrases] = Recognizer(phrases.decode("utf-8").split("\n"))
        return recognizers[phrases]

    inbox: queue.SimpleQueue[tuple[int, int, bytes] | None] = queue.SimpleQueue()
    cancelled: set[int] = set()
    lock = threading.Lock()

    def read_ahead() -> None:
        while (frame := read_frame(requests)) is not None:
            if frame[0] == CANCEL:
                with lock:
                    cancelled.add(frame[1])
            inbox.put(frame)
        inbox.put(None)

    threading.Thread(target=read_ahead, name="amigo-asr-requests", daemon=True).start()
    while (frame := inbox.get()) is not None:
        op, stream_id, payload = frame
        try:
            if op == OPEN:
                streams[stream_id] = recognizer(payload).stream()
            elif op == FEED:
                with lock:
                    skip = stream_id in cancelled
                if stream_id in streams and not skip:
                    streams[stream_id].feed(payload)
            elif op == FINISH:
                stream = streams.pop(stream_id, None)
                text = stream.finish() if stream is not None else ""
                write_frame(answers, RESULT, stream_id, text.encode("utf-8"))
                answers.flush()
            elif op == CANCEL:
                with lock:
                    cancelled.discard(stream_id)
                stream = streams.pop(stream_id, None)
                if stream is not None:
                    stream.cancel()
            elif op == WARM:
                recognizer(payload).preload(1)
        except Exception as exc:  # noqa: BLE001 - reported to the waiting side, the worker goes on
            broken = streams.pop(stream_id, None)
            if broken is not None:
                broken.cancel()
            write_frame(answers, ERROR, stream_id, f"{type(exc).__name__}: {exc}".encode())
            answers.flush()


def main() -> None:
    """Serve on stdin/stdout; anything else printed goes to stderr so it cannot corrupt the answers."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers)

