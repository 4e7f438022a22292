"""Scenario files: what is accepted, and errors that name the file, the line and the field."""

from pathlib import Path

import pytest

from amigo_lab.experiments import (
    LATENCY_NAMES,
    ScenarioError,
    load_scenario,
    parse_scenario,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "scenarios" / "opening-hours.yaml"


def problems(text, tmp_path=None):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="s.yaml", base_dir=tmp_path)
    return info.value.problems


def test_the_example_file_loads_with_every_step_kind():
    scenario = load_scenario(EXAMPLE)
    kinds = [s.kind for s in scenario.steps]
    assert {"say", "speak", "barge_in", "event", "audio"} <= set(kinds)
    assert scenario.name == "opening-hours" and scenario.vad
    first = scenario.steps[0].expect
    assert {e.key for e in first} == {"reply_matches", "latency_first_audio_ms"}
    assert all(e.line is not None for e in scenario.expectations())


def test_short_latency_names_map_to_the_fold_names():
    scenario = parse_scenario("turns:\n  - say: hi\n"
                              "    expect: {first_answer_audio_ms: 900, vad_latency_first_audio_ms: {p90_max: 2}}\n")
    keys = {e.key: e.value for e in scenario.steps[0].expect}
    assert keys == {"latency_first_answer_audio_ms": {"max": 900.0}, "vad_latency_first_audio_ms": {"p90_max": 2.0}}
    assert set(keys) <= set(LATENCY_NAMES)


def test_unknown_step_is_reported_with_its_line():
    found = problems("name: x\nturns:\n  - say: hello\n  - shout: HELLO\n")
    assert len(found) == 1
    file, line, field, message = found[0]
    assert (file, line, field) == ("s.yaml", 4, "turns[1]") and "unknown step 'shout'" in message


def test_wrong_types_name_the_field_and_what_was_expected():
    found = problems("turns:\n  - say: hi\n    expect:\n      first_audio_ms: {max: fast}\n  - wait_ms: soon\n")
    fields = {f: (line, m) for _, line, f, m in found}
    assert fields["turns[0].expect.first_audio_ms.max"][0] == 4
    assert "expected a number of ms" in fields["turns[0].expect.first_audio_ms.max"][1]
    assert fields["turns[1].wait_ms"][0] == 5


def test_a_missing_audio_file_is_an_error_before_anything_is_sent(tmp_path):
    found = problems("turns:\n  - audio: nowhere.wav\n", tmp_path)
    assert found[0][1] == 2 and found[0][2] == "turns[0].audio" and "no audio file" in found[0][3]


def test_every_problem_is_listed_at_once():
    found = problems("runs: 0\nlanguage: klingon\nturns:\n  - say: ''\n  - say: hi\n    expect: {reply_matches: '('}\n"
                     "  - speak: hello there\n    expect: {agent_yields_ms: 100}\n")
    fields = [f for _, _, f, _ in found]
    assert sorted(fields) == sorted(["runs", "language", "turns[0].say", "turns[1].expect.reply_matches",
                      "turns[2].expect.agent_yields_ms"])


def test_unknown_expectation_suggests_the_right_name():
    found = problems("turns:\n  - say: hi\n    expect: {first_audio: 100}\n")
    assert "did you mean" in found[0][3] and found[0][1] == 3


def test_yaml_syntax_errors_carry_the_line():
    found = problems("turns:\n  - say: [unclosed\n  - say: hi\n")
    assert found[0][1] is not None and "not valid YAML" in found[0][3]


def test_duplicate_keys_are_refused():
    found = problems("turns:\n  - say: hi\n    expect: {reply_contains: a, reply_contains: b}\n")
    assert any("appears twice" in m for *_, m in found)


def test_a_barge_in_needs_something_before_it_and_something_to_say():
    found = problems("turns:\n  - barge_in: {after_ms: 100}\n")
    messages = " ".join(m for *_, m in found)
    assert "exactly one of speak, audio or say" in messages and "cannot come first" in messages


def test_a_pause_is_placed_after_a_word_of_the_sentence():
    scenario = parse_scenario("turns:\n  - speak: what is your address\n"
                              "    pause_inside_ms: 700\n    pause_after_word: 3\n")
    step = scenario.steps[0]
    assert (step.pause_inside_ms, step.pause_after_word) == (700.0, 3)
    found = problems("turns:\n  - speak: hello there\n    pause_inside_ms: 700\n    pause_after_word: 5\n")
    assert found[0][2] == "turns[0].pause_after_word"


def test_load_scenario_names_a_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "absent.yaml")
