"""The embedded emulator, checked by a second client written only from ``shared/protocol.md``.

This client shares no code with ``amigo_lab``'s own client or protocol package: it speaks the wire format
as the document describes it, over real loopback sockets, with ``websocket-client`` (synchronous), and
reads every server frame as a plain dict. If the lab's client and the emulator agreed on a mistake, these
tests still see it. Each failure message shows the frames observed next to the rule of protocol.md that
they break (§ numbers refer to that document).

Speech for the audio tests comes from ``amigo_lab.speech.Synthesizer``, an independent speech engine.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterable

import numpy as np
import pytest
import websocket

from amigo_lab.emulator import DEFAULT_ORG, DEFAULT_SERVICE_ID, DEFAULT_TOKEN, Emulator

# --- The contract, as protocol.md states it ------------------------------------------------------------

PATH = "/v1/{org}/conversation/converse_realtime"  # §1
AUTH_PREFIX = "bearer.authorization.amigo.ai."  # §1: the JWT travels as this subprotocol
SAMPLE_RATE = 16_000  # §6: PCM16 LE mono 16 kHz, both directions
BYTES_PER_MS = SAMPLE_RATE * 2 // 1000
MAX_FRAME_BYTES = 1 << 20  # §5: a frame over 1 MiB closes with 1009

SERVER_TYPES = {  # §4
    "server.conversation-created",
    "server.conversation-continued",
    "server.user-message-available",
    "server.current-agent-action",
    "server.new-message",
    "server.interaction-complete",
    "server.vad-mode-switched",
    "server.vad-speech-started",
    "server.vad-speech-ended",
    "server.vad-speech-reset-zero",
    "server.error",
}
VAD_TYPES = {"server.vad-speech-started", "server.vad-speech-ended", "server.vad-speech-reset-zero"}

RECV_TIMEOUT_S = 10.0
QUESTION = "what are your opening hours"


# --- A small synchronous client ------------------------------------------------------------------------


class Closed(Exception):
    """The server sent a close frame: ``code`` and ``reason`` as received."""

    def __init__(self, code: int | None, reason: str):
        super().__init__(f"closed with {code} {reason!r}")
        self.code = code
        self.reason = reason


def _close_payload(data: bytes) -> tuple[int | None, str]:
    if len(data) < 2:
        return None, ""
    return int.from_bytes(data[:2], "big"), data[2:].decode("utf-8", "replace")


def endpoint(port: int, *, org: str = DEFAULT_ORG, query: str | None = "response_format=text") -> str:
    """The §1 URL on the emulator's loopback port."""
    url = f"ws://127.0.0.1:{port}" + PATH.format(org=org)
    return f"{url}?{query}" if query else url


class Client:
    """One WebSocket connection speaking protocol.md frames as dicts; records every server frame it reads."""

    def __init__(self, url: str, *, token: str | None = DEFAULT_TOKEN):
        self.offered = AUTH_PREFIX + token if token is not None else None
        try:
            self.ws = websocket.create_connection(
                url, timeout=RECV_TIMEOUT_S, subprotocols=[self.offered] if self.offered else None
            )
        except websocket.WebSocketBadStatusException as exc:
            raise AssertionError(
                f"the upgrade was refused with HTTP {exc.status_code}; protocol.md §1 (C) says the emulator "
                "accepts the upgrade and then closes with a §5 code"
            ) from exc
        self.frames: list[dict] = []
        self._send_lock = threading.Lock()

    # sending

    def send(self, type_: str, **fields) -> None:
        """Send one client frame: ``type`` plus top-level fields (§1, §3)."""
        self.send_raw(json.dumps({"type": type_, **fields}))

    def send_raw(self, text: str) -> None:
        with self._send_lock:
            self.ws.send(text)

    def send_audio(self, pcm: bytes, *, chunk_ms: int = 20, frames_per_s: float = 80.0) -> None:
        """Send PCM16 in ``chunk_ms`` chunks, paced to ``frames_per_s`` (§6 allows at most 100 frames/s)."""
        step = chunk_ms * BYTES_PER_MS
        for start in range(0, len(pcm), step):
            self.send("client.new-audio-message", audio=base64.b64encode(pcm[start : start + step]).decode())
            time.sleep(1.0 / frames_per_s)

    # receiving

    def recv(self) -> dict:
        """The next server frame as a dict; raises :class:`Closed` on a close frame."""
        while True:
            opcode, frame = self.ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                # websocket-client has already answered the close frame; drop the TCP connection too, as a
                # browser does, so the server is not left waiting for it.
                self.ws.shutdown()
                raise Closed(*_close_payload(frame.data))
            if opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
                continue
            assert opcode == websocket.ABNF.OPCODE_TEXT, (
                f"got a frame with opcode {opcode}; §1 says every message is one JSON object in one text frame"
            )
            message = json.loads(frame.data.decode("utf-8"))
            assert isinstance(message, dict) and isinstance(message.get("type"), str), (
                f"§1: every message is a JSON object with a type, got {message!r}"
            )
            self.frames.append(message)
            return message

    def recv_until(self, type_: str, *, where: Callable[[dict], bool] = lambda f: True) -> list[dict]:
        """Frames up to and including the first of ``type_`` that satisfies ``where``."""
        start = len(self.frames)
        while True:
            try:
                frame = self.recv()
            except Closed as closed:
                raise AssertionError(
                    f"waiting for {type_}, the server closed with {closed.code} {closed.reason!r} after "
                    f"{trace(self.frames[start:])}"
                ) from None
            except websocket.WebSocketTimeoutException:
                raise AssertionError(
                    f"waiting for {type_}, nothing came for {RECV_TIMEOUT_S}s after {trace(self.frames[start:])}"
                ) from None
            if frame["type"] == type_ and where(frame):
                return self.frames[start:]

    def expect_close(self) -> tuple[int | None, str, list[dict]]:
        """Read until the server closes; return its code, reason, and the frames read before the close."""
        start = len(self.frames)
        while True:
            try:
                self.recv()
            except Closed as closed:
                return closed.code, closed.reason, self.frames[start:]
            except websocket.WebSocketTimeoutException:
                raise AssertionError(
                    f"expected the server to close; nothing came for {RECV_TIMEOUT_S}s after "
                    f"{trace(self.frames[start:])}"
                ) from None

    def expect_silence(self, seconds: float) -> list[dict]:
        """Frames that arrive within ``seconds`` (the connection must stay open meanwhile)."""
        start = len(self.frames)
        self.ws.settimeout(seconds)
        try:
            while True:
                self.recv()
        except websocket.WebSocketTimeoutException:
            return self.frames[start:]
        except Closed as closed:
            raise AssertionError(
                f"the connection should stay open, but the server closed with {closed.code} {closed.reason!r} "
                f"after {trace(self.frames[start:])}"
            ) from None
        finally:
            self.ws.settimeout(RECV_TIMEOUT_S)

    # lifecycle

    def start(self, **fields) -> dict:
        """§2 Option A: start, wait for conversation-created, then read the greeting interaction."""
        self.send("client.start-conversation", service_id=DEFAULT_SERVICE_ID, **fields)
        created = self.recv_until("server.conversation-created")[-1]
        assert re.fullmatch(r"[0-9a-f]{24}", created.get("conversation_id", "")), created
        return created

    def close(self) -> None:
        """Close the connection (a no-op once the server has closed it)."""
        try:
            self.ws.close(timeout=1)
        except (OSError, websocket.WebSocketException):
            pass  # the peer may already be gone
        self.ws.shutdown()


def trace(frames: Iterable[dict]) -> list[str]:
    """A compact picture of a frame sequence for failure messages."""
    out = []
    for f in frames:
        t = f["type"].removeprefix("server.")
        if t == "new-message":
            t += f"[{f.get('message_id', '?')[-4:]}#{f.get('sequence_number')}{' stop' if f.get('stop') else ''}]"
        elif t == "current-agent-action":
            t += f"[{(f.get('action') or {}).get('type')}]"
        elif t == "error":
            t += f"[{f.get('http_error_code')} {f.get('error_description')!r}]"
        elif t in {"vad-speech-started", "vad-speech-ended", "vad-speech-reset-zero"}:
            t += f"[{f.get('audio_ms')}]"
        out.append(t)
    return out


def check_interaction(frames: list[dict], *, user_turn: bool) -> dict:
    """Check one interaction against §2.4 and §4; return the interaction-complete frame.

    Order: user-message-available first (for a user turn), then current-agent-action and new-message
    pieces, interaction-complete last; per message_id, sequence_number counts from 0 and only the last
    piece has stop: true; interaction-complete names the (last) agent message.
    """
    body = [f for f in frames if f["type"] not in VAD_TYPES | {"server.vad-mode-switched"}]
    seen = trace(frames)
    assert body and body[-1]["type"] == "server.interaction-complete", (
        f"§2.4: must end with interaction-complete: {seen}"
    )
    unknown = [f["type"] for f in body if f["type"] not in SERVER_TYPES]
    assert not unknown, f"frame types outside §4: {unknown}"
    if user_turn:
        assert body[0]["type"] == "server.user-message-available", (
            f"§2.4: a user turn starts with user-message-available: {seen}"
        )
        uma = body[0]
        assert isinstance(uma.get("message_id"), str) and isinstance(uma.get("user_message"), str), uma
    assert sum(f["type"] == "server.user-message-available" for f in body) <= 1, f"one user message: {seen}"
    assert sum(f["type"] == "server.interaction-complete" for f in body) == 1, seen
    assert not any(f["type"] == "server.error" for f in body), f"§2: an error voids the interaction: {seen}"

    pieces: dict[str, list[dict]] = {}
    for f in body:
        if f["type"] == "server.new-message":
            for key in ("message", "stop", "sequence_number", "message_id"):
                assert key in f, f"§4 new-message lacks {key}: {f}"
            assert f["message_id"] not in pieces or not pieces[f["message_id"]][-1]["stop"], (
                f"§2.4: a piece after stop: true for message {f['message_id']}: {seen}"
            )
            pieces.setdefault(f["message_id"], []).append(f)
    assert pieces, f"§2.4: an interaction carries new-message pieces: {seen}"
    for message_id, group in pieces.items():
        numbers = [p["sequence_number"] for p in group]
        assert numbers == list(range(len(group))), f"§4: sequence_number from 0, rising by one: {message_id} {numbers}"
        stops = [p["stop"] for p in group]
        assert stops == [False] * (len(group) - 1) + [True], f"§2.4: only the last piece has stop: true: {stops}"

    complete = body[-1]
    for key in ("message_id", "interaction_id", "full_message", "conversation_completed"):
        assert key in complete, f"§4 interaction-complete lacks {key}: {complete}"
    last_agent_message = [f for f in body if f["type"] == "server.new-message"][-1]["message_id"]
    assert complete["message_id"] == last_agent_message, (
        f"interaction-complete.message_id {complete['message_id']} is not the agent message {last_agent_message}"
    )
    return complete


def pieces_of(frames: list[dict], message_id: str) -> list[dict]:
    return [f for f in frames if f["type"] == "server.new-message" and f["message_id"] == message_id]


def words(text: str) -> str:
    return " ".join(re.findall(r"[a-z']+", text.lower()))


# --- Fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
def emulator():
    """A fresh emulator per test: §2 and §6 keep per-user state (unfinished conversations, rate limits)."""
    with Emulator(realtime=False) as emu:
        yield emu


@pytest.fixture
def connect(emulator):
    """Open clients on the fresh emulator; all are closed at the end of the test."""
    opened: list[Client] = []

    def _connect(
        query: str | None = "response_format=text", *, org: str = DEFAULT_ORG, token: str | None = DEFAULT_TOKEN
    ) -> Client:
        client = Client(endpoint(emulator.port, org=org, query=query), token=token)
        opened.append(client)
        return client

    yield _connect
    for client in opened:
        client.close()


@pytest.fixture(scope="module")
def question_pcm() -> bytes:
    """The user's question, spoken: PCM16 16 kHz mono."""
    from amigo_lab.speech import Synthesizer

    speech = Synthesizer().synthesize(QUESTION, language="eng")
    assert speech.sample_rate == SAMPLE_RATE
    return speech.pcm


def silence(ms: int) -> bytes:
    return bytes(ms * BYTES_PER_MS)


# --- §1 Connection -------------------------------------------------------------------------------------


def test_the_offered_subprotocol_is_echoed_exactly(connect):
    client = connect()
    echoed = client.ws.getheaders().get("sec-websocket-protocol")
    assert echoed == client.offered, (
        f"§1: the server must echo the offered subprotocol; offered {client.offered!r}, got {echoed!r}"
    )


@pytest.mark.parametrize(
    ("case", "token", "org", "query", "code"),
    [
        pytest.param(*row, id=row[0])
        for row in [
            ("bad token", "not-the-token", DEFAULT_ORG, "response_format=text", 4401),
            ("missing token", None, DEFAULT_ORG, "response_format=text", 4401),
            ("unknown org", DEFAULT_TOKEN, "no-such-org", "response_format=text", 4404),
            ("response_format missing", DEFAULT_TOKEN, DEFAULT_ORG, None, 4400),
            ("response_format unknown", DEFAULT_TOKEN, DEFAULT_ORG, "response_format=video", 4400),
            ("voice without audio_format", DEFAULT_TOKEN, DEFAULT_ORG, "response_format=voice", 4400),
            ("audio_format unknown", DEFAULT_TOKEN, DEFAULT_ORG, "response_format=voice&audio_format=ogg", 4400),
            ("bad action filter", DEFAULT_TOKEN, DEFAULT_ORG, "response_format=text&current_agent_action_type=(", 4400),
        ]
    ],
)
def test_a_bad_connection_is_accepted_then_closed_with_its_code(connect, case, token, org, query, code):
    client = connect(query, org=org, token=token)
    if token is not None:
        assert client.ws.getheaders().get("sec-websocket-protocol") == client.offered, (
            f"§1 (C): the upgrade is accepted echoing the offered subprotocol even for {case}"
        )
    got, reason, before = client.expect_close()
    assert (got, before) == (code, []), (
        f"{case}: §1/§5 expect close {code} at once; got {got} {reason!r} after {trace(before)}"
    )
    assert reason, f"{case}: §1 (C) the close carries a short reason"


# --- §2 Conversation flow, text ------------------------------------------------------------------------


def test_text_conversation_greeting_then_a_turn(connect):
    client = connect("response_format=text")
    client.start()
    greeting = client.recv_until("server.interaction-complete")
    complete = check_interaction(greeting, user_turn=False)
    pieces = pieces_of(greeting, complete["message_id"])
    assert all(isinstance(p["message"], str) for p in pieces), "§1: text format sends text pieces"
    assert "".join(p["message"] for p in pieces).strip() == complete["full_message"].strip(), (
        "text pieces put together should be the full_message"
    )
    assert complete["conversation_completed"] is False

    client.send("client.extend-timeout")  # §3: no reply expected, and nothing breaks
    client.send("client.new-text-message", text=QUESTION, message_type="user-message")
    turn = client.recv_until("server.interaction-complete")
    complete = check_interaction(turn, user_turn=True)
    assert turn[0]["user_message"] == QUESTION
    assert "open" in complete["full_message"].lower(), complete["full_message"]
    assert complete["interaction_id"] != greeting[-1]["interaction_id"]


def test_voice_pcm_pieces_are_pcm16_with_alignment(connect):
    client = connect("response_format=voice&audio_format=pcm")
    client.start()
    frames = client.recv_until("server.interaction-complete")
    complete = check_interaction(frames, user_turn=False)
    pieces = pieces_of(frames, complete["message_id"])
    durations = []
    for piece in pieces:
        audio = base64.b64decode(piece["message"], validate=True)
        assert len(audio) % 2 == 0, "§6: PCM16 has whole 16-bit samples"
        durations.append(len(audio) / BYTES_PER_MS)
        if audio:
            alignment = piece["transcript_alignment"]
            assert isinstance(alignment, list) and alignment, f"§4: voice pieces carry transcript_alignment: {piece}"
            assert all(
                isinstance(ms, (int, float)) and isinstance(ch, str) and len(ch) == 1 for ms, ch in alignment
            ), alignment[:5]
            samples = np.frombuffer(audio, "<i2")
            assert np.abs(samples).max() > 0
    body = durations if durations[-1] >= 100 else durations[:-1]  # the stop piece may be a short tail
    assert all(100 <= d <= 200 for d in body), f"agent pieces should be 100-200 ms each, got {durations}"
    assert durations[-1] <= 200
    spoken = "".join(ch for p in pieces for _, ch in (p["transcript_alignment"] or []))
    assert words(spoken) == words(complete["full_message"]), "the alignments spell the transcript"


def test_voice_mp3_pieces_are_self_contained_mpeg_audio(connect):
    client = connect("response_format=voice&audio_format=mp3")
    client.start()
    frames = client.recv_until("server.interaction-complete")
    complete = check_interaction(frames, user_turn=False)
    for piece in pieces_of(frames, complete["message_id"]):
        audio = base64.b64decode(piece["message"], validate=True)
        if not audio and piece["stop"]:
            continue
        frame_sync = len(audio) >= 2 and audio[0] == 0xFF and audio[1] & 0xE0 == 0xE0
        assert frame_sync or audio[:3] == b"ID3", (
            f"§6: each MP3 piece starts with an MPEG frame sync or an ID3 tag, piece "
            f"#{piece['sequence_number']} starts {audio[:4].hex()}"
        )


# --- §3 Audio in ---------------------------------------------------------------------------------------


def test_push_to_talk_transcribes_the_whole_utterance(connect, question_pcm):
    client = connect("response_format=voice&audio_format=pcm")
    client.start()
    client.recv_until("server.interaction-complete")
    client.send_audio(question_pcm, chunk_ms=20)
    client.send("client.new-audio-message", audio=None)
    turn = client.recv_until("server.interaction-complete")
    check_interaction(turn, user_turn=True)
    assert words(turn[0]["user_message"]) == QUESTION, f"§3 push-to-talk transcript: {turn[0]['user_message']!r}"


def test_vad_detects_speech_start_and_end_then_answers(connect, question_pcm):
    client = connect("response_format=voice&audio_format=pcm")
    client.start()
    client.recv_until("server.interaction-complete")
    client.send("client.switch-vad-mode", vad_mode_on=True)
    switched = client.recv_until("server.vad-mode-switched")[-1]
    assert switched.get("vad_mode_on") is True, switched

    lead_ms, tail_ms = 300, 900
    client.send_audio(silence(lead_ms) + question_pcm + silence(tail_ms), chunk_ms=20)
    turn = client.recv_until("server.interaction-complete")
    kinds = [f["type"] for f in turn]
    assert kinds.index("server.vad-speech-started") < kinds.index("server.vad-speech-ended") < kinds.index(
        "server.user-message-available"
    ), f"§4/§6: speech-started, speech-ended, then the turn: {trace(turn)}"
    started = next(f for f in turn if f["type"] == "server.vad-speech-started")["audio_ms"]
    ended = next(f for f in turn if f["type"] == "server.vad-speech-ended")["audio_ms"]
    total_ms = lead_ms + len(question_pcm) / BYTES_PER_MS + tail_ms
    assert 0 < started < ended <= total_ms, (started, ended, total_ms)
    assert started >= lead_ms - 100, f"speech cannot start before the leading {lead_ms} ms of silence: {started}"
    check_interaction(turn, user_turn=True)
    uma = next(f for f in turn if f["type"] == "server.user-message-available")
    assert words(uma["user_message"]) == QUESTION, uma


def test_vad_discards_speech_too_short_to_be_a_turn(connect, question_pcm):
    client = connect("response_format=voice&audio_format=pcm")
    client.start()
    client.recv_until("server.interaction-complete")
    client.send("client.switch-vad-mode", vad_mode_on=True)
    client.recv_until("server.vad-mode-switched")
    voiced = np.flatnonzero(np.abs(np.frombuffer(question_pcm, "<i2")) > 1000)
    blip = question_pcm[voiced[0] * 2 : voiced[0] * 2 + 120 * BYTES_PER_MS]  # 120 ms < §6's 200 ms minimum
    client.send_audio(silence(300) + blip + silence(900), chunk_ms=20)
    frames = client.expect_silence(1.5)
    kinds = [f["type"] for f in frames]
    assert "server.user-message-available" not in kinds and "server.new-message" not in kinds, (
        f"§4: speech shorter than the minimum is discarded, no turn follows: {trace(frames)}"
    )
    if "server.vad-speech-started" in kinds:
        assert "server.vad-speech-reset-zero" in kinds, f"§4: a started blip ends with reset-zero: {trace(frames)}"


def test_vad_with_mp3_is_refused_4415(connect):
    client = connect("response_format=voice&audio_format=mp3")
    client.start()
    client.recv_until("server.interaction-complete")
    client.send("client.switch-vad-mode", vad_mode_on=True)
    code, reason, before = client.expect_close()
    assert code == 4415, f"§5/§6: VAD needs pcm; got {code} {reason!r} after {trace(before)}"


# --- Barge-in (§4, C) ----------------------------------------------------------------------------------


def test_barge_in_stops_the_agent_message_and_keeps_only_what_was_sent(question_pcm):
    with Emulator(realtime=True) as emu:
        client = Client(endpoint(emu.port, query="response_format=voice&audio_format=pcm"))
        try:
            client.start()
            client.send("client.switch-vad-mode", vad_mode_on=True)
            first = client.recv_until("server.new-message")[-1]
            greeting_id = first["message_id"]

            # §6: VAD wants a continuous stream, so speech and silence go out at real-time pace.
            sender = threading.Thread(
                target=client.send_audio,
                args=(silence(200) + question_pcm + silence(900),),
                kwargs={"chunk_ms": 20, "frames_per_s": 50.0},
                daemon=True,
            )
            sender.start()
            start = len(client.frames) - 1
            client.recv_until("server.user-message-available")
            sender.join(timeout=10)
        finally:
            client.close()

    frames = client.frames[start:]
    seen = trace(frames)
    kinds = [f["type"] for f in frames]
    assert "server.vad-speech-started" in kinds, seen
    barge = kinds.index("server.vad-speech-started")
    after = [f for f in frames[barge:] if f["type"] == "server.new-message" and f["message_id"] == greeting_id]
    assert after and after[0]["stop"] is True, (
        f"§4 barge-in: the interrupted message's next piece has stop: true; observed {seen}"
    )
    complete = next(
        (f for f in frames[barge:] if f["type"] == "server.interaction-complete" and f["message_id"] == greeting_id),
        None,
    )
    assert complete is not None, f"§4 barge-in: the interrupted turn still ends with interaction-complete: {seen}"
    sent = [f for f in client.frames if f["type"] == "server.new-message" and f["message_id"] == greeting_id]
    spoken = "".join(ch for p in sent for _, ch in (p["transcript_alignment"] or []))
    assert words(complete["full_message"]) == words(spoken), (
        f"§4 barge-in: full_message holds only what was sent: {complete['full_message']!r} vs sent {spoken!r}"
    )
    assert complete["conversation_completed"] is False
    uma = next(f for f in frames if f["type"] == "server.user-message-available")
    assert kinds.index("server.interaction-complete") < kinds.index("server.user-message-available"), seen
    assert words(uma["user_message"]) == QUESTION, uma


# --- External events (§3) ------------------------------------------------------------------------------

EVENT = "The caller's appointment was moved to Friday at nine"


def test_external_event_during_user_input_is_context_for_that_turn(connect, question_pcm):
    client = connect("response_format=voice&audio_format=pcm")
    client.start()
    client.recv_until("server.interaction-complete")
    half = len(question_pcm) // 2 // 640 * 640
    client.send_audio(question_pcm[:half])
    client.send("client.new-text-message", text=EVENT, message_type="external-event")
    client.send_audio(question_pcm[half:])
    client.send("client.new-audio-message", audio=None)
    turn = client.recv_until("server.interaction-complete")
    complete = check_interaction(turn, user_turn=True)
    assert words(turn[0]["user_message"]) == QUESTION, (
        f"§3: an event sent during the user's input joins that turn rather than starting its own: {trace(turn)}"
    )
    assert "friday" in complete["full_message"].lower(), (
        f"the reply should reflect the event: {complete['full_message']!r}"
    )


def test_external_event_alone_starts_an_interaction(connect):
    client = connect("response_format=text")
    client.start()
    client.recv_until("server.interaction-complete")
    client.send("client.new-text-message", text=EVENT, message_type="external-event")
    frames = client.recv_until("server.interaction-complete")
    complete = check_interaction(frames, user_turn=False)
    assert "friday" in complete["full_message"].lower(), complete["full_message"]
    client.send("client.new-text-message", text=QUESTION, message_type="user-message")
    turn = client.recv_until("server.interaction-complete")
    check_interaction(turn, user_turn=True)
    assert "friday" not in turn[-1]["full_message"].lower(), "§3: the event buffer empties after each interaction"


# --- Agent actions (§1 current_agent_action_type, §4) --------------------------------------------------


def _one_turn(port: int, query: str, text: str) -> list[dict]:
    client = Client(endpoint(port, query=query))
    try:
        client.start()
        client.recv_until("server.interaction-complete")
        client.send("client.new-text-message", text=text, message_type="user-message")
        turn = client.recv_until("server.interaction-complete")
        client.send("client.finish-conversation")
        client.expect_close()
        return turn
    finally:
        client.close()


def test_agent_actions_are_sent_only_when_the_filter_admits_them(emulator):
    turn = _one_turn(emulator.port, "response_format=text", "i want to cancel my appointment")
    check_interaction(turn, user_turn=True)
    assert "server.current-agent-action" not in [f["type"] for f in turn], (
        f"§1: without current_agent_action_type no current-agent-action is sent: {trace(turn)}"
    )
    only_ended = "response_format=text&current_agent_action_type=^tool-call-ended$"
    turn = _one_turn(emulator.port, only_ended, "i want to cancel my appointment")
    actions = [f["action"] for f in turn if f["type"] == "server.current-agent-action"]
    assert [a.get("type") for a in actions] == ["tool-call-ended"], (
        f"§1: only action types matching the filter are sent: {trace(turn)}"
    )


def test_a_filler_is_its_own_message_announced_by_action_too_long(emulator):
    every_action = "response_format=text&current_agent_action_type=.*"
    turn = _one_turn(emulator.port, every_action, "i would like to book an appointment")
    complete = check_interaction(turn, user_turn=True)
    seen = trace(turn)
    actions = [f["action"] for f in turn if f["type"] == "server.current-agent-action"]
    assert all(isinstance(a, dict) and isinstance(a.get("type"), str) for a in actions), actions
    types = [a["type"] for a in actions]
    assert "tool-call-started" in types and "tool-call-ended" in types, seen
    too_long = next(
        (f for f in turn if f["type"] == "server.current-agent-action" and f["action"]["type"] == "action-too-long"),
        None,
    )
    assert too_long is not None and isinstance(too_long["action"].get("filler"), str), (
        f"§4 (C): action-too-long with filler: {seen}"
    )
    messages = list(dict.fromkeys(f["message_id"] for f in turn if f["type"] == "server.new-message"))
    assert len(messages) == 2 and messages[-1] == complete["message_id"], (
        f"§4 (C): the filler has its own message_id, and interaction-complete names the answer: {seen}"
    )
    filler_pieces = pieces_of(turn, messages[0])
    assert turn.index(too_long) < turn.index(filler_pieces[0]), f"§4 (C): action-too-long precedes the filler: {seen}"
    assert "".join(p["message"] for p in filler_pieces).strip() == too_long["action"]["filler"].strip()


# --- §2 Lifecycle and §5 close codes -------------------------------------------------------------------


def test_close_connection_then_continue_the_conversation(connect):
    first = connect("response_format=text")
    conversation_id = first.start()["conversation_id"]
    first.recv_until("server.interaction-complete")
    first.send("client.close-connection")
    code, reason, before = first.expect_close()
    assert code == 1000, f"§5: closed by client is 1000, got {code} {reason!r} after {trace(before)}"

    second = connect("response_format=text")
    second.send("client.continue-conversation", conversation_id=conversation_id)
    continued = second.recv_until("server.conversation-continued")
    assert continued[-1]["conversation_id"] == conversation_id
    second.send("client.new-text-message", text=QUESTION, message_type="user-message")
    check_interaction(second.recv_until("server.interaction-complete"), user_turn=True)

    second.send("client.finish-conversation")
    code, reason, _ = second.expect_close()
    assert code == 1000, f"§2.5/§5: finish closes normally, got {code} {reason!r}"

    third = connect("response_format=text")
    third.send("client.continue-conversation", conversation_id=conversation_id)
    code, reason, before = third.expect_close()
    assert code == 4409, f"§5: continuing a finished conversation is 4409, got {code} {reason!r} after {trace(before)}"


def test_reconnecting_as_soon_as_the_server_closed_is_accepted(connect):
    """§5 says after 1000 the client need do nothing, and §2.5 leaves the conversation open for Option B.

    A client that reconnects the moment it has the close frame (and has dropped its socket) must not find
    its old connection still counted against §6's one open connection per user and service.
    """
    client = connect()
    conversation_id = client.start()["conversation_id"]
    client.recv_until("server.interaction-complete")
    for attempt in range(10):
        client.send("client.close-connection")
        assert client.expect_close()[0] == 1000
        client = connect()
        client.send("client.continue-conversation", conversation_id=conversation_id)
        try:
            client.recv_until("server.conversation-continued")
        except AssertionError as exc:
            raise AssertionError(f"reconnect #{attempt + 1} right after close 1000 was refused: {exc}") from None


def test_the_agent_ending_the_conversation_closes_1000(connect):
    client = connect("response_format=text")
    client.start()
    client.recv_until("server.interaction-complete")
    client.send("client.new-text-message", text="goodbye", message_type="user-message")
    complete = check_interaction(client.recv_until("server.interaction-complete"), user_turn=True)
    assert complete["conversation_completed"] is True, complete
    code, reason, after = client.expect_close()
    assert (code, after) == (1000, []), (
        f"§2.5 (C): the server closes with 1000, got {code} {reason!r} after {trace(after)}"
    )


def test_continue_an_unknown_conversation_is_4404(connect):
    client = connect()
    client.send("client.continue-conversation", conversation_id="0123456789abcdef01234567")
    code, reason, before = client.expect_close()
    assert code == 4404, f"§5: unknown conversation is 4404, got {code} {reason!r} after {trace(before)}"


@pytest.mark.parametrize(
    "fields",
    [
        {"service_id": "ffffffffffffffffffffffff"},
        {"service_id": DEFAULT_SERVICE_ID, "service_version_set_name": "nope"},
    ],
    ids=["unknown service", "unknown version set"],
)
def test_start_an_unknown_service_or_version_set_is_4404(connect, fields):
    client = connect()
    client.send("client.start-conversation", **fields)
    code, reason, before = client.expect_close()
    assert code == 4404, f"§5: {fields} is 4404, got {code} {reason!r} after {trace(before)}"


def test_second_start_while_one_is_unfinished_is_4409(connect):
    first = connect()
    first.start()
    first.recv_until("server.interaction-complete")
    first.send("client.close-connection")
    first.expect_close()
    second = connect()
    second.send("client.start-conversation", service_id=DEFAULT_SERVICE_ID)
    code, reason, before = second.expect_close()
    assert code == 4409, (
        f"§2/§5: one unfinished conversation per user and service; got {code} {reason!r} after {trace(before)}"
    )


def test_start_twice_on_one_connection_is_4400(connect):
    client = connect()
    client.start()
    client.send("client.start-conversation", service_id=DEFAULT_SERVICE_ID)
    code, reason, before = client.expect_close()
    assert code == 4400, f"§5: start sent twice is 4400, got {code} {reason!r} after {trace(before)}"


def test_a_frame_before_start_is_a_400_error_and_the_connection_stays_open(connect):
    client = connect()
    client.send("client.new-text-message", text=QUESTION, message_type="user-message")
    error = client.recv()
    assert error["type"] == "server.error" and error.get("http_error_code") == 400, (
        f"§2.2: a frame before initialisation is a 400 error, got {trace([error])}"
    )
    assert isinstance(error.get("error_description"), str) and error["error_description"]
    client.start()
    check_interaction(client.recv_until("server.interaction-complete"), user_turn=False)


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[1, 2]",
        json.dumps({"type": "client.no-such-frame"}),
        json.dumps({"type": "client.new-text-message", "message_type": "user-message"}),
        json.dumps({"type": "client.new-audio-message", "audio": "***not base64***"}),
    ],
    ids=["malformed JSON", "not an object", "unknown type", "missing field", "bad base64"],
)
def test_a_recoverable_mistake_is_a_400_error_and_the_conversation_goes_on(connect, raw):
    client = connect("response_format=voice&audio_format=pcm")
    client.start()
    client.recv_until("server.interaction-complete")
    client.send_raw(raw)
    error = client.recv()
    assert error["type"] == "server.error" and error.get("http_error_code") == 400, (
        f"§5: a recoverable mistake gets server.error 400, got {trace([error])}"
    )
    client.send("client.new-text-message", text=QUESTION, message_type="user-message")
    turn = client.recv_until("server.interaction-complete")
    check_interaction(turn, user_turn=True)
    assert turn[0]["user_message"] == QUESTION


def test_a_frame_over_one_mebibyte_is_closed_1009(connect):
    client = connect("response_format=voice&audio_format=pcm")
    client.start()
    client.recv_until("server.interaction-complete")
    payload = base64.b64encode(bytes(MAX_FRAME_BYTES)).decode()  # about 1.33 MiB once in JSON
    client.send("client.new-audio-message", audio=payload)
    code, reason, before = client.expect_close()
    assert code == 1009, f"§5: a frame over 1 MiB is 1009, got {code} {reason!r} after {trace(before)}"


def test_more_than_five_new_conversations_a_minute_is_4429(connect):
    for _ in range(5):
        client = connect()
        client.start()
        client.recv_until("server.interaction-complete")
        client.send("client.finish-conversation")
        assert client.expect_close()[0] == 1000
    client = connect()
    client.send("client.start-conversation", service_id=DEFAULT_SERVICE_ID)
    code, reason, before = client.expect_close()
    assert code == 4429, (
        f"§6: at most 5 new conversations a minute; the 6th got {code} {reason!r} after {trace(before)}"
    )


def test_more_than_a_hundred_frames_a_second_is_4429(connect):
    client = connect()
    client.start()
    client.recv_until("server.interaction-complete")
    for _ in range(150):
        client.send("client.extend-timeout")
    code, reason, before = client.expect_close()
    assert code == 4429, f"§6: at most 100 frames/s; got {code} {reason!r} after {trace(before)}"


def test_emulator_shutdown_closes_1001():
    outcome: list = []
    with Emulator(realtime=False) as emu:
        client = Client(endpoint(emu.port))
        client.start()
        client.recv_until("server.interaction-complete")
        # Keep reading while the emulator stops, so its close frame is answered at once.
        reader = threading.Thread(target=lambda: outcome.append(client.expect_close()), daemon=True)
        reader.start()
    reader.join(timeout=RECV_TIMEOUT_S)
    client.close()
    assert outcome, "the emulator stopped without closing the connection"
    code, reason, before = outcome[0]
    assert code == 1001, f"§5: the emulator shutting down is 1001, got {code} {reason!r} after {trace(before)}"
