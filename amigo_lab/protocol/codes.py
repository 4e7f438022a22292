"""WebSocket close codes of protocol.md §5: 4000 + the HTTP status they mirror, plus the standard ones.

``CloseCode(4401).hint`` tells a user what to do; ``.reconnect`` says whether a client should reconnect
and continue the conversation by itself. :func:`should_reconnect` and :func:`describe_close` answer for any
int, including codes the protocol does not list (a real service may send others).
"""

from __future__ import annotations

from enum import IntEnum
from http import HTTPStatus


class CloseCode(IntEnum):
    """Why a connection closed. Look up any int with :func:`describe_close`."""

    NORMAL = 1000
    GOING_AWAY = 1001
    #: Never sent on the wire: the socket dropped without a close frame.
    ABNORMAL = 1006
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    IDLE_TIMEOUT = 4408
    CONFLICT = 4409
    UNSUPPORTED_AUDIO = 4415
    RATE_LIMITED = 4429
    SERVICE_UNAVAILABLE = 4503

    @property
    def meaning(self) -> str:
        """A short name of the cause, e.g. ``"unauthorized"``."""
        return _TABLE[self][0]

    @property
    def typical_cause(self) -> str:
        """What usually leads to this code."""
        return _TABLE[self][1]

    @property
    def hint(self) -> str:
        """What the client (or its user) should do next."""
        return _TABLE[self][2]

    @property
    def reconnect(self) -> bool:
        """True when a client should reconnect with backoff and continue the same conversation."""
        return self in RECONNECT_CODES


_TABLE: dict[CloseCode, tuple[str, str, str]] = {
    CloseCode.NORMAL: ("normal", "finished, closed by client, conversation completed", "nothing to do"),
    CloseCode.GOING_AWAY: ("going away", "server shutting down", "reconnect and continue the conversation"),
    CloseCode.ABNORMAL: (
        "connection lost", "network failure, no close frame", "reconnect and continue the conversation"
    ),
    CloseCode.MESSAGE_TOO_BIG: (
        "message too big", "a frame over 1 MiB", "send smaller audio chunks (at most 1 s each)"
    ),
    CloseCode.INTERNAL_ERROR: (
        "internal error", "server fault", "reconnect with backoff and continue the conversation"
    ),
    CloseCode.SERVICE_RESTART: (
        "service restart", "the server is restarting", "reconnect with backoff and continue the conversation"
    ),
    CloseCode.TRY_AGAIN_LATER: (
        "try again later",
        "the server is overloaded for a moment",
        "reconnect with backoff and continue the conversation",
    ),
    CloseCode.BAD_REQUEST: (
        "bad request", "fatal misuse: start sent twice, bad query parameters", "fix the client's frames or query"
    ),
    CloseCode.UNAUTHORIZED: ("unauthorized", "missing, malformed or expired token", "get a new token"),
    CloseCode.FORBIDDEN: ("forbidden", "conversation of another user", "do not retry"),
    CloseCode.NOT_FOUND: (
        "not found",
        "organization (or wrong region), service, version set or conversation",
        "check the ids and the region",
    ),
    CloseCode.IDLE_TIMEOUT: (
        "idle timeout", "no user activity for the idle window", "send extend-timeout while idle; reconnect and continue"
    ),
    CloseCode.CONFLICT: (
        "conflict",
        "an unfinished conversation exists, or the conversation is already finished",
        "continue the unfinished conversation or finish it",
    ),
    CloseCode.UNSUPPORTED_AUDIO: (
        "unsupported audio",
        "VAD asked with audio_format=mp3, or undecodable audio",
        "use audio_format=pcm for VAD; check the audio encoding",
    ),
    CloseCode.RATE_LIMITED: (
        "rate limited", "too many connections, conversations or frames", "back off and retry later"
    ),
    CloseCode.SERVICE_UNAVAILABLE: (
        "service unavailable",
        "the service is down or overloaded for a moment",
        "reconnect with backoff and continue the conversation",
    ),
}

#: Codes after which a client reconnects by itself and continues the conversation (Option B): the transient
#: ones. A code outside this set ends the conversation for the client (it says what to do instead).
RECONNECT_CODES = frozenset({CloseCode.GOING_AWAY, CloseCode.ABNORMAL, CloseCode.INTERNAL_ERROR,
                             CloseCode.SERVICE_RESTART, CloseCode.TRY_AGAIN_LATER, CloseCode.SERVICE_UNAVAILABLE})

#: The application range: 4000 + the HTTP status the code mirrors (protocol.md §5).
_HTTP_BASE = 4000


def should_reconnect(code: int | None) -> bool:
    """True when a client should reconnect and continue after a close with ``code`` (None: no close frame).

    Next: reconnect with backoff and send ``client.continue-conversation``; otherwise :func:`describe_close`.
    """
    return code is None or code in RECONNECT_CODES


def _unknown_meaning(code: int) -> str:
    if _HTTP_BASE + 100 <= code < _HTTP_BASE + 600:
        try:
            status = HTTPStatus(code - _HTTP_BASE)
        except ValueError:
            return f"HTTP {code - _HTTP_BASE} in the 4000 + status scheme"
        return f"HTTP {status.value} {status.phrase} in the 4000 + status scheme"
    if 1000 <= code < 3000:
        return "a WebSocket code the protocol does not list"
    if 3000 <= code < 4000:
        return "a registered (library or framework) code the protocol does not list"
    if 4000 <= code < 5000:
        return "an application code the protocol does not list"
    return "outside the WebSocket close code ranges"


def describe_close(code: int | None, reason: str = "", *, what_to_do: str | None = None) -> str:
    """One line for a user: the code, its meaning, the reason the peer gave and what to do. Next: show it.

    ``what_to_do`` replaces the code's own advice when the caller knows better (e.g. why the socket closed).
    """
    said = f": {reason}" if reason else ""
    if not said.endswith((".", "?", "!")):
        said += "."  # the sentence ends here, once
    if code is None:
        return (f"connection closed without a code (connection lost){said} "
                f"What to do: {what_to_do or 'reconnect and continue the conversation.'}")
    try:
        known = CloseCode(code)
    except ValueError:
        return (f"closed with {code} ({_unknown_meaning(code)}){said} What to do: " + (
            what_to_do or "not a code of the protocol; the conversation is left open, continue it with a new "
                          "connection if you want to."))
    return f"closed with {int(known)} {known.meaning}{said} What to do: {what_to_do or known.hint + '.'}"
