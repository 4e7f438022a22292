"""The client: one :class:`Session` per conversation, talking to Amigo (or the emulator) over a WebSocket.

Get one from :func:`amigo_lab.connect`, then talk::

    session = amigo_lab.connect()                 # the embedded emulator; the greeting is session.greeting
    reply = session.say("Hi, I need a doctor's appointment").result()
    reply.text, reply.audio, reply.timings["latency_first_audio_ms"]
    turn = session.send_audio("question.wav")     # streamed in real time; push-to-talk unless VAD is on
    session.frames                                # every frame both ways, as a DataFrame

Every call works as a plain call in a notebook cell and from any thread; calls that return a :class:`Turn`
return at once, and the Turn is awaitable (``reply = await session.say("hi")``) or blocking
(``turn.result()``).

Theory of operation
-------------------
The socket lives on the lab's background loop (:mod:`amigo_lab._loop`), so a cell that blocks never stops
frames from arriving or keep-alive pings from being answered. Public methods hop onto that loop with
``call_soon_threadsafe``; outgoing frames go through one queue and one sender task, so they leave in the
order they were submitted, paced under the protocol's 100 frames/s. Every frame, sent or received, is
checked by the sans-I/O :class:`~amigo_lab.protocol.Conversation` and recorded in the session's
:class:`~amigo_lab.framelog.FrameLog` before anything else happens to it.

Turns are matched to interactions by the order the server promises (one interaction at a time, turns
queued in arrival order): a text turn or a push-to-talk end joins the queue when its last frame is sent;
an interaction begins with ``user-message-available`` (a user's turn) or with agent output alone (the
greeting, or a turn started by external events); ``interaction-complete`` resolves it. External events
resolve with the next interaction that begins after they were sent. Speech the server hears on its own
(VAD) becomes a Turn in :attr:`Session.turns` too.

An abnormal close (1001, 1006, 1011) reconnects with exponential backoff and jitter and continues the same
conversation; turns in flight at that moment fail with :class:`ConnectionClosedError` (send them again).
A 44xx close is final: pending and later calls raise :class:`ConnectionClosedError` with a hint.
``server.error`` fails the turn in flight with :class:`TurnError`; the session stays usable. Frames the
client does not understand are logged (``client.invalid-frame``, ``client.protocol-violation``), never fatal.

Errors (all :class:`~amigo_lab.errors.AmigoError`)::

    SessionError                connecting or talking failed (what, and what to do)
    ├── ConnectionClosedError     the socket closed: .code .reason .hint
    └── TurnError                 the server answered a turn with server.error: .http_error_code .description
"""


from amigo_lab.session.client import Session
from amigo_lab.session.errors import ConnectionClosedError, ResponseTimeoutError, SessionError, TurnError
from amigo_lab.session.lifecycle import LIFECYCLE, Event, SessionState
from amigo_lab.session.transport import Backoff, Transport, TransportFactory, WebSocketTransport, open_websocket
from amigo_lab.session.turns import Reply, Turn

__all__ = [
    "LIFECYCLE", "Backoff", "ConnectionClosedError", "Event", "Reply", "ResponseTimeoutError", "Session", "SessionError", "SessionState", "Transport",
    "TransportFactory", "Turn", "TurnError", "WebSocketTransport", "open_websocket",
]
