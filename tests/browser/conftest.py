"""Fixtures that drive the widgets for real: a JupyterLab server, Debian's Chromium through Playwright with a
fake microphone that plays a synthesized WAV, and a helper that runs code in the notebook's kernel.

Chromium comes from the distribution (``.ci/install-browser``), never from Playwright's own download.
Without it these tests skip locally and fail in CI, where a missing browser is a broken setup.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"

SPOKEN_TEXT = "what are your opening hours"
LEAD_SILENCE_MS = 400


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    if CHROMIUM.exists():
        return str(CHROMIUM)
    message = f"Debian's chromium is not installed at {CHROMIUM}; run .ci/install-browser"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory, reply_gap_ms) -> Path:
    """The fake microphone's input: a short silence, the question, then ``reply_gap_ms`` of silence.

    Chromium loops the file, so the question comes again while the agent is still answering the first
    one: that second utterance is the barge-in.
    """
    from amigo_lab.audio import pcm16_to_float, silence, write_wav
    from amigo_lab.speech import Synthesizer

    voice = pcm16_to_float(Synthesizer().synthesize(SPOKEN_TEXT).pcm)
    track = np.concatenate([silence(LEAD_SILENCE_MS, sr=16000), voice, silence(reply_gap_ms, sr=16000)])
    path = tmp_path_factory.mktemp("fake-mic") / "opening-hours.wav"
    write_wav(path, track.astype(np.float32), sr=16000)
    return path


@pytest.fixture(scope="session")
def reply_gap_ms() -> int:
    """Silence after the question: long enough for the agent to start answering (VAD end of speech,
    recognition, first pieces, jitter buffer), short enough that the question comes again mid-answer.

    Measured on the embedded emulator with the same audio, so it holds on slow and fast machines alike.
    """
    from amigo_lab._connect import connect
    from amigo_lab.emulator import Emulator
    from amigo_lab.speech import Synthesizer

    speech = Synthesizer().synthesize(SPOKEN_TEXT)
    with Emulator(realtime=False) as emulator:
        session = connect(emulator=emulator)
        try:
            session.greeting.result(timeout=60)
            reply = session.send_audio(speech.pcm, sr=16000, realtime=False).result(timeout=60)
        finally:
            session.finish()
    reply_ms = len(reply.audio) / reply.sr * 1000.0
    latency_ms = float(reply.timings.get("latency_first_audio_ms") or 1500.0)
    if reply_ms < 1500:
        pytest.fail(f"the agent's answer to {SPOKEN_TEXT!r} lasts {reply_ms:.0f} ms; barge-in needs a longer one")
    # VAD needs 500 ms of silence to end the turn; land the next question ~40% into the answer.
    return int(500 + latency_ms + 400 + 0.4 * reply_ms)


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory):
    """A JupyterLab server on a free port, with its own settings, runtime and workspace folders."""
    root = tmp_path_factory.mktemp("lab-root")
    home = tmp_path_factory.mktemp("lab-home")
    port = _free_port()
    token = secrets.token_hex(16)
    env = dict(os.environ)
    env.update({
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "IPYTHONDIR": str(home / "ipython"),
    })
    # No news, no update checks: nothing but the notebook on the page.
    settings_dir = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings_dir.mkdir(parents=True)
    (settings_dir / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    log_path = home / "jupyter-lab.log"
    command = [
        str(Path(sys.executable).with_name("jupyter-lab")), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly",
        "--ServerApp.open_browser=False", "--allow-root",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not answer within 90 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield {"url": base, "token": token, "root": root, "log": log_path}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# Records every track getUserMedia hands out, so a test can see whether the page released the microphone.
TRACK_RECORDER = """
(() => {
  window.__amigoTracks = [];
  const media = navigator.mediaDevices;
  if (!media || !media.getUserMedia) return;
  const original = media.getUserMedia.bind(media);
  media.getUserMedia = async (constraints) => {
    const stream = await original(constraints);
    window.__amigoTracks.push(...stream.getTracks());
    return stream;
  };
})();
"""


@pytest.fixture(scope="module")
def browser(chromium_executable, speech_wav):
    """Chromium with a fake microphone, for one test module.

    Module scope, not session: Playwright's sync API keeps its event loop installed on the main thread while
    it runs, and a later test that calls ``asyncio.run`` would find it there.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable,
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={speech_wav}",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


class KernelError(AssertionError):
    """Code run in the notebook's kernel raised."""


# Runs code in the kernel of the notebook on screen, through the page's own kernel connection.
_EXECUTE = """
async (code) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session.kernel;
  const future = kernel.requestExecute({ code, store_history: false });
  let out = "";
  let error = null;
  future.onIOPub = (msg) => {
    const type = msg.header.msg_type;
    if (type === "stream") out += msg.content.text;
    else if (type === "execute_result") out += msg.content.data["text/plain"];
    else if (type === "error") error = `${msg.content.ename}: ${msg.content.evalue}`;
  };
  await future.done;
  return { out, error };
}
"""

_KERNEL_IDLE = """
(name) => {
  const panel = window.jupyterapp?.shell?.currentWidget;
  const context = panel?.sessionContext;
  return Boolean(panel?.context?.path === name && context?.session?.kernel
                 && context.session.kernel.status === "idle" && panel.content?.widgets?.length);
}
"""


def wait_for(predicate, *, timeout: float, what: str, every: float = 0.5):
    """Poll ``predicate`` until truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last value: {last!r})")


class NotebookPage:
    """A notebook open in JupyterLab in Chromium, with its kernel running."""

    def __init__(self, page):
        self.page = page
        self.console: list[str] = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    def run_all(self) -> None:
        """Run every cell, as Run > Run All Cells does."""
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def run(self, code: str) -> str:
        """Run ``code`` in the kernel and return what it printed. Keep it short: while it runs, the
        kernel handles no widget messages."""
        result = self.page.evaluate(_EXECUTE, code)
        if result["error"]:
            raise KernelError(f"{result['error']}\nin:\n{code}")
        return result["out"]

    def json(self, expression: str):
        """Evaluate ``expression`` in the kernel and return its value, passed through JSON."""
        return json.loads(self.run(f"import json as _json\nprint(_json.dumps({expression}))"))

    def poll(self, predicate, *, timeout: float, what: str):
        """Call ``predicate()`` until it returns something truthy; return that."""
        return wait_for(predicate, timeout=timeout, what=what)

    def wait_for(self, expression: str, *, timeout: float, what: str):
        """Poll a kernel expression (JSON-able) until it is truthy; return its value."""
        return wait_for(lambda: self.json(expression), timeout=timeout, what=what)

    def wait_for_kernel(self, name: str, *, timeout: float = 90) -> None:
        """Wait until notebook ``name`` is the one on screen and its kernel is idle."""
        self.page.wait_for_function(_KERNEL_IDLE, arg=name, timeout=timeout * 1000)


@pytest.fixture(scope="module")
def open_notebook(browser, jupyter_lab):
    """Factory: write a notebook of ``cells`` (source strings) into the lab and open it in a new page."""
    contexts = []

    def open_(name: str, cells: list[str]) -> NotebookPage:
        notebook = {
            "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                       "source": source} for source in cells],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (jupyter_lab["root"] / name).write_text(json.dumps(notebook))
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        context.add_init_script(TRACK_RECORDER)
        page = context.new_page()
        # A workspace of its own, reset: JupyterLab would otherwise reopen earlier tests' notebooks.
        workspace = Path(name).stem
        page.goto(f"{jupyter_lab['url']}/lab/workspaces/{workspace}/tree/{name}?reset&token={jupyter_lab['token']}")
        notebook_page = NotebookPage(page)
        notebook_page.wait_for_kernel(name)
        return notebook_page

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
