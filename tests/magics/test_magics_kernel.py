"""``%amigo say`` in a real Jupyter kernel: the cell returns while the reply's audio still streams, and the
reply line fills in after it, ending as the complete reply. Driven through jupyter_client, so every message is
the one a notebook front end receives; the order of the messages, not their timing, is what is checked."""

from __future__ import annotations

import queue
import time

import pytest
from jupyter_client.manager import start_new_kernel

from amigo_lab.emulator import DEFAULT_SERVICE_ID, load_services

pytestmark = pytest.mark.timeout(180)

OPENING_HOURS = next(intent.reply["eng"] for intent in load_services()[DEFAULT_SERVICE_ID].intents
                     if intent.name == "opening_hours")


@pytest.fixture(scope="module")
def kernel():
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run(client, code: str, *, until_idle: bool = True, deadline_s: float = 60.0) -> list[dict]:
    """Execute ``code``; the iopub messages of that request, up to its idle status."""
    msg_id = client.execute(code)
    messages: list[dict] = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            msg = client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if until_idle and msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages
    raise AssertionError(f"no idle status within {deadline_s} s for {code!r}: {messages}")


def later_messages(client, *, seconds: float) -> list[dict]:
    """Every iopub message arriving in the next ``seconds`` (after a cell has returned)."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            out.append(client.get_iopub_msg(timeout=0.2))
        except queue.Empty:
            pass
    return out


def texts(messages: list[dict], kind: str) -> list[str]:
    return [m["content"]["data"]["text/plain"] for m in messages if m["msg_type"] == kind]


def errors(messages: list[dict]) -> list[dict]:
    return [m["content"] for m in messages if m["msg_type"] == "error"]


def test_say_returns_while_the_audio_streams_and_the_line_completes_after(kernel):
    connected = run(kernel, "%load_ext amigo_lab\n%amigo connect")
    assert not errors(connected), errors(connected)
    assert any("connected: conversation" in m["content"].get("text", "") for m in connected
               if m["msg_type"] == "stream")

    cell = run(kernel, "%amigo say What are your opening hours?")
    assert not errors(cell), errors(cell)
    shown = texts(cell, "display_data") + texts(cell, "update_display_data")
    # When the cell went idle the reply had only begun: the agent's audio (5 s of it) was still streaming.
    assert shown and not any(text == f"agent: {OPENING_HOURS}" for text in shown), shown
    display_id = next(m["content"]["transient"]["display_id"] for m in cell if m["msg_type"] == "display_data")

    after = [m for m in later_messages(kernel, seconds=12) if m["msg_type"] == "update_display_data"
             and m["content"]["transient"]["display_id"] == display_id]
    finals = [m["content"]["data"]["text/plain"] for m in after]
    assert finals, "the reply line was never completed after the cell returned"
    assert finals[-1] == f"agent: {OPENING_HOURS}"
    partial = [text for text in finals[:-1] if text.endswith("…")]
    assert all(OPENING_HOURS.startswith(text.removeprefix("agent: ").removesuffix("…")) for text in partial)


def test_the_next_say_waits_for_the_reply_still_streaming(kernel):
    run(kernel, "%amigo say What are your opening hours?")
    # Sent at once, the second question would reach the agent mid-answer; it waits for the first reply.
    second = run(kernel, "%amigo say Where are you located?\n_amigo = get_ipython().magics_manager.registry"
                 "['AmigoMagics']\nprint([t.request for t in amigo_session.turns[-2:]], "
                 "[t.done() for t in amigo_session.turns[-2:]])")
    printed = "".join(m["content"]["text"] for m in second if m["msg_type"] == "stream")
    assert "['What are your opening hours?', 'Where are you located?'] [True, False]" in printed
    later_messages(kernel, seconds=8)


def test_a_mistake_is_still_shown_by_the_cell_itself(kernel):
    run(kernel, "%amigo finish")
    cell = run(kernel, "%amigo say hello")
    assert errors(cell), "say after finish must fail in the cell"
    assert errors(cell)[0]["ename"] == "MagicError"
    assert any("%amigo connect" in line for line in errors(cell)[0]["traceback"])
