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
**Threads.** The socket lives on the lab's background loop (:mod:`amigo_lab._loop`), so a cell that blocks
never stops frames from arriving or keep-alive pings from being answered. Public methods hop onto that loop
thread-safely; every call that waits on the server blocks (``session.finish()``) and has an awaitable twin
(``await session.afinish()``, ``astart``, ``aresume``, ``areconnect``, ``aclose``, ``avad``, ``aopen``).
``with connect() as session:`` and ``async with`` finish the conversation on the way out. Every background
task (reader, sender, reconnect, response deadline) reports its failure: it is logged, the waiting turns fail
with a :class:`SessionError`, and the connection is reset.

**Lifecycle.** Where the session is, is one :class:`SessionState`, moved only by the table
:data:`LIFECYCLE` (see :mod:`amigo_lab.session.lifecycle` for its rules): connecting, initialising, active,
reconnecting, closing, closed, failed.

**Receiving.** Each text message goes to the sans-I/O :class:`~amigo_lab.protocol.Conversation` with
``receive``; the session then drains ``events_received`` and ``violations_received``. Server frames are read
leniently (protocol/): odd shapes, omitted defaults, unknown types and extra keys never cost a frame, and
every rule a server breaks is logged as ``client.protocol-violation``, never withheld. A frame that cannot
be parsed at all is logged whole (``client.invalid-frame``). Lone UTF-16 surrogates read as U+FFFD (the
wire text stays verbatim in the log). A binary message is kept, in the log and in the reply, as audio of the
message open at the time. Every entry is in the :class:`~amigo_lab.framelog.FrameLog` (with its verbatim
wire text) before anything else happens to it.

**Turns.** Every logged entry (frames both ways, local entries such as the player's ``playback.*``) feeds
the one interaction fold, :class:`amigo_lab.protocol.fold.Fold`; sent frames carry the turn's id
(``turn.id``) as the fold's key. Turns resolve, fail or appear (speech the server's VAD heard, agent-started
interactions) from its events, so the session, the panel and :func:`amigo_lab.analysis.turns` cannot
disagree; the rules (order-robust matching, no greeting, pairing by ``message_id``, what an error voids) are
stated once, in the fold's header. :meth:`Session.on_event` delivers those events. ``Reply.timings`` carry the
fold's latencies under the names of :data:`amigo_lab.protocol.fold.LATENCIES`.

**Agent audio.** Each message's audio is put together on its own
(:mod:`amigo_lab.session.agent_audio`): PCM at ``connect(agent_sample_rate=...)`` or at the rate a frame
announces, resampled once to 16 kHz; an odd byte carried to the next piece; MP3 decoded as one stream per
message when pieces do not decode alone; a warning when the alignment span and the audio disagree.

**Every Turn ends.** It resolves; fails with :class:`TurnError` (the token redacted even if the server
repeated it) when the server voids it; fails with :class:`ResponseTimeoutError` saying what was missing
when the server says nothing about it for ``connect(response_timeout=...)`` seconds (30 by default), after
which the session resets the connection (a black-holed link) and continues the conversation; or fails with
:class:`ConnectionClosedError` when the socket closes for good.

**Sending.** Outgoing frames go through one queue and one sender task, in submission order, paced under the
protocol's 100 frames/s. Text with a lone surrogate is refused before it is queued, with a clear error.

**Reconnects.** A transient close (:func:`amigo_lab.protocol.should_reconnect`: 1001, 1006, 1011, 1012,
1013, 4503) reconnects with exponential backoff and jitter and continues the conversation (any
``server.conversation-*`` frame carrying the id answers the continue). A turn the server had not answered
when the socket dropped (nothing received for it) is sent again on the new socket, text or audio, and the log
says so (``client.turn-resent``); a turn whose answer had begun fails with :class:`ConnectionClosedError`
(send it again). A final close (44xx) ends the session: later calls raise :class:`ConnectionClosedError`
with a hint. A failed continue leaves the session ``failed`` (while reconnecting) or ``connected`` (after
:meth:`Session.resume`), with an error that says what the server answered. ``finish()`` and ``close()``
close the socket themselves when a server keeps it open after a short silence.

**Adapting to the service.** A difference the protocol tables do not cover is adapted at the transport seam
(``connect(transport_factory=...)``, see :mod:`amigo_lab.session.transport`), without editing the library.
TLS is verified by default; plain ``ws://`` to a host that is not loopback needs ``secure=False``, a
self-signed staging host ``ssl_context=`` or ``verify_tls=False``. The token reaches no log record (the
``websockets`` library's DEBUG handshake lines included), no repr, no exception and no file.

Errors (all :class:`~amigo_lab.errors.AmigoError`)::

    SessionError                connecting or talking failed (what, and what to do)
    ├── ConnectionClosedError     the socket closed: .code .reason .hint
    ├── ResponseTimeoutError      the server said nothing about a turn for response_timeout s (also a TimeoutError)
    └── TurnError                 the server answered a turn with server.error: .http_error_code .description
"""


from amigo_lab.session.client import Session
from amigo_lab.session.errors import (
    ConnectionClosedError,
    ResponseTimeoutError,
    SessionError,
    TurnError,
)
from amigo_lab.session.lifecycle import LIFECYCLE, Event, SessionState
from amigo_lab.session.transport import (
    Backoff,
    Transport,
    TransportFactory,
    WebSocketTransport,
    open_websocket,
)
from amigo_lab.session.turns import Reply, Turn

__all__ = [
    "LIFECYCLE", "Backoff", "ConnectionClosedError", "Event", "Reply", "ResponseTimeoutError", "Session",
    "SessionError", "SessionState", "Transport", "TransportFactory", "Turn", "TurnError", "WebSocketTransport",
    "open_websocket",
]
