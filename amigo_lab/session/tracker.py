"""Matching user turns to the server's interactions, order-robustly, and putting each Reply together.

See the theory of operation in :mod:`amigo_lab.session`. Rules, each stated once:

* an interaction begins with the first of ``user-message-available``, ``current-agent-action``, a
  ``new-message`` piece (JSON or binary) or ``interaction-complete``; it ends at ``interaction-complete``;
* its owner: the greeting while it is pending (a ``user-message-available`` instead resolves the greeting
  empty first: the server sent none); else the oldest user turn waiting (agent output that arrives before the
  transcript belongs to it, so does a reply with no transcript at all); else the oldest external event; else a
  new Turn (speech the server's VAD heard, or an agent-started interaction);
* a second ``user-message-available`` or ``interaction-complete`` that repeats one already seen, and pieces
  of a message whose interaction already completed, are noted and change nothing (their audio stays in the log);
* ``server.error`` 400 while an interaction is in flight voids nothing (protocol.md §5: a recoverable
  mistake); outside one it fails the oldest waiting turn (the server refused it); any other error voids the
  interaction in flight;
* the reply's text is ``full_message``, or when the server sent none, the answer's text pieces (text
  responses) or its alignment's characters (voice responses);
* filler: a message other than the one ``interaction-complete`` names; its audio is not the answer's.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from amigo_lab import audio as _audio
from amigo_lab.protocol import (
    CurrentAgentAction,
    Frame,
    InteractionComplete,
    NewMessage,
    ServerError,
    UserMessageAvailable,
    VadSpeechEnded,
    VadSpeechResetZero,
    VadSpeechStarted,
)
from amigo_lab.protocol import constants as C
from amigo_lab.protocol.fold import LATENCIES
from amigo_lab.session.agent_audio import MessageAudio
from amigo_lab.session.errors import SessionError, TurnError
from amigo_lab.session.turns import Reply, Turn

logger = logging.getLogger("amigo_lab.session")

SAMPLE_RATE = _audio.SAMPLE_RATE
#: The ``http_error_code`` of a recoverable mistake: the connection stays open and nothing is voided.
RECOVERABLE_ERROR = 400

Stamp = dict  # {"t": float, "wall": datetime}


def _stamp(entry: Mapping[str, Any]) -> Stamp:
    return {"t": entry["t"], "wall": entry["wall"]}


@dataclass(eq=False)
class _Pending:
    """A turn the client is waiting on, with what the tracker needs to know about it."""

    turn: Turn
    kind: str
    text: str | None = None
    vad: bool = False
    sent: Stamp | None = None
    end: Stamp | None = None
    audio_done: bool = False
    heard_speech_end: bool = False
    # The server discarded speech (reset-zero) while this audio was still streaming; if no more speech
    # is heard before its last chunk leaves, the turn produced nothing.
    reset_while_streaming: bool = False
    followers: list["_Pending"] = field(default_factory=list)
    # What left for this turn, kept until the server answers it, so a turn the socket lost can be sent again.
    sent_items: list[Any] = field(default_factory=list)
    answered: bool = False

    @property
    def key(self) -> str | None:
        """The turn's id: the fold's key for this input."""
        return self.turn.id

    def everyone(self) -> list["_Pending"]:
        return [self, *self.followers]

    def reset_for_resend(self) -> None:
        """Forget what was sent: the frames go out again on a new socket."""
        self.sent = self.end = None
        self.audio_done = self.heard_speech_end = self.reset_while_streaming = False
        self.followers = []


@dataclass(eq=False)
class _Interaction:
    """What has arrived of the interaction in flight."""

    owner: _Pending
    started: Stamp
    user_text: str | None = None
    user_message_id: str | None = None
    actions: list[Any] = field(default_factory=list)
    filler_text: str | None = None
    texts: dict[str, list[str]] = field(default_factory=dict)
    chars: dict[str, list[str]] = field(default_factory=dict)
    audio: dict[str, MessageAudio] = field(default_factory=dict)
    open_messages: set[str] = field(default_factory=set)
    last_message: str | None = None
    interrupted: bool = False
    user_message: Stamp | None = None
    first_piece: Stamp | None = None
    first_audio: Stamp | None = None


def _same_text(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


class _TurnTracker:
    """Matches interactions to turns (see the module docstring). Runs on the loop thread only."""

    def __init__(self, new_turn: Callable[[str, str | None], Turn], *, audio_format: str = "pcm",
                 agent_rate: int = SAMPLE_RATE, voice: bool = True,
                 on_note: Callable[..., None] | None = None) -> None:
        self._new_turn = new_turn
        self._audio_format = audio_format
        self._agent_rate = agent_rate
        self._voice = voice
        self._note = on_note or (lambda description, message_id=None, warn=None: logger.info("%s", description))
        self.greeting: _Pending | None = None
        self.users: collections.deque[_Pending] = collections.deque()
        self.events: list[_Pending] = []
        self.ptt_open: list[_Pending] = []
        self.current: _Interaction | None = None
        self.last_vad_end: Stamp | None = None
        # What the last completed interaction was, to recognise repeats and late pieces (bounded: one each).
        self._last_complete: tuple[str, str] | None = None
        self._last_user_message_id: str | None = None
        self._completed_messages: set[str] = set()
        #: Set by the session: ``fold_record(message_id, interaction_id)`` -> the fold's record, or None.
        self.fold_record: Callable[[str, str], Any] = lambda message_id, interaction_id: None

    # --- the client's side ----------------------------------------------------------------------------

    def expect_greeting(self, pending: _Pending) -> None:
        self.greeting = pending

    def user_sent(self, pending: _Pending, entry: Mapping[str, Any]) -> None:
        """A text turn left: it waits for its interaction."""
        pending.sent = pending.end = _stamp(entry)
        self.users.append(pending)

    def event_sent(self, pending: _Pending, entry: Mapping[str, Any]) -> None:
        pending.sent = pending.end = _stamp(entry)
        self.events.append(pending)

    def audio_sent(self, pending: _Pending, entry: Mapping[str, Any]) -> None:
        """A chunk of a send_audio turn left."""
        if pending.sent is None:
            pending.sent = _stamp(entry)
            if pending.vad:
                self.users.append(pending)  # the server decides where the turn ends
            elif pending not in self.ptt_open:
                self.ptt_open.append(pending)

    def audio_ended(self, entry: Mapping[str, Any], extra: _Pending | None) -> None:
        """``audio: null`` left: every push-to-talk turn that contributed audio shares one interaction."""
        contributors = self.ptt_open + ([extra] if extra is not None and extra not in self.ptt_open else [])
        self.ptt_open = []
        if not contributors:
            return
        owner, *followers = contributors
        owner.followers.extend(followers)
        owner.end = _stamp(entry)
        if owner.sent is None:
            owner.sent = owner.end
        for pending in contributors:
            pending.audio_done = True
        self.users.append(owner)

    def forget(self, pending: _Pending) -> None:
        """Stop tracking a turn (it failed before the server could answer it)."""
        if self.greeting is pending:
            self.greeting = None
        for queue in (self.users, self.events, self.ptt_open):
            if pending in queue:
                queue.remove(pending)

    # --- the server's side ----------------------------------------------------------------------------

    def _begin(self, frame: Frame, entry: Mapping[str, Any]) -> _Interaction:
        events, self.events = self.events, []
        owner: _Pending | None = None
        if isinstance(frame, UserMessageAvailable):
            if self.greeting is not None:
                self._resolve_empty_greeting(entry)
            head = self.users[0] if self.users else None
            if head is not None and (head.kind != "text" or _same_text(head.text, frame.user_message)):
                owner = self.users.popleft()
            elif events:
                owner, events = events[0], events[1:]
            elif head is not None:
                owner = self.users.popleft()  # a server may normalise the text it echoes
            else:
                owner = _Pending(self._new_turn("voice", None), "voice")
            if owner.vad or owner.kind == "voice":
                owner.end = self.last_vad_end or owner.end
        elif self.greeting is not None:
            owner, self.greeting = self.greeting, None
        elif self.users and (self.users[0].kind != "audio" or not self.users[0].vad
                             or self.users[0].heard_speech_end):
            owner = self.users.popleft()  # agent output before (or without) the transcript: the waiting turn's
        elif events:
            owner, events = events[0], events[1:]
        else:
            owner = _Pending(self._new_turn("agent", None), "agent")
        owner.followers.extend(events)
        for pending in owner.everyone():
            pending.answered = True
            pending.sent_items = []
        self.current = _Interaction(owner=owner, started=_stamp(entry))
        return self.current

    def _resolve_empty_greeting(self, entry: Mapping[str, Any]) -> None:
        """No greeting came before the first user interaction: the greeting resolves empty."""
        greeting, self.greeting = self.greeting, None
        assert greeting is not None
        self._note("no greeting arrived before the first user interaction; the greeting resolves empty")
        greeting.turn._resolve(Reply(text="", user_text=None, audio=np.zeros(0, np.float32), sr=SAMPLE_RATE,
                                     message_id="", interaction_id="",
                                     timings={"sent": greeting.sent, "end_of_turn": greeting.end,
                                              "user_message": None, "first_piece": None, "first_audio": None,
                                              "complete": _stamp(entry), **dict.fromkeys(LATENCIES)}))

    def on_frame(self, frame: Frame, entry: Mapping[str, Any], audio: bytes | None, *, rate: int | None = None,
                 error: TurnError | None = None) -> None:
        """Feed a received frame (``audio``: the piece's wire audio for voice responses)."""
        if isinstance(frame, (UserMessageAvailable, CurrentAgentAction, NewMessage, InteractionComplete)):
            if self._repeat(frame):
                return
            current = self.current or self._begin(frame, entry)
            if isinstance(frame, UserMessageAvailable):
                if current.user_message_id is not None:
                    self._note(f"a second user-message-available ({frame.message_id}) in one interaction; "
                               "the first one stands", frame.message_id or None)
                    return
                current.user_text = frame.user_message
                current.user_message_id = frame.message_id
                current.user_message = _stamp(entry)
                self._last_user_message_id = frame.message_id or None
            elif isinstance(frame, CurrentAgentAction):
                action = frame.action
                current.actions.append(dict(action) if isinstance(action, Mapping) else action)
                if (isinstance(action, Mapping) and action.get("type") == C.ACTION_TOO_LONG
                        and isinstance(action.get("filler"), str)):
                    current.filler_text = action["filler"]
            elif isinstance(frame, NewMessage):
                self._piece(current, frame, entry, audio, rate)
            else:
                self._complete(current, frame, entry)
        elif isinstance(frame, VadSpeechStarted):
            for pending in self.users:
                if pending.vad and not pending.audio_done:
                    pending.reset_while_streaming = False  # speech again: the earlier discard no longer decides
            if self.current is not None and self.current.first_piece is not None and self.current.open_messages:
                self.current.interrupted = True
        elif isinstance(frame, VadSpeechEnded):
            self.last_vad_end = _stamp(entry)
            for pending in self.users:
                if pending.vad and not pending.heard_speech_end:
                    pending.heard_speech_end = True
                    pending.answered = True
                    pending.sent_items = []
                    pending.end = self.last_vad_end
                    break
        elif isinstance(frame, VadSpeechResetZero):
            self._reset_zero()
        elif isinstance(frame, ServerError):
            self._error(frame, error or TurnError(frame.http_error_code or 0, frame.error_description or ""))

    def on_binary(self, data: bytes, entry: Mapping[str, Any]) -> None:
        """A binary message: audio of the message open in the interaction in flight."""
        current = self.current
        if current is None:
            if self._completed_messages:
                self._note("binary audio after its interaction completed; it stays in the log")
                return
            current = self._begin(NewMessage(message=""), entry)
        message_id = current.last_message or ""
        stamp = _stamp(entry)
        current.first_piece = current.first_piece or stamp
        current.first_audio = current.first_audio or stamp
        self._audio_of(current, message_id).add(data)

    def open_message(self) -> str | None:
        """The message binary audio belongs to: the last one with a piece in the interaction in flight."""
        return self.current.last_message if self.current is not None else None

    def _repeat(self, frame: Frame) -> bool:
        """True for a frame that repeats what an earlier one already settled (noted, otherwise ignored)."""
        if self.current is not None:
            return False
        if isinstance(frame, InteractionComplete) and self._last_complete == (frame.message_id, frame.interaction_id):
            self._note(f"interaction-complete for {frame.message_id} repeated; ignored", frame.message_id or None)
            return True
        if isinstance(frame, UserMessageAvailable) and frame.message_id and \
                frame.message_id == self._last_user_message_id:
            self._note(f"user-message-available {frame.message_id} repeated; ignored", frame.message_id)
            return True
        if isinstance(frame, NewMessage) and frame.message_id in self._completed_messages:
            self._note(f"a piece of message {frame.message_id} after its interaction completed; its audio stays "
                       "in the log but not in the reply", frame.message_id or None)
            return True
        return False

    def _audio_of(self, current: _Interaction, message_id: str) -> MessageAudio:
        audio = current.audio.get(message_id)
        if audio is None:
            audio = current.audio[message_id] = MessageAudio(self._audio_format, self._agent_rate)
        return audio

    def _piece(self, current: _Interaction, frame: NewMessage, entry: Mapping[str, Any], audio: bytes | None,
               rate: int | None) -> None:
        stamp = _stamp(entry)
        current.first_piece = current.first_piece or stamp
        current.last_message = frame.message_id
        if frame.stop:
            current.open_messages.discard(frame.message_id)
        else:
            current.open_messages.add(frame.message_id)
        if audio is not None:
            if audio:
                current.first_audio = current.first_audio or stamp
            message = self._audio_of(current, frame.message_id)
            message.add_alignment(frame.transcript_alignment, message.duration_ms)
            message.add(audio, rate=rate)
            if frame.transcript_alignment:
                current.chars.setdefault(frame.message_id, []).extend(c for _, c in frame.transcript_alignment)
        else:
            current.texts.setdefault(frame.message_id, []).append(frame.message)

    def _complete(self, current: _Interaction, frame: InteractionComplete, entry: Mapping[str, Any]) -> None:
        self.current = None
        self._last_complete = (frame.message_id, frame.interaction_id)
        self._completed_messages = set(current.audio) | set(current.texts)
        owner = current.owner
        for message_id, message in current.audio.items():
            for note in message.notes:
                self._note(f"message {message_id}: {note}", message_id or None)
            said = message.disagreement()
            if said is not None:
                self._note(f"message {message_id}: {said}", message_id or None, warn="alignment")
        answer_id = frame.message_id
        if answer_id not in current.audio and answer_id not in current.texts:
            others = [m for m in (*current.audio, *current.texts)]
            if len(others) == 1 and current.filler_text is None:
                answer_id = others[0]  # a server that numbers messages differently: the one message is the answer
        answer = current.audio.get(answer_id)
        samples = answer.samples() if answer is not None else np.zeros(0, np.float32)
        filler_text = current.filler_text
        if filler_text is None:
            others = [m for m in current.texts if m != answer_id]
            if others:
                filler_text = "".join(current.texts[others[0]])
        text = frame.full_message
        if text is None:
            text = "".join(current.texts.get(answer_id, ())) or "".join(current.chars.get(answer_id, ()))
            self._note(f"interaction-complete without full_message; the reply's text is read from the pieces "
                       f"({len(text)} characters)", frame.message_id or None)
        timings: dict[str, Any] = {
            "sent": owner.sent,
            "end_of_turn": owner.end,
            "user_message": current.user_message,
            "first_piece": current.first_piece,
            "first_audio": current.first_audio,
            "complete": _stamp(entry),
        }
        record = self.fold_record(frame.message_id, frame.interaction_id)
        latencies = dict(record.latencies) if record is not None else {}
        timings.update({name: latencies.get(name) for name in LATENCIES})
        timings["stamps"] = dict(record.stamps) if record is not None else {}
        reply = Reply(
            text=text,
            user_text=current.user_text,
            audio=samples.astype(np.float32, copy=False),
            sr=SAMPLE_RATE,
            message_id=frame.message_id,
            interaction_id=frame.interaction_id,
            filler_text=filler_text,
            actions=tuple(current.actions),
            interrupted=current.interrupted,
            conversation_completed=frame.conversation_completed,
            timings=timings,
        )
        for pending in owner.everyone():
            pending.turn._resolve(reply)

    def _reset_zero(self) -> None:
        for pending in list(self.users):
            if pending.vad and not pending.heard_speech_end:
                if pending.audio_done:
                    self._discard(pending)
                else:
                    pending.reset_while_streaming = True  # decided when its last chunk leaves

    def vad_audio_done(self, pending: _Pending) -> None:
        """The last chunk of a VAD turn left: a turn whose only speech was discarded ends here."""
        pending.audio_done = True
        if pending.reset_while_streaming and not pending.heard_speech_end and pending in self.users:
            self._discard(pending)

    def _discard(self, pending: _Pending) -> None:
        self.users.remove(pending)
        error = SessionError("the server's VAD heard no speech long enough to be a turn in this audio "
                             f"(vad-speech-reset-zero; speech must last {C.VAD_MIN_SPEECH_MS} ms or more)")
        for each in pending.everyone():
            each.turn._fail(error)

    def _error(self, frame: ServerError, error: TurnError) -> None:
        if frame.http_error_code == RECOVERABLE_ERROR and self.current is not None:
            self._note(f"server.error 400 during an interaction ({error.description}); protocol.md §5: a "
                       "recoverable mistake voids nothing")
            return
        # protocol.md: an error before interaction-complete voids that interaction.
        if self.current is not None:
            victim, self.current = self.current.owner, None
        elif self.users:
            victim = self.users.popleft()
        elif self.ptt_open:
            victim, *rest = self.ptt_open
            victim.followers.extend(rest)
            self.ptt_open = []
        elif self.events:
            victim = self.events.pop(0)
        elif self.greeting is not None:
            victim, self.greeting = self.greeting, None
        else:
            logger.warning("server.error outside any turn: %s", error)
            return
        for pending in victim.everyone():
            pending.turn._fail(error)

    @property
    def idle(self) -> bool:
        """True when no turn waits for the server."""
        return not (self.current or self.greeting or self.users or self.events or self.ptt_open)

    def describe_missing(self) -> str:
        """What the server has not sent yet for the turns waiting on it, in one clause."""
        current = self.current
        if current is not None:
            got = ["user-message-available"] if current.user_message_id is not None else []
            pieces = sum(len(t) for t in current.texts.values()) + len(current.audio)
            if pieces:
                got.append("agent pieces")
            said = f"got {' and '.join(got)}, " if got else ""
            return f"{said}still waiting for server.interaction-complete of the {current.owner.kind} turn"
        if self.greeting is not None:
            return "waiting for the greeting (server.new-message, server.interaction-complete)"
        waiting = [*self.users, *self.events, *self.ptt_open]
        kind = waiting[0].kind if waiting else "user"
        return f"waiting for server.user-message-available and the reply to the {kind} turn"

    def resendable(self) -> list[_Pending]:
        """Turns that left but that the server never answered: they can go again on a new socket."""
        out: list[_Pending] = []
        for pending in [*self.users, *self.events, *self.ptt_open]:
            if pending.sent_items and not pending.answered and not pending.turn.done():
                out.extend(each for each in pending.everyone() if each.sent_items and each not in out)
        return out

    def fail_all(self, error: BaseException, *, keep: list[_Pending] = ()) -> None:  # type: ignore[assignment]
        """The connection is gone: every turn waiting on it fails with ``error``, but those in ``keep``."""
        waiting: list[_Pending] = []
        if self.current is not None:
            waiting.append(self.current.owner)
        if self.greeting is not None:
            waiting.append(self.greeting)
        waiting += [*self.users, *self.events, *self.ptt_open]
        self.current, self.greeting, self.events, self.ptt_open = None, None, [], []
        self.users.clear()
        for pending in waiting:
            for each in pending.everyone():
                if each not in keep:
                    each.turn._fail(error)
