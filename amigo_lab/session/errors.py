"""Errors of the session: what failed, with the close code, reason and hint when a socket closed."""

from __future__ import annotations

from typing import Any

from amigo_lab.errors import AmigoError
from amigo_lab.protocol import (
    CloseCode,
    describe_close,
)

# --- errors ----------------------------------------------------------------------------------------------


class SessionError(AmigoError):
    """Connecting or talking failed; the message says what happened and what to do."""


class ConnectionClosedError(SessionError):
    """The socket closed. ``code`` is the close code (1006: lost without one), ``reason`` what the peer
    said, ``hint`` what to do (from :func:`amigo_lab.protocol.describe_close` unless given)."""

    def __init__(self, code: int | None, reason: str = "", hint: str | None = None) -> None:
        self.code = int(code) if code is not None else int(CloseCode.ABNORMAL)
        self.reason = reason or ""
        try:
            known_hint = CloseCode(self.code).hint
        except ValueError:
            known_hint = ""
        self.hint = hint or known_hint
        own = hint if hint and hint != known_hint else None  # the session knows why: its advice, not the table's
        super().__init__(describe_close(self.code, self.reason, what_to_do=own))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.reason, self.hint))


class TurnError(SessionError):
    """The server answered a turn with ``server.error``; the session stays usable (send the turn again)."""

    def __init__(self, http_error_code: int, description: str) -> None:
        self.http_error_code = http_error_code
        self.description = description
        super().__init__(f"the server answered with error {http_error_code}: {description}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.http_error_code, self.description))


class ResponseTimeoutError(SessionError, TimeoutError):
    """The server said nothing about a turn for ``response_timeout`` seconds; the message says what was
    missing. The session resets the connection and continues the conversation: send the turn again."""


class _ConnectFailed(SessionError):
    """No socket could be opened (refused, unreachable, timed out); worth retrying while reconnecting."""
