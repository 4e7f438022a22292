"""Fixtures for the emulator tests: a fresh emulator per test, wire clients, and synthesized English speech."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from emulator_wire import WireClient


@pytest.fixture
def emulator(fresh_emulator):
    """Here ``emulator`` is a fresh one per test (tests/conftest.py): conversations and rate limits are per
    emulator, and these tests check them."""
    return fresh_emulator


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
