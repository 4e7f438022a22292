"""A stand-in for the browser side of widget comms, through the seam the ``comm`` package provides.

``comm.create_comm`` is meant to be replaced by whoever hosts widgets (ipykernel does it). Here it makes
:class:`RecordingComm`, which keeps every custom message a widget sends, and :class:`FrontEnd` delivers
messages to a widget exactly as the kernel does: through ``Comm.handle_msg``, on whatever thread calls it.
The emulators, sessions and ``wait_until`` come from tests/conftest.py.
"""

from __future__ import annotations

import threading

import comm
import pytest
from comm import DummyComm


class RecordingComm(DummyComm):
    """A comm that records what the widget publishes instead of sending it to a kernel's front end."""

    def __init__(self, *args, **kwargs):
        self.published: list[tuple[dict, list[bytes]]] = []
        self._published_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        if msg_type == "comm_msg" and data and data.get("method") == "custom":
            with self._published_lock:
                self.published.append((data["content"], [bytes(b) for b in (buffers or [])]))


class FrontEnd:
    """Plays the browser: sends custom messages and trait updates to widgets, reads what they sent."""

    def custom(self, widget, content: dict, buffers: list[bytes] = ()) -> None:
        """Deliver ``content`` (+ binary buffers) as the kernel delivers a custom message from the browser."""
        widget.comm.handle_msg({
            "content": {"comm_id": widget.comm.comm_id, "data": {"method": "custom", "content": content}},
            "buffers": [memoryview(b) for b in buffers],
        })

    def update(self, widget, **state) -> None:
        """Deliver a trait change made in the browser (``model.set(...); model.save_changes()``)."""
        widget.comm.handle_msg({
            "content": {"comm_id": widget.comm.comm_id,
                        "data": {"method": "update", "state": state, "buffer_paths": []}},
            "buffers": [],
        })

    def sent(self, widget, kind: str | None = None) -> list[tuple[dict, list[bytes]]]:
        """Custom messages the widget sent to the browser so far, optionally of one ``kind``."""
        with widget.comm._published_lock:
            messages = list(widget.comm.published)
        return [m for m in messages if kind is None or m[0].get("kind") == kind]


@pytest.fixture
def front_end(monkeypatch) -> FrontEnd:
    monkeypatch.setattr(comm, "create_comm", lambda *a, **kw: RecordingComm(*a, **kw))
    return FrontEnd()


@pytest.fixture(scope="session")
def question_pcm() -> bytes:
    """'what are your opening hours', spoken: 16 kHz PCM16."""
    from amigo_lab.speech import Synthesizer

    return Synthesizer().synthesize("what are your opening hours").pcm


@pytest.fixture(scope="module")
def opening_hours_answer(emulator) -> str:
    """What the demo clinic answers to 'what are your opening hours', from its service file."""
    from amigo_lab.emulator import DEFAULT_SERVICE_ID

    service = emulator.services[DEFAULT_SERVICE_ID]
    return next(intent.reply["eng"] for intent in service.intents if intent.name == "opening_hours")
