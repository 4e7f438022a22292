"""Which of the six languages a text is in: :func:`detect_language`.

Language is never a wire field: the lab detects it per message, among the six languages the emulator's
services speak (ISO 639-3 ``eng spa fra deu ita por``, protocol.md §7).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache

from amigo_lab.protocol.constants import LANGUAGES

#: Returned when a text gives no evidence for any language (empty, digits, "ok").
UNDETERMINED = "und"

_ISO1 = {"eng": "en", "spa": "es", "fra": "fr", "deu": "de", "ita": "it", "por": "pt"}
_ISO3 = {v: k for k, v in _ISO1.items()}

# Texts up to this many words are short: a character n-gram model alone guesses poorly on them ("hola" reads
# as English, "Un momento, por favor." as Portuguese), so common words and letters of each language vote too.
_SHORT_WORDS = 6
# A short text with no known word and a model this unsure of itself gives no evidence at all ("ok", "hi").
_UNSURE = 0.5

_WORDS = {
    "eng": """the a an and is are am was you your i it its what how who hello hi hey yes yeah no thanks thank
        please good morning evening night sure of to in on for with this that do does can could would want time
        open where when my me we there have has just moment bye goodbye sorry let check right okay fine
        great book table today tomorrow""",
    "spa": """el la los las de del que y en un una es son por para con no sí hola gracias buenos buenas días
        tardes noches qué cómo dónde cuándo hora abren quiero vale claro adiós favor momento mesa usted está
        estoy muy bien pero también yo mi tengo puedo hoy mañana reservar""",
    "fra": """le la les de des du et est un une je tu vous nous il elle oui non bonjour bonsoir merci beaucoup
        salut pour avec pas ne c'est quelle quel heure où comment s'il plaît au revoir d'accord très bien
        moment instant voudrais suis êtes aujourd'hui demain ouvrez table""",
    "deu": """der die das und ist ein eine einen ich du sie wir ja nein hallo danke bitte guten tag morgen
        abend nicht mit für wie was wo wann uhr auf wiedersehen tschüss gut sehr moment möchte bin haben
        können öffnen heute tisch""",
    "ita": """il lo la gli le di del che e è un una per con non sì ciao buongiorno buonasera grazie prego come
        dove quando ora sono vorrei bene molto arrivederci attimo momento tavolo aprite posso mi io oggi
        domani""",
    "por": """o a os as de do da que e em um uma é por para com não sim olá oi obrigado obrigada bom dia boa
        tarde noite tudo bem como onde quando hora eu você quero momento favor tchau mesa abrem hoje
        amanhã""",
}
_LEXICON: dict[str, set[str]] = {lang: set(words.split()) for lang, words in _WORDS.items()}
# Letters and marks that only some of the six languages write.
_LETTERS = {
    "¿": ("spa",), "¡": ("spa",), "ñ": ("spa",), "ã": ("por",), "õ": ("por",), "ç": ("fra", "por"),
    "ß": ("deu",), "ä": ("deu",), "ö": ("deu",), "ü": ("deu",), "œ": ("fra",), "ê": ("fra", "por"),
    "î": ("fra",), "û": ("fra",), "ë": ("fra",), "ï": ("fra",), "ù": ("fra", "ita"), "ì": ("ita",),
    "ò": ("ita",), "è": ("fra", "ita"), "à": ("fra", "ita", "por"),
}
_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")

_model_lock = threading.Lock()


@lru_cache(maxsize=1)
def _identifier():
    """A py3langid model of its own, restricted to our six languages (the module-level one stays untouched)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    model.set_languages(list(_ISO1.values()))
    return model


def _model_probabilities(text: str) -> dict[str, float]:
    with _model_lock:  # the model object is not documented as thread-safe
        ranked = _identifier().rank(text)
    return {_ISO3[code]: float(p) for code, p in ranked}


def _word_votes(text: str, tokens: list[str]) -> dict[str, float]:
    """Each known word or telling letter gives one vote, shared among the languages that use it."""
    votes = dict.fromkeys(LANGUAGES, 0.0)
    for token in tokens:
        users = [lang for lang, words in _LEXICON.items() if token in words]
        for lang in users:
            votes[lang] += 1.0 / len(users)
    for letter in set(text):
        for lang in _LETTERS.get(letter, ()):
            votes[lang] += 1.0 / len(_LETTERS[letter])
    return votes


def detect_language(text: str) -> str:
    """The ISO 639-3 code of ``text`` among ``eng spa fra deu ita por``, or ``"und"`` when it cannot tell.

    Longer texts go to py3langid (restricted to those six languages). Short texts (up to six words) add
    votes from common words and telling letters (``¿``, ``ñ``, ``ß``, ``ã``…), since character statistics
    alone are unreliable on a word or two. A text with neither a known word nor a confident model, like
    "ok", is ``"und"``. Next: :func:`languages` for every message of a frame log.
    """
    if not isinstance(text, str):
        return UNDETERMINED
    text = unicodedata.normalize("NFC", text).strip()
    lowered = text.lower()
    tokens = _TOKEN.findall(lowered)
    if not tokens:
        return UNDETERMINED
    probabilities = _model_probabilities(text)
    if len(tokens) > _SHORT_WORDS:
        return max(probabilities, key=probabilities.__getitem__)
    votes = _word_votes(lowered, tokens)
    if not any(votes.values()) and max(probabilities.values()) < _UNSURE:
        return UNDETERMINED
    scores = {lang: votes[lang] + probabilities.get(lang, 0.0) for lang in LANGUAGES}
    return max(scores, key=scores.__getitem__)
