"""The conversation state machine, sans-I/O, for both ends of the socket.

Theory of operation
-------------------
One connection carries at most one conversation. Its life is a walk through :class:`State`; every frame,
sent or received, is looked up in :data:`TRANSITIONS` as ``TRANSITIONS[state][event]``, where the event is
the frame's wire type, except that an ``interaction-complete`` with ``conversation_completed: true`` is the
event :data:`CONVERSATION_COMPLETED`. A frame whose event is missing from the current state's row is
illegal: sending it raises :class:`LocalProtocolError`, receiving it :class:`RemoteProtocolError`, and the
state does not change. Rows hold both directions because client and server walk the same machine, each
seeing the other's frames as received.

    CONNECTED --start/continue--> INITIALISING --created/continued--> ACTIVE
        ^                               |                               |  \\--finish--> FINISHING
        +---------server.error----------+                               |   \\-close-connection--> CLOSING
                                             interaction-complete(completed) --> COMPLETED
    any state --connection_closed()--> CLOSED

Rules the table encodes (protocol.md §2):

* initialise exactly once: a second start/continue is illegal (the emulator closes with 4400);
* before initialising, only start/continue (and close-connection) may be sent; anything else gets a 400;
* after finish or close-connection the client sends nothing more, but server frames already in flight
  still arrive and are legal;
* after the agent completes the conversation, nothing but a trailing ``server.error`` is legal.

What happens on an illegal frame depends on the role, because the two ends trust differently:

* **Server role** (the emulator judging a client): an illegal frame raises :class:`RemoteProtocolError` and
  leaves the state unchanged; so do an unknown ``client.*`` type and a format check of
  :meth:`Frame.strict_problems` (e.g. a conversation id that is not 24 hex). The emulator answers 400.
* **Client role** (a client reading a server it cannot correct): the state machine *reports, it does not
  withhold*. Every parsed frame is delivered; a frame illegal in the state, a piece out of sequence
  (``sequence_number`` not from 0, a jump), a piece after ``stop``, a frame of the wrong direction and
  every line of a frame's lenient-read :attr:`~Frame.problems` becomes a :class:`ProtocolViolation`,
  drained with :meth:`Conversation.violations_received`. An illegal frame leaves the state unchanged; a
  piece out of sequence becomes the new reference, so one bad piece never makes later ones look bad.
  Unknown server frame types are delivered as :class:`UnknownFrame`; one named ``server.conversation-*``
  that carries the requested id (:func:`~amigo_lab.protocol.wire.is_init_ack`) answers the initialisation.

Each end may only send its own direction's frames, and a server never sends a frame with problems (exact in
what you send).

The four verbs, after ``websockets.protocol``: :meth:`Conversation.send` a frame, then take the texts to
write from :meth:`~Conversation.data_to_send`; :meth:`~Conversation.receive` a text read from the socket,
then take the parsed frames from :meth:`~Conversation.events_received` (and, as a client, the violations
from :meth:`~Conversation.violations_received`). :attr:`~Conversation.state` tells where the conversation is.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from amigo_lab.protocol import wire
from amigo_lab.protocol.errors import LocalProtocolError, RemoteProtocolError
from amigo_lab.protocol.frames import (
    ContinueConversation,
    Frame,
    InteractionComplete,
    NewMessage,
    StartConversation,
    UnknownFrame,
    parse,
    serialize,
)


class State(Enum):
    """Where a conversation is on one connection."""

    CONNECTED = "connected"          # socket open, not yet initialised
    INITIALISING = "initialising"    # start or continue sent, answer not yet seen
    ACTIVE = "active"                # conversation established: turns may flow
    FINISHING = "finishing"          # finish sent; the server will close
    CLOSING = "closing"              # close-connection sent; the server will close
    COMPLETED = "completed"          # the agent ended the conversation; the server will close
    CLOSED = "closed"                # the socket is gone


class Role(Enum):
    """Which end of the socket a :class:`Conversation` plays."""

    CLIENT = "client"
    SERVER = "server"


#: How many agent messages the piece checks remember (a late piece of an older one is checked as a new message).
_REMEMBERED_MESSAGES = 64

#: The event of an ``interaction-complete`` whose ``conversation_completed`` is true.
CONVERSATION_COMPLETED = "server.interaction-complete/completed"

_TURN_FRAMES = ("client.new-text-message", "client.new-audio-message", "client.switch-vad-mode",
                "client.extend-timeout")
_STREAM_FRAMES = ("server.user-message-available", "server.current-agent-action", "server.new-message",
                  "server.interaction-complete", "server.vad-mode-switched", "server.vad-speech-started",
                  "server.vad-speech-ended", "server.vad-speech-reset-zero", "server.error")


def _stay(state: State, events: tuple[str, ...]) -> dict[str, State]:
    return {event: state for event in events}


#: ``state -> event -> next state``. See the module docstring for the rules it encodes.
TRANSITIONS: dict[State, dict[str, State]] = {
    State.CONNECTED: {
        "client.start-conversation": State.INITIALISING,
        "client.continue-conversation": State.INITIALISING,
        "client.close-connection": State.CLOSING,
        "server.error": State.CONNECTED,
    },
    State.INITIALISING: {
        "server.conversation-created": State.ACTIVE,
        "server.conversation-continued": State.ACTIVE,
        "server.error": State.CONNECTED,
        "client.close-connection": State.CLOSING,
    },
    State.ACTIVE: {
        **_stay(State.ACTIVE, _TURN_FRAMES + _STREAM_FRAMES),
        CONVERSATION_COMPLETED: State.COMPLETED,
        "client.finish-conversation": State.FINISHING,
        "client.close-connection": State.CLOSING,
    },
    State.FINISHING: {
        **_stay(State.FINISHING, _STREAM_FRAMES),
        CONVERSATION_COMPLETED: State.FINISHING,
    },
    State.CLOSING: {
        **_stay(State.CLOSING, _STREAM_FRAMES),
        CONVERSATION_COMPLETED: State.CLOSING,
    },
    State.COMPLETED: {
        "server.error": State.COMPLETED,
    },
    State.CLOSED: {},
}


def event_of(frame: Frame) -> str:
    """The table key of a frame: its type, or :data:`CONVERSATION_COMPLETED`."""
    if isinstance(frame, InteractionComplete) and frame.conversation_completed:
        return CONVERSATION_COMPLETED
    return frame.type


@dataclass(frozen=True)
class ProtocolViolation:
    """Something a server sent that breaks a rule; the frame was delivered all the same (client role).

    ``description`` says what was wrong in one line; ``frame`` is the frame it is about.
    """

    description: str
    frame: Frame


class Conversation:
    """The sans-I/O state of one connection, for either role.

    ``Conversation(Role.CLIENT)`` is what a client drives; ``Conversation(Role.SERVER)`` what a server
    drives. Neither does I/O: feed it texts and frames, hand its output to a socket.
    """

    def __init__(self, role: Role) -> None:
        self.role = role
        self._state = State.CONNECTED
        self._outgoing: list[str] = []
        self._incoming: list[Frame] = []
        self._violations: list[ProtocolViolation] = []
        self.conversation_id: str | None = None
        self.close_code: int | None = None
        self.close_reason: str = ""
        # The id a sent continue-conversation asked for (None: a start), to recognise its answer.
        self._requested_id: str | None = None
        # message_id -> (last sequence_number, stopped): the reference the next piece is checked against.
        # Only the most recent messages are remembered, so memory stays flat however long the conversation.
        self._pieces: OrderedDict[str, tuple[int | None, bool]] = OrderedDict()

    @property
    def state(self) -> State:
        """The current :class:`State`."""
        return self._state

    # --- sending ----------------------------------------------------------------------------------------

    def send(self, frame: Frame) -> None:
        """Check that ``frame`` may be sent now, update the state, and queue its text.

        Raises :class:`LocalProtocolError` (state unchanged) if not. Next: :meth:`data_to_send`.
        """
        own = "client." if self.role is Role.CLIENT else "server."
        if not frame.type.startswith(own):
            raise LocalProtocolError(f"a {self.role.value} cannot send {frame.type}")
        if isinstance(frame, UnknownFrame):
            # Deliberately malformed traffic (for testing a peer) bypasses the table but not CLOSED.
            if self._state is State.CLOSED:
                raise LocalProtocolError("the connection is closed")
            self._outgoing.append(serialize(frame))
            return
        if frame.problems:
            raise LocalProtocolError(f"{frame.type} is malformed ({'; '.join(frame.problems)}); "
                                     "build it with valid fields")
        next_state = self._next(frame)
        if next_state is None:
            raise LocalProtocolError(self._illegal(frame))
        if isinstance(frame, NewMessage):
            problem = self._piece_problem(frame)
            if problem is not None:
                raise LocalProtocolError(problem)
        text = serialize(frame)
        if isinstance(frame, ContinueConversation):
            self._requested_id = frame.conversation_id
        elif isinstance(frame, StartConversation):
            self._requested_id = None
        self._advance(frame, next_state)
        self._outgoing.append(text)

    def data_to_send(self) -> list[str]:
        """Take the texts queued by :meth:`send`, oldest first; each is one WebSocket text message."""
        out, self._outgoing = self._outgoing, []
        return out

    # --- receiving --------------------------------------------------------------------------------------

    def receive(self, text: str | bytes) -> Frame:
        """Parse a received text, check it against the state, update the state, queue and return the frame.

        Raises :class:`FrameError` for a text that is not a frame. In the server role, a frame the state
        forbids raises :class:`RemoteProtocolError` (its ``.frame`` holds the frame) and the state is
        unchanged; in the client role it is delivered and a :class:`ProtocolViolation` recorded instead.
        Next: :meth:`events_received`, then (client) :meth:`violations_received`.
        """
        return self.receive_frame(parse(text))

    def receive_frame(self, frame: Frame) -> Frame:
        """Like :meth:`receive`, for a frame already parsed."""
        if self.role is Role.SERVER:
            self._judge(frame)
        else:
            self._report(frame)
        self._incoming.append(frame)
        return frame

    def events_received(self) -> list[Frame]:
        """Take the frames accepted by :meth:`receive`, oldest first. Next: :meth:`violations_received`."""
        out, self._incoming = self._incoming, []
        return out

    def violations_received(self) -> list[ProtocolViolation]:
        """Take the rule breaks seen by :meth:`receive` in the client role, oldest first. Next: log each one
        (the frame itself was delivered by :meth:`events_received` all the same)."""
        out, self._violations = self._violations, []
        return out

    # --- the socket ---------------------------------------------------------------------------------------

    def connection_closed(self, code: int | None, reason: str = "") -> None:
        """Record that the socket closed (``code`` None: no close frame). Any state moves to CLOSED."""
        self._state = State.CLOSED
        self.close_code = code
        self.close_reason = reason

    def reset_for_reconnect(self) -> None:
        """Start over on a new socket (e.g. to continue the same conversation after a drop)."""
        self._state = State.CONNECTED
        self._outgoing.clear()
        self._pieces.clear()
        self.close_code = None
        self.close_reason = ""

    # --- internals ----------------------------------------------------------------------------------------

    def _judge(self, frame: Frame) -> None:
        """Server role: raise RemoteProtocolError for anything a client may not send now."""
        if isinstance(frame, UnknownFrame):
            raise RemoteProtocolError(
                f"unknown frame type {frame.type!r}; known client types start with 'client.'", frame=frame)
        if not frame.type.startswith("client."):
            raise RemoteProtocolError(f"a server cannot receive {frame.type}", frame=frame)
        strict = frame.strict_problems()
        if strict:
            raise RemoteProtocolError(f"{frame.type}: {'; '.join(strict)}", frame=frame)
        next_state = self._next(frame)
        if next_state is None:
            raise RemoteProtocolError(self._illegal(frame), frame=frame)
        self._advance(frame, next_state)

    def _report(self, frame: Frame) -> None:
        """Client role: move the state where the frame says, recording every rule it breaks."""
        for problem in frame.problems:
            self._violate(f"{frame.type}: {problem}", frame)
        if not frame.type.startswith("server."):
            self._violate(f"a client cannot receive {frame.type}; delivered as is", frame)
            return
        if self._state is State.INITIALISING and wire.is_init_ack(frame, self._requested_id):
            self.conversation_id = wire.init_ack_id(frame) or self._requested_id
            self._state = State.ACTIVE
            return
        if self._state is State.INITIALISING and frame.type.startswith(wire.INIT_ACK_PREFIX):
            got = wire.init_ack_id(frame)
            self._violate(f"{frame.type} names conversation {got}, not {self._requested_id} as asked; "
                          "the initialisation is still waiting", frame)
            return
        if isinstance(frame, UnknownFrame):
            return  # a newer server's frame: tolerated, changes nothing
        next_state = self._next(frame)
        if next_state is None:
            self._violate(self._illegal(frame) + "; delivered, state unchanged", frame)
            next_state = self._state
        if isinstance(frame, NewMessage):
            piece_problem = self._piece_problem(frame)
            if piece_problem is not None:
                self._violate(piece_problem, frame)
        self._advance(frame, next_state)

    def _violate(self, description: str, frame: Frame) -> None:
        self._violations.append(ProtocolViolation(description, frame))

    def _next(self, frame: Frame) -> State | None:
        return TRANSITIONS[self._state].get(event_of(frame))

    def _illegal(self, frame: Frame) -> str:
        row = TRANSITIONS[self._state]
        allowed = sorted(e for e in row if e.startswith(frame.type.split(".")[0]))
        return (f"{frame.type} is not allowed while the conversation is {self._state.value}; "
                f"allowed now: {', '.join(allowed) or 'nothing'}")

    def _piece_problem(self, frame: NewMessage) -> str | None:
        last = self._pieces.get(frame.message_id)
        number = frame.sequence_number
        if last is not None and last[1]:
            return f"piece after stop for message {frame.message_id}"
        if number is None:
            if self.role is Role.SERVER:
                return f"piece of message {frame.message_id} has no sequence_number; number pieces from 0"
            return None
        if last is None and number != 0:
            return f"first piece of message {frame.message_id} has sequence_number {number}, want 0"
        if last is not None and last[0] is not None and number != last[0] + 1:
            return f"message {frame.message_id} jumped from sequence_number {last[0]} to {number}"
        return None

    def _advance(self, frame: Frame, next_state: State) -> None:
        if isinstance(frame, NewMessage):
            last = self._pieces.get(frame.message_id)
            number = frame.sequence_number
            if number is None and last is not None and last[0] is not None:
                number = last[0] + 1  # the server stopped numbering: count on from the last number
            self._pieces[frame.message_id] = (number, frame.stop or (last is not None and last[1]))
            self._pieces.move_to_end(frame.message_id)
            if len(self._pieces) > _REMEMBERED_MESSAGES:
                self._pieces.popitem(last=False)
        conversation_id = getattr(frame, "conversation_id", None)
        if conversation_id and (frame.type.startswith("server.") or self.role is Role.SERVER):
            self.conversation_id = conversation_id
        self._state = next_state


__all__ = [
    "CONVERSATION_COMPLETED",
    "TRANSITIONS",
    "Conversation",
    "ProtocolViolation",
    "Role",
    "State",
    "event_of",
]
