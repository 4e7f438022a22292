"""Errors of the protocol layer; see :mod:`amigo_lab.errors` for the whole tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amigo_lab.errors import AmigoError

if TYPE_CHECKING:
    from amigo_lab.protocol.frames import Frame


class ProtocolError(AmigoError):
    """A rule of the wire protocol was broken.

    ``http_error_code`` is what a server answers in ``server.error`` (400 for every recoverable misuse);
    ``close_code`` is set when the rule is fatal and the connection must close with that code.
    """

    def __init__(self, message: str, *, http_error_code: int = 400, close_code: int | None = None) -> None:
        super().__init__(message)
        self.http_error_code = http_error_code
        self.close_code = close_code


class FrameError(ProtocolError, ValueError):
    """A text is not a valid frame. ``field`` names the offending field (None: the whole text)."""

    def __init__(self, message: str, *, field: str | None = None, frame_type: str | None = None) -> None:
        where = f"{frame_type or 'frame'}"
        if field is not None:
            where += f".{field}"
        super().__init__(f"{where}: {message}")
        self.field = field
        self.frame_type = frame_type


class LocalProtocolError(ProtocolError):
    """We tried to send a frame that the conversation state forbids; the state did not change."""


class RemoteProtocolError(ProtocolError):
    """The peer sent a frame that the conversation state forbids; the state did not change.

    ``frame`` holds the offending frame when it parsed, so a tolerant client can still log it.
    """

    def __init__(self, message: str, *, frame: Frame | None = None, http_error_code: int = 400,
                 close_code: int | None = None) -> None:
        super().__init__(message, http_error_code=http_error_code, close_code=close_code)
        self.frame = frame
