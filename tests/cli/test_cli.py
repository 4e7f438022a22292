"""The ``amigo-lab`` command, run as a user runs it: in a subprocess."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import websocket  # websocket-client: an independent client, as a user's own script would be

CLI = [sys.executable, "-m", "amigo_lab.cli"]


def test_help_lists_the_commands():
    out = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("emulator", "demo", "report"):
        assert command in out


def test_bad_arguments_give_usage_not_a_traceback():
    run = subprocess.run([*CLI, "emulator", "--port", "notaport"], capture_output=True, text=True)
    assert run.returncode == 2 and "usage:" in run.stderr and "Traceback" not in run.stderr


def test_emulator_prints_its_url_and_serves_until_stopped():
    proc = subprocess.Popen([*CLI, "emulator", "--port", "0", "--token", "cli-token"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        match = re.search(r"ws://127\.0\.0\.1:(\d+)", first)
        assert match, first
        url = (f"ws://127.0.0.1:{match.group(1)}/v1/demo-org/conversation/converse_realtime"
               "?response_format=text")
        ws = websocket.create_connection(url, subprotocols=["bearer.authorization.amigo.ai.cli-token"], timeout=30)
        ws.send(json.dumps({"type": "client.start-conversation", "service_id": "6650a1b2c3d4e5f6a7b8c9d0",
                            "service_version_set_name": "release"}))
        assert json.loads(ws.recv())["type"] == "server.conversation-created"
        ws.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_report_of_a_missing_folder_is_a_clear_error(tmp_path):
    run = subprocess.run([*CLI, "report", str(tmp_path / "nope")], capture_output=True, text=True)
    assert run.returncode == 2
    assert "nope" in run.stderr and "Traceback" not in run.stderr


def test_report_writes_html_for_a_recorded_session(tmp_path):
    import amigo_lab
    from amigo_lab.emulator import Emulator

    with Emulator(realtime=False) as emu:
        session = amigo_lab.connect(emulator=emu, response_format="text", log_dir=tmp_path / "rec")
        session.say("what are your opening hours").result(timeout=60)
        session.finish()
    run = subprocess.run([*CLI, "report", str(tmp_path / "rec"), "--out", str(tmp_path / "r.html")],
                         capture_output=True, text=True, env={**os.environ})
    assert run.returncode == 0, run.stderr
    html = Path(tmp_path / "r.html").read_text(encoding="utf-8")
    assert "opening hours" in html
