"""A widget that plays the agent's audio as it streams and records how much of each message was heard.

Attach it to a session and every agent audio piece (PCM or MP3) goes to the browser, which schedules the
pieces on its audio clock behind a small jitter buffer. When the server reports barge-in
(``server.vad-speech-started``) the browser flushes at once. The browser reports how far each message got,
and those reports land in the session's frame log as local entries ``playback.progress``,
``playback.flushed`` and ``playback.finished`` with ``message_id`` and ``played_ms``::

    player = Player(session)
    player                     # display it; audio waits until the browser says it is ready
    session.say("hello")       # the reply plays as it arrives
    session.frames.query("type == 'playback.finished'")

Use :meth:`play` for any other audio (a recording, a synthesized prompt).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from amigo_lab.audio import SAMPLE_RATE, chunk_pcm16, float_to_pcm16, resample, to_mono
from amigo_lab.protocol import NewMessage, VadSpeechStarted

__all__ = ["MAX_PENDING_BYTES", "PLAYBACK_EVENTS", "Player"]

_log = logging.getLogger(__name__)
_HERE = Path(__file__).parent

PLAYBACK_EVENTS = {
    "progress": "playback.progress",
    "flushed": "playback.flushed",
    "finished": "playback.finished",
}
"""Report kind sent by the browser -> type of the local frame-log entry it becomes."""

MAX_PENDING_BYTES = SAMPLE_RATE * 2 * 120
"""Audio kept while no browser view is ready yet (two minutes of PCM); older pieces are dropped beyond it."""

_LOCAL_PIECE_MS = 200
_LOCAL_PREFIX = "local-"
_local_ids = itertools.count(1)


class Player(anywidget.AnyWidget):
    """Plays agent audio in the browser and reports playback into the session's frame log.

    Traits: ``volume`` (0..1), ``jitter_ms`` (how far ahead playback starts when the queue is empty), and,
    kept up to date from the browser's reports, ``ready``, ``message_id``, ``played_ms`` and
    ``last_event`` (``"progress"``, ``"flushed"`` or ``"finished"``).

    Next: :meth:`attach` a session (or pass it to the constructor), display the widget, talk to the agent.
    """

    _esm = _HERE / "player.js"
    _css = _HERE / "player.css"

    volume = traitlets.Float(1.0, min=0.0, max=1.0).tag(sync=True)
    jitter_ms = traitlets.Int(120, min=0, max=2000).tag(sync=True)
    ready = traitlets.Bool(False).tag(sync=True)
    message_id = traitlets.Unicode("").tag(sync=True)
    played_ms = traitlets.Float(0.0).tag(sync=True)
    last_event = traitlets.Unicode("").tag(sync=True)

    def __init__(self, session: Any = None, **kwargs: Any) -> None:
        # One lock orders everything sent to the browser: pieces from the session's loop thread, the
        # pending queue emptied on "ready" from the comm thread, flushes from either.
        self._lock = threading.RLock()
        self._pending: list[tuple[dict, list[bytes]]] = []
        self._pending_bytes = 0
        self._dropped_warned = False
        self._open_messages: set[str] = set()
        self._session: Any = None
        self._remove_listener: Callable[[], None] | None = None
        self._report_sinks: list[Callable[[str, str, float], None]] = []
        super().__init__(**kwargs)
        self.on_msg(self._handle_message)
        if session is not None:
            self.attach(session)

    # --- wiring ----------------------------------------------------------------------------------------

    @property
    def session(self) -> Any:
        """The attached session, or ``None``."""
        return self._session

    def attach(self, session: Any) -> None:
        """Play this session's agent audio from now on and record playback into its frame log."""
        self.detach()
        self._session = session
        self._remove_listener = session.on_frame(self._on_entry)

    def detach(self) -> None:
        """Stop following the attached session (audio already sent keeps playing)."""
        remove, self._remove_listener = self._remove_listener, None
        if remove is not None:
            remove()
        self._session = None

    def on_report(self, callback: Callable[[str, str, float], None]) -> Callable[[], None]:
        """Call ``callback(kind, message_id, played_ms)`` for every playback report; returns a remover.

        ``kind`` is ``"progress"``, ``"flushed"`` or ``"finished"``. Runs on the kernel's comm thread.
        """
        self._report_sinks.append(callback)
        return lambda: self._report_sinks.remove(callback) if callback in self._report_sinks else None

    # --- playing ---------------------------------------------------------------------------------------

    def feed(self, audio: bytes, *, message_id: str, audio_format: str = "pcm", stop: bool = False) -> None:
        """Queue one piece of a message: 16 kHz PCM16 bytes or one self-contained MP3 piece.

        ``stop=True`` marks the message's last piece, so the browser can report ``finished``.
        """
        if audio_format not in ("pcm", "mp3"):
            raise ValueError(f"audio_format must be 'pcm' or 'mp3', got {audio_format!r}")
        with self._lock:
            if audio:
                self._open_messages.add(message_id)
                self._deliver({"kind": "audio", "message_id": message_id, "format": audio_format}, [bytes(audio)])
            if stop:
                self._open_messages.discard(message_id)
                self._deliver({"kind": "end", "message_id": message_id}, [])

    def play(self, audio: np.ndarray | bytes, *, sr: int = SAMPLE_RATE, message_id: str | None = None) -> str:
        """Play audio that did not come from the session: a float array (any ``sr``, mono or not) or
        16 kHz PCM16 bytes. Returns the message id its playback reports carry; reports of ids that start
        with ``"local-"`` (the default) stay out of the session's log, which records the agent's audio only."""
        if isinstance(audio, (bytes, bytearray, memoryview)):
            if sr != SAMPLE_RATE:
                raise ValueError(f"PCM16 bytes must be {SAMPLE_RATE} Hz; pass a float array to resample")
            pcm = bytes(audio)
        else:
            samples = resample(to_mono(np.asarray(audio)), sr_in=sr, sr_out=SAMPLE_RATE)
            pcm = float_to_pcm16(samples)
        message_id = message_id or f"{_LOCAL_PREFIX}{next(_local_ids)}"
        pieces = chunk_pcm16(pcm, sr=SAMPLE_RATE, ms=_LOCAL_PIECE_MS) or [b""]
        for index, piece in enumerate(pieces):
            self.feed(piece, message_id=message_id, stop=index == len(pieces) - 1)
        return message_id

    def flush(self) -> None:
        """Silence playback now and drop what is still queued (what barge-in does)."""
        with self._lock:
            ids = sorted(self._open_messages)
            self._open_messages.clear()
            # Audio still waiting for the browser would only be flushed on arrival: drop it here.
            self._pending = [(c, b) for c, b in self._pending if c.get("message_id") not in ids]
            self._pending_bytes = sum(len(x) for _, bufs in self._pending for x in bufs)
            self._deliver({"kind": "flush", "message_ids": ids}, [])

    def _deliver(self, content: dict, buffers: list[bytes]) -> None:
        # Caller holds the lock.
        if not self.ready:
            self._pending.append((content, buffers))
            self._pending_bytes += sum(len(b) for b in buffers)
            while self._pending_bytes > MAX_PENDING_BYTES and self._pending:
                _, old = self._pending.pop(0)
                self._pending_bytes -= sum(len(b) for b in old)
                if not self._dropped_warned:
                    self._dropped_warned = True
                    _log.warning("the player is not displayed; dropping its oldest queued audio")
            return
        self.send(content, buffers or None)

    # --- the session's frames ----------------------------------------------------------------------------

    def _on_entry(self, entry: dict, frame: Any) -> None:
        if entry.get("direction") != "received":
            return
        if isinstance(frame, VadSpeechStarted):
            self.flush()
        elif isinstance(frame, NewMessage):
            # The log names the audio format of voice pieces only; text pieces have none and are not played.
            fmt = entry.get("audio_format")
            if fmt not in ("pcm", "mp3"):
                return
            try:
                audio = frame.audio_bytes() if frame.message else b""
            except ValueError:
                _log.warning("agent piece %s/%d is not base64 audio; not played", frame.message_id,
                             frame.sequence_number)
                return
            self.feed(audio, message_id=frame.message_id, audio_format=fmt, stop=frame.stop)

    # --- messages from the browser -----------------------------------------------------------------------

    def _handle_message(self, _widget: Any, content: Any, _buffers: list) -> None:
        kind = content.get("kind") if isinstance(content, dict) else None
        if kind == "ready":
            with self._lock:
                self.ready = True
                pending, self._pending, self._pending_bytes = self._pending, [], 0
                for queued_content, queued_buffers in pending:
                    self.send(queued_content, queued_buffers or None)
        elif kind in PLAYBACK_EVENTS:
            self._record(kind, str(content.get("message_id", "")), float(content.get("played_ms", 0.0)))

    def _record(self, kind: str, message_id: str, played_ms: float) -> None:
        self.message_id = message_id
        self.played_ms = played_ms
        self.last_event = kind
        session = self._session
        if session is not None and not message_id.startswith(_LOCAL_PREFIX):
            # Audio from play() is not the agent's: its reports would tell the fold of audio it never sent.
            session.log.record_local(PLAYBACK_EVENTS[kind], message_id=message_id, played_ms=played_ms)
        for sink in list(self._report_sinks):
            sink(kind, message_id, played_ms)

    def close(self) -> None:
        """Stop following the session and close the widget (the browser stops playing)."""
        self.detach()
        super().close()
