"""What the emulator remembers across connections: conversations, who is connected, and rate limits.

Everything here is touched only from the emulator's event loop, so it needs no locks. Each check that
the protocol answers with a close code raises :class:`~amigo_lab.emulator.errors.Refusal` carrying that
code (protocol.md §5, §6): one open connection per (user, service) and at most five new conversations a
minute per user (4429), one unfinished conversation per (user, service) (4409), unknown conversation
(4404), another user's conversation (4403), a finished one (4409).
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from amigo_lab.emulator.errors import Refusal
from amigo_lab.protocol import CloseCode, constants

#: Window of the new-conversation rate limit, in seconds.
CONVERSATION_RATE_WINDOW_S = 60.0


def new_id() -> str:
    """A fresh id in the wire's form: 24 lowercase hex characters (like Amigo's object ids)."""
    return secrets.token_hex(12)


@dataclass
class ConversationRecord:
    """One conversation: whose, with which service, in which language, what was said, whether finished."""

    id: str
    user_id: str
    service_id: str
    version_set: str
    language: str
    history: list[tuple[str, str]] = field(default_factory=list)
    finished: bool = False
    interactions: int = 0


class ConversationStore:
    """Conversations and open connections of one emulator. Start here: :meth:`start` or :meth:`resume`."""

    def __init__(self, *, max_new_per_minute: int = constants.MAX_NEW_CONVERSATIONS_PER_MINUTE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._max_new_per_minute = max_new_per_minute
        self.conversations: dict[str, ConversationRecord] = {}
        self._unfinished: dict[tuple[str, str], str] = {}
        self._connected: set[tuple[str, str]] = set()
        self._starts: dict[str, deque[float]] = {}

    def start(self, user_id: str, service_id: str, version_set: str, language: str) -> ConversationRecord:
        """Create a conversation and mark (user, service) connected, or raise :class:`Refusal`.

        Next: :meth:`release` when the connection closes; :meth:`finish` when the conversation ends.
        """
        key = (user_id, service_id)
        self._refuse_second_connection(key)
        unfinished = self._unfinished.get(key)
        if unfinished is not None:
            raise Refusal(CloseCode.CONFLICT,
                          f"conversation {unfinished} is unfinished; continue it or finish it first")
        now = self._clock()
        starts = self._starts.setdefault(user_id, deque())
        while starts and now - starts[0] >= CONVERSATION_RATE_WINDOW_S:
            starts.popleft()
        if len(starts) >= self._max_new_per_minute:
            wait = CONVERSATION_RATE_WINDOW_S - (now - starts[0])
            raise Refusal(CloseCode.RATE_LIMITED,
                          f"at most {self._max_new_per_minute} new conversations a minute; retry in {wait:.0f} s")
        starts.append(now)
        record = ConversationRecord(new_id(), user_id, service_id, version_set, language)
        self.conversations[record.id] = record
        self._unfinished[key] = record.id
        self._connected.add(key)
        return record

    def resume(self, user_id: str, conversation_id: str) -> ConversationRecord:
        """Find an unfinished conversation of this user and mark it connected, or raise :class:`Refusal`."""
        record = self.conversations.get(conversation_id)
        if record is None:
            raise Refusal(CloseCode.NOT_FOUND, f"conversation {conversation_id} not found")
        if record.user_id != user_id:
            raise Refusal(CloseCode.FORBIDDEN, f"conversation {conversation_id} belongs to another user")
        if record.finished:
            raise Refusal(CloseCode.CONFLICT, f"conversation {conversation_id} is already finished; start a new one")
        key = (user_id, record.service_id)
        self._refuse_second_connection(key)
        self._connected.add(key)
        return record

    def release(self, record: ConversationRecord) -> None:
        """The connection that held ``record`` closed: another may now connect to its service."""
        self._connected.discard((record.user_id, record.service_id))

    def finish(self, record: ConversationRecord) -> None:
        """Mark ``record`` finished for good: it cannot be continued, and a new one may start."""
        record.finished = True
        key = (record.user_id, record.service_id)
        if self._unfinished.get(key) == record.id:
            del self._unfinished[key]

    def counts(self) -> dict[str, int]:
        """How many conversations exist, are unfinished, and are connected right now."""
        return {
            "conversations": len(self.conversations),
            "conversations_unfinished": len(self._unfinished),
            "conversations_connected": len(self._connected),
        }

    def _refuse_second_connection(self, key: tuple[str, str]) -> None:
        if key in self._connected:
            raise Refusal(CloseCode.RATE_LIMITED,
                          f"user already has an open connection to service {key[1]}; close it first")


class FrameRateLimiter:
    """A token bucket: ``rate`` frames a second on average, bursts of at most ``rate`` frames.

    Call :meth:`allow` for every received frame; False means the connection is over the limit (4429).
    """

    def __init__(self, rate: float = constants.MAX_FRAMES_PER_SECOND, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = float(rate)
        self._clock = clock
        self._tokens = float(rate)
        self._last = clock()

    def allow(self, *, slack_s: float = 0.0, at: float | None = None) -> bool:
        """Take one token; False when none is left.

        ``at`` is when the frame arrived (the clock's time; None: now). A reader that fell behind charges
        each frame at its arrival, so frames that waited in the socket are counted as the client sent
        them, however long they waited. ``slack_s`` is how late the reader runs (the event loop's current
        lag): the frames of one socket read share one arrival time, so the bucket holds
        ``rate * (1 + slack_s)`` tokens then. The refill stays ``rate`` a second, so a client sending more
        than ``rate`` frames a second is still refused however late the reader is.
        """
        now = self._clock() if at is None else at
        capacity = self._rate * (1.0 + max(0.0, slack_s))
        self._tokens = min(capacity, self._tokens + max(0.0, now - self._last) * self._rate)
        self._last = max(self._last, now)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


__all__ = ["CONVERSATION_RATE_WINDOW_S", "ConversationRecord", "ConversationStore", "FrameRateLimiter", "new_id"]
