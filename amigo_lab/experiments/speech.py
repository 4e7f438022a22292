"""The caller's audio for a scenario: speech synthesized offline (eSpeak NG), pauses, audio files.

:func:`prepare_audio` renders every spoken step of a :class:`~amigo_lab.experiments.Scenario` before the
connection opens, so a bad file or language is an error before anything is sent, and a run's timing is not
disturbed by synthesis. Speech is cached per (text, language, rate) for the whole process.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from amigo_lab.audio import SAMPLE_RATE, load_audio, pcm16_to_float
from amigo_lab.experiments.scenario import Scenario, ScenarioError, Step

__all__ = ["prepare_audio", "speech_samples"]

_cache: dict[tuple[str, str, int | None], tuple[np.ndarray, tuple[tuple[float, str], ...]]] = {}
_cache_lock = threading.Lock()


def speech_samples(text: str, *, language: str = "eng", rate_wpm: int | None = None
                   ) -> tuple[np.ndarray, tuple[tuple[float, str], ...]]:
    """Synthesized ``text`` as float32 at 16 kHz, with eSpeak's per-character alignment ``(ms, char)``."""
    from amigo_lab.speech import Synthesizer

    key = (text, language, rate_wpm)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is None:
        speech = Synthesizer().synthesize(text, language=language, rate_wpm=rate_wpm)
        hit = (pcm16_to_float(speech.pcm), speech.alignment)
        with _cache_lock:
            _cache[key] = hit
    return hit


def _with_pause(samples: np.ndarray, alignment: tuple[tuple[float, str], ...], text: str, pause_ms: float,
                after_word: int | None) -> np.ndarray:
    """Insert ``pause_ms`` of silence before word ``after_word + 1`` (default: the middle of the sentence)."""
    starts = [i for i, ch in enumerate(text) if not ch.isspace() and (i == 0 or text[i - 1].isspace())]
    word = after_word if after_word is not None else max(1, len(starts) // 2)
    cut_ms = alignment[starts[word]][0]
    cut = round(cut_ms * SAMPLE_RATE / 1000.0)
    # Back up to the quietest 10 ms just before the word, so the cut does not slice a sound in two.
    window = samples[max(0, cut - 1600): cut]
    if window.size >= 160:
        energy = np.convolve(np.abs(window), np.ones(160), mode="valid")
        cut = max(0, cut - 1600) + int(np.argmin(energy))
    gap = np.zeros(round(pause_ms * SAMPLE_RATE / 1000.0), dtype=np.float32)
    return np.concatenate([samples[:cut], gap, samples[cut:]]).astype(np.float32, copy=False)


def _step_audio(step: Step) -> np.ndarray | None:
    if step.path is not None:
        try:
            samples, _ = load_audio(step.path, sr=SAMPLE_RATE)
        except Exception as exc:  # any decoder failure is the file's problem, said so
            raise ScenarioError([(str(step.path), None, f"turns[{step.index}]",
                                  f"cannot read this audio file: {exc}")]) from None
        return np.asarray(samples, dtype=np.float32)
    if step.kind == "speak" or (step.kind == "barge_in" and step.spoken):
        assert step.text is not None
        samples, alignment = speech_samples(step.text, language=step.language, rate_wpm=step.rate_wpm)
        if step.pause_inside_ms:
            samples = _with_pause(samples, alignment, step.text, step.pause_inside_ms, step.pause_after_word)
        return samples
    return None


def prepare_audio(scenario: Scenario) -> dict[int, np.ndarray]:
    """Audio of each step that sends audio, by step index (float32, 16 kHz). Next: the runner streams it."""
    out = {}
    for step in scenario.steps:
        samples = _step_audio(step)
        if samples is not None:
            out[step.index] = samples
    return out


def audio_files(scenario: Scenario) -> list[Path]:
    """The audio files a scenario reads (to copy next to it, e.g. for a distributed run)."""
    return [step.path for step in scenario.steps if step.path is not None]
