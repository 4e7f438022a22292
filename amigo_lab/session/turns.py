"""What a user turn gives back: a :class:`Turn` handle that completes with a :class:`Reply`."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import html
import io
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from amigo_lab import audio as _audio
from amigo_lab.session.errors import SessionError

# --- replies and turns -----------------------------------------------------------------------------------


def _wav_bytes(samples: np.ndarray, sr: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sr)
        out.writeframes(_audio.float_to_pcm16(samples))
    return buffer.getvalue()


def _audio_html(samples: np.ndarray, sr: int) -> str:
    if samples.size == 0:
        return ""
    data = base64.b64encode(_wav_bytes(samples, sr)).decode("ascii")
    return f'<audio controls src="data:audio/wav;base64,{data}"></audio>'


def _definition(name: str) -> str:
    from amigo_lab.protocol.fold import latency_definition
    return latency_definition(name)


@dataclass(frozen=True, eq=False)
class Reply:
    """What the agent answered in one interaction.

    ``text`` is the agent's full message (``full_message``); ``user_text`` what the server understood the
    user to say (text or transcript; None for agent-started interactions); ``audio`` the answer's audio as
    float32 at ``sr`` = 16 000 Hz (empty for text responses; filler audio excluded); ``filler_text`` what a
    slow action's filler said; ``actions`` the ``current-agent-action`` objects; ``interrupted`` is True when
    the user barged in. ``timings`` holds:

    - the latencies of the interaction fold, in ms (None when they do not apply), under the names of
      :data:`amigo_lab.protocol.fold.LATENCIES`, e.g. ``latency_first_audio_ms`` (from the user's end of speech,
      or the sent text, to the first agent audio piece) or ``vad_latency_first_audio_ms`` (from the arrival of
      ``server.vad-speech-ended``); ``amigo_lab.protocol.fold.latency_definition(name)`` gives each definition,
      and they are the numbers the panel and :func:`amigo_lab.analysis.turns` show;
    - ``stamps``: the fold's stamps of the interaction (seconds on the log clock);
    - log entries as ``{"t": seconds on the log clock, "wall": UTC datetime}`` for ``sent``, ``end_of_turn``,
      ``user_message``, ``first_piece``, ``first_audio``, ``complete`` (None when it did not happen).
    """

    text: str
    user_text: str | None
    audio: np.ndarray
    sr: int
    message_id: str
    interaction_id: str
    filler_text: str | None = None
    actions: tuple[Mapping[str, Any], ...] = ()
    interrupted: bool = False
    conversation_completed: bool = False
    timings: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        seconds = self.audio.size / self.sr if self.sr else 0.0
        latency = self.timings.get("latency_first_audio_ms")
        extra = f", latency_first_audio_ms {latency:.0f}" if latency is not None else ""
        flags = "".join([", interrupted" if self.interrupted else "",
                         ", conversation completed" if self.conversation_completed else ""])
        return f"<Reply {self.text!r} ({seconds:.2f} s audio{extra}{flags})>"

    def _repr_html_(self) -> str:
        user = f"<div><b>user:</b> {html.escape(self.user_text)}</div>" if self.user_text else ""
        filler = f"<div><i>filler:</i> {html.escape(self.filler_text)}</div>" if self.filler_text else ""
        name = "latency_first_audio_ms" if self.audio.size else "latency_first_text_ms"
        latency = self.timings.get(name)
        meta = (f"<small title='{html.escape(_definition(name))}'>{name} {latency:.0f}</small>"
                if latency is not None else "")
        return (f"<div>{user}{filler}<div><b>agent:</b> {html.escape(self.text)}</div>"
                f"{_audio_html(self.audio, self.sr)}{meta}</div>")


class Turn:
    """One exchange in flight: becomes a :class:`Reply` when the server completes the interaction.

    ``turn.result(timeout)`` blocks (off the session's loop thread), ``await turn`` suspends,
    ``turn.add_done_callback(fn)`` calls ``fn(turn)`` when done. ``kind`` is ``"greeting"``, ``"text"``,
    ``"event"``, ``"audio"``, ``"voice"`` (speech the server's VAD heard) or ``"agent"`` (agent-started).
    """

    def __init__(self, kind: str, request: str | None = None, *, display_timeout: float = 30.0,
                 in_loop_thread: Callable[[], bool] = lambda: False) -> None:
        #: The session's name for this turn (``"turn-3"``); fold events name their inputs by it.
        self.id: str | None = None
        self.kind = kind
        self.request = request
        self._future: concurrent.futures.Future[Reply] = concurrent.futures.Future()
        self._display_timeout = display_timeout
        self._in_loop_thread = in_loop_thread

    def result(self, timeout: float | None = None) -> Reply:
        """The :class:`Reply`, waiting up to ``timeout`` seconds (None: as long as it takes).

        Raises :class:`TurnError`, :class:`ConnectionClosedError`, :class:`TimeoutError`, or
        ``concurrent.futures.CancelledError`` after :meth:`cancel`.
        """
        if not self._future.done() and self._in_loop_thread():
            raise SessionError("Turn.result() would block the session's own loop thread (inside an on_frame "
                               "callback?); use turn.add_done_callback(fn) there instead")
        return self._future.result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error the turn failed with, or None if it succeeded (waits like :meth:`result`)."""
        return self._future.exception(timeout)

    def done(self) -> bool:
        """True when the turn has a reply, failed, or was cancelled."""
        return self._future.done()

    def cancel(self) -> bool:
        """Stop waiting for this turn (audio still streaming stops too). True if it was still pending."""
        return self._future.cancel()

    def cancelled(self) -> bool:
        """True after a successful :meth:`cancel`."""
        return self._future.cancelled()

    def add_done_callback(self, fn: Callable[[Turn], Any]) -> None:
        """Call ``fn(turn)`` when done (at once if already done; otherwise on the session's loop thread)."""
        self._future.add_done_callback(lambda _future: fn(self))

    def __await__(self) -> Any:
        return asyncio.wrap_future(self._future).__await__()

    # The session resolves turns; these never raise if the turn was cancelled meanwhile.
    def _resolve(self, reply: Reply) -> None:
        if not self._future.done():
            try:
                self._future.set_result(reply)
            except concurrent.futures.InvalidStateError:
                pass

    def _fail(self, error: BaseException) -> None:
        if not self._future.done():
            try:
                self._future.set_exception(error)
            except concurrent.futures.InvalidStateError:
                pass

    def _status(self) -> str:
        if not self._future.done():
            return "pending"
        if self._future.cancelled():
            return "cancelled"
        error = self._future.exception()
        return f"failed: {error}" if error else repr(self._future.result())

    def __repr__(self) -> str:
        request = f" {self.request!r}" if self.request else ""
        return f"<Turn {self.kind}{request} {self._status()}>"

    def _repr_html_(self) -> str:
        """Shown in a notebook: waits (up to the session's timeout) for the reply, then shows it."""
        if not self._future.done() and not self._in_loop_thread():
            concurrent.futures.wait([self._future], timeout=self._display_timeout)
        if self._future.done() and not self._future.cancelled() and self._future.exception() is None:
            return self._future.result()._repr_html_()
        return f"<div>{html.escape(repr(self))}</div>"
