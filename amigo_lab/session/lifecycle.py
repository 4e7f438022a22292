"""The session's lifecycle as a table: where a :class:`~amigo_lab.session.Session` is, and what moves it.

Theory of operation
-------------------
A session lives through sockets: one at a time, each carrying the same conversation. Its state is one
:class:`SessionState`; every change goes through :func:`next_state` as ``LIFECYCLE[state][event]``. An event
missing from the state's row changes nothing (the session logs it): the table, not a set of flags, says
what may happen when.

    IDLE --open--> CONNECTING --opened--> CONNECTED --init-sent--> INITIALISING --init-acked--> ACTIVE
                        |                      ^                        |                        |
                   open-failed                 +------init-failed-------+                        |
                        v                                                                       |
                      IDLE        ACTIVE --lost--> RECONNECTING --init-acked--> ACTIVE           |
                                  ACTIVE --completed--> COMPLETED --closed--> CLOSED             |
                                  ACTIVE --close-sent--> CLOSING --closed--> CLOSED  <----------+
                                  any live state --fatal--> FAILED;  CLOSED / FAILED --open--> CONNECTING

Rules the table encodes:

* a socket that drops with a transient code (:func:`amigo_lab.protocol.should_reconnect`) while a
  conversation is active is *lost*: the session reconnects and continues it; while reconnecting, failed
  attempts keep it RECONNECTING until the backoff gives up (*fatal*) or the user closes (*closed*);
* a failed initialisation (``server.error``, an answer naming another conversation, no answer in time)
  leaves the socket open and the session CONNECTED, so :meth:`~amigo_lab.session.Session.start` or
  :meth:`~amigo_lab.session.Session.resume` can be called again; while reconnecting it is *fatal* instead,
  with an error that says what the server answered;
* a socket that closes normally (1000, a close the user asked for, the agent completing the conversation)
  is *closed*: start, resume or reconnect open a new one; a final code (44xx) is *fatal*.
"""

from __future__ import annotations

from enum import Enum


class SessionState(str, Enum):
    """Where a :class:`~amigo_lab.session.Session` is; ``session.state`` gives its value."""

    IDLE = "idle"                    # no socket yet
    CONNECTING = "connecting"
    CONNECTED = "connected"          # socket open, no conversation on it yet
    INITIALISING = "initialising"    # start or continue sent
    ACTIVE = "active"                # turns may flow
    RECONNECTING = "reconnecting"    # the socket dropped; continuing the conversation on a new one
    COMPLETED = "completed"          # the agent ended the conversation; the server is closing
    CLOSING = "closing"              # finish or close sent
    CLOSED = "closed"                # closed normally; start(), resume() or reconnect() open a new socket
    FAILED = "failed"                # closed for good (a final code, or reconnecting gave up)


class Event(str, Enum):
    """What happens to a session; the keys of each row of :data:`LIFECYCLE`."""

    OPEN = "open"                    # the user asked for a socket
    OPENED = "opened"                # the WebSocket handshake succeeded
    OPEN_FAILED = "open-failed"      # it did not
    INIT_SENT = "init-sent"          # start- or continue-conversation left
    INIT_ACKED = "init-acked"        # the server answered with the conversation
    INIT_FAILED = "init-failed"      # it answered otherwise, or not in time
    COMPLETED = "completed"          # interaction-complete said conversation_completed
    CLOSE_SENT = "close-sent"        # finish- or close-connection left
    LOST = "lost"                    # the socket closed with a transient code
    CLOSED = "closed"                # the socket closed normally, or the user stopped reconnecting
    FATAL = "fatal"                  # a final close code, a failed resume, or reconnecting gave up


S, E = SessionState, Event

#: ``state -> event -> next state``. See the module docstring for the rules it encodes.
LIFECYCLE: dict[SessionState, dict[Event, SessionState]] = {
    S.IDLE: {E.OPEN: S.CONNECTING},
    S.CONNECTING: {E.OPENED: S.CONNECTED, E.OPEN_FAILED: S.IDLE, E.CLOSED: S.CLOSED, E.FATAL: S.FAILED},
    S.CONNECTED: {E.INIT_SENT: S.INITIALISING, E.CLOSE_SENT: S.CLOSING, E.CLOSED: S.CLOSED, E.LOST: S.CLOSED,
                  E.FATAL: S.FAILED, E.OPEN: S.CONNECTING},
    S.INITIALISING: {E.INIT_ACKED: S.ACTIVE, E.INIT_FAILED: S.CONNECTED, E.CLOSE_SENT: S.CLOSING,
                     E.CLOSED: S.CLOSED, E.LOST: S.CLOSED, E.FATAL: S.FAILED},
    S.ACTIVE: {E.COMPLETED: S.COMPLETED, E.CLOSE_SENT: S.CLOSING, E.LOST: S.RECONNECTING, E.CLOSED: S.CLOSED,
               E.FATAL: S.FAILED, E.OPEN: S.CONNECTING},
    S.RECONNECTING: {E.OPENED: S.RECONNECTING, E.OPEN_FAILED: S.RECONNECTING, E.INIT_SENT: S.RECONNECTING,
                     E.INIT_ACKED: S.ACTIVE, E.INIT_FAILED: S.FAILED, E.LOST: S.RECONNECTING,
                     E.CLOSED: S.CLOSED, E.FATAL: S.FAILED},
    S.COMPLETED: {E.CLOSE_SENT: S.CLOSING, E.CLOSED: S.CLOSED, E.LOST: S.CLOSED, E.FATAL: S.CLOSED},
    S.CLOSING: {E.COMPLETED: S.CLOSING, E.CLOSED: S.CLOSED, E.LOST: S.CLOSED, E.FATAL: S.CLOSED},
    S.CLOSED: {E.OPEN: S.CONNECTING},
    S.FAILED: {E.OPEN: S.CONNECTING},
}

#: States in which the session has no socket and will not open one by itself.
TERMINAL = frozenset({S.CLOSED, S.FAILED})


def next_state(state: SessionState, event: Event) -> SessionState | None:
    """The state ``event`` leads to from ``state``, or None when the table does not allow it there."""
    return LIFECYCLE[state].get(event)
