"""User audio on one connection: decoding, voice activity detection and streaming speech recognition.

:class:`VoiceInput` takes the user's wire audio chunk by chunk. With VAD off (push-to-talk) the chunks of
one turn are recognized as they arrive and ``audio: null`` ends the turn. With VAD on it runs a
:class:`~amigo_lab.speech.VoiceActivityDetector` over the continuous stream and reports speech started,
ended or reset (too short); each utterance is streamed to the recognizer *while the user speaks*, so the
transcript is ready almost as soon as the speech ends.

Recognition runs in the worker processes of :mod:`amigo_lab.emulator.recognition` (never on the event loop,
and not in a thread either: pocketsphinx would hold the interpreter lock the loop needs). Recognizers
listen only for a service's English phrases.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from amigo_lab.audio import AudioError, decode_wire_audio, float_to_pcm16, silence
from amigo_lab.emulator.recognition import RecognitionWorker
from amigo_lab.protocol.constants import VAD_END_SILENCE_MS, VAD_MIN_SPEECH_MS
from amigo_lab.speech import (
    SPEECH_ENDED,
    SPEECH_RESET_ZERO,
    SPEECH_STARTED,
    SpeechError,
    VadEvent,
    VoiceActivityDetector,
)

logger = logging.getLogger("amigo_lab.emulator")

#: Kinds of :class:`VoiceEvent`: the three VAD events, and the end of a push-to-talk turn.
AUDIO_ENDED = "audio-ended"
#: Audio goes to the recognizer in batches of this many ms (its decoding block), not per wire chunk.
RECOGNIZER_BATCH_MS = 100
#: The newest audio of an utterance is held back this long before it is decoded: when speech ends it is
#: the end-of-speech silence, which need not be decoded, so finishing costs nothing extra.
RECOGNIZER_HOLDBACK_MS = 400
#: Silence kept after the end of speech when an utterance is finished, so the decoder closes the last word.
RECOGNIZER_TAIL_MS = 150
_BYTES_PER_MS = 32


class TooMuchAudio(ValueError):
    """A push-to-talk turn went over the utterance limit; the message says how to end the turn."""


@dataclass(frozen=True)
class VoiceEvent:
    """Something the user's audio did: ``kind`` is a VAD kind or :data:`AUDIO_ENDED`; ``audio_ms`` the
    position in the user's stream (VAD only); ``utterance`` the speech to answer (ended events)."""

    kind: str
    audio_ms: float | None = None
    utterance: Utterance | None = None


class Utterance:
    """One user utterance, recognized in the worker process while its audio arrives.

    :meth:`feed` never blocks; :meth:`finish` marks the end, then ``await transcript()`` gives the text.
    :meth:`cancel` drops it.
    """

    def __init__(self, worker: RecognitionWorker, phrases: Sequence[str]) -> None:
        self._worker = worker
        self._stream_id = worker.open(phrases)
        self._audio = bytearray()
        self._sent = 0  # bytes of _audio already handed to the recognizer
        self._result: Future[str] | None = None
        self._cancelled = False

    def feed(self, pcm: bytes) -> None:
        """Add PCM16 audio of this utterance; all but the newest :data:`RECOGNIZER_HOLDBACK_MS` is decoded now."""
        if not pcm or self._result is not None or self._cancelled:
            return
        self._audio += pcm
        ready = len(self._audio) - RECOGNIZER_HOLDBACK_MS * _BYTES_PER_MS
        if ready - self._sent >= RECOGNIZER_BATCH_MS * _BYTES_PER_MS:
            self._send_until(ready)

    def finish(self, *, speech_end: int | None = None) -> None:
        """No more audio. ``speech_end`` (bytes into the utterance) marks where speech stopped: audio later
        than :data:`RECOGNIZER_TAIL_MS` after it is silence and is not decoded."""
        if self._result is not None or self._cancelled:
            return
        end = len(self._audio)
        if speech_end is not None:
            end = min(end, max(0, speech_end) + RECOGNIZER_TAIL_MS * _BYTES_PER_MS)
        self._send_until(end)
        self._result = self._worker.finish(self._stream_id)

    def cancel(self) -> None:
        """Drop the utterance."""
        if self._result is None and not self._cancelled:
            self._cancelled = True
            self._worker.cancel(self._stream_id)

    async def transcript(self) -> str:
        """The lowercase transcript ("" if nothing was recognized or the utterance was cancelled)."""
        if self._result is None:
            return ""
        try:
            return await asyncio.wrap_future(self._result)
        except SpeechError as exc:  # the turn still gets an answer (the service's fallback)
            logger.error("speech recognition failed, answering as if nothing was understood: %s", exc)
            return ""

    def _send_until(self, end: int) -> None:
        end -= end % 2
        if end > self._sent:
            self._worker.feed(self._stream_id, bytes(self._audio[self._sent:end]))
            self._sent = end


class VoiceInput:
    """The user's audio on one connection: push-to-talk or VAD, with streaming recognition.

    Call :meth:`decode` on each received chunk, then :meth:`feed` with the PCM; call :meth:`end_of_audio`
    for ``audio: null``. Both return :class:`VoiceEvent` objects for the connection to send and queue.
    """

    def __init__(self, *, audio_format: str, phrases: Sequence[str], worker: RecognitionWorker,
                 max_utterance_s: float = 60.0, end_silence_ms: int = VAD_END_SILENCE_MS) -> None:
        self.audio_format = audio_format
        self._phrases = tuple(phrases)
        self._worker = worker
        self._max_utterance_s = max_utterance_s
        self._end_silence_ms = end_silence_ms
        self._ptt_bytes = 0  # bytes of the current push-to-talk turn
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
        self._vad = VoiceActivityDetector(end_silence_ms=self._end_silence_ms, min_speech_ms=VAD_MIN_SPEECH_MS,
                                          max_speech_ms=self._max_utterance_s * 1000) if on else None

    def feed(self, pcm: bytes) -> list[VoiceEvent]:
        """Take the next chunk of the user's audio; return the VAD events it completed (none without VAD)."""
        if self._vad is None:
            if self._ptt_bytes + len(pcm) > self._max_utterance_s * 1000 * _BYTES_PER_MS:
                raise TooMuchAudio(
                    f"this push-to-talk turn would exceed {self._max_utterance_s:g} s of audio; the chunk was "
                    "dropped. End the turn with audio: null, or switch VAD on for long input")
            self._ptt_bytes += len(pcm)
            if self._utterance is None:
                self._utterance = Utterance(self._worker, self._phrases)
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
            return self.feed(float_to_pcm16(silence(self._end_silence_ms + 40)))
        utterance = self._utterance or Utterance(self._worker, self._phrases)
        self._utterance = None
        self._ptt_bytes = 0
        utterance.finish()
        return [VoiceEvent(AUDIO_ENDED, None, utterance)]

    def close(self) -> None:
        """The connection closed: drop any utterance in progress."""
        self._drop_utterance()

    def _on_vad_event(self, event: VadEvent) -> VoiceEvent:
        if event.kind == SPEECH_STARTED:
            self._drop_utterance()
            self._utterance = Utterance(self._worker, self._phrases)
            self._utterance.feed(event.audio or b"")
            self._passed = len(event.audio or b"")
            return VoiceEvent(SPEECH_STARTED, event.audio_ms)
        utterance, self._utterance = self._utterance, None
        if event.kind == SPEECH_ENDED:
            if utterance is None:  # the detector never splits start and end this way; be safe anyway
                utterance, self._passed = Utterance(self._worker, self._phrases), 0
            audio = event.audio or b""
            utterance.feed(audio[self._passed:])
            # The event's audio ends with the end-of-speech silence; speech stopped that long before its end.
            utterance.finish(speech_end=len(audio) - int(event.trailing_ms) * _BYTES_PER_MS)
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
        self._ptt_bytes = 0


__all__ = ["AUDIO_ENDED", "RECOGNIZER_BATCH_MS", "RECOGNIZER_HOLDBACK_MS", "RECOGNIZER_TAIL_MS", "TooMuchAudio",
           "Utterance", "VoiceEvent", "VoiceInput"]
