"""Fixtures shared by every test directory: real emulators on loopback, sessions that clean up after
themselves, the fault proxy, and waits that stretch on slow machines.

Slow machines: set ``AMIGO_LAB_TIMEOUT_FACTOR`` (a positive number, default 1) to multiply every test's
timeout (the ini ``timeout`` and ``@pytest.mark.timeout``) and the waits of these fixtures. Tests that wait on
their own take the ``scaled`` fixture: ``turn.result(timeout=scaled(10))``.

Emulators here are fast (agent audio is not paced, unless ``paced_``) and accept any number of new
conversations; the emulator tests need a fresh one with the real limits for each test and say so in their own
directory.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faults import FaultProxy

TIMEOUT_FACTOR_VARIABLE = "AMIGO_LAB_TIMEOUT_FACTOR"

#: Users of the shared emulators: each test takes one no other test in this process has used, because the
#: emulator allows one unfinished conversation per user and service.
USERS = 400
_users = itertools.count()


def _timeout_factor() -> float:
    raw = os.environ.get(TIMEOUT_FACTOR_VARIABLE, "").strip()
    if not raw:
        return 1.0
    try:
        factor = float(raw)
    except ValueError:
        factor = float("nan")
    if not 0 < factor < float("inf"):
        raise pytest.UsageError(
            f"{TIMEOUT_FACTOR_VARIABLE}={raw!r} is not a positive number; set it to e.g. 2 to double every "
            "test timeout on a slow machine, or unset it")
    return factor


_factor = 1.0


def pytest_configure(config: pytest.Config) -> None:
    global _factor
    _factor = _timeout_factor()


def scale(seconds: float) -> float:
    """``seconds`` stretched by ``AMIGO_LAB_TIMEOUT_FACTOR``; use it for every wait a test makes."""
    return seconds * _factor


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Stretch each test's pytest-timeout limit (its marker, else the ini ``timeout``) by the factor."""
    if _factor == 1.0:
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        seconds = float(marker.args[0] if marker and marker.args else
                        marker.kwargs.get("timeout", default) if marker else default)
        if seconds > 0:
            item.add_marker(pytest.mark.timeout(scale(seconds)), append=False)


@pytest.fixture(scope="session")
def scaled() -> Callable[[float], float]:
    """``scaled(seconds)`` -> the wait to use on this machine (see the module docstring)."""
    return scale


def wait_for(predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy and return that; fail naming ``what`` after
    ``timeout`` seconds (stretched by the timeout factor)."""
    limit = scale(timeout)
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:g} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def wait_until() -> Callable[..., Any]:
    """``wait_until(predicate, timeout=20, what="...")``: see :func:`wait_for`."""
    return wait_for


def _lab_emulator(*, realtime: bool) -> Any:
    from amigo_lab.emulator import DEFAULT_TOKEN, DEFAULT_USER, Emulator, Limits
    from amigo_lab.experiments.runner import CallerPool

    tokens = {DEFAULT_TOKEN: DEFAULT_USER, **CallerPool.emulator_tokens()}
    tokens.update({f"token-{n:03d}": f"user-{n:03d}" for n in range(USERS)})
    return Emulator(realtime=realtime, tokens=tokens, limits=Limits(new_conversations_per_minute=10_000))


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    """One emulator per test module, sending agent audio at once (fast tests), for many users."""
    with _lab_emulator(realtime=False) as emu:
        yield emu


@pytest.fixture
def fresh_emulator() -> Iterator[Any]:
    """A new emulator for this test alone, with the real limits and the default user: for tests of the
    emulator's own conversations and rate limits. Agent audio is not paced."""
    from amigo_lab.emulator import Emulator

    with Emulator(realtime=False) as emu:
        yield emu


@pytest.fixture(scope="module")
def paced_emulator() -> Iterator[Any]:
    """An emulator that paces agent audio like the real service, so speech can interrupt it."""
    with _lab_emulator(realtime=True) as emu:
        yield emu


@pytest.fixture
def token() -> str:
    """A token of a user no other test in this process has used (one conversation per user and service)."""
    return f"token-{next(_users) % USERS:03d}"


def _finish(session: Any) -> None:
    if session.state not in ("closed", "failed"):
        try:
            session.finish()
        except Exception:
            # A test may leave its session mid-turn or cut off; drop it without the goodbye.
            session._discard()


@pytest.fixture
def open_session(emulator: Any, token: str, tmp_path: Any) -> Iterator[Callable[..., Any]]:
    """``open_session(**connect_kwargs)`` -> a Session (on ``emulator`` unless given), logging under the
    test's tmp_path, finished or discarded after the test."""
    from amigo_lab import connect

    sessions: list[Any] = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("emulator", emulator)
        kwargs.setdefault("token", token)
        kwargs.setdefault("log_dir", tmp_path / f"session-{len(sessions)}")
        kwargs.setdefault("timeout", scale(15.0))
        session = connect(**kwargs)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        _finish(session)


@pytest.fixture
def session(open_session: Callable[..., Any]) -> Any:
    """A voice session (PCM) on the module's emulator, greeting done; finished after the test."""
    opened = open_session()
    opened.greeting.result(timeout=scale(30))
    return opened


@pytest.fixture
def paced_session(open_session: Callable[..., Any], paced_emulator: Any) -> Any:
    """A voice session on the paced emulator, greeting done; finished after the test."""
    opened = open_session(emulator=paced_emulator)
    opened.greeting.result(timeout=scale(30))
    return opened


@pytest.fixture
def proxy(emulator: Any) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the emulator; connect with ``host=proxy.address``."""
    with FaultProxy(emulator.host, emulator.port) as running:
        yield running


# --- warnings from the lab's own code -------------------------------------------------------------------
# pyproject.toml turns a warning issued from amigo_lab into an error where it is issued, except in the code
# that runs on the background loops (the session's and the emulator's): raised there, it would abort a
# socket task and the test would see a session crash that never happens for a user. Those warnings are let
# through, recorded here whatever thread issued them, and fail the test that caused them.

_PACKAGE_DIR = str(Path(__file__).resolve().parents[1] / "amigo_lab") + os.sep


@pytest.fixture(autouse=True)
def _fail_on_package_warnings() -> Iterator[None]:
    caught: list[str] = []
    lock = threading.Lock()
    shown = warnings.showwarning

    def record(message: Warning | str, category: type[Warning], filename: str, lineno: int,
               file: Any = None, line: str | None = None) -> None:
        if filename.startswith(_PACKAGE_DIR):
            with lock:
                caught.append(f"{filename}:{lineno}: {category.__name__}: {message} "
                              f"(thread {threading.current_thread().name})")
        # Hand it on as before, so pytest's own summary still lists it.
        if shown is not record:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = record
    try:
        yield
    finally:
        warnings.showwarning = shown
    if caught:
        pytest.fail("warnings issued from amigo_lab:\n" + "\n".join(caught), pytrace=False)
