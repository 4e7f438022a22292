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

Two things stay outside the table because they depend on the role: the server answers an unknown client
frame type with a 400 (``receive`` raises), while the client tolerates unknown server frame types (they
are delivered as :class:`UnknownFrame` and change nothing). And each end may only send its own direction's
frames.

The four verbs, after ``websockets.protocol``: :meth:`Conversation.send` a frame, then take the texts to
write from :meth:`~Conversation.data_to_send`; :meth:`~Conversation.receive` a text read from the socket,
then take the parsed frames from :meth:`~Conversation.events_received`. :attr:`~Conversation.state` tells
where the conversation is.
"""

from __future__ import annotations

from enum import Enum

from amigo_lab.protocol.errors import LocalProtocolError, RemoteProtocolError
from amigo_lab.protocol.frames import (
    Frame,
    InteractionComplete,
    NewMessage,
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
        self.conversation_id: str | None = None
        self.close_code: int | None = None
        self.close_reason: str = ""
        # message_id -> (last sequence_number, stopped); checks that agent pieces rise and end once.
        self._pieces: dict[str, tuple[int, bool]] = {}

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
        next_state = self._next(frame, LocalProtocolError)
        if isinstance(frame, NewMessage):
            self._check_piece(frame, LocalProtocolError)
        text = serialize(frame)
        self._advance(frame, next_state)
        self._outgoing.append(text)

    def data_to_send(self) -> list[str]:
        """Take the texts queued by :meth:`send`, oldest first; each is one WebSocket text message."""
        out, self._outgoing = self._outgoing, []
        return out

    # --- receiving --------------------------------------------------------------------------------------

    def receive(self, text: str | bytes) -> Frame:
        """Parse a received text, check it against the state, update the state, queue and return the frame.

        Raises :class:`FrameError` for a text that is not a frame and :class:`RemoteProtocolError` for a
        frame the state forbids (its ``.frame`` holds the frame); the state is unchanged in both cases.
        Next: :meth:`events_received`.
        """
        frame = parse(text)
        return self.receive_frame(frame)

    def receive_frame(self, frame: Frame) -> Frame:
        """Like :meth:`receive`, for a frame already parsed."""
        peer = "server." if self.role is Role.CLIENT else "client."
        if isinstance(frame, UnknownFrame):
            if self.role is Role.SERVER:
                raise RemoteProtocolError(
                    f"unknown frame type {frame.type!r}; known client types start with 'client.'", frame=frame)
            self._incoming.append(frame)  # the client tolerates what a newer server may send
            return frame
        if not frame.type.startswith(peer):
            raise RemoteProtocolError(f"a {self.role.value} cannot receive {frame.type}", frame=frame)
        next_state = self._next(frame, RemoteProtocolError)
        if isinstance(frame, NewMessage):
            self._check_piece(frame, RemoteProtocolError)
        self._advance(frame, next_state)
        self._incoming.append(frame)
        return frame

    def events_received(self) -> list[Frame]:
        """Take the frames accepted by :meth:`receive`, oldest first."""
        out, self._incoming = self._incoming, []
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

    def _next(self, frame: Frame, error: type[LocalProtocolError] | type[RemoteProtocolError]) -> State:
        event = event_of(frame)
        row = TRANSITIONS[self._state]
        if event not in row:
            allowed = sorted(e for e in row if e.startswith(frame.type.split(".")[0]))
            message = (f"{frame.type} is not allowed while the conversation is {self._state.value}; "
                       f"allowed now: {', '.join(allowed) or 'nothing'}")
            if error is RemoteProtocolError:
                raise RemoteProtocolError(message, frame=frame)
            raise LocalProtocolError(message)
        return row[event]

    def _check_piece(self, frame: NewMessage, error: type[LocalProtocolError] | type[RemoteProtocolError]) -> None:
        last = self._pieces.get(frame.message_id)
        problem = None
        if last is None and frame.sequence_number != 0:
            problem = f"first piece of message {frame.message_id} has sequence_number {frame.sequence_number}, want 0"
        elif last is not None and last[1]:
            problem = f"piece after stop for message {frame.message_id}"
        elif last is not None and frame.sequence_number != last[0] + 1:
            problem = (f"message {frame.message_id} jumped from sequence_number {last[0]} "
                       f"to {frame.sequence_number}")
        if problem is not None:
            if error is RemoteProtocolError:
                raise RemoteProtocolError(problem, frame=frame)
            raise LocalProtocolError(problem)

    def _advance(self, frame: Frame, next_state: State) -> None:
        if isinstance(frame, NewMessage):
            self._pieces[frame.message_id] = (frame.sequence_number, frame.stop)
        conversation_id = getattr(frame, "conversation_id", None)
        if conversation_id is not None and frame.type.startswith("server."):
            self.conversation_id = conversation_id
        elif conversation_id is not None and self.role is Role.SERVER:
            self.conversation_id = conversation_id
        self._state = next_state


__all__ = [
    "CONVERSATION_COMPLETED",
    "Conversation",
    "Role",
    "State",
    "TRANSITIONS",
    "event_of",
]
