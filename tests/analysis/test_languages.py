"""Language detection, switches and latency per language."""

import pytest

from amigo_lab.analysis import detect_language, language_figure, languages, latency_by_language, turns

from .logs import Log, text_turn


@pytest.mark.parametrize("text, expected", [
    ("hello there how are you", "eng"),
    ("hola, ¿a qué hora abren?", "spa"),
    ("hola", "spa"),
    ("Un momento, por favor.", "spa"),
    ("Um momento, por favor.", "por"),
    ("obrigado", "por"),
    ("merci beaucoup", "fra"),
    ("À quelle heure ouvrez-vous ?", "fra"),
    ("danke", "deu"),
    ("Um welche Uhrzeit öffnen Sie?", "deu"),
    ("grazie", "ita"),
    ("A che ora aprite?", "ita"),
    ("Abrimos a las nueve de la mañana todos los días.", "spa"),
    ("We open at nine in the morning every day of the week.", "eng"),
])
def test_detect_language(text, expected):
    assert detect_language(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "123", "ok", None])
def test_no_evidence_is_undetermined(text):
    assert detect_language(text) == "und"


def bilingual_log() -> Log:
    log = Log().opened(0.0).start(0.1)
    text_turn(log, 1.0, "hello there how are you", "I am fine, thank you", latency=0.3, n=1)
    text_turn(log, 3.0, "ok", "Good", latency=0.2, n=2)
    text_turn(log, 5.0, "hola, ¿a qué hora abren?", "Abrimos a las nueve de la mañana", latency=0.5, n=3)
    text_turn(log, 7.0, "gracias", "De nada, hasta luego", latency=0.6, n=4)
    return log


def test_languages_flags_each_sides_switch():
    table = languages(bilingual_log().frames())
    assert list(table.columns) == ["t", "side", "turn", "message_id", "text", "language", "switched"]
    user = table[table["side"] == "user"]
    assert list(user["language"]) == ["eng", "und", "spa", "spa"]
    assert list(user["switched"]) == [False, False, True, False]  # "ok" says nothing; "hola" switches
    agent = table[table["side"] == "agent"]
    assert list(agent["language"]) == ["eng", "eng", "spa", "spa"]
    assert list(agent["switched"]) == [False, False, True, False]
    assert list(table["t"].iloc[:2]) == [1.0, 1.3]  # user at its end of turn, agent at its first text


def test_latency_by_language():
    table = latency_by_language(turns(bilingual_log().frames())).set_index(["user_language", "metric"])
    assert table.loc[("spa", "latency_first_text_ms"), "count"] == 2
    assert table.loc[("spa", "latency_first_text_ms"), "p50"] == pytest.approx(550.0)
    assert table.loc[("eng", "latency_first_text_ms"), "mean"] == pytest.approx(300.0)


def test_language_figure_marks_switches():
    figure = language_figure(bilingual_log().frames())
    names = [trace.name for trace in figure.data]
    assert names == ["agent", "user", "switch"] or names == ["user", "agent", "switch"]
    switch = figure.data[-1]
    assert sorted(switch.x) == [5.0, 5.5] and set(switch.y) == {"spa"}
