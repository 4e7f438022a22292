"""The browser microphone as a widget that streams 16 kHz PCM16 into a session.

The front end (``mic.js``) asks for the microphone on a click, captures it with an AudioWorklet at the
device's own rate, resamples to 16 kHz and sends 20 ms chunks (640 bytes) as binary buffers of custom
messages. This class receives them on whatever thread the kernel delivers comm messages on and hands them
to the session, whose methods are thread-safe::

    mic = Microphone(session)          # push-to-talk: hold the button, release ends the turn
    mic = Microphone(session, mode="vad")   # continuous stream, the server's VAD finds the turns
    mic

Without a session, register your own sinks with :meth:`on_chunk` / :meth:`on_end`. Closing the widget (or
re-running its cell) releases the microphone in the browser.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from amigo_lab.audio import SAMPLE_RATE
from amigo_lab.errors import AmigoError

__all__ = ["CHUNK_BYTES", "CHUNK_MS", "MIC_MODES", "MIC_STATES", "Microphone"]

_log = logging.getLogger(__name__)
_HERE = Path(__file__).parent

CHUNK_MS = 20
"""Duration of one chunk the front end sends."""
CHUNK_BYTES = SAMPLE_RATE * CHUNK_MS // 1000 * 2
"""Size of one chunk: 20 ms of 16 kHz mono PCM16 = 640 bytes."""
MIC_MODES = ("push-to-talk", "vad")
"""Turn taking: hold-to-talk with an explicit end of turn, or a continuous stream for the server's VAD."""
MIC_STATES = ("idle", "waiting", "denied", "suspended", "insecure", "streaming", "error")
"""What the front end reports: off, waiting for permission, permission denied, audio suspended by the
browser (click the widget to resume), blocked because the page is not a secure origin (https or localhost),
capturing, or failed (see ``error``)."""


class Microphone(anywidget.AnyWidget):
    """Captures the browser microphone and streams it to a session (or to your callbacks).

    Traits: ``mode`` (``"push-to-talk"`` or ``"vad"``), ``echo_cancellation``, ``noise_suppression``,
    ``auto_gain_control`` (browser processing, on by default; changing one restarts capture),
    ``device_id`` (the chosen input, ``""`` for the default), and, set by the browser, ``devices``
    (``[{"device_id", "label"}]`` after permission), ``state`` (one of :data:`MIC_STATES`) and ``error``.

    Display it, click *Start microphone*, then hold *Hold to talk* (push-to-talk) or just speak (VAD).
    Next: watch the transcript in :class:`~amigo_lab.widgets.SessionPanel` or ``session.frames``.
    """

    _esm = _HERE / "mic.js"
    _css = _HERE / "mic.css"

    mode = traitlets.Enum(MIC_MODES, default_value="push-to-talk").tag(sync=True)
    echo_cancellation = traitlets.Bool(True).tag(sync=True)
    noise_suppression = traitlets.Bool(True).tag(sync=True)
    auto_gain_control = traitlets.Bool(True).tag(sync=True)
    device_id = traitlets.Unicode("").tag(sync=True)
    devices = traitlets.List(traitlets.Dict()).tag(sync=True)
    state = traitlets.Enum(MIC_STATES, default_value="idle").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, session: Any = None, **kwargs: Any) -> None:
        self._lock = threading.Lock()
        self._session = session
        self._chunk_sinks: list[Callable[[bytes], None]] = []
        self._end_sinks: list[Callable[[], None]] = []
        self._chunks_received = 0
        self._bytes_received = 0
        self._vad_switched_on: Any = None     # the session this widget turned the server's VAD on for
        super().__init__(**kwargs)
        self.on_msg(self._handle_message)

    # --- wiring ----------------------------------------------------------------------------------------

    @property
    def session(self) -> Any:
        """The session chunks go to (``None``: only the registered callbacks get them)."""
        return self._session

    @session.setter
    def session(self, session: Any) -> None:
        with self._lock:
            previous, self._session = self._session, session
        if previous is not None and previous is not session:
            self._hand_back_vad(previous)
        if session is not None and self.state == "streaming" and self.mode == "vad":
            self._set_server_vad(True)

    def on_chunk(self, callback: Callable[[bytes], None]) -> Callable[[], None]:
        """Call ``callback(pcm16_bytes)`` for every 20 ms chunk sent to the kernel; returns a remover.

        The callback runs on the kernel's comm thread: keep it short and thread-safe.
        """
        with self._lock:
            self._chunk_sinks.append(callback)
        return lambda: self._remove(self._chunk_sinks, callback)

    def on_end(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` when a push-to-talk turn ends (button released); returns a remover."""
        with self._lock:
            self._end_sinks.append(callback)
        return lambda: self._remove(self._end_sinks, callback)

    def _remove(self, sinks: list, callback: Callable) -> None:
        with self._lock:
            if callback in sinks:
                sinks.remove(callback)

    @property
    def chunks_received(self) -> int:
        """How many chunks arrived from the browser since the widget was created."""
        return self._chunks_received

    @property
    def received_ms(self) -> float:
        """How much audio arrived from the browser, in milliseconds."""
        return self._bytes_received / 2 / SAMPLE_RATE * 1000

    def release(self) -> None:
        """Ask the browser to stop capturing and release the microphone (the widget stays usable)."""
        self.send({"kind": "release"})

    def close(self) -> None:
        """Release the microphone in the browser, switch off the server VAD this widget switched on (the
        browser's own "stop" cannot arrive once the widget is closed), then close the widget."""
        session = self._session
        if session is not None:
            self._hand_back_vad(session)
        if self.comm is not None:
            try:
                self.release()
            except Exception:
                _log.debug("could not ask the front end to release the microphone", exc_info=True)
        super().close()

    # --- messages from the browser ---------------------------------------------------------------------

    def _handle_message(self, _widget: Any, content: Any, buffers: list) -> None:
        kind = content.get("kind") if isinstance(content, dict) else None
        if kind == "chunk":
            for buffer in buffers:
                self._deliver_chunk(bytes(buffer))
        elif kind == "end":
            self._deliver_end()
        elif kind in ("start", "stop") and content.get("mode") == "vad":
            self._set_server_vad(kind == "start")

    def _deliver_chunk(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            _log.warning("dropped a microphone chunk of odd length %d (PCM16 needs whole samples)", len(pcm))
            return
        with self._lock:
            self._chunks_received += 1
            self._bytes_received += len(pcm)
            session = self._session
            sinks = list(self._chunk_sinks)
        if session is not None:
            self._to_session(session.send_chunk, pcm)
        for sink in sinks:
            sink(pcm)

    def _deliver_end(self) -> None:
        with self._lock:
            session = self._session
            sinks = list(self._end_sinks)
        if session is not None:
            self._to_session(session.end_audio)
        for sink in sinks:
            sink()

    def _set_server_vad(self, on: bool) -> None:
        session = self._session
        # Synchronous on purpose: the switch is queued before the chunks that follow this message.
        if session is not None and self._to_session(session.vad, on):
            self._vad_switched_on = session if on else None

    def _hand_back_vad(self, session: Any) -> None:
        """Switch the server's VAD off again on ``session`` if this widget switched it on; a half-spoken
        utterance must not become a turn behind the back of whatever shows the session next."""
        if self._vad_switched_on is session:
            self._vad_switched_on = None
            if session.state not in ("closed", "failed", "completed") and session.vad_on:
                self._to_session(session.vad, False)

    def _to_session(self, method: Callable[..., Any], *args: Any) -> bool:
        """Call a session method; a closed or failed session shows its error here instead of raising
        50 times a second on the kernel's comm thread. Returns True when the call went through."""
        try:
            method(*args)
        except AmigoError as exc:
            message = f"{exc}"
            hint = getattr(exc, "hint", None)
            if hint and hint not in message:
                message = f"{message} ({hint})"
            if self.error != message:
                self.error = message
            return False
        if self.error and self.state == "streaming":
            self.error = ""
        return True

    @traitlets.observe("mode")
    def _mode_changed(self, change: dict) -> None:
        # Switching while the stream runs switches the server's VAD with it; otherwise "start" does it.
        if self.state == "streaming":
            self._set_server_vad(change["new"] == "vad")
