"""Fixtures for session tests: a real emulator on loopback, sessions that clean up, the fault proxy."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests/faults.py

from faults import FaultProxy

_users = itertools.count()
USERS = 400


@pytest.fixture(scope="module")
def emulator():
    """One fast emulator per module: agent audio is not paced, many users, no new-conversation limit."""
    from amigo_lab.emulator import Emulator, Limits

    tokens = {f"token-{n:03d}": f"user-{n:03d}" for n in range(USERS)}
    with Emulator(realtime=False, tokens=tokens, limits=Limits(new_conversations_per_minute=10_000)) as emu:
        yield emu


@pytest.fixture
def token():
    """A token of a user no other test in this process has used (one conversation per user and service)."""
    return f"token-{next(_users) % USERS:03d}"


@pytest.fixture
def open_session(emulator, token, tmp_path):
    """``open_session(**connect_kwargs)`` -> a Session on the emulator, finished or closed after the test."""
    from amigo_lab import connect

    sessions = []

    def make(**kwargs):
        kwargs.setdefault("emulator", emulator)
        kwargs.setdefault("token", token)
        kwargs.setdefault("log_dir", tmp_path / f"session-{len(sessions)}")
        kwargs.setdefault("timeout", 15.0)
        session = connect(**kwargs)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        if session.state not in ("closed", "failed"):
            try:
                session.finish()
            except Exception:
                session._discard()


@pytest.fixture
def proxy(emulator):
    """A fault-injecting proxy in front of the emulator; connect with ``host=proxy.address``."""
    with FaultProxy(emulator.host, emulator.port) as running:
        yield running
