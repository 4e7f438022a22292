"""Turning an agent's reply into wire pieces: text chunks, or audio pieces with their transcript alignment.

Voice replies are synthesized once and cut into pieces of ``AGENT_PIECE_MS`` (protocol constants), each
encoded on its own in the session's ``audio_format`` (so every MP3 piece decodes alone) and carrying the
``(ms, char)`` alignment of exactly the characters spoken in it, with ``ms`` from the start of the message.
The same greeting or reply is said many times, so :class:`SpeechCache` keeps rendered speech in an LRU
shared by every emulator in the process; it is thread-safe because emulators may run on several loops.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from amigo_lab.audio import encode_wire_audio, pcm16_to_float
from amigo_lab.protocol.constants import AGENT_PIECE_MS, SAMPLE_RATE
from amigo_lab.speech import Speech, Synthesizer

#: Words per piece of a text reply (``response_format=text``).
TEXT_PIECE_WORDS = 3
#: How many rendered replies the process-wide cache keeps at most.
SPEECH_CACHE_ENTRIES = 512
#: How many bytes of rendered speech (wire audio and alignment) the process-wide cache keeps at most;
#: a reply larger than a quarter of it is rendered for its request only and not kept.
SPEECH_CACHE_BYTES = 64 << 20

_BYTES_PER_MS = SAMPLE_RATE * 2 // 1000
_WORD_WITH_SPACE = re.compile(r"\s*\S+\s*")


@dataclass(frozen=True)
class AudioPiece:
    """One piece of agent audio: wire bytes, the characters spoken in it, and where it sits in the message."""

    audio: bytes
    text: str
    alignment: tuple[tuple[float, str], ...]
    start_ms: float
    duration_ms: float


@dataclass(frozen=True)
class RenderedSpeech:
    """A reply rendered for the wire: its pieces in order. ``"".join(p.text for p in pieces) == text``."""

    text: str
    language: str
    audio_format: str
    pieces: tuple[AudioPiece, ...]

    @property
    def duration_ms(self) -> float:
        """Length of the whole message's audio."""
        return sum(piece.duration_ms for piece in self.pieces)

    @property
    def size_bytes(self) -> int:
        """Roughly what this rendering holds in memory: its audio, texts and alignment pairs."""
        pieces = sum(len(p.audio) + 2 * len(p.text) + 64 * len(p.alignment) + 200 for p in self.pieces)
        return pieces + 2 * len(self.text)


def text_pieces(text: str, *, words: int = TEXT_PIECE_WORDS) -> list[str]:
    """Cut a text reply into pieces of a few words; the pieces join back to ``text`` exactly."""
    tokens = _WORD_WITH_SPACE.findall(text)
    if not tokens:
        return [text]
    pieces = ["".join(tokens[i:i + words]) for i in range(0, len(tokens), words)]
    pieces[-1] += text[len("".join(pieces)):]  # trailing text the pattern did not take (none in practice)
    return pieces


def render_speech(speech: Speech, audio_format: str, *, piece_ms: float = AGENT_PIECE_MS) -> RenderedSpeech:
    """Cut synthesized speech into wire pieces of ``piece_ms`` with per-piece alignment.

    Every character goes to the piece in which it starts being spoken (characters timed at or after the
    end go to the last piece), so the pieces' texts partition the reply: what a client has heard up to a
    piece is the concatenation of the texts so far. Next: stream the pieces (paced) as ``server.new-message``.
    """
    pcm = speech.pcm
    if not pcm:
        # eSpeak says nothing for a text of punctuation only; keep one silent piece so the message exists.
        pcm = bytes(int(piece_ms) * _BYTES_PER_MS)
    piece_bytes = round(piece_ms) * _BYTES_PER_MS
    spans = [(start, min(start + piece_bytes, len(pcm))) for start in range(0, len(pcm), piece_bytes)]
    # A last piece shorter than a quarter piece would be a click; merge it into the one before.
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < piece_bytes // 4:
        spans[-2:] = [(spans[-2][0], spans[-1][1])]
    alignment = list(speech.alignment)
    pieces = []
    cursor = 0
    for index, (start, stop) in enumerate(spans):
        end_ms = stop / _BYTES_PER_MS
        last = index == len(spans) - 1
        taken = []
        while cursor < len(alignment) and (last or alignment[cursor][0] < end_ms):
            taken.append((float(alignment[cursor][0]), alignment[cursor][1]))
            cursor += 1
        chunk = pcm[start:stop]
        audio = chunk if audio_format == "pcm" else encode_wire_audio(pcm16_to_float(chunk), audio_format)
        pieces.append(AudioPiece(audio=audio, text="".join(c for _, c in taken), alignment=tuple(taken),
                                 start_ms=start / _BYTES_PER_MS, duration_ms=(stop - start) / _BYTES_PER_MS))
    return RenderedSpeech(text=speech.text, language=speech.language, audio_format=audio_format,
                          pieces=tuple(pieces))


class SpeechCache:
    """LRU of rendered replies keyed by (text, language, audio_format), safe to share between threads.

    Bounded twice: at most ``entries`` replies and at most ``max_bytes`` of rendered speech (the oldest go
    first; a reply over a quarter of ``max_bytes`` is not kept at all). :meth:`get` returns a
    :class:`concurrent.futures.Future`; concurrent requests for the same reply share one synthesis. Await
    it on a loop with ``asyncio.wrap_future``.
    """

    def __init__(self, *, entries: int = SPEECH_CACHE_ENTRIES, max_bytes: int = SPEECH_CACHE_BYTES,
                 synthesize: Callable[..., Speech] | None = None) -> None:
        if entries < 1 or max_bytes < 1:
            raise ValueError(f"entries and max_bytes must be positive, got {entries} and {max_bytes}")
        self._entries = entries
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str, str], Future[RenderedSpeech]] = OrderedDict()
        self._sizes: dict[tuple[str, str, str], int] = {}  # of the finished entries
        self._bytes = 0
        self._synthesize = synthesize or Synthesizer().synthesize
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        """Bytes of rendered speech held now (finished entries)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, text: str, language: str, audio_format: str, executor: Executor) -> Future[RenderedSpeech]:
        """The rendered reply, from the cache or synthesized in ``executor``."""
        key = (text, language, audio_format)
        with self._lock:
            future = self._cache.get(key)
            if future is not None and not (future.done() and future.exception() is not None):
                self._cache.move_to_end(key)
                self.hits += 1
                return future
            self.misses += 1
            if future is not None:
                self._drop(key)
            future = executor.submit(self._render, text, language, audio_format)
            self._cache[key] = future
            self._trim()
        future.add_done_callback(lambda done: self._measure(key, done))
        return future

    def _measure(self, key: tuple[str, str, str], future: Future[RenderedSpeech]) -> None:
        """A rendering finished: count its bytes, or forget it when it failed or is too large to keep."""
        with self._lock:
            if self._cache.get(key) is not future:
                return  # already evicted
            if future.cancelled() or future.exception() is not None:
                self._drop(key)
                return
            size = future.result().size_bytes
            if size > self._max_bytes // 4:
                self._drop(key)
                return
            self._sizes[key] = size
            self._bytes += size
            self._trim()

    def _trim(self) -> None:
        while len(self._cache) > self._entries or (self._bytes > self._max_bytes and len(self._cache) > 1):
            self._drop(next(iter(self._cache)))

    def _drop(self, key: tuple[str, str, str]) -> None:
        self._cache.pop(key, None)
        self._bytes -= self._sizes.pop(key, 0)

    def _render(self, text: str, language: str, audio_format: str) -> RenderedSpeech:
        return render_speech(self._synthesize(text, language=language), audio_format)


#: The cache every emulator in this process shares.
SHARED_SPEECH_CACHE = SpeechCache()

__all__ = ["SHARED_SPEECH_CACHE", "SPEECH_CACHE_BYTES", "SPEECH_CACHE_ENTRIES", "TEXT_PIECE_WORDS", "AudioPiece",
           "RenderedSpeech", "SpeechCache", "render_speech", "text_pieces"]
