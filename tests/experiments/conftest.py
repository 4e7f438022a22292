"""Shared pieces of the experiments tests: one emulator for the module, quick scenario files."""

import textwrap

import pytest

from amigo_lab.emulator import DEFAULT_TOKEN, DEFAULT_USER, Emulator
from amigo_lab.experiments.runner import CallerPool


@pytest.fixture(scope="module")
def emulator():
    """A real emulator on loopback that sends agent audio at once (no real-time pacing)."""
    with Emulator(realtime=False, tokens={DEFAULT_TOKEN: DEFAULT_USER, **CallerPool.emulator_tokens()}) as emu:
        yield emu


@pytest.fixture
def write_scenario(tmp_path):
    """write_scenario(text, name="s.yaml") -> path of a scenario file holding the dedented text."""

    def write(text: str, name: str = "scenario.yaml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


TEXT_SCENARIO = """\
    name: hours
    realtime: false
    turns:
      - say: What are your opening hours?
        expect: {reply_matches: "(?i)open", first_text_ms: {max: 5000}}
      - say: goodbye
        expect: {conversation_completed: true}
"""
