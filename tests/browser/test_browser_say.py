"""``%amigo say`` in real JupyterLab: the cell is done while the agent's audio still streams, and the reply
line in its output keeps filling in until it is the complete reply (JupyterLab applies the later updates to
the finished cell's output by their display id)."""

from __future__ import annotations

import pytest

from amigo_lab.emulator import DEFAULT_SERVICE_ID, load_services

pytestmark = pytest.mark.browser

OPENING_HOURS = next(intent.reply["eng"] for intent in load_services()[DEFAULT_SERVICE_ID].intents
                     if intent.name == "opening_hours")

CELLS = [
    "%load_ext amigo_lab\n%amigo connect",
    "%amigo say What are your opening hours?",
]

_STATE = """
(index) => {
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[index];
  return {done: cell.model.executionCount !== null,
          output: cell.node.querySelector('.jp-Cell-outputArea')?.innerText ?? ''};
}
"""


def test_say_returns_at_once_and_its_line_completes_in_place(open_notebook, artifacts_dir):
    notebook = open_notebook("say-live.ipynb", CELLS)
    notebook.run_all()
    at_return = notebook.poll(lambda: (lambda s: s if s["done"] else None)(notebook.page.evaluate(_STATE, 1)),
                              timeout=120, what="the say cell to finish")
    # The answer is about 5 s of audio: the cell returned with the line only begun.
    assert at_return["output"].startswith("agent:"), at_return
    assert at_return["output"].strip() != f"agent: {OPENING_HOURS}", at_return
    final = notebook.poll(lambda: (lambda s: s["output"].strip() == f"agent: {OPENING_HOURS}" and s)(
        notebook.page.evaluate(_STATE, 1)), timeout=30, what="the reply line to complete after the cell returned")
    assert final["done"]
    notebook.page.screenshot(path=str(artifacts_dir / "browser-say-live.png"))
    notebook.run("get_ipython().run_line_magic('amigo', 'finish')")
