"""Matching user turns to the server's interactions, in the order the protocol promises.

See the theory of operation in :mod:`amigo_lab.session`.
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
from amigo_lab.session.errors import SessionError, TurnError
from amigo_lab.session.turns import Reply, Turn

logger = logging.getLogger("amigo_lab.session")

SAMPLE_RATE = _audio.SAMPLE_RATE


# --- matching turns to interactions ----------------------------------------------------------------------

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

    def everyone(self) -> list["_Pending"]:
        return [self, *self.followers]


@dataclass(eq=False)
class _Interaction:
    """What has arrived of the interaction in flight."""

    owner: _Pending
    started: Stamp
    user_text: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    filler_text: str | None = None
    texts: dict[str, list[str]] = field(default_factory=dict)
    audio: dict[str, list[np.ndarray]] = field(default_factory=dict)
    open_messages: set[str] = field(default_factory=set)
    interrupted: bool = False
    user_message: Stamp | None = None
    first_piece: Stamp | None = None
    first_audio: Stamp | None = None


def _same_text(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


class _TurnTracker:
    """Matches interactions to turns (see the module docstring). Runs on the loop thread only."""

    def __init__(self, new_turn: Callable[[str, str | None], Turn]) -> None:
        self._new_turn = new_turn
        self.greeting: _Pending | None = None
        self.users: collections.deque[_Pending] = collections.deque()
        self.events: list[_Pending] = []
        self.ptt_open: list[_Pending] = []
        self.current: _Interaction | None = None
        self.last_vad_end: Stamp | None = None

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
        contributors = self.ptt_open + ([extra] if extra is not None else [])
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

    # --- the server's side ----------------------------------------------------------------------------

    def _begin(self, frame: Frame, entry: Mapping[str, Any]) -> _Interaction:
        events, self.events = self.events, []
        owner: _Pending | None = None
        if isinstance(frame, UserMessageAvailable):
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
        elif events:
            owner, events = events[0], events[1:]
        else:
            owner = _Pending(self._new_turn("agent", None), "agent")
        owner.followers.extend(events)
        self.current = _Interaction(owner=owner, started=_stamp(entry))
        return self.current

    def on_frame(self, frame: Frame, entry: Mapping[str, Any], samples: np.ndarray | None) -> None:
        """Feed a received frame that the state machine accepted."""
        if isinstance(frame, (UserMessageAvailable, CurrentAgentAction, NewMessage, InteractionComplete)):
            current = self.current or self._begin(frame, entry)
            if isinstance(frame, UserMessageAvailable):
                current.user_text = frame.user_message
                current.user_message = _stamp(entry)
            elif isinstance(frame, CurrentAgentAction):
                action = dict(frame.action)
                current.actions.append(action)
                if frame.action_type == C.ACTION_TOO_LONG and isinstance(action.get("filler"), str):
                    current.filler_text = action["filler"]
            elif isinstance(frame, NewMessage):
                self._piece(current, frame, entry, samples)
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
                    pending.end = self.last_vad_end
                    break
        elif isinstance(frame, VadSpeechResetZero):
            self._reset_zero()
        elif isinstance(frame, ServerError):
            self._error(TurnError(frame.http_error_code, frame.error_description))

    def _piece(self, current: _Interaction, frame: NewMessage, entry: Mapping[str, Any],
               samples: np.ndarray | None) -> None:
        stamp = _stamp(entry)
        current.first_piece = current.first_piece or stamp
        if frame.stop:
            current.open_messages.discard(frame.message_id)
        else:
            current.open_messages.add(frame.message_id)
        if samples is not None:
            current.first_audio = current.first_audio or stamp
            current.audio.setdefault(frame.message_id, []).append(samples)
        else:
            current.texts.setdefault(frame.message_id, []).append(frame.message)

    def _complete(self, current: _Interaction, frame: InteractionComplete, entry: Mapping[str, Any]) -> None:
        self.current = None
        owner = current.owner
        answer = current.audio.get(frame.message_id)
        if answer is None and current.audio and current.filler_text is None:
            # No audio under the answer's id and no filler announced: a server that numbers messages
            # differently; all audio of the interaction is the answer. (After a filler, none is.)
            answer = [a for pieces in current.audio.values() for a in pieces]
        filler_text = current.filler_text
        if filler_text is None:
            others = [m for m in current.texts if m != frame.message_id]
            if others:
                filler_text = "".join(current.texts[others[0]])
        timings: dict[str, Any] = {
            "sent": owner.sent,
            "end_of_turn": owner.end,
            "user_message": current.user_message,
            "first_piece": current.first_piece,
            "first_audio": current.first_audio,
            "complete": _stamp(entry),
        }
        end, first = owner.end, current.first_piece
        timings["latency_ms"] = (first["t"] - end["t"]) * 1000.0 if end and first else None
        reply = Reply(
            text=frame.full_message,
            user_text=current.user_text,
            audio=np.concatenate(answer).astype(np.float32, copy=False) if answer else np.zeros(0, np.float32),
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

    def _error(self, error: TurnError) -> None:
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

    def fail_all(self, error: BaseException) -> None:
        """The connection is gone: every turn waiting on it fails with ``error``."""
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
                each.turn._fail(error)
