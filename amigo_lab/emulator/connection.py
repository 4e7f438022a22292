"""One client connection: the conversation as the server speaks it (protocol.md §2-§6).

:class:`Connection` drives a server-side :class:`~amigo_lab.protocol.Conversation` over one socket with
three tasks:

* the **reader** (:meth:`Connection.run`) takes every frame in order, checks it against the state machine
  and the frame-rate limit, answers recoverable mistakes with ``server.error`` 400, feeds user audio to
  :class:`~amigo_lab.emulator.voice.VoiceInput` (VAD events, barge-in), and queues user turns;
* the **interaction worker** runs one interaction at a time from that queue: user message, agent actions,
  message pieces (paced in real time for voice), ``interaction-complete``. External events wait in a
  buffer; a user turn takes every event that arrived before its input was complete, and events that find
  no user input pending start an interaction of their own;
* the **idle watchdog** closes with 4408 when the user has been silent for the idle window.

Fatal problems raise :class:`~amigo_lab.emulator.errors.Refusal` and close with its code; any other
exception is logged and closes this connection alone with 1011.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed

from amigo_lab.audio import AudioError
from amigo_lab.emulator.agent import AgentReply, AgentTurn, as_reply, filler_text
from amigo_lab.emulator.errors import Refusal
from amigo_lab.emulator.inbound import error_description, surrogate_in_json
from amigo_lab.emulator.matching import detect_language
from amigo_lab.emulator.rendering import text_pieces
from amigo_lab.emulator.store import ConversationRecord, FrameRateLimiter, new_id
from amigo_lab.emulator.voice import (
    AUDIO_ENDED,
    TooMuchAudio,
    Utterance,
    VoiceEvent,
    VoiceInput,
)
from amigo_lab.protocol import (
    CloseCode,
    CloseConnection,
    ConnectParams,
    ContinueConversation,
    Conversation,
    ConversationContinued,
    ConversationCreated,
    CurrentAgentAction,
    ExtendTimeout,
    FinishConversation,
    Frame,
    FrameError,
    InteractionComplete,
    NewAudioMessage,
    NewMessage,
    NewTextMessage,
    RemoteProtocolError,
    Role,
    ServerError,
    StartConversation,
    State,
    SwitchVadMode,
    UserMessageAvailable,
    VadModeSwitched,
    VadSpeechEnded,
    VadSpeechResetZero,
    VadSpeechStarted,
    constants,
)
from amigo_lab.speech import SPEECH_ENDED, SPEECH_RESET_ZERO, SPEECH_STARTED

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from amigo_lab.emulator.profiles import Network
    from amigo_lab.emulator.runtime import Runtime
    from amigo_lab.emulator.services import Service

logger = logging.getLogger("amigo_lab.emulator")

#: Close reasons are limited to 123 bytes by RFC 6455.
MAX_REASON_BYTES = 123
_BYTES_PER_MS = constants.SAMPLE_RATE * constants.SAMPLE_WIDTH_BYTES // 1000


class AudioClock:
    """How far a connection's user audio runs ahead of real time.

    A virtual clock: each chunk of ``seconds`` advances it from ``max(clock, now)``, so a pause gives no
    credit for later. :meth:`take` admits a chunk unless the clock would then run more than
    ``max_ahead_s`` ahead of ``now``; it returns the problem in words then (the chunk is not counted).
    """

    def __init__(self, max_ahead_s: float) -> None:
        self._max_ahead_s = max_ahead_s
        self._clock = float("-inf")

    def take(self, seconds: float, now: float) -> str | None:
        """Admit ``seconds`` of audio at loop time ``now`` (None), or say why not."""
        clock = max(self._clock, now) + seconds
        ahead = clock - now
        if ahead > self._max_ahead_s:
            return (f"audio arrives faster than real time: this chunk would put it {ahead:.1f} s ahead, more than "
                    f"the {self._max_ahead_s:g} s allowed; the chunk was dropped. Stream audio in real time")
        self._clock = clock
        return None


def short_reason(reason: str) -> str:
    """``reason`` cut to what a close frame can carry (123 UTF-8 bytes)."""
    data = reason.encode("utf-8")
    if len(data) <= MAX_REASON_BYTES:
        return reason
    return data[: MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


# --- what waits in the interaction queue ----------------------------------------------------------------


@dataclass(frozen=True)
class _Greeting:
    """The agent's first turn of a new conversation."""


@dataclass(frozen=True)
class _TextTurn:
    text: str
    events: tuple[tuple[float, str], ...]  # sent before or while the user wrote: context for this turn
    at: float  # loop time the input was complete: the profile's response delay counts from here


@dataclass(frozen=True)
class _SpeechTurn:
    utterance: Utterance
    events: tuple[tuple[float, str], ...]  # sent before or while the user spoke
    at: float


@dataclass(frozen=True)
class _EventTurn:
    """External events alone, with no user input pending."""

    at: float


_Turn = _Greeting | _TextTurn | _SpeechTurn | _EventTurn


class _Closing(Exception):
    """The connection is closing: the current work stops quietly."""


class _Link:
    """The simulated network of a profile (profiles.Network) between the server and one client.

    :meth:`put` gives each text a delivery time ``max(previous, now + delay)`` (order kept, a late frame
    holds back the ones behind it) and a task writes it then; the sender never waits for the link.
    """

    def __init__(self, ws: ServerConnection, network: Network, rng: random.Random, runtime: Runtime) -> None:
        self._ws = ws
        self._network = network
        self._rng = rng
        self._runtime = runtime
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        self._last_due = 0.0
        self._task = asyncio.create_task(self._deliver())

    def put(self, text: str) -> None:
        """Send ``text`` over the link."""
        due = max(self._last_due, self._loop.time() + self._network.draw_s(self._rng))
        self._last_due = due
        self._queue.put_nowait((due, text))

    async def drain(self, *, timeout_s: float) -> None:
        """Wait until every text put so far is written (or ``timeout_s`` seconds, or the socket closes)."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            pass

    def close(self) -> None:
        """Stop delivering."""
        self._task.cancel()

    async def _deliver(self) -> None:
        try:
            while True:
                due, text = await self._queue.get()
                try:
                    delay = due - self._loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await self._ws.send(text)
                    self._runtime.counters.frames_out += 1
                finally:
                    self._queue.task_done()
        except ConnectionClosed:
            while not self._queue.empty():  # nothing more can be delivered; let drain() return
                self._queue.get_nowait()
                self._queue.task_done()


class Connection:
    """The server side of one socket. Build it for an admitted socket, then ``await run()``."""

    def __init__(self, ws: ServerConnection, runtime: Runtime, *, user_id: str,
                 params: ConnectParams) -> None:
        self.ws = ws
        self.runtime = runtime
        self.user_id = user_id
        self.params = params
        self.conversation = Conversation(Role.SERVER)
        self.record: ConversationRecord | None = None
        self._holds_service = False
        self.service: Service | None = None
        self.voice: VoiceInput | None = None
        self._loop = asyncio.get_running_loop()
        self._limits = runtime.limits
        self._limiter = FrameRateLimiter(self._limits.frames_per_second, clock=self._loop.time)
        self._audio_clock = AudioClock(self._limits.max_audio_ahead_s)
        self._recognition_prepared = False
        self._send_lock = asyncio.Lock()
        self._turns: deque[_Turn] = deque()
        self._events: list[tuple[float, str]] = []
        self._wake = asyncio.Event()
        self._busy = False
        self._last_activity = self._loop.time()
        self._closing = False
        self._closer: asyncio.Task[None] | None = None
        # Barge-in: set while a voice message streams and the user starts speaking.
        self._barge_in = asyncio.Event()
        # The pause between two pieces of agent audio, woken early by a barge-in (see _pause_playback).
        self._playback_pause: asyncio.Future[None] | None = None
        self._streaming_voice = False
        # Loop time at which the client will have played all agent audio sent so far.
        self._play_until = 0.0
        self._worker: asyncio.Task[None] | None = None
        profile = runtime.profile
        # One generator per connection: a profile's draws are reproducible for a given connection order.
        self._rng = random.Random(f"{profile.seed}/{runtime.counters.connections_total}")
        self._link = None if profile.network.perfect else _Link(ws, profile.network, self._rng, runtime)

    # --- the reader -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the socket until it closes. Never raises: faults close this connection with 1011."""
        watchdog = asyncio.create_task(self._watch_idle())
        try:
            # Keep reading after a close starts: the peer's close reply queues behind its earlier frames.
            async for message in self.ws:
                if self._closing:
                    continue  # the close frame is on its way; later frames change nothing
                try:
                    await self._on_message(message)
                except Refusal as refusal:
                    self._close(refusal.close_code, refusal.reason)
                except _Closing:
                    pass
                except Exception:
                    logger.exception("connection of user %s failed", self.user_id)
                    self._close(CloseCode.INTERNAL_ERROR, "internal error")
        except ConnectionClosed:
            pass
        finally:
            self._closing = True
            for task in (watchdog, self._worker):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (watchdog, self._worker) if t is not None), return_exceptions=True)
            if self._closer is not None:
                await asyncio.gather(self._closer, return_exceptions=True)
            if self._link is not None:
                self._link.close()
            if self.voice is not None:
                self.voice.close()
            self._release()
            self.conversation.connection_closed(self.ws.close_code, self.ws.close_reason or "")

    async def _on_message(self, message: str | bytes) -> None:
        self.runtime.counters.frames_in += 1
        # A reader that fell behind (the loop is busy) takes queued frames in a burst: each is charged at
        # its arrival (server.StampedConnection), and the bucket grows by the loop's lag because the frames
        # of one socket read share one arrival; only a client over the limit is closed.
        arrivals = getattr(self.ws, "arrivals", None)
        arrived = arrivals.popleft() if arrivals else None
        if not self._limiter.allow(slack_s=self.runtime.loop_lag_s, at=arrived):
            raise Refusal(CloseCode.RATE_LIMITED,
                          f"more than {self._limits.frames_per_second:g} frames a second; send fewer, larger chunks")
        if isinstance(message, bytes):
            await self._send_error(400, "a binary frame: every message is one JSON object in a text frame "
                                        "(protocol.md section 1); send the same JSON as text")
            return
        # Only a \u escape can put a lone surrogate in a string (the socket checked the frame is UTF-8), and
        # it must be refused before the state machine takes the frame.
        if "\\u" in message:
            where = surrogate_in_json(message)
            if where is not None:
                await self._send_error(400, f"{where}: holds a lone UTF-16 surrogate (half of a character, such "
                                            "as an emoji cut in two), which is not valid Unicode; send whole "
                                            "characters")
                return
        try:
            self.conversation.receive(message)
        except FrameError as exc:
            await self._send_error(400, str(exc))
            return
        except RemoteProtocolError as exc:
            if isinstance(exc.frame, (StartConversation, ContinueConversation)) \
                    and self.conversation.state is not State.CONNECTED:
                raise Refusal(CloseCode.BAD_REQUEST, f"{exc.frame.type} sent twice: a connection initialises one "
                                                     "conversation, once") from exc
            await self._send_error(400, str(exc))
            return
        # The drain half of the receive contract: the conversation keeps nothing once its frames are taken.
        for accepted in self.conversation.events_received():
            await self._dispatch(accepted)

    async def _dispatch(self, frame: Frame) -> None:
        if isinstance(frame, StartConversation):
            await self._start(frame)
        elif isinstance(frame, ContinueConversation):
            await self._continue(frame)
        elif isinstance(frame, NewTextMessage):
            await self._on_text(frame)
        elif isinstance(frame, NewAudioMessage):
            await self._on_audio(frame)
        elif isinstance(frame, SwitchVadMode):
            await self._switch_vad(frame.vad_mode_on)
        elif isinstance(frame, ExtendTimeout):
            self._touch()
        elif isinstance(frame, FinishConversation):
            if self.record is not None:
                self.runtime.store.finish(self.record)
            self._close(CloseCode.NORMAL, "conversation finished")
        elif isinstance(frame, CloseConnection):
            self._close(CloseCode.NORMAL, "connection closed by client; the conversation can be continued")

    # --- initialising -------------------------------------------------------------------------------------------

    async def _start(self, frame: StartConversation) -> None:
        service = self.runtime.services.get(frame.service_id)
        if service is None:
            raise Refusal(CloseCode.NOT_FOUND, f"service {frame.service_id} not found")
        if frame.service_version_set_name not in service.version_sets:
            raise Refusal(CloseCode.NOT_FOUND, f"version set {frame.service_version_set_name!r} not found for "
                                               f"service {service.id}; have {', '.join(service.version_sets)}")
        record = self.runtime.store.start(self.user_id, service.id, frame.service_version_set_name,
                                          service.default_language)
        self._attach(record, service)
        await self._send(ConversationCreated(conversation_id=record.id))
        self._queue(_Greeting())

    async def _continue(self, frame: ContinueConversation) -> None:
        record = self.runtime.store.resume(self.user_id, frame.conversation_id)
        service = self.runtime.services.get(record.service_id)
        if service is None:  # the services directory changed under a running emulator
            self.runtime.store.release(record)
            raise Refusal(CloseCode.NOT_FOUND, f"service {record.service_id} of this conversation not found")
        self._attach(record, service)
        await self._send(ConversationContinued(conversation_id=record.id))

    def _attach(self, record: ConversationRecord, service: Service) -> None:
        self.record, self.service = record, service
        self._holds_service = True
        self.voice = VoiceInput(
            audio_format=self.params.audio_format or "pcm",
            phrases=service.english_phrases(),
            worker=self.runtime.recognition,
            max_utterance_s=self._limits.max_utterance_s,
            end_silence_ms=self.runtime.profile.endpointing.end_silence_ms,
        )
        self._worker = asyncio.create_task(self._work())

    # --- user input -----------------------------------------------------------------------------------------------

    async def _on_text(self, frame: NewTextMessage) -> None:
        event = frame.message_type == constants.MESSAGE_TYPE_EXTERNAL_EVENT
        limit = self._limits.max_event_chars if event else self._limits.max_text_chars
        if len(frame.text) > limit:
            what = "an external event" if event else "a user text message"
            await self._send_error(400, f"{frame.type}.text: {what} holds at most {limit} characters here, got "
                                        f"{len(frame.text)}; it was not taken. Send a shorter text")
            return
        if event:
            self._events.append((time.time(), frame.text))
            self._wake.set()
            return
        self._touch()
        self._queue(_TextTurn(frame.text, self._take_events(), self._loop.time()))

    def _prepare_recognition(self) -> None:
        """Speech is coming: make sure a recognition worker runs (they start lazily, see recognition.py)."""
        if not self._recognition_prepared:
            self._recognition_prepared = True
            self.runtime.recognition.prepare()

    async def _on_audio(self, frame: NewAudioMessage) -> None:
        voice = self.voice
        assert voice is not None  # the state machine admits audio only once initialised
        self._prepare_recognition()
        data = frame.audio_bytes()
        if data is None:
            self._touch()
            events = voice.end_of_audio()
        else:
            try:
                pcm = voice.decode(data)
            except AudioError as exc:
                raise Refusal(CloseCode.UNSUPPORTED_AUDIO,
                              short_reason(f"undecodable {voice.audio_format} audio: {exc}")) from exc
            problem = self._audio_clock.take(len(pcm) / _BYTES_PER_MS / 1000, self._loop.time())
            if problem is not None:
                await self._send_error(400, f"{frame.type}.audio: {problem}")
                return
            if not voice.vad_on:
                self._touch()  # push-to-talk audio is the user talking; VAD decides that itself
            try:
                events = voice.feed(pcm)
            except TooMuchAudio as exc:
                await self._send_error(400, f"{frame.type}.audio: {exc}")
                return
        for event in events:
            await self._on_voice_event(event)

    async def _on_voice_event(self, event: VoiceEvent) -> None:
        if event.kind == SPEECH_STARTED:
            self._touch()
            if self._streaming_voice:
                self._barge_in.set()
                _wake(self._playback_pause)
                self.runtime.counters.barge_ins += 1
            await self._send(VadSpeechStarted(audio_ms=event.audio_ms))
        elif event.kind == SPEECH_ENDED:
            self._touch()
            await self._send(VadSpeechEnded(audio_ms=event.audio_ms))
            assert event.utterance is not None
            self._queue(_SpeechTurn(event.utterance, self._take_events(), self._loop.time()))
        elif event.kind == SPEECH_RESET_ZERO:
            await self._send(VadSpeechResetZero(audio_ms=event.audio_ms))
            self._wake.set()  # events held back for this speech may go now
        elif event.kind == AUDIO_ENDED:
            assert event.utterance is not None
            self._queue(_SpeechTurn(event.utterance, self._take_events(), self._loop.time()))

    async def _switch_vad(self, on: bool) -> None:
        voice = self.voice
        assert voice is not None
        if on and voice.audio_format != "pcm":
            raise Refusal(CloseCode.UNSUPPORTED_AUDIO,
                          f"VAD needs audio_format=pcm, this connection has {voice.audio_format}; reconnect with pcm")
        if on:
            self._prepare_recognition()
        voice.set_vad(on)
        await self._send(VadModeSwitched(vad_mode_on=on))
        self._wake.set()

    def _touch(self) -> None:
        self._last_activity = self._loop.time()

    def _queue(self, turn: _Turn) -> None:
        self._turns.append(turn)
        self._wake.set()

    def _take_events(self) -> tuple[tuple[float, str], ...]:
        """Empty the event buffer into the turn being formed: events ride with the next interaction."""
        events = tuple(self._events)
        self._events.clear()
        return events

    def _user_input_pending(self) -> bool:
        return bool(self._turns) or (self.voice is not None and self.voice.pending)

    # --- interactions ---------------------------------------------------------------------------------------------

    async def _work(self) -> None:
        """Run interactions one at a time until the connection closes."""
        try:
            while True:
                turn = await self._next_turn()
                await self._interact(turn)
        except (ConnectionClosed, _Closing):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("interaction failed for user %s", self.user_id)
            self._close(CloseCode.INTERNAL_ERROR, "internal error")

    async def _next_turn(self) -> _Turn:
        while True:
            if self._turns:
                return self._turns.popleft()
            if self._events and not self._user_input_pending():
                return _EventTurn(self._loop.time())
            self._wake.clear()
            await self._wake.wait()

    async def _interact(self, turn: _Turn) -> None:
        record, service = self.record, self.service
        assert record is not None and service is not None
        self._busy = True
        try:
            interaction_id = new_id()
            if isinstance(turn, _Greeting):
                reply = AgentReply(text=service.greeting_text(record.version_set, record.language),
                                   language=record.language)
                agent_turn = None
            else:
                if isinstance(turn, _EventTurn):
                    events = self._take_events()
                else:
                    events = turn.events
                agent_turn = await self._agent_turn(turn, events, record, service)
                reply = await self._ask_agent(agent_turn)
            interrupted = False
            filler_said = False
            if reply.tool is not None and agent_turn is not None:
                interrupted, filler_said = await self._run_tool(reply, agent_turn)
            if not interrupted and not isinstance(turn, _Greeting):
                interrupted = await self._think(turn.at, reply, record, filler_said=filler_said)
            answer_id = new_id()
            sent, interrupted = ("", True) if interrupted else await self._speak(reply.text, reply.language, answer_id)
            record.history.append(("agent", sent))
            completed = reply.end_conversation and not interrupted
            record.interactions += 1
            self.runtime.counters.interactions += 1
            await self._send(InteractionComplete(message_id=answer_id, interaction_id=interaction_id,
                                                 full_message=sent, conversation_completed=completed))
            if completed:
                self.runtime.store.finish(record)
                self._close(CloseCode.NORMAL, "conversation completed by the agent")
                raise _Closing
        finally:
            self._busy = False
            self._touch()  # the idle window starts when the agent has finished its turn

    async def _agent_turn(self, turn: _Turn, events: tuple[tuple[float, str], ...], record: ConversationRecord,
                          service: Service) -> AgentTurn:
        """Say which user message this interaction answers, and build what the agent sees."""
        language = record.language
        if isinstance(turn, _SpeechTurn):
            text = await turn.utterance.transcript()
            language = "eng"  # the recognizer understands English only
        elif isinstance(turn, _TextTurn):
            text = turn.text
            language = await self._loop.run_in_executor(
                self.runtime.executor, lambda: detect_language(text, service, current=record.language))
        else:
            text = ""
        if not isinstance(turn, _EventTurn):
            await self._send(UserMessageAvailable(message_id=new_id(), user_message=text))
        agent_turn = AgentTurn(text=text, language=language, events=events, history=tuple(record.history),
                               conversation_id=record.id, service=service, version_set=record.version_set)
        record.language = language
        record.history.extend(("event", event_text) for _, event_text in events)
        if text:
            record.history.append(("user", text))
        return agent_turn

    async def _ask_agent(self, turn: AgentTurn) -> AgentReply:
        try:
            result = await self._loop.run_in_executor(self.runtime.executor, self.runtime.agent, turn)
            return as_reply(result, turn)
        except Exception as exc:
            logger.exception("the agent failed on %r", turn.text)
            await self._send_error(500, short_reason(f"the agent failed: {exc!r}"))
            self._close(CloseCode.INTERNAL_ERROR, "the agent failed")
            raise _Closing from exc

    async def _think(self, input_at: float, reply: AgentReply, record: ConversationRecord, *,
                     filler_said: bool) -> bool:
        """Wait out the profile's response delay (plus the version set's), counted from ``input_at``; say a
        filler meanwhile if the turn is slow. True if the user barged in on the filler."""
        timing = self.runtime.profile.response
        extra_s = self.service.version_set(record.version_set).delay_s if self.service is not None else 0.0
        delay_s = (timing.draw(self._rng) if timing is not None else 0.0) + extra_s
        if delay_s <= 0:
            return False
        answer_at = input_at + delay_s
        if (timing is not None and timing.filler_over_s is not None and delay_s > timing.filler_over_s
                and not filler_said):
            await asyncio.sleep(max(0.0, input_at + timing.filler_after_s - self._loop.time()))
            if self._loop.time() < answer_at:
                filler = filler_text(AgentReply(text=reply.text, language=reply.language))
                await self._action({"type": constants.ACTION_TOO_LONG, "filler": filler})
                _, interrupted = await self._speak(filler, reply.language, new_id())
                if interrupted:
                    return True
        await asyncio.sleep(max(0.0, answer_at - self._loop.time()))
        return False

    async def _run_tool(self, reply: AgentReply, turn: AgentTurn) -> tuple[bool, bool]:
        """Run the reply's tool; say a filler under its own message id if it is slow.

        Returns (barged in, a filler was said)."""
        tool = reply.tool
        assert tool is not None
        await self._action({"type": constants.ACTION_TOOL_CALL_STARTED, "tool_name": tool.name})
        started = self._loop.time()
        said = False
        running = asyncio.create_task(asyncio.sleep(tool.seconds))
        try:
            if tool.seconds > self._limits.slow_tool_s:
                done, _ = await asyncio.wait({running}, timeout=self._limits.filler_after_s)
                if not done:
                    filler = filler_text(reply)
                    await self._action({"type": constants.ACTION_TOO_LONG, "tool_name": tool.name,
                                        "filler": filler})
                    _, interrupted = await self._speak(filler, reply.language, new_id())
                    said = True
                    if interrupted:
                        return True, said
            await running
        finally:
            running.cancel()
        await self._action({"type": constants.ACTION_TOOL_CALL_ENDED, "tool_name": tool.name,
                            "duration_ms": round((self._loop.time() - started) * 1000)})
        return False, said

    async def _action(self, action: dict[str, object]) -> None:
        if self.params.admits_action(str(action["type"])):
            await self._send(CurrentAgentAction(action=action))

    async def _speak(self, text: str, language: str, message_id: str) -> tuple[str, bool]:
        """Send one message as pieces; return (the text actually sent, whether the user barged in)."""
        if self.params.response_format == "text":
            pieces = text_pieces(text)
            for number, piece in enumerate(pieces):
                await self._send(NewMessage(message=piece, stop=number == len(pieces) - 1,
                                            sequence_number=number, message_id=message_id))
            return text, False
        self._barge_in.clear()
        self._streaming_voice = True
        try:
            return await self._stream_voice(text, language, message_id)
        finally:
            self._streaming_voice = False

    async def _stream_voice(self, text: str, language: str, message_id: str) -> tuple[str, bool]:
        audio_format = self.params.audio_format or "pcm"
        rendered = await asyncio.wrap_future(
            self.runtime.speech_cache.get(text, language, audio_format, self.runtime.executor))
        lead_s = constants.AGENT_MAX_LEAD_MS / 1000
        sent: list[str] = []
        last = len(rendered.pieces) - 1
        for number, piece in enumerate(rendered.pieces):
            if self.runtime.realtime:
                delay = self._play_until - lead_s - self._loop.time()
                if delay > 0 and not self._barge_in.is_set():
                    await self._pause_playback(delay)
            if self._barge_in.is_set():
                await self._send(NewMessage.audio_piece(b"", stop=True, sequence_number=number,
                                                        message_id=message_id, transcript_alignment=()))
                self._play_until = self._loop.time()  # the client flushes what it had not played
                return "".join(sent), True
            await self._send(NewMessage.audio_piece(piece.audio, stop=number == last, sequence_number=number,
                                                    message_id=message_id, transcript_alignment=piece.alignment))
            sent.append(piece.text)
            self._play_until = max(self._play_until, self._loop.time()) + piece.duration_ms / 1000
        return "".join(sent), False

    async def _pause_playback(self, delay_s: float) -> None:
        """Wait ``delay_s`` before the next piece, or until the user barges in.

        One future and one timer: every speaking session pauses about six times a second, and
        ``asyncio.wait_for`` on the barge-in event would start a task and raise a TimeoutError each time.
        """
        pause = self._loop.create_future()
        self._playback_pause = pause
        timer = self._loop.call_later(delay_s, _wake, pause)
        try:
            await pause
        finally:
            timer.cancel()
            self._playback_pause = None

    # --- sending and closing -------------------------------------------------------------------------------------

    async def _send(self, frame: Frame) -> None:
        """Check ``frame`` against the state machine and write it; raise _Closing once closing."""
        if self._closing:
            raise _Closing
        async with self._send_lock:
            self.conversation.send(frame)
            for text in self.conversation.data_to_send():
                if self._link is not None:
                    self._link.put(text)
                else:
                    await self.ws.send(text)
                    self.runtime.counters.frames_out += 1

    async def _send_error(self, code: int, description: str) -> None:
        """Answer ``server.error``; long quoted values are cut so the frame stays small (inbound.py)."""
        await self._send(ServerError(http_error_code=code, error_description=error_description(description)))

    def _close(self, code: int, reason: str) -> None:
        """Start closing with ``code`` (the first close wins); the reader ends when the socket has closed."""
        if self._closer is not None:
            return
        self._closing = True
        self._release()  # a client may reconnect as soon as it sees the close frame
        self._closer = asyncio.create_task(self._close_after_link(int(code), short_reason(reason)))

    async def _close_after_link(self, code: int, reason: str) -> None:
        """Close once the frames still on the simulated link are delivered (they were sent before)."""
        if self._link is not None:
            await self._link.drain(timeout_s=self._limits.close_timeout_s)
        await self.ws.close(code, reason)

    def _release(self) -> None:
        """Give up this connection's hold on (user, service), once."""
        if self.record is not None and self._holds_service:
            self._holds_service = False
            self.runtime.store.release(self.record)

    async def _watch_idle(self) -> None:
        idle_s = self._limits.idle_timeout_s
        while not self._closing:
            remaining = self._last_activity + idle_s - self._loop.time()
            if remaining <= 0 and not self._busy:
                self._close(CloseCode.IDLE_TIMEOUT,
                            f"no user activity for {idle_s:g} s; send client.extend-timeout to stay connected")
                return
            await asyncio.sleep(max(remaining, min(idle_s, 0.5)) if remaining > 0 else min(idle_s, 0.5))


def _wake(pause: asyncio.Future[None] | None) -> None:
    """End a playback pause (if one is waiting and not over yet)."""
    if pause is not None and not pause.done():
        pause.set_result(None)


__all__ = ["MAX_REASON_BYTES", "AudioClock", "Connection", "short_reason"]
