"""Fixtures for the emulator tests: a fresh emulator per test, clients, and synthesized English speech."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from emulator_wire import WireClient

from amigo_lab.emulator import Emulator


@pytest.fixture
def emulator():
    """A fresh emulator per test (conversations and rate limits are per emulator), not paced."""
    with Emulator(realtime=False) as emu:
        yield emu


@pytest.fixture
def connect(emulator):
    """Open WireClients to ``emulator``; all closed at the end of the test."""
    opened: list[WireClient] = []

    def _connect(query: str | None = "response_format=text", **kwargs: object) -> WireClient:
        client = WireClient(emulator.port, query=query, **kwargs)
        opened.append(client)
        return client

    yield _connect
    for client in opened:
        client.close()


@pytest.fixture(scope="session")
def speak() -> Callable[[str], bytes]:
    """English text -> PCM16 16 kHz speech (eSpeak), cached per text."""
    from amigo_lab.speech import Synthesizer

    cache: dict[str, bytes] = {}

    def _speak(text: str) -> bytes:
        if text not in cache:
            cache[text] = Synthesizer().synthesize(text, language="eng").pcm
        return cache[text]

    return _speak
