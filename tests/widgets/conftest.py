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


class LoggedSession:
    """A session as the widgets read it (its frame log, subscriptions, parameters) over a real ``FrameLog``
    that already holds a long conversation: what a panel attaches to an hour into a call."""

    def __init__(self, log, *, response_format="voice", audio_format="pcm"):
        from types import SimpleNamespace

        self.log = log
        self.params = SimpleNamespace(response_format=response_format, audio_format=audio_format)
        self.conversation_id = "c" * 24
        self.state = "active"

    def on_frame(self, callback):
        return self.log.subscribe(callback)

    def on_event(self, _callback):
        return lambda: None         # the log is all there is: nothing is folded live


def record_voice_log(folder, minutes: float):
    """A real ``FrameLog`` (left open, as a live session's is) of a VAD voice session of ``minutes``: 50 user
    chunks of 20 ms a second and, every 10 s, a spoken turn (VAD start and end, transcript, a 12-piece answer
    with alignments, playback reports, interaction-complete), each frame recorded with its wire text."""
    import json

    from amigo_lab.framelog import FrameLog
    from amigo_lab.protocol import NewAudioMessage, NewMessage, parse, serialize

    clock = [0.0]
    log = FrameLog(folder, clock=lambda: clock[0], meta={"response_format": "voice", "audio_format": "pcm"})

    def at(t):
        clock[0] = t

    def received(t, obj=None, frame=None, audio=None):
        at(t)
        frame = frame or parse(json.dumps(obj))
        log.record("received", frame, raw=serialize(frame) if obj is None else json.dumps(obj), audio_bytes=audio,
                   audio_format="pcm" if audio is not None else None)

    at(0.0)
    log.record_local("connection.opened")
    received(0.05, {"type": "server.conversation-created", "conversation_id": "c" * 24})
    received(0.07, {"type": "server.vad-mode-switched", "vad_mode_on": True})
    chunk = NewAudioMessage.from_bytes(bytes(640))
    chunk_wire = serialize(chunk)
    piece_audio = bytes(5120)
    for second in range(int(minutes * 60)):
        base = 0.1 + second
        for k in range(50):
            at(base + k * 0.02)
            log.record("sent", chunk, raw=chunk_wire, audio_bytes=bytes(640), audio_format="pcm")
            if second % 10 != 9:
                continue
            n = second // 10
            if k == 5:
                received(base + k * 0.02, {"type": "server.vad-speech-started", "audio_ms": second * 1000.0})
            elif k == 20:
                received(base + k * 0.02, {"type": "server.vad-speech-ended", "audio_ms": second * 1000.0 + 350})
            elif k == 25:
                received(base + k * 0.02, {"type": "server.user-message-available", "message_id": f"u{n}",
                                           "user_message": f"question {n}"})
            elif 30 <= k < 42:
                i = k - 30
                alignment = tuple((j * 40.0, c) for j, c in enumerate(f"w{n}-{i} "))
                piece = NewMessage.audio_piece(piece_audio, stop=i == 11, sequence_number=i, message_id=f"a{n}",
                                               transcript_alignment=alignment)
                received(base + k * 0.02, frame=piece, audio=piece_audio)
                at(base + k * 0.02 + 0.001)
                log.record_local("playback.progress", message_id=f"a{n}", played_ms=160.0 * (i + 1))
            elif k == 45:
                received(base + k * 0.02, {"type": "server.interaction-complete", "message_id": f"a{n}",
                                           "interaction_id": f"i{n}", "full_message": f"answer {n}"})
    return log


@pytest.fixture(scope="module")
def long_log(tmp_path_factory):
    """A five-minute VAD voice session in an open frame log (30 spoken turns, about 16 000 entries)."""
    log = record_voice_log(tmp_path_factory.mktemp("long") / "session", 5)
    yield log
    log.close()


@pytest.fixture
def long_session(long_log):
    """The five-minute log as a session a panel can attach to."""
    return LoggedSession(long_log)


@pytest.fixture
def logged_session():
    """``logged_session(log, **params)``: a session over a real frame log the test writes itself."""
    return LoggedSession
