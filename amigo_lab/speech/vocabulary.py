"""Words and pronunciations for phrase-restricted recognition.

The recognizer only knows words of the CMU pronouncing dictionary shipped with pocketsphinx (US English).
:func:`build_vocabulary` normalizes phrases the same way transcripts are normalized, looks up every word,
and drops words the dictionary does not have, with a logged warning, so a phrase list written for people
("Check my order #123!") still yields a usable grammar.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pocketsphinx

from amigo_lab.speech.errors import SpeechError

__all__ = ["Vocabulary", "build_vocabulary", "normalize_words", "to_jsgf"]

_log = logging.getLogger(__name__)

DICTIONARY_PATH = pocketsphinx.get_model_path("en-us/cmudict-en-us.dict")
"""The US English pronouncing dictionary (CMUdict) bundled with pocketsphinx."""

# A word is letters/digits, optionally joined by apostrophes ("don't", "o'clock"); everything else is
# punctuation or spacing and separates words.
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_ALTERNATE = re.compile(r"\(\d+\)$")


def normalize_words(text: str) -> list[str]:
    """Split ``text`` into lowercase words without punctuation (apostrophes inside words are kept)."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    """What a phrase-restricted decoder may recognize.

    ``phrases`` are the normalized phrases, sorted and deduplicated, with unknown words removed;
    ``pronunciations`` maps each dictionary entry name (``"word"``, ``"word(2)"`` for alternates) to its
    phones; ``skipped_words`` lists the words dropped because the dictionary lacks them.
    """

    phrases: tuple[str, ...]
    pronunciations: tuple[tuple[str, str], ...]
    skipped_words: tuple[str, ...]


def build_vocabulary(phrases: Iterable[str]) -> Vocabulary:
    """Normalize ``phrases`` and look up their words; raise :class:`SpeechError` if nothing is left.

    Words missing from the dictionary are removed from their phrase (the rest of the phrase stays
    recognizable) and reported once in a warning; a phrase left with no words is dropped.
    """
    if isinstance(phrases, str):
        raise SpeechError("phrases must be an iterable of phrases, not a single string")
    tokenized = [normalize_words(p) for p in phrases]
    wanted = {w for words in tokenized for w in words}
    pronunciations = _lookup(wanted)
    known = {_ALTERNATE.sub("", name) for name, _ in pronunciations}
    skipped = sorted(wanted - known)
    if skipped:
        _log.warning("dropping words missing from the English pronouncing dictionary: %s", ", ".join(skipped))
    kept = {" ".join(w for w in words if w in known) for words in tokenized}
    kept.discard("")
    if not kept:
        raise SpeechError("no phrase has a word the English recognizer knows; nothing to recognize")
    return Vocabulary(
        phrases=tuple(sorted(kept)), pronunciations=tuple(pronunciations), skipped_words=tuple(skipped)
    )


def to_jsgf(phrases: Iterable[str]) -> str:
    """Return a JSGF grammar whose only sentences are the given (normalized) phrases."""
    return "#JSGF V1.0;\ngrammar phrases;\npublic <phrase> = " + " | ".join(phrases) + " ;\n"


def _lookup(words: set[str]) -> list[tuple[str, str]]:
    """Return (entry name, phones) for every pronunciation of ``words``, in dictionary order."""
    if not words:
        return []
    found: list[tuple[str, str]] = []
    try:
        with open(DICTIONARY_PATH, encoding="utf-8") as dictionary:
            for line in dictionary:
                name, _, phones = line.strip().partition(" ")
                if _ALTERNATE.sub("", name) in words and phones:
                    found.append((name, phones.strip()))
    except OSError as exc:
        raise SpeechError(f"cannot read the pronouncing dictionary {DICTIONARY_PATH}: {exc}") from exc
    return found
