"""User audio on one connection: decoding, voice activity detection and streaming speech recognition.

:class:`VoiceInput` takes the user's wire audio chunk by chunk. With VAD off (push-to-talk) the chunks of
one turn are recognized as they arrive and ``audio: null`` ends the turn. With VAD on it runs a
:class:`~amigo_lab.speech.VoiceActivityDetector` over the continuous stream and reports speech started,
ended or reset (too short); each utterance is streamed to the recognizer *while the user speaks*, so the
transcript is ready almost as soon as the speech ends.

Recognition (pocketsphinx) runs in the emulator's thread pool, never on the event loop, one job at a time
per utterance and in arrival order (:class:`Utterance`). Recognizers listen only for a service's English
phrases; :func:`recognizer_for` shares one per phrase set across the process.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass

from amigo_lab.audio import AudioError, decode_wire_audio, float_to_pcm16, silence
from amigo_lab.protocol.constants import VAD_END_SILENCE_MS, VAD_MIN_SPEECH_MS
from amigo_lab.speech import (
    SPEECH_ENDED,
    SPEECH_RESET_ZERO,
    SPEECH_STARTED,
    RecognitionStream,
    Recognizer,
    VadEvent,
    VoiceActivityDetector,
)

logger = logging.getLogger("amigo_lab.emulator")

#: Kinds of :class:`VoiceEvent`: the three VAD events, and the end of a push-to-talk turn.
AUDIO_ENDED = "audio-ended"

_recognizers: dict[tuple[str, ...], Recognizer] = {}
_recognizers_lock = threading.Lock()


def recognizer_for(phrases: Iterable[str]) -> Recognizer:
    """The process-wide recognizer for a phrase set; its decoders are pooled and reused by every stream.

    Kept alive for the life of the process, so emulators started one after another (as tests do) reuse
    warm decoders instead of building new ones.
    """
    key = tuple(phrases)
    with _recognizers_lock:
        recognizer = _recognizers.get(key)
        if recognizer is None:
            recognizer = _recognizers[key] = Recognizer(key)
        return recognizer


@dataclass(frozen=True)
class VoiceEvent:
    """Something the user's audio did: ``kind`` is a VAD kind or :data:`AUDIO_ENDED`; ``audio_ms`` the
    position in the user's stream (VAD only); ``utterance`` the speech to answer (ended events)."""

    kind: str
    audio_ms: float | None = None
    utterance: "Utterance | None" = None


class Utterance:
    """One user utterance, recognized in the thread pool while its audio arrives.

    :meth:`feed` never blocks: audio is queued and a background task hands it to the recognizer one job
    at a time. :meth:`finish` marks the end; ``await transcript()`` returns the text. :meth:`cancel` drops
    it. Must be created on the event loop that will await it.
    """

    def __init__(self, recognizer: Recognizer, executor: Executor) -> None:
        self._recognizer = recognizer
        self._executor = executor
        self._pending: list[bytes] = []
        self._finished = False
        self._cancelled = False
        self._more = asyncio.Event()
        self.audio_bytes = 0
        self._task = asyncio.get_running_loop().create_task(self._recognize())

    def feed(self, pcm: bytes) -> None:
        """Queue more PCM16 audio of this utterance."""
        if pcm and not self._finished:
            self._pending.append(pcm)
            self.audio_bytes += len(pcm)
            self._more.set()

    def finish(self) -> None:
        """No more audio: the transcript can be completed."""
        self._finished = True
        self._more.set()

    def cancel(self) -> None:
        """Drop the utterance; its recognizer stream is released as soon as the current job ends."""
        self._cancelled = True
        self._finished = True
        self._more.set()

    async def transcript(self) -> str:
        """The lowercase transcript ("" if nothing was recognized or the utterance was cancelled)."""
        return await asyncio.shield(self._task)

    async def _recognize(self) -> str:
        loop = asyncio.get_running_loop()
        job: asyncio.Future | None = None
        stream: RecognitionStream | None = None
        try:
            job = loop.run_in_executor(self._executor, self._recognizer.stream)
            stream = await job
            while True:
                await self._more.wait()
                self._more.clear()
                if self._cancelled:
                    stream.cancel()
                    return ""
                chunks, self._pending = self._pending, []
                if chunks:
                    job = loop.run_in_executor(self._executor, stream.feed, b"".join(chunks))
                    await job
                if self._finished and not self._pending:
                    break
            job = loop.run_in_executor(self._executor, stream.finish)
            return await job
        except asyncio.CancelledError:
            # The loop is shutting down: release the decoder once the job in flight (if any) is done.
            _release_later(job, stream)
            raise


def _release_later(job: asyncio.Future | None, stream: RecognitionStream | None) -> None:
    def release(_: object = None) -> None:
        if stream is not None:
            stream.cancel()  # returns the decoder to its pool; a no-op once finished

    if job is not None and not job.done():
        job.add_done_callback(release)
    else:
        release()


class VoiceInput:
    """The user's audio on one connection: push-to-talk or VAD, with streaming recognition.

    Call :meth:`decode` on each received chunk, then :meth:`feed` with the PCM; call :meth:`end_of_audio`
    for ``audio: null``. Both return :class:`VoiceEvent` objects for the connection to send and queue.
    """

    def __init__(self, *, audio_format: str, recognizer: Recognizer, executor: Executor) -> None:
        self.audio_format = audio_format
        self._recognizer = recognizer
        self._executor = executor
        self._vad: VoiceActivityDetector | None = None
        self._utterance: Utterance | None = None
        self._passed = 0  # bytes of the current VAD utterance already given to the recognizer

    @property
    def vad_on(self) -> bool:
        """True while server-side voice activity detection is on."""
        return self._vad is not None

    @property
    def pending(self) -> bool:
        """True while the user is speaking: VAD in speech, or push-to-talk audio not yet ended."""
        return self._utterance is not None

    def decode(self, data: bytes) -> bytes:
        """Wire audio -> PCM16 16 kHz mono. Raises :class:`~amigo_lab.audio.AudioError` if undecodable."""
        if self.audio_format == "pcm":
            if len(data) % 2:
                raise AudioError(f"PCM16 audio needs an even number of bytes, got {len(data)}")
            return data
        return float_to_pcm16(decode_wire_audio(data, self.audio_format))

    def set_vad(self, on: bool) -> None:
        """Switch VAD on or off; a turn in progress (speech or push-to-talk audio) is dropped."""
        self._drop_utterance()
        self._vad = VoiceActivityDetector(end_silence_ms=VAD_END_SILENCE_MS, min_speech_ms=VAD_MIN_SPEECH_MS) \
            if on else None

    def feed(self, pcm: bytes) -> list[VoiceEvent]:
        """Take the next chunk of the user's audio; return the VAD events it completed (none without VAD)."""
        if self._vad is None:
            if self._utterance is None:
                self._utterance = Utterance(self._recognizer, self._executor)
            self._utterance.feed(pcm)
            return []
        events = [self._on_vad_event(event) for event in self._vad.feed(pcm)]
        if self._vad.in_speech and self._utterance is not None:
            more = self._vad.take_speech_audio()
            self._utterance.feed(more)
            self._passed += len(more)
        return events

    def end_of_audio(self) -> list[VoiceEvent]:
        """``audio: null``. Push-to-talk: the turn is complete. VAD: silence is appended to the stream so
        that speech in progress ends now rather than waiting for more audio."""
        if self._vad is not None:
            if not self._vad.in_speech:
                return []
            return self.feed(float_to_pcm16(silence(VAD_END_SILENCE_MS + 40)))
        utterance = self._utterance or Utterance(self._recognizer, self._executor)
        self._utterance = None
        utterance.finish()
        return [VoiceEvent(AUDIO_ENDED, None, utterance)]

    def close(self) -> None:
        """The connection closed: drop any utterance in progress."""
        self._drop_utterance()

    def _on_vad_event(self, event: VadEvent) -> VoiceEvent:
        if event.kind == SPEECH_STARTED:
            self._drop_utterance()
            self._utterance = Utterance(self._recognizer, self._executor)
            self._utterance.feed(event.audio or b"")
            self._passed = len(event.audio or b"")
            return VoiceEvent(SPEECH_STARTED, event.audio_ms)
        utterance, self._utterance = self._utterance, None
        if event.kind == SPEECH_ENDED:
            if utterance is None:  # the detector never splits start and end this way; be safe anyway
                utterance, self._passed = Utterance(self._recognizer, self._executor), 0
            utterance.feed((event.audio or b"")[self._passed:])
            utterance.finish()
            self._passed = 0
            return VoiceEvent(SPEECH_ENDED, event.audio_ms, utterance)
        if utterance is not None:
            utterance.cancel()
        self._passed = 0
        return VoiceEvent(SPEECH_RESET_ZERO, event.audio_ms)

    def _drop_utterance(self) -> None:
        if self._utterance is not None:
            self._utterance.cancel()
            self._utterance = None
        self._passed = 0


__all__ = ["AUDIO_ENDED", "Utterance", "VoiceEvent", "VoiceInput", "recognizer_for"]
