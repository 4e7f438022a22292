"""Offline speech synthesis with eSpeak NG, driven through ctypes.

:class:`Synthesizer` turns text into :class:`Speech`: PCM16 mono 16 kHz audio plus a per-character
alignment saying when each character of the text is spoken. The eSpeak NG shared library and its voice
data come from the ``espeakng_loader`` wheel, so nothing is downloaded.

eSpeak NG keeps all of its state in process-wide globals and is not thread-safe, so every instance of
:class:`Synthesizer` shares one engine, initialized lazily on first use and guarded by one lock:
synthesis calls from many threads are serialized, not parallel.
"""

from __future__ import annotations

import ctypes
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import espeakng_loader
import numpy as np
import soxr

from amigo_lab.speech.errors import SpeechError
from amigo_lab.speech.pcm import SAMPLE_RATE, SAMPLE_WIDTH

__all__ = ["LANGUAGES", "Speech", "Synthesizer"]

LANGUAGES: Mapping[str, str] = MappingProxyType(
    {"eng": "en-us", "spa": "es", "fra": "fr", "deu": "de", "ita": "it", "por": "pt"}
)
"""Supported languages: ISO 639-3 code -> name of the eSpeak NG voice that speaks it."""

DEFAULT_RATE_WPM = 175
"""eSpeak NG's own default speaking rate, in words per minute, used when no rate is given."""

MIN_RATE_WPM = 80
MAX_RATE_WPM = 450
"""The speaking-rate range eSpeak NG accepts, in words per minute."""

# Constants from eSpeak NG's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_PARAM_RATE = 1
_EE_OK = 0

# A sample whose magnitude stays below this (about -50 dBFS) is treated as silence when finding where
# the last word stops sounding; eSpeak's pauses are digital zeros, so any small threshold works.
_SILENCE_AMPLITUDE = 100

_WORD = re.compile(r"\w+")


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_void_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``: ``text_position`` counts characters from 1; ``audio_position`` is in ms."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class Speech:
    """Synthesized speech: audio plus when each character of the text is spoken.

    ``pcm`` is PCM16 little-endian mono at ``sample_rate`` Hz (always 16 000). ``alignment`` has exactly
    one ``(ms, char)`` pair per character of ``text``, in order, with ``ms`` (from the start of ``pcm``)
    never decreasing: letters are timed within their word, spaces and punctuation take the time of the
    next word (or the end of the last word when none follows). ``language`` is the ISO 639-3 code.
    """

    pcm: bytes
    sample_rate: int
    alignment: tuple[tuple[float, str], ...]
    language: str
    text: str

    @property
    def duration_ms(self) -> float:
        """Length of ``pcm`` in milliseconds."""
        return len(self.pcm) / SAMPLE_WIDTH * 1000.0 / self.sample_rate


@dataclass(frozen=True)
class _WordMark:
    char_index: int  # 0-based index into the text where eSpeak says the word begins
    audio_ms: float


class _Espeak:
    """The process-wide eSpeak NG engine; every method must be called with ``lock`` held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._lib: ctypes.CDLL | None = None
        self._output_rate = 0
        self._chunks: list[bytes] = []
        self._marks: list[_WordMark] = []
        self._end_ms = 0.0
        # Kept referenced for the library's lifetime: eSpeak calls it after we return.
        self._callback = _SynthCallback(self._on_audio)

    def _on_audio(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(ctypes.string_at(wav, n_samples * SAMPLE_WIDTH))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_WORD:
                self._marks.append(_WordMark(event.text_position - 1, float(event.audio_position)))
            elif event.type == _EVENT_END:
                self._end_ms = max(self._end_ms, float(event.audio_position))
            i += 1
        return 0  # 0 = keep synthesizing

    def _ensure_initialized(self) -> ctypes.CDLL:
        if self._lib is not None:
            return self._lib
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as exc:
            raise SpeechError(f"cannot load eSpeak NG from espeakng_loader: {exc}") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        # buflength 0 = eSpeak's default buffer; DONT_EXIT stops it from calling exit() on bad data.
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise SpeechError(f"eSpeak NG failed to initialize with voice data at {data_path}")
        lib.espeak_SetSynthCallback(self._callback)
        self._lib, self._output_rate = lib, rate
        return lib

    def synthesize(self, text: str, voice: str, rate_wpm: int) -> tuple[np.ndarray, int, list[_WordMark], float]:
        """Speak ``text``; return (int16 samples, their sample rate, word marks, end-of-speech ms)."""
        lib = self._ensure_initialized()
        if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise SpeechError(f"eSpeak NG has no voice named {voice!r}")
        if lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0) != _EE_OK:
            raise SpeechError(f"eSpeak NG rejected the speaking rate {rate_wpm} wpm")
        self._chunks, self._marks, self._end_ms = [], [], 0.0
        encoded = text.encode("utf-8")
        status = lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != _EE_OK or lib.espeak_Synchronize() != _EE_OK:
            raise SpeechError(f"eSpeak NG failed to synthesize the text (status {status})")
        samples = np.frombuffer(b"".join(self._chunks), dtype="<i2")
        marks, end_ms = self._marks, self._end_ms
        self._chunks, self._marks = [], []
        return samples, self._output_rate, marks, end_ms


_ENGINE = _Espeak()


class Synthesizer:
    """Text-to-speech in the languages of :data:`LANGUAGES`, with eSpeak NG (offline).

    Construction is free; the engine loads on the first :meth:`synthesize` call (about 10 ms). All
    instances share one process-wide engine and lock, so it is fine to create one per caller.

    Repeated calls with the same text are not bit-identical: eSpeak's waveform generator keeps some
    state between utterances, so lengths vary by a few samples. Keep the :class:`Speech` if exact audio matters.
    """

    @property
    def languages(self) -> tuple[str, ...]:
        """The ISO 639-3 codes :meth:`synthesize` accepts."""
        return tuple(LANGUAGES)

    def synthesize(self, text: str, *, language: str = "eng", rate_wpm: int | None = None) -> Speech:
        """Speak ``text`` and return the audio (PCM16 mono 16 kHz) with its per-character alignment.

        ``language`` is an ISO 639-3 code from :data:`LANGUAGES`; ``rate_wpm`` is the speaking rate in
        words per minute (80-450; default eSpeak's 175). Raise :class:`SpeechError` for empty text, an
        unsupported language, an out-of-range rate or an engine failure. Send ``Speech.pcm`` on the wire,
        or feed it to :class:`amigo_lab.speech.Recognizer` to check what a listener would hear.
        """
        if not isinstance(text, str) or not text.strip():
            raise SpeechError("cannot synthesize empty text")
        if "\x00" in text:
            raise SpeechError("text must not contain NUL characters")
        voice = LANGUAGES.get(language)
        if voice is None:
            raise SpeechError(f"unsupported language {language!r}; supported: {', '.join(LANGUAGES)}")
        rate = DEFAULT_RATE_WPM if rate_wpm is None else int(rate_wpm)
        if not MIN_RATE_WPM <= rate <= MAX_RATE_WPM:
            raise SpeechError(f"rate_wpm must be between {MIN_RATE_WPM} and {MAX_RATE_WPM}, got {rate_wpm}")

        with _ENGINE.lock:
            samples, source_rate, marks, end_event_ms = _ENGINE.synthesize(text, voice, rate)

        pcm = _resample_to_wire_rate(samples, source_rate)
        duration_ms = len(samples) * 1000.0 / source_rate if source_rate else 0.0
        speech_end_ms = _last_sound_ms(samples, source_rate, fallback=end_event_ms or duration_ms)
        alignment = _align_characters(text, marks, speech_end_ms)
        return Speech(pcm=pcm, sample_rate=SAMPLE_RATE, alignment=alignment, language=language, text=text)


def _resample_to_wire_rate(samples: np.ndarray, source_rate: int) -> bytes:
    if samples.size == 0:
        return b""
    if source_rate == SAMPLE_RATE:
        return samples.astype("<i2").tobytes()
    resampled = soxr.resample(samples.astype(np.int16), source_rate, SAMPLE_RATE)
    return resampled.astype("<i2").tobytes()


def _last_sound_ms(samples: np.ndarray, rate: int, *, fallback: float) -> float:
    """Where the audio stops sounding (ms), so trailing pause is not credited to the last word."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > _SILENCE_AMPLITUDE)
    if loud.size == 0 or rate <= 0:
        return fallback
    return (int(loud[-1]) + 1) * 1000.0 / rate


def _align_characters(text: str, marks: list[_WordMark], end_ms: float) -> tuple[tuple[float, str], ...]:
    """Give every character of ``text`` the ms at which it is spoken.

    eSpeak reports a start time per spoken word, but its text positions can land on the space before a
    word (it does after sentence punctuation), and it may merge or split written words. So each report is
    snapped to the written word containing it (or the next one), letters are interpolated by letter count
    between consecutive word starts, and every other character takes the time of the next letter.
    """
    words = [m.span() for m in _WORD.finditer(text)]
    letter_index = [i for start, stop in words for i in range(start, stop)]
    n_letters = len(letter_index)
    times = [0.0] * len(text)
    if n_letters == 0:
        spread: list[float] = np.linspace(0.0, end_ms, num=len(text), endpoint=False).tolist() if text else []
        return tuple((float(t), c) for t, c in zip(spread, text, strict=True))

    anchors = _word_anchors(words, marks)
    if not anchors or anchors[0][0] != 0:
        anchors.insert(0, (0, anchors[0][1] if anchors else 0.0))
    last_ms = max(end_ms, anchors[-1][1])
    anchors.append((n_letters, last_ms))
    ordinals = np.array([a[0] for a in anchors], dtype=float)
    ms = np.maximum.accumulate(np.array([a[1] for a in anchors], dtype=float))
    letter_ms = np.interp(np.arange(n_letters, dtype=float), ordinals, ms)

    for ordinal, char_index in enumerate(letter_index):
        times[char_index] = float(letter_ms[ordinal])
    next_ms = last_ms
    is_letter = np.zeros(len(text), dtype=bool)
    is_letter[letter_index] = True
    for i in range(len(text) - 1, -1, -1):
        if is_letter[i]:
            next_ms = times[i]
        else:
            times[i] = next_ms
    # Letters of an unreported trailing word are interpolated towards last_ms, and trailing punctuation
    # takes last_ms, so the sequence is already monotonic; accumulate once more to guarantee it.
    monotonic = np.maximum.accumulate(np.array(times))
    return tuple((round(float(t), 3), c) for t, c in zip(monotonic, text, strict=False))


def _word_anchors(words: list[tuple[int, int]], marks: list[_WordMark]) -> list[tuple[int, float]]:
    """Map eSpeak word reports to (letter ordinal of a written word's first letter, start ms)."""
    first_letter_ordinal = []
    ordinal = 0
    for start, stop in words:
        first_letter_ordinal.append(ordinal)
        ordinal += stop - start
    anchors: list[tuple[int, float]] = []
    word = 0
    for mark in marks:
        # Reports come in speaking order, so never snap backwards past the last matched word.
        while word < len(words) and words[word][1] <= mark.char_index:
            word += 1
        if word >= len(words):
            break
        if anchors and anchors[-1][0] == first_letter_ordinal[word]:
            continue  # a written word spoken as several words ("1995") keeps its first start
        anchors.append((first_letter_ordinal[word], mark.audio_ms))
    return anchors
