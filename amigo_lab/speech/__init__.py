"""Offline voice for the protocol emulator: voice activity detection, speech recognition, speech synthesis.

All audio is PCM16 little-endian mono at 16 000 Hz, passed as ``bytes`` (the wire format).

* :class:`VoiceActivityDetector` (webrtcvad) turns an audio stream into speech-started / speech-ended /
  speech-reset-zero :class:`VadEvent` objects, and hands out the utterance audio while it is spoken.
* :class:`Recognizer` (pocketsphinx, US English only) transcribes utterances, whole or streamed through a
  :class:`RecognitionStream`; give it the phrases you expect for exact results.
* :class:`Synthesizer` (eSpeak NG) speaks text in the languages of :data:`LANGUAGES` and returns
  :class:`Speech` with a per-character alignment.

Every failure is a :class:`SpeechError`, a subclass of :class:`amigo_lab.errors.AmigoError`.
"""

from amigo_lab.speech.asr import RecognitionStream, Recognizer
from amigo_lab.speech.errors import SpeechError
from amigo_lab.speech.pcm import SAMPLE_RATE
from amigo_lab.speech.tts import LANGUAGES, Speech, Synthesizer
from amigo_lab.speech.vad import (
    SPEECH_ENDED,
    SPEECH_RESET_ZERO,
    SPEECH_STARTED,
    VadEvent,
    VoiceActivityDetector,
)

__all__ = [
    "LANGUAGES",
    "SAMPLE_RATE",
    "SPEECH_ENDED",
    "SPEECH_RESET_ZERO",
    "SPEECH_STARTED",
    "RecognitionStream",
    "Recognizer",
    "Speech",
    "SpeechError",
    "Synthesizer",
    "VadEvent",
    "VoiceActivityDetector",
]
