"""Which intent a user's words mean, and which language they are in.

Matching is deliberately simple and readable: both sides are normalised (lowercase, accents and
punctuation stripped), then every example phrase of every intent is scored by word overlap (the F1 of the
two word sets) and the best phrase wins. The language of the winning phrase is the language the user
wrote in; when nothing matches well enough, :func:`detect_language` asks py3langid, restricted to the six
languages the services speak.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any

from amigo_lab.emulator.services import Intent, Service
from amigo_lab.protocol.constants import LANGUAGES

#: A phrase must score at least this (F1 of word overlap, 0..1) to count as a match. Above one half, so two
#: shared little words ("do you ...") are not enough on their own.
MIN_MATCH_SCORE = 0.55

# py3langid names languages with ISO 639-1 codes; the protocol uses ISO 639-3.
_LANGID_CODES = {"en": "eng", "es": "spa", "fr": "fra", "de": "deu", "it": "ita", "pt": "por"}
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Match:
    """The best intent for a text: which ``intent``, the ``language`` of the phrase it matched, ``score``."""

    intent: Intent
    language: str
    phrase: str
    score: float


def normalise(text: str) -> str:
    """Lowercase, strip accents and punctuation, collapse spaces: ``"¿Qué hora?"`` -> ``"que hora"``."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_WORD.findall(plain.replace("ß", "ss")))


def words(text: str) -> frozenset[str]:
    """The set of normalised words of ``text``."""
    return frozenset(normalise(text).split())


def overlap_score(a: frozenset[str], b: frozenset[str]) -> float:
    """F1 of two word sets: 1.0 when equal, 0.0 when disjoint."""
    if not a or not b:
        return 0.0
    return 2 * len(a & b) / (len(a) + len(b))


def best_match(text: str, service: Service, *, prefer_language: str | None = None) -> Match | None:
    """The intent of ``service`` whose phrase best overlaps ``text``, or None below :data:`MIN_MATCH_SCORE`.

    Ties go to the phrase in ``prefer_language`` (the conversation's current language), then to file order.
    """
    said = words(text)
    best: Match | None = None
    best_key = (MIN_MATCH_SCORE - 1e-9, False)
    for intent in service.intents:
        for language, phrases in intent.phrases.items():
            for phrase in phrases:
                score = overlap_score(said, words(phrase))
                key = (score, language == prefer_language)
                if key > best_key:
                    best, best_key = Match(intent, language, phrase, score), key
    return best


def detect_language(text: str, service: Service, *, current: str) -> str:
    """The language of a user's text: that of the best-matching phrase, else py3langid's guess.

    ``current`` (the conversation's language) wins ties and is kept for texts too short to judge.
    """
    match = best_match(text, service, prefer_language=current)
    if match is not None:
        return match.language
    if len(normalise(text).split()) < 2:
        return current
    return _identify(text) or current


class _LanguageIdentifier:
    """py3langid's model, loaded once on first use (under a second) and limited to the six languages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._identifier: Any = None  # py3langid's LanguageIdentifier, built on first use

    def __call__(self, text: str) -> str | None:
        with self._lock:
            if self._identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
                identifier.set_languages(list(_LANGID_CODES))
                self._identifier = identifier
            code, _ = self._identifier.classify(text)
        language = _LANGID_CODES.get(code)
        return language if language in LANGUAGES else None


_identify = _LanguageIdentifier()

__all__ = ["MIN_MATCH_SCORE", "Match", "best_match", "detect_language", "normalise", "overlap_score", "words"]
