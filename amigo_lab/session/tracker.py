"""Turns from the interaction fold: which Turn an interaction answers, and each Reply put together.

See the theory of operation in :mod:`amigo_lab.session`. The matching is not decided here: the session feeds
every logged entry to :class:`amigo_lab.protocol.fold.Fold` (sent frames tagged with the turn's id as the
fold's key) and hands its events to :meth:`_TurnTracker.on_events`. The rules the fold applies (order-robust
matching, no greeting, pairing by ``message_id``, what an error voids) are stated once, in its header. This
module only maps the fold's keys back to Turns and adds what the fold leaves to the client:

* the agent's audio of each message (:class:`~amigo_lab.session.agent_audio.MessageAudio`), kept only while
  its interaction is in flight;
* a key the fold made itself (speech the server's VAD heard, push-to-talk audio sent without a Turn) belongs
  to the oldest waiting audio Turn of that kind, else to a new Turn (``voice`` or ``agent``);
* a VAD Turn whose only speech the server discarded (``vad-speech-reset-zero``) fails once its audio is sent;
* which Turns the server has not answered yet (nothing received for their interaction), so the session can
  send them again after a reconnect, and what is still missing when the server falls silent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from amigo_lab import audio as _audio
from amigo_lab.protocol import (
    CurrentAgentAction,
    Frame,
    InteractionComplete,
    NewMessage,
    UserMessageAvailable,
    VadSpeechResetZero,
)
from amigo_lab.protocol import constants as C
from amigo_lab.protocol.fold import (
    LATENCIES,
    FoldEvent,
    InputDropped,
    Interaction,
    InteractionCompleted,
    InteractionStarted,
    InteractionVoided,
    SpeechDiscarded,
    UserTurnEnded,
)
from amigo_lab.protocol.fold import STAMPS as FOLD_STAMPS
from amigo_lab.session.agent_audio import MessageAudio
from amigo_lab.session.errors import SessionError, TurnError
from amigo_lab.session.turns import Reply, Turn

logger = logging.getLogger("amigo_lab.session")

SAMPLE_RATE = _audio.SAMPLE_RATE

Stamp = dict[str, Any]  # {"t": float, "wall": datetime}

_INTERACTION_FRAMES = (UserMessageAvailable, CurrentAgentAction, NewMessage, InteractionComplete)


def _stamp(entry: Mapping[str, Any]) -> Stamp:
    return {"t": entry["t"], "wall": entry["wall"]}


@dataclass(eq=False)
class _Pending:
    """A turn the client is waiting on, with what the session needs to know about it."""

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
    followers: list[_Pending] = field(default_factory=list)
    # What left for this turn, kept until the server answers it, so a turn the socket lost can be sent again.
    sent_items: list[Any] = field(default_factory=list)
    answered: bool = False
    matched: bool = False  # an interaction of the fold is (or was) this turn's

    @property
    def key(self) -> str | None:
        """The turn's id: the fold's key for this input."""
        return self.turn.id

    def everyone(self) -> list[_Pending]:
        return [self, *self.followers]

    def reset_for_resend(self) -> None:
        """Forget what was sent: the frames go out again on a new socket."""
        self.sent = self.end = None
        self.audio_done = self.heard_speech_end = self.reset_while_streaming = self.matched = False
        self.followers = []


class _TurnTracker:
    """Maps the fold's interactions to Turns and builds their Replies. Runs on the loop thread only."""

    def __init__(self, new_turn: Callable[[str, str | None], Turn], *, audio_format: str = "pcm",
                 agent_rate: int = SAMPLE_RATE, voice: bool = True,
                 on_note: Callable[..., None] | None = None,
                 wall_of: Callable[[float], datetime] | None = None) -> None:
        self._new_turn = new_turn
        self._audio_format = audio_format
        self._agent_rate = agent_rate
        self._voice = voice
        self._note = on_note or (lambda description, message_id=None, warn=None: logger.info("%s", description))
        self._wall_of = wall_of or (lambda t: datetime.now().astimezone() + timedelta(seconds=0 * t))
        self.greeting: _Pending | None = None
        self.ptt_open: list[_Pending] = []
        self._by_key: dict[str, _Pending] = {}        # waiting turns by id (pruned when they end)
        self._open: dict[int, list[_Pending]] = {}    # fold interaction index -> the turns it answers
        self._current: int | None = None              # the interaction in flight
        self._got: list[str] = []                     # what the server sent for it so far
        self._user_message: dict[int, Stamp] = {}
        self._errors: list[TurnError] = []            # server.error frames (redacted), for voided interactions
        self._audio: dict[str, MessageAudio] = {}     # message id -> its audio, while its interaction is open
        self._last_message: str | None = None

    # --- the client's side ----------------------------------------------------------------------------

    def register(self, pending: _Pending) -> None:
        """A turn's first frame is about to leave: its id now names it for the fold."""
        if pending.key is not None:
            self._by_key[pending.key] = pending

    def expect_greeting(self, pending: _Pending) -> None:
        self.greeting = pending

    def user_sent(self, pending: _Pending, entry: Mapping[str, Any]) -> None:
        """A text turn left."""
        pending.sent = pending.end = _stamp(entry)
        self.register(pending)

    def event_sent(self, pending: _Pending, entry: Mapping[str, Any]) -> None:
        """An external event left."""
        pending.sent = pending.end = _stamp(entry)
        self.register(pending)

    def audio_sent(self, pending: _Pending, entry: Mapping[str, Any]) -> None:
        """A chunk of a send_audio turn left."""
        if pending.sent is None:
            pending.sent = _stamp(entry)
            self.register(pending)
            if not pending.vad and pending not in self.ptt_open:
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
        self.register(owner)

    def vad_audio_done(self, pending: _Pending) -> None:
        """The last chunk of a VAD turn left: a turn whose only speech was discarded ends here."""
        pending.audio_done = True
        if pending.reset_while_streaming and not pending.heard_speech_end and not pending.matched:
            self._discard(pending)

    def forget(self, pending: _Pending) -> None:
        """Stop tracking a turn (it failed before the server could answer it)."""
        if self.greeting is pending:
            self.greeting = None
        if pending in self.ptt_open:
            self.ptt_open.remove(pending)
        if pending.key is not None:
            self._by_key.pop(pending.key, None)

    # --- the server's side ----------------------------------------------------------------------------

    def on_frame(self, frame: Frame, entry: Mapping[str, Any], audio: bytes | None, *, rate: int | None = None,
                 error: TurnError | None = None) -> None:
        """A received frame, after the fold saw it: keep the agent's audio, note what the server answered."""
        if isinstance(frame, _INTERACTION_FRAMES) and self._current is not None:
            for pending in self._open.get(self._current, ()):
                for each in pending.everyone():
                    each.answered = True
                    each.sent_items = []
            what = "user-message-available" if isinstance(frame, UserMessageAvailable) else (
                "agent pieces" if isinstance(frame, NewMessage) else None)
            if what is not None and what not in self._got:
                self._got.append(what)
            if isinstance(frame, UserMessageAvailable):
                self._user_message.setdefault(self._current, _stamp(entry))
        if isinstance(frame, NewMessage):
            self._last_message = frame.message_id
            if audio is not None:
                message = self._audio_of(frame.message_id)
                message.add_alignment(frame.transcript_alignment, lambda: message.duration_ms)
                message.add(audio, rate=rate)
        elif isinstance(frame, VadSpeechResetZero):
            self._reset_zero()

    def note_error(self, error: TurnError) -> None:
        """A server.error is about to reach the fold: the Turn it voids fails with this (redacted) error."""
        self._errors = [error]

    def on_binary(self, data: bytes, entry: Mapping[str, Any]) -> None:
        """A binary message: audio of the message open in the interaction in flight."""
        self._audio_of(self._last_message or "").add(data)

    def open_message(self) -> str | None:
        """The message binary audio belongs to: the last one a piece named."""
        return self._last_message

    def _audio_of(self, message_id: str) -> MessageAudio:
        audio = self._audio.get(message_id)
        if audio is None:
            audio = self._audio[message_id] = MessageAudio(self._audio_format, self._agent_rate)
        return audio

    # --- the fold's events ----------------------------------------------------------------------------

    def on_events(self, events: list[FoldEvent]) -> None:
        """Resolve, fail or create Turns from the fold's events (in order)."""
        for event in events:
            if isinstance(event, UserTurnEnded) and event.source == "vad":
                pending = self._by_key.get(event.key)
                if pending is not None:
                    pending.heard_speech_end = True
            elif isinstance(event, InteractionStarted):
                self._started(event)
            elif isinstance(event, InteractionCompleted):
                self._completed(event.index, event.record)
            elif isinstance(event, InteractionVoided):
                self._voided(event)
            elif isinstance(event, InputDropped) and "VAD was switched" in event.description:
                pending = self._by_key.pop(event.key, None)
                if pending is not None:
                    for each in pending.everyone():
                        each.turn._fail(SessionError(event.description))
            elif isinstance(event, SpeechDiscarded):
                pass  # handled on the frame itself (_reset_zero), where the streaming state is known

    def _owner(self, key: str, kind: str) -> _Pending:
        pending = self._by_key.get(key)
        if pending is not None and not pending.turn.done():
            return pending
        if kind in ("voice", "push-to-talk"):
            # A key the fold made (or one whose turn already ended): the oldest audio turn still unmatched.
            for candidate in self._by_key.values():
                if candidate.kind == "audio" and not candidate.matched and not candidate.turn.done():
                    return candidate
        turn_kind = "voice" if kind == "voice" else ("agent" if kind in ("agent", "event") else kind)
        return _Pending(self._new_turn(turn_kind, None), turn_kind)

    def _started(self, event: InteractionStarted) -> None:
        if event.kind == "greeting":
            owners = [self.greeting] if self.greeting is not None else []
        else:
            owners = [self._owner(key, event.kind) for key in event.keys]
            if not owners:
                owners = [self._owner("", event.kind)]
        for pending in owners:
            pending.matched = True
        self._open[event.index] = owners
        self._current, self._got = event.index, []

    def _retire(self, index: int) -> list[_Pending]:
        owners = self._open.pop(index, [])
        if self._current == index:
            self._current, self._got = None, []
        for pending in owners:
            if pending is self.greeting:
                self.greeting = None
            for each in pending.everyone():
                if each.key is not None:
                    self._by_key.pop(each.key, None)
        return owners

    def _completed(self, index: int, record: Interaction) -> None:
        owners = self._retire(index)
        reply = self._reply(index, record)
        for pending in owners:
            for each in pending.everyone():
                each.turn._resolve(reply)

    def _voided(self, event: InteractionVoided) -> None:
        if event.reason == "closed":
            return  # the session decides: send the turn again after the reconnect, or fail it with the close
        owners = self._retire(event.index)
        self._drop_audio(event.record)
        if event.reason == "skipped":
            error: Exception = SessionError(f"the server skipped this turn: {event.description}")
        else:
            known = self._errors[-1] if self._errors else None
            error = known if known is not None and known.http_error_code == event.http_error_code else TurnError(
                event.http_error_code or 0, event.description)
        for pending in owners:
            for each in pending.everyone():
                each.turn._fail(error)

    def _drop_audio(self, record: Interaction) -> dict[str, MessageAudio]:
        ids = [record.answer_message_id, *record.filler_message_ids, ""]
        return {m: self._audio.pop(m) for m in ids if m is not None and m in self._audio}

    def _reply(self, index: int, record: Interaction) -> Reply:
        audio = self._drop_audio(record)
        for message_id, message in audio.items():
            for note in message.notes:
                self._note(f"message {message_id}: {note}", message_id or None)
            said = message.disagreement()
            if said is not None:
                self._note(f"message {message_id}: {said}", message_id or None, warn="alignment")
        answer = audio.get(record.answer_message_id or "")
        announced = any(isinstance(a, Mapping) and a.get("type") == C.ACTION_TOO_LONG for a in record.actions)
        if answer is None and len(audio) == 1 and not announced:
            # A server that names its message otherwise (or not at all): the one message is the answer.
            answer = next(iter(audio.values()))
        samples = answer.samples() if answer is not None else np.zeros(0, np.float32)
        stamps = dict(record.stamps)

        def at(name: str) -> Stamp | None:
            t = stamps.get(name)
            return None if t is None else {"t": t, "wall": self._wall_of(t)}

        first = [t for t in (stamps.get("first_text"), stamps.get("first_audio")) if t is not None]
        timings: dict[str, Any] = {name: record.latencies.get(name) for name in LATENCIES}
        timings.update(
            stamps={name: stamps.get(name) for name in FOLD_STAMPS},
            sent=at("user_start"), end_of_turn=at("user_end"), user_message=self._user_message.pop(index, None),
            first_piece={"t": min(first), "wall": self._wall_of(min(first))} if first else None,
            first_audio=at("first_audio"), complete=at("complete"),
        )
        return Reply(
            text=record.reply_text or "",
            user_text=record.user_text,
            audio=samples.astype(np.float32, copy=False),
            sr=SAMPLE_RATE,
            message_id=record.answer_message_id or "",
            interaction_id=record.interaction_id or "",
            filler_text=record.filler_text,
            actions=tuple(record.actions),
            interrupted=record.interrupted,
            conversation_completed=record.conversation_completed,
            timings=timings,
        )

    # --- VAD discards -----------------------------------------------------------------------------------

    def _reset_zero(self) -> None:
        for pending in list(self._by_key.values()):
            if pending.vad and not pending.heard_speech_end and not pending.matched:
                if pending.audio_done:
                    self._discard(pending)
                else:
                    pending.reset_while_streaming = True  # decided when its last chunk leaves

    def _discard(self, pending: _Pending) -> None:
        self.forget(pending)
        error = SessionError("the server's VAD heard no speech long enough to be a turn in this audio "
                             f"(vad-speech-reset-zero; speech must last {C.VAD_MIN_SPEECH_MS} ms or more)")
        for each in pending.everyone():
            each.turn._fail(error)

    # --- for the session ----------------------------------------------------------------------------------

    def _waiting(self) -> list[_Pending]:
        out = [p for p in self._by_key.values() if p.sent is not None and not p.turn.done()]
        out += [p for owners in self._open.values() for p in owners if not p.turn.done() and p not in out]
        if self.greeting is not None and not self.greeting.turn.done() and self.greeting not in out:
            out.append(self.greeting)
        return out

    @property
    def idle(self) -> bool:
        """True when no turn waits for the server."""
        return not self._waiting()

    def describe_missing(self) -> str:
        """What the server has not sent yet for the turns waiting on it, in one clause."""
        if self._current is not None and self._got:
            owners = self._open.get(self._current) or []
            kind = owners[0].kind if owners else "agent"
            return f"got {' and '.join(self._got)}, still waiting for server.interaction-complete of the {kind} turn"
        if self.greeting is not None and not self.greeting.turn.done():
            return "waiting for the greeting (server.new-message, server.interaction-complete)"
        waiting = self._waiting()
        kind = waiting[0].kind if waiting else "user"
        return f"waiting for server.user-message-available and the reply to the {kind} turn"

    def resendable(self) -> list[_Pending]:
        """Turns that left but that the server never answered: they can go again on a new socket."""
        out: list[_Pending] = []
        for pending in self._waiting():
            if pending is self.greeting:
                continue
            out.extend(each for each in pending.everyone()
                       if each.sent_items and not each.answered and not each.turn.done() and each not in out)
        return out

    def fail_all(self, error: BaseException, *, keep: list[_Pending] = ()) -> None:  # type: ignore[assignment]
        """The connection is gone: every turn waiting on it fails with ``error``, but those in ``keep``."""
        waiting = self._waiting() + [p for p in self.ptt_open if p not in self._waiting()]
        self._open.clear()
        self._current, self._got = None, []
        self._audio.clear()
        self._user_message.clear()
        self.greeting = None
        self.ptt_open = []
        self._by_key = {p.key: p for p in keep if p.key is not None}
        for pending in waiting:
            for each in pending.everyone():
                if each not in keep:
                    each.turn._fail(error)
