"""eSpeak NG synthesis: audio, alignment and input validation."""

import itertools
import threading

import numpy as np
import pytest

from amigo_lab.errors import AmigoError
from amigo_lab.speech import LANGUAGES, SAMPLE_RATE, Speech, SpeechError, Synthesizer

SENTENCES = {
    "eng": "Hello, how can I help you today?",
    "spa": "Hola, ¿en qué puedo ayudarle hoy?",
    "fra": "Bonjour, comment puis-je vous aider ?",
    "deu": "Guten Tag, wie kann ich Ihnen helfen?",
    "ita": "Buongiorno, come posso aiutarla oggi?",
    "por": "Olá, como posso ajudá-lo hoje?",
}


@pytest.fixture(scope="module")
def synthesizer() -> Synthesizer:
    return Synthesizer()


def _samples(speech: Speech) -> np.ndarray:
    return np.frombuffer(speech.pcm, dtype="<i2")


def test_languages_are_the_six_supported_codes():
    assert set(LANGUAGES) == set(SENTENCES)
    assert LANGUAGES["eng"] == "en-us"


@pytest.mark.parametrize("language", sorted(SENTENCES))
def test_each_language_produces_audible_speech_of_plausible_length(synthesizer, language):
    text = SENTENCES[language]
    speech = synthesizer.synthesize(text, language=language)

    assert speech.sample_rate == SAMPLE_RATE == 16_000
    assert speech.language == language and speech.text == text
    assert len(speech.pcm) % 2 == 0
    samples = _samples(speech).astype(np.float64)
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(samples**2)) / 32768)
    assert rms_dbfs > -40
    # 5-6 words at eSpeak's default 175 wpm: well over a second, well under five.
    assert 1000 < speech.duration_ms < 5000
    assert speech.duration_ms == pytest.approx(len(speech.pcm) / 32)


@pytest.mark.parametrize("language", sorted(SENTENCES))
def test_alignment_covers_every_character_in_order(synthesizer, language):
    text = SENTENCES[language]
    speech = synthesizer.synthesize(text, language=language)

    assert "".join(char for _, char in speech.alignment) == text
    times = [ms for ms, _ in speech.alignment]
    assert all(a <= b for a, b in itertools.pairwise(times))
    assert times[0] >= 0 and times[-1] <= speech.duration_ms
    # Words are spread over the utterance, not piled up at one instant.
    assert times[-1] - times[0] > speech.duration_ms / 2


def test_alignment_follows_the_words(synthesizer):
    speech = synthesizer.synthesize("one two three four five six")
    pairs = zip(speech.alignment[1:], speech.alignment, strict=False)
    word_starts = [ms for (ms, char), (_, before) in pairs if before == " "]
    assert len(word_starts) == 5
    assert all(a < b for a, b in itertools.pairwise(word_starts))
    space_ms = [ms for ms, char in speech.alignment if char == " "]
    assert space_ms == word_starts  # a space takes the time of the next word


def test_slower_rate_gives_longer_audio(synthesizer):
    fast = synthesizer.synthesize("please check my order status", rate_wpm=260)
    slow = synthesizer.synthesize("please check my order status", rate_wpm=120)
    assert slow.duration_ms > 1.5 * fast.duration_ms


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_text_is_rejected(synthesizer, text):
    with pytest.raises(SpeechError, match="empty"):
        synthesizer.synthesize(text)


def test_unknown_language_lists_the_supported_codes(synthesizer):
    with pytest.raises(SpeechError) as excinfo:
        synthesizer.synthesize("hello", language="klingon")
    message = str(excinfo.value)
    assert all(code in message for code in LANGUAGES)
    assert isinstance(excinfo.value, AmigoError) and isinstance(excinfo.value, RuntimeError)


def test_out_of_range_rate_is_rejected(synthesizer):
    with pytest.raises(SpeechError, match="rate_wpm"):
        synthesizer.synthesize("hello", rate_wpm=5)


def test_concurrent_calls_are_serialized_and_each_complete(synthesizer):
    expected = synthesizer.synthesize("thread safety matters")
    results: list[Speech] = []

    def speak() -> None:
        results.append(Synthesizer().synthesize("thread safety matters"))

    threads = [threading.Thread(target=speak) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    for result in results:
        # eSpeak's waveform generator keeps state between calls, so runs differ by a few samples only.
        assert result.duration_ms == pytest.approx(expected.duration_ms, rel=0.02)
        assert [char for _, char in result.alignment] == [char for _, char in expected.alignment]
