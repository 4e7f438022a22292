"""Errors of the emulator: bad service definitions, and refusals that close a connection with a code."""

from __future__ import annotations

from amigo_lab.errors import AmigoError


class EmulatorError(AmigoError):
    """Base of the errors the embedded emulator raises."""


class ServiceError(EmulatorError, ValueError):
    """A service definition is missing or invalid; the message names the file, the field and the fix."""


class Refusal(EmulatorError):
    """A request the protocol refuses by closing the connection with ``close_code`` and a short ``reason``.

    Raised by the conversation store and the connection's checks; the connection handler turns it into a
    WebSocket close frame (protocol.md §5).
    """

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(f"{close_code}: {reason}")
        self.close_code = int(close_code)
        self.reason = reason
