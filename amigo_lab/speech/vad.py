"""Streaming voice activity detection with webrtcvad, shaped as the protocol's speech events.

Feed PCM16 mono 16 kHz audio of any chunk size to :class:`VoiceActivityDetector`; it classifies fixed
frames (10, 20 or 30 ms, counted from the start of the stream) as voiced or not and turns runs of them
into :class:`VadEvent` objects:

* ``"speech-started"`` once ``start_ms`` of consecutive voiced frames are seen. ``audio_ms`` is where
  that voiced run began; ``audio`` is the utterance so far: from ``preroll_ms`` before the run (or the
  stream start) up to the frame that confirmed speech.
* ``"speech-ended"`` once ``end_silence_ms`` of consecutive unvoiced frames follow. ``audio_ms`` is where
  that silence began; ``audio`` is the whole utterance: the started event's audio followed by everything
  fed until the end was confirmed (so it includes the ``end_silence_ms`` of trailing silence).
* ``"speech-reset-zero"`` instead of ``"speech-ended"`` when the utterance held less than
  ``min_speech_ms`` of voiced audio (a cough or click); ``audio_ms`` is where the silence began and
  ``audio`` is None: discard what was received.

``max_speech_ms`` (None: unbounded) caps one utterance: speech still going on after that long ends at
once with ``"speech-ended"`` whose ``audio_ms`` is the end of the audio so far and whose ``trailing_ms`` is
0 (a real end carries ``end_silence_ms`` of silence); the next voiced frames start a new utterance.

To recognize while the user is still speaking, start a recognition stream on ``"speech-started"`` with
the event's audio, after every :meth:`VoiceActivityDetector.feed` call pass it
:meth:`VoiceActivityDetector.take_speech_audio` while :attr:`VoiceActivityDetector.in_speech`, and on
``"speech-ended"`` pass ``event.audio[n:]`` where ``n`` is the number of bytes already passed for this
utterance (the part that arrived in the same feed call as the end). ``started.audio`` + every take +
that tail is exactly ``ended.audio``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import webrtcvad

from amigo_lab.speech.errors import SpeechError
from amigo_lab.speech.pcm import BYTES_PER_MS, as_bytes

__all__ = [
    "SPEECH_ENDED",
    "SPEECH_RESET_ZERO",
    "SPEECH_STARTED",
    "VadEvent",
    "VoiceActivityDetector",
]

SPEECH_STARTED = "speech-started"
"""Event kind: the user started speaking."""
SPEECH_ENDED = "speech-ended"
"""Event kind: the user stopped speaking after a real utterance."""
SPEECH_RESET_ZERO = "speech-reset-zero"
"""Event kind: what looked like speech was too short to count; forget it."""

_VAD_SAMPLE_RATE = 16_000
_FRAME_MS_CHOICES = (10, 20, 30)


@dataclass(frozen=True)
class VadEvent:
    """A change in speech activity.

    ``kind`` is :data:`SPEECH_STARTED`, :data:`SPEECH_ENDED` or :data:`SPEECH_RESET_ZERO`; ``audio_ms`` is a
    stream position in ms since the first byte fed; ``audio`` is PCM16 16 kHz mono on started (utterance
    so far) and ended (whole utterance) events and None on reset events.
    """

    kind: str
    audio_ms: float
    audio: bytes | None = None
    #: Milliseconds of silence at the end of ``audio`` (a speech-ended event; 0 when cut at max_speech_ms).
    trailing_ms: float = 0.0


class VoiceActivityDetector:
    """Turns a PCM16 mono 16 kHz stream into speech-started / speech-ended / speech-reset-zero events.

    ``aggressiveness`` 0-3 is webrtcvad's mode (higher rejects more non-speech); ``frame_ms`` (10, 20 or
    30) is the classification step; the other arguments are in ms, rounded up to whole frames. See the
    module docstring for the event semantics. Call :meth:`feed` with audio as it arrives, and
    :meth:`reset` to start a new stream. Not thread-safe: use one detector per stream.
    """

    def __init__(
        self,
        *,
        aggressiveness: int = 2,
        frame_ms: int = 20,
        end_silence_ms: int = 500,
        min_speech_ms: int = 200,
        start_ms: int = 60,
        preroll_ms: int = 300,
        max_speech_ms: float | None = None,
    ) -> None:
        if aggressiveness not in (0, 1, 2, 3):
            raise SpeechError(f"aggressiveness must be 0, 1, 2 or 3, got {aggressiveness!r}")
        if frame_ms not in _FRAME_MS_CHOICES:
            raise SpeechError(f"frame_ms must be 10, 20 or 30 (webrtcvad's frame sizes), got {frame_ms!r}")
        for name, value in (
            ("end_silence_ms", end_silence_ms),
            ("min_speech_ms", min_speech_ms),
            ("start_ms", start_ms),
            ("preroll_ms", preroll_ms),
        ):
            if value < 0:
                raise SpeechError(f"{name} must not be negative, got {value!r}")
        self._aggressiveness = aggressiveness
        self._frame_bytes = frame_ms * BYTES_PER_MS
        self._start_frames = max(1, math.ceil(start_ms / frame_ms))
        self._end_frames = max(1, math.ceil(end_silence_ms / frame_ms))
        self._min_speech_frames = math.ceil(min_speech_ms / frame_ms)
        self._preroll_bytes = preroll_ms * BYTES_PER_MS
        if max_speech_ms is not None and max_speech_ms <= 0:
            raise SpeechError(f"max_speech_ms must be positive or None, got {max_speech_ms!r}")
        self._max_speech_bytes = None if max_speech_ms is None else int(max_speech_ms * BYTES_PER_MS)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next byte fed is position 0 of a new stream, outside speech."""
        self._vad = webrtcvad.Vad(self._aggressiveness)
        self._partial = bytearray()
        self._frames_done = 0  # whole frames classified so far
        self._fed_bytes = 0
        # Outside speech: recent audio kept for the preroll, and the current voiced run.
        self._history = bytearray()
        self._history_start = 0  # stream byte offset of _history[0]
        self._run_start = 0  # byte offset where the current voiced run began
        self._run_frames = 0
        # Inside speech.
        self._in_speech = False
        self._utterance = bytearray()
        self._taken = 0  # bytes of _utterance already handed out
        self._voiced_frames = 0
        self._silence_start = 0
        self._silence_frames = 0

    @property
    def position_ms(self) -> float:
        """Milliseconds of audio fed since the stream started (or the last :meth:`reset`)."""
        return self._fed_bytes / BYTES_PER_MS

    @property
    def in_speech(self) -> bool:
        """True between a speech-started event and its speech-ended or speech-reset-zero event."""
        return self._in_speech

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Consume PCM16 mono 16 kHz audio of any length; return the events it completes, in order.

        A trailing partial frame (even half a sample) is kept and classified once the next call
        completes it, so the events never depend on how the stream is chunked.
        """
        data = as_bytes(pcm)
        self._fed_bytes += len(data)
        if not self._partial and len(data) == self._frame_bytes:
            # One whole frame with nothing pending, as a microphone sends it: no buffering, no copy.
            event = self._classify(data)
            return [] if event is None else [event]
        self._partial += data
        events: list[VadEvent] = []
        usable = len(self._partial) - len(self._partial) % self._frame_bytes
        for offset in range(0, usable, self._frame_bytes):
            frame = bytes(self._partial[offset : offset + self._frame_bytes])
            event = self._classify(frame)
            if event is not None:
                events.append(event)
        del self._partial[:usable]
        return events

    def take_speech_audio(self) -> bytes:
        """Return the utterance audio received since speech-started (beyond that event's audio) or since
        the previous call; ``b""`` outside speech. Call it after each :meth:`feed` to stream an utterance
        to a recognizer while the user is still speaking."""
        if not self._in_speech:
            return b""
        chunk = bytes(self._utterance[self._taken :])
        self._taken = len(self._utterance)
        return chunk

    def _classify(self, frame: bytes) -> VadEvent | None:
        frame_start = self._frames_done * self._frame_bytes
        self._frames_done += 1
        voiced = self._vad.is_speech(frame, _VAD_SAMPLE_RATE)
        if self._in_speech:
            return self._continue_speech(frame, frame_start, voiced)
        return self._watch_for_speech(frame, frame_start, voiced)

    def _watch_for_speech(self, frame: bytes, frame_start: int, voiced: bool) -> VadEvent | None:
        self._history += frame
        if voiced:
            if self._run_frames == 0:
                self._run_start = frame_start
            self._run_frames += 1
        else:
            self._run_frames = 0
        if self._run_frames >= self._start_frames:
            return self._start_speech()
        keep_from = (self._run_start if self._run_frames else frame_start + len(frame)) - self._preroll_bytes
        self._trim_history(keep_from)
        return None

    def _start_speech(self) -> VadEvent:
        self._trim_history(self._run_start - self._preroll_bytes)
        self._in_speech = True
        self._utterance = self._history
        self._taken = len(self._utterance)
        self._voiced_frames = self._run_frames
        self._silence_frames = 0
        self._history = bytearray()
        self._run_frames = 0
        return VadEvent(SPEECH_STARTED, self._run_start / BYTES_PER_MS, bytes(self._utterance))

    def _continue_speech(self, frame: bytes, frame_start: int, voiced: bool) -> VadEvent | None:
        self._utterance += frame
        if voiced:
            self._voiced_frames += 1
            self._silence_frames = 0
            if self._max_speech_bytes is not None and len(self._utterance) >= self._max_speech_bytes:
                self._silence_start = frame_start + len(frame)
                return self._end_speech(frame_start + len(frame), trailing_frames=0)
            return None
        if self._silence_frames == 0:
            self._silence_start = frame_start
        self._silence_frames += 1
        if self._silence_frames < self._end_frames:
            return None
        return self._end_speech(frame_start + len(frame), trailing_frames=self._silence_frames)

    def _end_speech(self, end: int, *, trailing_frames: int) -> VadEvent:
        utterance = bytes(self._utterance)
        # The preroll of the next utterance may reach back into this one's trailing silence.
        self._history = bytearray(utterance[-self._preroll_bytes :] if self._preroll_bytes else b"")
        self._history_start = end - len(self._history)
        self._in_speech = False
        self._utterance = bytearray()
        self._taken = 0
        silence_ms = self._silence_start / BYTES_PER_MS
        if self._voiced_frames < self._min_speech_frames:
            return VadEvent(SPEECH_RESET_ZERO, silence_ms, None)
        return VadEvent(SPEECH_ENDED, silence_ms, utterance,
                        trailing_ms=trailing_frames * self._frame_bytes / BYTES_PER_MS)

    def _trim_history(self, keep_from: int) -> None:
        excess = keep_from - self._history_start
        if excess > 0:
            del self._history[:excess]
            self._history_start += excess
