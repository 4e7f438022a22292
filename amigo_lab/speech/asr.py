"""Offline English speech recognition with pocketsphinx and its bundled US English model.

Only English is recognized: the pocketsphinx wheel ships one acoustic model (US English), its
pronouncing dictionary and a general English language model, and nothing is downloaded.

Two modes:

* ``Recognizer(phrases)`` listens only for the given phrases (a grammar whose sentences are exactly the
  phrases). On eSpeak-synthesized English this is exact on every phrase set measured; use it whenever the
  caller knows what may be said (menu choices, intents, test scripts). Speech that is none of the phrases
  is mapped to the closest-sounding phrase or to ``""``.
* ``Recognizer()`` uses the general English language model: open vocabulary, about 0.2 x real time,
  and poor on synthetic voices (most words of eSpeak phrases come out wrong).

Decoders are pooled per phrase set (see :mod:`amigo_lab.speech.decoder_pool`). pocketsphinx holds the
GIL while it decodes, so streams in several threads interleave rather than run in parallel; feed audio in
small chunks (20-100 ms) to keep each GIL hold short, and use processes for parallel decoding.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Self

import pocketsphinx

from amigo_lab.speech.decoder_pool import DecoderPool, shared_pool
from amigo_lab.speech.errors import SpeechError
from amigo_lab.speech.pcm import (
    BYTES_PER_MS,
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    as_bytes,
    require_pcm16,
)
from amigo_lab.speech.vocabulary import (
    Vocabulary,
    build_vocabulary,
    normalize_words,
    to_jsgf,
)

__all__ = ["DECODE_BLOCK_MS", "RecognitionStream", "Recognizer"]

DECODE_BLOCK_MS = 100
"""Audio is decoded in blocks of this many ms whatever the feed sizes: pocketsphinx's result shifts
slightly with how audio is split between its calls, and fixed blocks make it independent of chunking."""

_DECODE_BLOCK_BYTES = DECODE_BLOCK_MS * BYTES_PER_MS

_GRAMMAR_SEARCH = "phrases"

# pocketsphinx signals a failed process_raw with RuntimeError, but its own message formatting in that
# path raises TypeError instead, so both mean "decoding failed".
_DECODE_ERRORS = (RuntimeError, TypeError)

# Measured on eSpeak English at 140-220 wpm, with and without noise: the default lattice best-path pass
# returns no result for some grammar utterances ("final result does not match the grammar"), and the
# default beams prune short phrases such as "goodbye" before they end. Phrase grammars are tiny, so the
# wide beams cost little (about 0.03 x real time for 40 phrases).
# pl_window=0: no phone-loop lookahead search. Only the n-gram search reads it; a grammar search ignores it,
# yet the phone loop still ran beside it on every frame, scoring every context-independent phone (about 5 %
# of the decoding time). Transcripts are the same without it (120/120 in bench_speech, identical text).
_GRAMMAR_SEARCH_CONFIG = {"bestpath": False, "beam": 1e-120, "pbeam": 1e-120, "wbeam": 1e-100, "pl_window": 0}


def _quiet_config(**settings) -> dict:
    return {"loglevel": "FATAL", "samprate": SAMPLE_RATE, **settings}


# The flat-lexicon second pass runs entirely inside end_utt(), which made finish() take ~70 ms after
# streaming; without it finish() takes ~10 ms and word error rate on eSpeak English was unchanged.
_GENERAL_SEARCH_CONFIG = {"fwdflat": False}


def _general_decoder() -> pocketsphinx.Decoder:
    try:
        return pocketsphinx.Decoder(**_quiet_config(**_GENERAL_SEARCH_CONFIG))
    except (RuntimeError, ValueError) as exc:
        raise SpeechError(f"cannot load pocketsphinx's English model: {exc}") from exc


def _grammar_decoder(vocabulary: Vocabulary) -> pocketsphinx.Decoder:
    try:
        # lm=None, dict=None: skip the 26 MB language model and the 135k-word dictionary; the decoder
        # learns only the phrase words below.
        decoder = pocketsphinx.Decoder(**_quiet_config(lm=None, dict=None, **_GRAMMAR_SEARCH_CONFIG))
        for name, phones in vocabulary.pronunciations:
            decoder.add_word(name, phones, False)
        decoder.add_jsgf_string(_GRAMMAR_SEARCH, to_jsgf(vocabulary.phrases))
        decoder.activate_search(_GRAMMAR_SEARCH)
    except (RuntimeError, ValueError) as exc:
        raise SpeechError(f"cannot build a recognizer for the phrases: {exc}") from exc
    return decoder


class Recognizer:
    """English speech-to-text over PCM16 mono 16 kHz audio, optionally restricted to a phrase list.

    ``phrases``: the only things the recognizer will output (case and punctuation are ignored; words
    missing from the English dictionary are dropped from their phrase with a logged warning). ``None``
    recognizes open English with the general language model.

    Call :meth:`transcribe` for a whole utterance, or :meth:`stream` to decode while audio arrives.
    Recognizers are cheap once their pool exists and safe to share between threads; instances with the
    same phrases share one decoder pool. Raise :class:`SpeechError` if no phrase is usable.
    """

    def __init__(self, phrases: Iterable[str] | None = None) -> None:
        if phrases is None:
            self._vocabulary: Vocabulary | None = None
            self._pool: DecoderPool = shared_pool(None, _general_decoder)
        else:
            vocabulary = build_vocabulary(phrases)
            self._vocabulary = vocabulary
            self._pool = shared_pool(vocabulary.phrases, lambda: _grammar_decoder(vocabulary))

    @property
    def phrases(self) -> tuple[str, ...] | None:
        """The normalized phrases that can be recognized (sorted), or ``None`` for open English."""
        return None if self._vocabulary is None else self._vocabulary.phrases

    @property
    def skipped_words(self) -> tuple[str, ...]:
        """Words of the given phrases that the English dictionary lacks and that were therefore dropped."""
        return () if self._vocabulary is None else self._vocabulary.skipped_words

    @property
    def pool(self) -> DecoderPool:
        """The decoder pool shared by recognizers of these phrases (``created_count``, ``idle_count``)."""
        return self._pool

    def preload(self, decoders: int = 1) -> None:
        """Build decoders ahead of time so the first :meth:`stream` calls do not pay construction time."""
        self._pool.prefill(decoders)

    def transcribe(self, pcm: bytes) -> str:
        """Recognize one whole utterance of PCM16 mono 16 kHz audio.

        Return the lowercase transcript: words separated by single spaces, no punctuation (apostrophes
        inside words such as "don't" are kept), ``""`` if nothing was recognized. Equals what
        :meth:`stream` gives for the same audio fed in any chunking.
        """
        data = require_pcm16(pcm)
        stream = self.stream()
        try:
            stream.feed(data)
        except BaseException:
            stream.cancel()
            raise
        return stream.finish()

    def stream(self) -> RecognitionStream:
        """Start an utterance: feed audio with :meth:`RecognitionStream.feed` as it arrives, then call
        :meth:`RecognitionStream.finish` for the transcript or :meth:`RecognitionStream.cancel` to drop it.

        Takes a decoder from the pool (building one if all are busy) until finish or cancel.
        """
        return RecognitionStream(self._pool)


class RecognitionStream:
    """One utterance being recognized incrementally; get it from :meth:`Recognizer.stream`.

    :meth:`feed` decodes as audio arrives, so :meth:`finish` only decodes the last partial block
    (under 100 ms of audio) and reads the result. Always end with :meth:`finish` or :meth:`cancel` (or use
    ``with``, which cancels an unfinished stream) so the decoder goes back to the pool. Methods may be
    called from different threads; calls are serialized. Decoding holds the GIL: about 3 ms per 100 ms
    of audio with a phrase list, about 20 ms with the general language model.
    """

    def __init__(self, pool: DecoderPool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._pending = bytearray()
        decoder = pool.acquire()
        try:
            # The live cepstral mean drifts with each utterance a decoder hears; restoring its starting
            # value makes a transcript independent of which pooled decoder (and its history) decodes it.
            self._initial_cmn = decoder.get_cmn()
            decoder.start_utt()
        except RuntimeError as exc:
            raise SpeechError(f"cannot start recognition: {exc}") from exc
        self._decoder: pocketsphinx.Decoder | None = decoder

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.cancel()

    @property
    def closed(self) -> bool:
        """True after :meth:`finish` or :meth:`cancel`."""
        return self._decoder is None

    def feed(self, pcm: bytes) -> None:
        """Decode more PCM16 mono 16 kHz audio of this utterance; chunks may have any length (a chunk
        may even end inside a sample: the odd byte waits for the next chunk)."""
        data = as_bytes(pcm)
        with self._lock:
            decoder = self._require_open()
            self._pending += data
            usable = len(self._pending) - len(self._pending) % _DECODE_BLOCK_BYTES
            try:
                for start in range(0, usable, _DECODE_BLOCK_BYTES):
                    decoder.process_raw(bytes(self._pending[start : start + _DECODE_BLOCK_BYTES]))
            except _DECODE_ERRORS as exc:
                self._close_locked(reuse=False)
                raise SpeechError(f"decoding failed: {exc}") from exc
            del self._pending[:usable]

    def partial(self) -> str:
        """Return the best transcript so far (may change as more audio arrives), normalized like
        :meth:`finish`."""
        with self._lock:
            hypothesis = self._require_open().hyp()
        return _normalize(hypothesis)

    def finish(self) -> str:
        """Decode what is left, end the utterance and return the transcript (see
        :meth:`Recognizer.transcribe` for its form). The stream is closed afterwards; a dangling half
        sample at the very end is ignored."""
        with self._lock:
            decoder = self._require_open()
            whole = len(self._pending) - len(self._pending) % SAMPLE_WIDTH
            try:
                if whole:
                    decoder.process_raw(bytes(self._pending[:whole]))
                decoder.end_utt()
                hypothesis = decoder.hyp()
            except _DECODE_ERRORS as exc:
                self._close_locked(reuse=False)
                raise SpeechError(f"decoding failed: {exc}") from exc
            self._close_locked(reuse=True, ended=True)
        return _normalize(hypothesis)

    def cancel(self) -> None:
        """Drop the utterance and return the decoder to the pool; does nothing if already closed."""
        with self._lock:
            if self._decoder is not None:
                self._close_locked(reuse=True)

    def _require_open(self) -> pocketsphinx.Decoder:
        if self._decoder is None:
            raise SpeechError("this recognition stream is already finished or cancelled")
        return self._decoder

    def _close_locked(self, *, reuse: bool, ended: bool = False) -> None:
        decoder, self._decoder = self._decoder, None
        self._pending.clear()
        if decoder is None or not reuse:
            return
        try:
            if not ended:
                decoder.end_utt()
            decoder.set_cmn(self._initial_cmn)
        except RuntimeError:
            return  # a decoder in an unknown state is not worth reusing
        self._pool.release(decoder)


def _normalize(hypothesis) -> str:
    if hypothesis is None:
        return ""
    return " ".join(normalize_words(hypothesis.hypstr))
