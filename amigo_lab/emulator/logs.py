"""Keep tokens out of the emulator's log records, at every level.

The ``websockets`` library logs every handshake header at DEBUG, and the token travels in one of them (the
``Sec-WebSocket-Protocol`` subprotocol, protocol.md §1); a notebook with ``logging.DEBUG`` on would then
save the token in its outputs. :class:`RedactingFilter` sits on the emulator's loggers and rewrites each
record before any handler sees it: the message is rendered, tokens are replaced (auth subprotocols, JWTs,
bearer values, and the emulator's own tokens verbatim), and an attached traceback is rendered and
redacted the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from amigo_lab.protocol.endpoint import redact

#: The logger the websockets library writes the emulator's connection records to.
WEBSOCKETS_LOGGER = "amigo_lab.emulator.websockets"


class RedactingFilter(logging.Filter):
    """A filter that removes tokens from every record it sees (it never drops a record).

    ``secrets()`` returns the literal tokens to remove (read at each record, so added users count).
    Next: attach it with :func:`install`.
    """

    def __init__(self, secrets: Callable[[], Iterable[str]] = tuple) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place with its tokens removed; always keep it."""
        secrets = tuple(self._secrets())
        try:
            message = record.getMessage()
        except Exception:  # a record with bad arguments is still logged, as its format
            message = str(record.msg)
        record.msg, record.args = redact(message, *secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, *secrets)
            record.exc_info = None  # handlers would format the original again
        if record.stack_info:
            record.stack_info = redact(record.stack_info, *secrets)
        return True


def install(filter_: RedactingFilter, names: Iterable[str]) -> Callable[[], None]:
    """Attach ``filter_`` to each named logger; return a function that detaches it again."""
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(filter_)

    def uninstall() -> None:
        for logger in loggers:
            logger.removeFilter(filter_)

    return uninstall


__all__ = ["WEBSOCKETS_LOGGER", "RedactingFilter", "install"]
