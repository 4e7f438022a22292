"""WebSocket close codes of protocol.md §5: 4000 + the HTTP status they mirror, plus the standard ones.

``CloseCode(4401).hint`` tells a user what to do; ``.reconnect`` says whether a client should reconnect
and continue the conversation by itself.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """Why a connection closed. Look up any int with :func:`describe_close`."""

    NORMAL = 1000
    GOING_AWAY = 1001
    #: Never sent on the wire: the socket dropped without a close frame.
    ABNORMAL = 1006
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    IDLE_TIMEOUT = 4408
    CONFLICT = 4409
    UNSUPPORTED_AUDIO = 4415
    RATE_LIMITED = 4429

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
    CloseCode.ABNORMAL: ("connection lost", "network failure, no close frame", "reconnect and continue the conversation"),
    CloseCode.MESSAGE_TOO_BIG: ("message too big", "a frame over 1 MiB", "send smaller audio chunks (at most 1 s each)"),
    CloseCode.INTERNAL_ERROR: ("internal error", "server fault", "retry with backoff"),
    CloseCode.BAD_REQUEST: ("bad request", "fatal misuse: start sent twice, bad query parameters", "fix the client's frames or query"),
    CloseCode.UNAUTHORIZED: ("unauthorized", "missing, malformed or expired token", "get a new token"),
    CloseCode.FORBIDDEN: ("forbidden", "conversation of another user", "do not retry"),
    CloseCode.NOT_FOUND: ("not found", "organization (or wrong region), service, version set or conversation", "check the ids and the region"),
    CloseCode.IDLE_TIMEOUT: ("idle timeout", "no user activity for the idle window", "send extend-timeout while idle; reconnect and continue"),
    CloseCode.CONFLICT: ("conflict", "an unfinished conversation exists, or the conversation is already finished", "continue the unfinished conversation or finish it"),
    CloseCode.UNSUPPORTED_AUDIO: ("unsupported audio", "VAD asked with audio_format=mp3, or undecodable audio", "use audio_format=pcm for VAD; check the audio encoding"),
    CloseCode.RATE_LIMITED: ("rate limited", "too many connections, conversations or frames", "back off and retry later"),
}

#: Codes after which a client reconnects by itself and continues the conversation (Option B).
RECONNECT_CODES = frozenset({CloseCode.GOING_AWAY, CloseCode.ABNORMAL, CloseCode.INTERNAL_ERROR})


def describe_close(code: int | None, reason: str = "") -> str:
    """One line for a user: the code, its meaning, the reason the peer gave and what to do."""
    if code is None:
        return "connection closed without a code (connection lost); reconnect and continue the conversation"
    try:
        known = CloseCode(code)
    except ValueError:
        return f"closed with code {code}{f' ({reason})' if reason else ''}; not a code of the protocol"
    said = f": {reason}" if reason else ""
    return f"closed with {int(known)} {known.meaning}{said}. What to do: {known.hint}."
