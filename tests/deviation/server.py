"""A small WebSocket server that follows every D row of protocol.md and deviates from C rows on purpose.

The embedded emulator does exactly what our C choices say; the real service may not. This server answers
the same conversation (greeting, text turns, push-to-talk audio, server VAD, continue, finish) but each
:class:`Deviation` changes one thing the way a real service plausibly could: another alignment shape,
omitted false/0 fields, a late or missing ``user-message-available``, audio in binary frames, other close
codes, and so on. Tests run a real :class:`~amigo_lab.session.Session` against it over loopback.

    with DeviationServer(DEVIATIONS["sequence-from-1"]) as server:
        session = amigo_lab.connect(ORG, TOKEN, host=server.address, service_id=SERVICE_ID)

The server counts what it sent (``frames_sent``, ``audio_bytes_sent``) and what each interaction carried
(``interactions``), so a test can check that nothing was lost on the client's side.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from amigo_lab import audio as _audio
from amigo_lab.protocol import constants as C

ORG = "deviation-org"
TOKEN = "deviation-token-3f9a1c"
SERVICE_ID = "0123456789abcdef01234567"
PIECE_MS = 160
GREETING_TEXT = "Hello, this is the test clinic."


def reply_text(user_text: str) -> str:
    """What the server answers to a user turn (the test compares replies with it)."""
    return f"You said: {user_text}."


def audio_transcript(n_bytes: int) -> str:
    """The 'transcript' the server gives push-to-talk or VAD audio of ``n_bytes`` PCM16 bytes."""
    return f"audio of {n_bytes // 32} ms"


@dataclass(frozen=True)
class Deviation:
    """One way the server differs from the emulator's C choices (all defaults: no deviation).

    ``scenario`` names what the test does against it; ``connect`` holds ``connect()`` options a user
    would pass for that service; the ``expect_*`` fields say what the client should make of it.
    """

    name: str
    why: str
    scenario: str = "basic"                      # basic | text | vad | reconnect | finish
    connect: tuple[tuple[str, Any], ...] = ()
    # --- agent audio -----------------------------------------------------------------------------------
    agent_rate: int = 16_000
    announce_rate: bool = False                  # new-message carries "sample_rate"
    alignment: str = "pairs"                     # pairs | char-first | objects | dict-of-arrays | garbage
    alignment_scale: float = 1.0
    pcm_odd_pieces: bool = False
    mp3_stream: bool = False                     # one MP3 stream per message, cut into byte pieces
    binary_audio: bool = False                   # audio as binary WebSocket frames of the open message
    base64_form: str = "standard"                # standard | lines (76 a line) | url-safe | unpadded | data-uri
    batch: int = 1                               # text frames per message, one per line (a batching gateway)
    text_in_voice: bool = False                  # voice asked for, text pieces sent (its speech failed)
    type_spelling: str = "kebab"                 # kebab (ours) | snake (server.new_message) | camel (newMessage)
    # --- field shapes ----------------------------------------------------------------------------------
    omit_defaults: frozenset[str] = frozenset()  # stop / sequence_number / conversation_completed
    full_message: bool = True
    interaction_id: bool = True
    piece_message_id: bool = True
    seq_start: int = 0
    seq_step: int = 1
    stop_piece: bool = True                      # the last piece says stop: true
    extra_fields: bool = False
    wire_key_extra: bool = False                 # a wire key literally named "extra"
    unknown_frames: bool = False
    lone_surrogate: bool = False
    action_shape: str = "object"                 # object | string | no-type
    filler_interleaved: bool = False
    # --- order and presence ----------------------------------------------------------------------------
    user_message: str = "before"                 # before | after-first-piece | never
    echo_normalised: bool = False
    duplicate: frozenset[str] = frozenset()      # wire types sent twice
    complete_before_last_piece: bool = False
    greeting: str = "pieces"                     # pieces | none | complete-only
    error_code_as_string: bool = False           # first text turn answered by server.error "400"
    error_mid_reply: bool = False                # a recoverable 400 between pieces of the first reply
    error_repeats_token: bool = False            # first text turn answered by server.error naming the token
    vad_ack_field: bool = True
    vad_audio_ms: bool = True
    continue_ack: str = "server.conversation-continued"
    conversation_id: str = "64b7f3c2a1d9e8f701234567"
    # --- connection ------------------------------------------------------------------------------------
    close_after_first_turn: int | None = None    # close code (1006: drop without a close frame)
    drop_on_first_turn: bool = False             # drop the socket when the first text turn arrives
    drop_mid_reply: bool = False                 # drop the socket half way through the first reply
    black_hole_after_greeting: bool = False      # stop reading and answering on the first connection
    silence_after_user_message: bool = False     # first text turn: user-message-available, then nothing
    finish_ignored: bool = False                 # finish-conversation is never answered nor closed
    # --- what the client should make of it -------------------------------------------------------------
    expect_fail: tuple[tuple[str, str], ...] = ()   # turn name -> text the error must contain
    check_reply_audio: bool = True
    check_text: bool = True
    expect_warning: str | None = None            # text a logged warning must contain
    greeting_empty: bool = False

    @property
    def connect_options(self) -> dict[str, Any]:
        """The ``connect()`` keyword arguments of this deviation."""
        return dict(self.connect)


def _base64(data: bytes, form: str) -> str:
    """``data`` in base64 as one encoder or another writes it."""
    if form == "lines":
        return base64.encodebytes(data).decode("ascii")  # a line break every 76 characters, and at the end
    if form == "data-uri":
        return "data:audio/pcm;base64," + base64.b64encode(data).decode("ascii")
    if form == "url-safe":
        return base64.urlsafe_b64encode(data).decode("ascii")
    text = base64.b64encode(data).decode("ascii")
    return text.rstrip("=") if form == "unpadded" else text


def _tone(ms: float, sr: int, freq: float = 330.0) -> np.ndarray:
    n = int(round(sr * ms / 1000.0))
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


@dataclass
class _Message:
    """One agent message to stream: its wire pieces (bytes for audio, str for text) and its texts."""

    message_id: str
    text: str
    pieces: list[Any]
    chars: list[str]
    audio_ms: float


@dataclass
class _State:
    conversation_id: str
    vad_on: bool = False
    ptt_bytes: int = 0
    vad_stream_ms: float = 0.0
    vad_speech: bool = False
    vad_silence_ms: float = 0.0
    vad_bytes: int = 0
    user_turns: int = 0


class DeviationServer:
    """A loopback server speaking protocol.md with one :class:`Deviation`; its own loop in a daemon thread."""

    def __init__(self, deviation: Deviation) -> None:
        self.deviation = deviation
        self.frames_sent = 0
        self.audio_bytes_sent = 0
        self.connections = 0
        self.interactions: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self._messages = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="deviation-server", daemon=True)
        self._server: Any = None
        self._held: list[Any] = []   # black-holed connections: open, never read again
        self._stopping: asyncio.Event | None = None
        self.port = 0

    # --- life cycle -------------------------------------------------------------------------------------

    def start(self) -> DeviationServer:
        """Listen on a free loopback port (see :attr:`address`)."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        from websockets.asyncio.server import serve

        def select(connection: Any, offered: list[str]) -> str | None:
            return offered[0] if offered else None

        self._stopping = asyncio.Event()
        self._server = await serve(self._handle, "127.0.0.1", 0, select_subprotocol=select,
                                   ping_interval=None, compression=None, max_size=None)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Close every connection and end the server's thread."""
        async def stop() -> None:
            self._stopping.set()
            for ws in self._held:
                ws.transport.abort()
            await asyncio.sleep(0)
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), 5)
        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        except Exception:  # a test already failed; the thread dies with the process
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> DeviationServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """``host:port`` for ``connect(host=...)``."""
        return f"127.0.0.1:{self.port}"

    # --- one connection ---------------------------------------------------------------------------------

    async def _handle(self, ws: Any) -> None:
        index = self.connections
        self.connections += 1
        await _Connection(self, ws, index).run()

    def _next_id(self) -> str:
        self._messages += 1
        return f"{self._messages:024x}"


class _Connection:
    def __init__(self, server: DeviationServer, ws: Any, index: int) -> None:
        self.server = server
        self.d = server.deviation
        self.ws = ws
        self.index = index
        self.state: _State | None = None
        self.closed = self.held = False
        self._batch: list[str] = []          # text frames waiting to go out together (batch > 1)
        self._flusher: asyncio.TimerHandle | None = None

    # --- sending ----------------------------------------------------------------------------------------

    def _shape(self, obj: dict[str, Any]) -> dict[str, Any]:
        d = self.d
        for name in d.omit_defaults:
            if name in obj and obj[name] in (False, 0) and obj[name] is not None:
                del obj[name]
        if d.extra_fields:
            obj["trace_id"] = "trace-" + obj["type"].rsplit(".", 1)[-1]
            obj["server_time"] = 1_700_000_000.25
        if d.wire_key_extra:
            obj["extra"] = {"region": "test"}
        if d.type_spelling == "snake":
            obj["type"] = obj["type"].replace("-", "_")
        elif d.type_spelling == "camel":  # server.new-message -> newMessage
            head, *rest = obj["type"].removeprefix("server.").split("-")
            obj["type"] = head + "".join(word.title() for word in rest)
        return obj

    async def send(self, obj: dict[str, Any] | bytes) -> None:
        if self.closed:
            return
        if isinstance(obj, bytes):
            await self._flush()
            await self.ws.send(obj)
            self.server.frames_sent += 1
            self.server.audio_bytes_sent += len(obj)
            return
        if obj.get("type") == "server.new-message" and obj.get("_audio") is not None:
            self.server.audio_bytes_sent += len(obj["_audio"])
        obj = self._shape(dict(obj))  # after the count: shaping may rename the type
        obj.pop("_audio", None)
        text = json.dumps(obj)  # ensure_ascii: a lone surrogate travels as a \\ud83d escape, as JSON allows
        copies = 2 if obj.get("type") in self.d.duplicate else 1
        for _ in range(copies):
            self.server.frames_sent += 1
            if self.d.batch > 1:
                await self._batched(text)
            else:
                await self.ws.send(text)

    async def _batched(self, text: str) -> None:
        """As a batching gateway does: up to ``batch`` frames in one message, one per line, or what came
        within 10 ms."""
        self._batch.append(text)
        if len(self._batch) >= self.d.batch:
            await self._flush()
        elif self._flusher is None:
            loop = asyncio.get_running_loop()
            self._flusher = loop.call_later(0.01, lambda: loop.create_task(self._flush()))

    async def _flush(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self._batch and not self.closed:
            batch, self._batch = self._batch, []
            try:
                await self.ws.send("\n".join(batch))
            except Exception:
                pass  # the client went away meanwhile: nothing to deliver

    async def unknown(self, where: str) -> None:
        if self.d.unknown_frames:
            await self.send({"type": "server.debug-info", "where": where, "build": "2026.11"})

    def hold(self) -> None:
        """Black-hole this connection: nothing more is read, answered or ponged, and the socket stays open."""
        self.ws.transport.pause_reading()
        self.closed = self.held = True
        self.server._held.append(self.ws)

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = True
        if code == 1006:
            await asyncio.sleep(0.1)  # let what was written leave before the cut
            self.ws.transport.abort()
        else:
            await self.ws.close(code, reason)

    # --- receiving --------------------------------------------------------------------------------------

    async def run(self) -> None:
        from websockets.exceptions import ConnectionClosed
        try:
            async for data in self.ws:
                if isinstance(data, bytes):
                    continue
                obj = json.loads(data)
                self.server.received.append(obj)
                await self.on_frame(obj)
                if self.held:
                    await self.server._stopping.wait()  # returning would close the socket; a black hole does not
                    return
                if self.closed:
                    return
        except ConnectionClosed:
            return

    async def on_frame(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        d = self.d
        if kind == "client.start-conversation":
            self.state = _State(d.conversation_id)
            await self.send({"type": "server.conversation-created", "conversation_id": d.conversation_id})
            if d.greeting == "pieces":
                await self.interaction("greeting", None, GREETING_TEXT)
            elif d.greeting == "complete-only":
                await self.send({"type": "server.interaction-complete", "message_id": self.server._next_id(),
                                 "interaction_id": self.server._next_id(), "full_message": GREETING_TEXT,
                                 "conversation_completed": False})
                self.server.interactions.append({"kind": "greeting", "text": GREETING_TEXT, "audio_ms": 0.0})
            if d.black_hole_after_greeting and self.index == 0:
                self.hold()
        elif kind == "client.continue-conversation":
            self.state = _State(obj.get("conversation_id", d.conversation_id))
            await self.send({"type": d.continue_ack, "conversation_id": self.state.conversation_id})
        elif kind == "client.new-text-message":
            await self.on_text(obj)
        elif kind == "client.new-audio-message":
            await self.on_audio(obj.get("audio"))
        elif kind == "client.switch-vad-mode":
            assert self.state is not None
            self.state.vad_on = bool(obj.get("vad_mode_on"))
            ack: dict[str, Any] = {"type": "server.vad-mode-switched"}
            if d.vad_ack_field:
                ack["vad_mode_on"] = self.state.vad_on
            await self.send(ack)
        elif kind == "client.finish-conversation":
            if not d.finish_ignored:
                await self.close(1000, "conversation finished")
        elif kind == "client.close-connection":
            await self.close(1000, "closed by client")

    async def on_text(self, obj: dict[str, Any]) -> None:
        assert self.state is not None
        d, state = self.d, self.state
        text = obj.get("text", "")
        if obj.get("message_type") == C.MESSAGE_TYPE_EXTERNAL_EVENT:
            await self.interaction("event", None, f"Noted: {text}.")
            return
        state.user_turns += 1
        first = state.user_turns == 1 and self.index == 0
        if first and d.drop_on_first_turn:
            await self.close(1006)
            return
        if first and (d.error_code_as_string or d.error_repeats_token):
            description = (f"token bearer.authorization.amigo.ai.{TOKEN} may not send {text!r}"
                           if d.error_repeats_token else f"the service could not answer {text!r}")
            await self.send({"type": "server.error", "http_error_code": "400" if d.error_code_as_string else 400,
                             "error_description": description})
            return
        if first and d.silence_after_user_message:
            await self.send({"type": "server.user-message-available", "message_id": self.server._next_id(),
                             "user_message": text})
            self.hold()
            return
        await self.interaction("text", text, reply_text(text), first=first)

    async def on_audio(self, audio: str | None) -> None:
        assert self.state is not None
        state = self.state
        if audio is None:
            if state.ptt_bytes:
                n, state.ptt_bytes = state.ptt_bytes, 0
                transcript = audio_transcript(n)
                await self.interaction("audio", transcript, reply_text(transcript))
            return
        data = base64.b64decode(audio)
        if not state.vad_on:
            state.ptt_bytes += len(data)
            return
        samples = _audio.pcm16_to_float(data[: len(data) // 2 * 2])
        ms = samples.size * 1000.0 / C.SAMPLE_RATE
        loud = samples.size > 0 and float(np.sqrt(np.mean(samples ** 2))) > 0.02
        state.vad_stream_ms += ms

        def vad(kind: str) -> dict[str, Any]:
            frame: dict[str, Any] = {"type": kind}
            if self.d.vad_audio_ms:
                frame["audio_ms"] = round(state.vad_stream_ms, 1)
            return frame

        if loud and not state.vad_speech:
            state.vad_speech, state.vad_silence_ms, state.vad_bytes = True, 0.0, 0
            await self.send(vad("server.vad-speech-started"))
        if state.vad_speech:
            state.vad_bytes += len(data)
            state.vad_silence_ms = 0.0 if loud else state.vad_silence_ms + ms
            if state.vad_silence_ms >= C.VAD_END_SILENCE_MS:
                state.vad_speech = False
                await self.send(vad("server.vad-speech-ended"))
                transcript = audio_transcript(state.vad_bytes)
                await self.interaction("voice", transcript, reply_text(transcript))

    # --- one interaction --------------------------------------------------------------------------------

    def _message(self, text: str, ms: float) -> _Message:
        d = self.d
        message_id = self.server._next_id()
        voice = self.speaks
        n_pieces = max(1, int(round(ms / PIECE_MS)))
        if d.lone_surrogate:
            text = text[:-1] + " \ud83d" + text[-1]
        per = -(-len(text) // n_pieces)
        chars = [text[i * per:(i + 1) * per] for i in range(n_pieces)]
        if not voice:
            return _Message(message_id, text, list(chars), chars, 0.0)
        samples = _tone(ms, d.agent_rate)
        if self.audio_format == "mp3" and d.mp3_stream:
            blob = _audio.encode_mp3(samples, sr=d.agent_rate)
            cut = -(-len(blob) // n_pieces)
            pieces: list[Any] = [blob[i * cut:(i + 1) * cut] for i in range(n_pieces)]
        elif self.audio_format == "mp3":
            step = -(-samples.size // n_pieces)
            pieces = [_audio.encode_mp3(samples[i * step:(i + 1) * step], sr=d.agent_rate) for i in range(n_pieces)]
        else:
            pcm = _audio.float_to_pcm16(samples)
            if d.pcm_odd_pieces:
                step = len(pcm) // n_pieces | 1  # odd byte counts: pieces split samples in two
            else:
                step = -(-len(pcm) // n_pieces // 2) * 2
            pieces = [pcm[i * step:(i + 1) * step] for i in range(n_pieces - 1)]
            pieces.append(pcm[(n_pieces - 1) * step:])
        return _Message(message_id, text, pieces, chars, ms)

    @property
    def voice(self) -> bool:
        return "response_format=voice" in (self.ws.request.path if self.ws.request else "")

    @property
    def speaks(self) -> bool:
        """Voice asked for, and the server answers in audio (not: text pieces, as when its speech fails)."""
        return self.voice and not self.d.text_in_voice

    @property
    def audio_format(self) -> str:
        return "mp3" if "audio_format=mp3" in (self.ws.request.path if self.ws.request else "") else "pcm"

    def _alignment(self, chars: str, start_ms: float, piece_ms: float) -> Any:
        d = self.d
        if not chars:
            return []
        step = piece_ms * d.alignment_scale / len(chars)
        times = [round(start_ms * d.alignment_scale + i * step, 1) for i in range(len(chars))]
        if d.alignment == "char-first":
            return [[c, t] for c, t in zip(chars, times, strict=True)]
        if d.alignment == "objects":
            return [{"char": c, "start_ms": t} for c, t in zip(chars, times, strict=True)]
        if d.alignment == "dict-of-arrays":
            return {"chars": list(chars), "char_start_times_ms": times,
                    "char_durations_ms": [round(step, 1)] * len(chars)}
        if d.alignment == "garbage":
            return "alignment unavailable for this voice"
        return [[t, c] for c, t in zip(chars, times, strict=True)]

    def _pieces(self, message: _Message) -> list[dict[str, Any] | bytes]:
        d = self.d
        out: list[dict[str, Any] | bytes] = []
        n = len(message.pieces)
        piece_ms = message.audio_ms / n if n else 0.0
        for i, piece in enumerate(message.pieces):
            last = i == n - 1
            frame: dict[str, Any] = {"type": "server.new-message"}
            if self.speaks:
                frame["message"] = "" if d.binary_audio else _base64(piece, d.base64_form)
                frame["transcript_alignment"] = self._alignment(message.chars[i], i * piece_ms, piece_ms)
                if d.announce_rate:
                    frame["sample_rate"] = d.agent_rate
                if not d.binary_audio:
                    frame["_audio"] = piece
            else:
                frame["message"] = piece
                frame["transcript_alignment"] = None
            frame["stop"] = last and d.stop_piece and not d.binary_audio
            frame["sequence_number"] = d.seq_start + i * d.seq_step
            if d.piece_message_id:
                frame["message_id"] = message.message_id
            if self.speaks and d.binary_audio:
                if i == 0:
                    out.append(frame)  # opens the message; its audio follows as binary frames
                out.append(bytes(piece))
                if last:
                    out.append({"type": "server.new-message", "message": "", "transcript_alignment": None,
                                "stop": True, "sequence_number": d.seq_start + n * d.seq_step,
                                "message_id": message.message_id})
            else:
                out.append(frame)
        return out

    async def interaction(self, kind: str, user_text: str | None, text: str, *, first: bool = False) -> None:
        d = self.d
        ms = 480.0 if kind == "greeting" else 640.0
        answer = self._message(text, ms)
        record = {"kind": kind, "text": answer.text, "audio_ms": answer.audio_ms if self.speaks else 0.0,
                  "user_text": user_text}
        self.server.interactions.append(record)
        await self.unknown("before")
        uma = None
        if user_text is not None:
            echoed = user_text.lower().strip(".!?") if d.echo_normalised else user_text
            uma = {"type": "server.user-message-available", "message_id": self.server._next_id(),
                   "user_message": echoed}
            if d.user_message == "before":
                await self.send(uma)
        pieces = self._pieces(answer)
        if kind != "greeting" and (d.filler_interleaved or d.action_shape != "object"):
            if d.action_shape == "string":
                await self.send({"type": "server.current-agent-action", "action": "tool-call-started"})
            elif d.action_shape == "no-type":
                await self.send({"type": "server.current-agent-action", "action": {"name": "lookup"}})
        if d.filler_interleaved and kind != "greeting":
            filler = self._message("One moment please.", 320.0)
            await self.send({"type": "server.current-agent-action",
                             "action": {"type": C.ACTION_TOO_LONG, "filler": filler.text}})
            filler_pieces = self._pieces(filler)
            mixed: list[Any] = []
            for i in range(max(len(pieces), len(filler_pieces))):
                mixed += filler_pieces[i:i + 1] + pieces[i:i + 1]
            pieces = mixed
        complete = {"type": "server.interaction-complete", "message_id": answer.message_id,
                    "conversation_completed": False}
        if d.interaction_id:
            complete["interaction_id"] = self.server._next_id()
        if d.full_message:
            complete["full_message"] = answer.text
        for i, piece in enumerate(pieces):
            if d.complete_before_last_piece and i == len(pieces) - 1:
                await self.send(complete)
            await self.send(piece)
            if i == 0 and uma is not None and d.user_message == "after-first-piece":
                await self.send(uma)
            if i == 0 and first and d.error_mid_reply:
                await self.send({"type": "server.error", "http_error_code": 400,
                                 "error_description": "unknown frame type 'client.typing-indicator'"})
            if i == len(pieces) // 2 and first and d.drop_mid_reply:
                await self.close(1006)
                return
        if not d.complete_before_last_piece:
            await self.send(complete)
        await self.unknown("after")
        if first and d.close_after_first_turn is not None:
            await self.close(d.close_after_first_turn, "service restarting")
