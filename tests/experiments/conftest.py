"""Shared pieces of the experiments tests: quick scenario files (the emulator comes from tests/conftest.py)."""

import textwrap

import pytest


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
