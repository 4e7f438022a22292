"""``%amigo`` and ``%%amigo`` in a real in-process IPython shell, against the real emulator."""

from __future__ import annotations

import itertools

import pytest
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython

from amigo_lab.emulator import DEFAULT_SERVICE_ID, Emulator, Limits
from amigo_lab.magics import MagicError


@pytest.fixture(scope="module")
def ip():
    shell = start_ipython()
    shell.run_line_magic("load_ext", "amigo_lab")
    yield shell


@pytest.fixture
def magics(ip):
    magics = ip.magics_manager.registry["AmigoMagics"]
    yield magics
    magics.shutdown()


# One user per connect: the protocol allows one unfinished conversation per user and service, and tests
# leave conversations open on purpose (%amigo close).
TOKENS = {f"token-{i}": f"user-{i}" for i in range(100)}
_next_token = itertools.count()


@pytest.fixture(scope="module")
def emulator():
    with Emulator(realtime=False, tokens=TOKENS, limits=Limits(new_conversations_per_minute=10_000)) as emu:
        yield emu


@pytest.fixture(scope="module")
def service(emulator):
    return emulator.services[DEFAULT_SERVICE_ID]


@pytest.fixture(scope="module")
def opening_hours_answer(service) -> str:
    return next(intent.reply["eng"] for intent in service.intents if intent.name == "opening_hours")


@pytest.fixture
def connect_line(emulator):
    """``%amigo connect`` arguments that reach the module's emulator as if it were a remote service."""
    return (f"connect --org {emulator.org} --token token-{next(_next_token)} --host 127.0.0.1:{emulator.port} "
            f"--service {DEFAULT_SERVICE_ID}")


@pytest.fixture
def connected(ip, magics, connect_line, capsys):
    ip.run_line_magic("amigo", connect_line)
    capsys.readouterr()
    return magics.session


def test_connect_prints_the_greeting_and_shares_the_session(ip, magics, connect_line, capsys, service):
    ip.run_line_magic("amigo", connect_line)
    out = capsys.readouterr().out
    assert f"connected: conversation {magics.session.conversation_id}" in out
    assert f"agent: {service.greeting['eng']}" in out
    assert ip.user_ns["amigo_session"] is magics.session
    assert (magics.session.params.response_format, magics.session.params.audio_format) == ("voice", "pcm")


def test_connect_without_credentials_uses_the_embedded_emulator(ip, magics, capsys, monkeypatch, service):
    for name in ("AMIGO_ORG", "AMIGO_TOKEN", "AMIGO_HOST"):
        monkeypatch.delenv(name, raising=False)
    ip.run_line_magic("amigo", "connect --text")
    try:
        out = capsys.readouterr().out
        assert f"agent: {service.greeting['eng']}" in out
        assert magics.session.url.startswith("ws://127.0.0.1:")
        assert magics.session.params.response_format == "text"
    finally:
        ip.run_line_magic("amigo", "finish")      # the shared emulator's user may start again later


def test_format_flags(ip, magics, connect_line):
    ip.run_line_magic("amigo", connect_line + " --mp3")
    assert magics.session.params.audio_format == "mp3"


def test_connecting_again_finishes_the_previous_conversation(ip, magics, emulator, capsys):
    line = (f"connect --org {emulator.org} --token token-{next(_next_token)} --host 127.0.0.1:{emulator.port} "
            f"--service {DEFAULT_SERVICE_ID}")
    ip.run_line_magic("amigo", line)
    first = magics.session
    ip.run_line_magic("amigo", line)                 # same user and service: one unfinished conversation
    assert magics.session is not first
    assert first.state == "closed"
    assert magics.session.state == "active"


def test_say_prints_the_reply(ip, connected, capsys, opening_hours_answer):
    ip.run_line_magic("amigo", "say what are your opening hours")
    assert capsys.readouterr().out == f"agent: {opening_hours_answer}\n"


def test_cell_lines_are_turns_in_order(ip, connected, capsys, opening_hours_answer):
    ip.run_cell_magic("amigo", "", "what are your opening hours\n\n# a comment\nwhere are you located\n")
    out = capsys.readouterr().out.splitlines()
    you = [line for line in out if line.startswith("you: ")]
    agent = [line for line in out if line.startswith("agent: ")]
    assert you == ["you: what are your opening hours", "you: where are you located"]
    assert len(agent) == 2 and agent[0] == f"agent: {opening_hours_answer}"
    assert out.index(you[1]) > out.index(agent[0])          # each reply printed before the next turn
    said = connected.frames.query("type == 'client.new-text-message'")["text"].tolist()
    assert said == ["what are your opening hours", "where are you located"]


def test_event_prints_the_reply_it_led_to(ip, connected, capsys):
    ip.run_line_magic("amigo", "event the patient's train is late")
    assert "agent: " in capsys.readouterr().out
    sent = connected.frames.query("type == 'client.new-text-message'")
    assert sent["message_type"].tolist() == ["external-event"]


def test_send_an_audio_file(ip, connected, capsys, tmp_path, opening_hours_answer):
    from amigo_lab.audio import pcm16_to_float, write_wav
    from amigo_lab.speech import Synthesizer

    path = tmp_path / "question.wav"
    write_wav(path, pcm16_to_float(Synthesizer().synthesize("what are your opening hours").pcm), sr=16000)
    ip.run_line_magic("amigo", f"send {path} --fast")
    out = capsys.readouterr().out
    assert "you (heard): what are your opening hours" in out.lower()
    assert f"agent: {opening_hours_answer}" in out


def test_vad_switch(ip, connected, capsys):
    ip.run_line_magic("amigo", "vad on")
    assert connected.vad_on
    ip.run_line_magic("amigo", "vad off")
    assert not connected.vad_on
    assert capsys.readouterr().out.splitlines() == ["VAD on", "VAD off"]


def test_log_is_a_readable_table_filtered_by_type(ip, connected):
    ip.run_line_magic("amigo", "say what are your opening hours")
    last = ip.run_line_magic("amigo", "log -n 3")
    assert len(last) == 3 and list(last.columns[:4]) == ["seq", "t", "direction", "type"]
    assert len(last.columns) <= 8
    assert last["seq"].tolist() == ip.run_line_magic("amigo", "log -n 0")["seq"].tolist()[-3:]
    everything = ip.run_line_magic("amigo", "log -n 0")
    pieces = everything[everything["type"] == "server.new-message"]
    assert len(pieces) < int((connected.frames["type"] == "server.new-message").sum())   # audio runs folded
    assert pieces["summary"].str.contains("audio ×").all()
    server = ip.run_line_magic("amigo", "log -n 0 --type server.*")
    assert set(server["type"]) >= {"server.conversation-created", "server.interaction-complete"}
    assert not server["direction"].isin(["sent", "local"]).any()
    without = ip.run_line_magic("amigo", "log -n 0 --exclude audio --exclude connection.*")
    assert "server.new-message" not in set(without["type"]) and "connection.opened" not in set(without["type"])
    full = ip.run_line_magic("amigo", "log -n 0 --full --include client.new-text-message")
    assert full["wire"].str.contains('"what are your opening hours"').all()


def test_status_save_finish(ip, connected, capsys, tmp_path):
    from amigo_lab import load_session

    ip.run_line_magic("amigo", "status")
    out = capsys.readouterr().out
    assert "state:            active" in out and connected.conversation_id in out

    ip.run_line_magic("amigo", f"save {tmp_path / 'saved'}")
    assert f"saved to {tmp_path / 'saved'}" in capsys.readouterr().out
    assert len(load_session(tmp_path / "saved").frames) == len(connected.frames)

    ip.run_line_magic("amigo", "finish")
    assert connected.state in ("closing", "closed")


def test_close_leaves_the_log_readable(ip, connected, capsys):
    ip.run_line_magic("amigo", "close")
    assert connected.state == "closed"
    assert len(ip.run_line_magic("amigo", "log")) > 0


def test_mic_shows_a_panel_and_replaces_the_previous_one(ip, connected, magics):
    from amigo_lab.widgets import SessionPanel

    ip.run_line_magic("amigo", "mic")
    first = magics.panel
    assert isinstance(first, SessionPanel) and first.session is connected
    assert first.mic.mode == "push-to-talk"
    ip.run_line_magic("amigo", "mic --vad")
    assert magics.panel is not first and magics.panel.mic.mode == "vad"
    assert first.mic.comm is None                       # the old panel let go of its microphone


@pytest.mark.parametrize("line, message", [
    ("", "needs a command"),
    ("bogus", "invalid choice"),
    ("vad maybe", "invalid choice"),
    ("log -n many", "invalid int value"),
    ("say", "needs the text"),
    ("connect --region", "expected one argument"),
    ("status extra", "unrecognized arguments"),
])
def test_wrong_arguments_give_usage_not_a_traceback(ip, magics, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic("amigo", line)


def test_usage_errors_show_without_traceback_in_a_cell(ip, magics, capsys):
    result = ip.run_cell("%amigo vad maybe")
    captured = capsys.readouterr()
    assert isinstance(result.error_in_exec, UsageError)
    assert "Traceback" not in captured.out + captured.err
    assert "usage: %amigo vad" in captured.out + captured.err


def test_commands_need_a_connection_first(ip, magics):
    with pytest.raises(UsageError, match="not connected"):
        ip.run_line_magic("amigo", "say hello")
    with pytest.raises(UsageError, match="not connected"):
        ip.run_cell_magic("amigo", "", "hello\n")


def test_help(ip, magics, capsys):
    doc = ip.find_line_magic("amigo").__doc__
    for command in ("connect", "say", "event", "send", "vad", "mic", "status", "log", "save", "finish", "close",
                    "%%amigo"):
        assert command in doc
    assert ip.run_line_magic("amigo", "log -h") is None
    assert "--type" in capsys.readouterr().out


def test_unload_closes_what_the_magics_opened(ip, magics, connect_line):
    ip.run_line_magic("amigo", connect_line)
    session = magics.session
    ip.run_line_magic("unload_ext", "amigo_lab")
    try:
        assert session.state == "closed"
        assert magics.session is None
    finally:
        ip.run_line_magic("load_ext", "amigo_lab")


# --- through IPython's real input path (what a notebook cell does) -----------------------------------------


@pytest.mark.parametrize("line", ["%amigo say What are your opening hours?",
                                  "  %amigo say ¿what are your opening hours?",
                                  "%amigo event the patient asks: is it open?"])
def test_a_trailing_question_mark_reaches_the_magic(ip, line):
    python = ip.transform_cell(line + "\n")
    assert "run_line_magic('amigo'" in python and "pinfo" not in python
    assert line.strip().split(" ", 2)[2] in python


def test_help_on_the_magic_itself_still_works(ip):
    assert "pinfo" in ip.transform_cell("%amigo?\n")


def test_the_question_example_in_a_cell(ip, connected, capsys, opening_hours_answer):
    result = ip.run_cell("%amigo say What are your opening hours?")
    out = capsys.readouterr().out
    assert result.success, result.error_in_exec
    assert "not found" not in out
    assert out == f"agent: {opening_hours_answer}\n"
    sent = connected.frames.query("type == 'client.new-text-message'")["text"].tolist()
    assert sent[-1] == "What are your opening hours?"


def test_inverted_question_marks_in_a_cell(ip, connected, capsys):
    result = ip.run_cell("%amigo say ¿Cuál es el horario?")
    assert result.success, result.error_in_exec
    assert capsys.readouterr().out.startswith("agent: ")
    assert connected.frames.query("type == 'client.new-text-message'")["text"].tolist()[-1] == "¿Cuál es el horario?"


def test_cell_magic_lines_ending_in_question_marks(ip, connected, capsys, opening_hours_answer):
    result = ip.run_cell("%%amigo\nWhat are your opening hours?\n")
    assert result.success, result.error_in_exec
    assert f"agent: {opening_hours_answer}" in capsys.readouterr().out


def test_say_help_shows_help_and_sends_nothing(ip, connected, capsys):
    before = len(connected.frames)
    result = ip.run_cell("%amigo say --help")
    assert result.success
    out = capsys.readouterr().out
    assert "usage: %amigo say" in out and "trailing ?" in out
    assert len(connected.frames) == before


# --- a failed connect keeps the conversation that works ----------------------------------------------------


@pytest.mark.parametrize("extra, expected", [
    ("--host 127.0.0.1:9", "could not connect"),
    ("--token not-a-known-token", "4401"),
    ("--org someone-else", "4404"),
])
def test_a_failed_connect_leaves_the_working_conversation(ip, magics, emulator, connected, capsys, extra, expected):
    base = {"--org": emulator.org, "--token": "token-99", "--host": f"127.0.0.1:{emulator.port}",
            "--service": DEFAULT_SERVICE_ID}
    flag, value = extra.split(" ", 1)
    base[flag] = value
    line = "%amigo connect " + " ".join(f"{k} {v}" for k, v in base.items())
    result = ip.run_cell(line)
    out = capsys.readouterr()
    assert isinstance(result.error_in_exec, MagicError)
    assert expected in out.out + out.err
    assert magics.session is connected and connected.state == "active"
    assert ip.user_ns["amigo_session"] is connected
    ip.run_cell("%amigo say what are your opening hours")
    assert capsys.readouterr().out.startswith("agent: ")


def test_connect_without_a_service_is_refused_before_anything_closes(ip, magics, emulator, connected):
    result = ip.run_cell(f"%amigo connect --org {emulator.org} --token token-98 --host 127.0.0.1:{emulator.port}")
    assert isinstance(result.error_in_exec, UsageError)
    assert "--service" in str(result.error_in_exec)
    assert connected.state == "active"


def test_connecting_to_another_service_user_starts_it_first(ip, magics, emulator, connected, connect_line):
    ip.run_line_magic("amigo", connect_line)          # another token: another user
    assert magics.session is not connected and magics.session.state == "active"
    assert connected.state == "closed"


# --- ordinary mistakes in a few lines, the traceback one %tb away ---------------------------------------------


def _shown(capsys) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_a_missing_audio_file_in_a_few_lines(ip, connected, capsys, tmp_path):
    result = ip.run_cell(f"%amigo send {tmp_path / 'nope.wav'}")
    shown = _shown(capsys)
    assert isinstance(result.error_in_exec, MagicError)
    assert "Traceback" not in shown and len(shown.strip().splitlines()) <= 4
    assert "nope.wav" in shown and "%amigo send" in shown
    ip.run_cell("%tb")
    assert "Traceback" in _shown(capsys)


def test_say_after_finish_says_to_connect_again(ip, connected, capsys):
    ip.run_cell("%amigo finish")
    capsys.readouterr()
    result = ip.run_cell("%amigo say hello")
    shown = _shown(capsys)
    assert isinstance(result.error_in_exec, MagicError)
    assert "%amigo connect" in shown and "session.start()" not in shown
    assert len(shown.strip().splitlines()) <= 4


def test_a_wrong_token_names_the_flag(ip, magics, emulator, capsys):
    result = ip.run_cell(f"%amigo connect --org {emulator.org} --token wrong --host 127.0.0.1:{emulator.port} "
                         f"--service {DEFAULT_SERVICE_ID}")
    shown = _shown(capsys)
    assert isinstance(result.error_in_exec, MagicError)
    assert "--token" in shown and "Traceback" not in shown
    assert magics.session is None


def test_half_credentials_are_a_usage_error(ip, magics):
    with pytest.raises(UsageError, match="--token"):
        ip.run_line_magic("amigo", "connect --org someone")
