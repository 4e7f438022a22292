"""Thread-safe pools of pocketsphinx decoders, one pool per vocabulary.

A decoder costs time and memory to build (about 0.3 s and 95 MB with the general English language model,
about 15 ms and 6 MB for a phrase grammar), and holds the state of one utterance at a time. A
:class:`DecoderPool` hands a decoder to each recognition stream and takes it back when the stream ends,
so concurrent streams each get their own decoder and sequential streams reuse them.
:func:`shared_pool` returns the process-wide pool for a vocabulary, so every recognizer with the same
phrases shares it; the pool is dropped once no recognizer refers to it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable

import pocketsphinx

__all__ = ["MAX_IDLE_DECODERS", "DecoderPool", "shared_pool"]

MAX_IDLE_DECODERS = 8
"""Decoders a pool keeps for reuse; decoders returned beyond this are freed."""


class DecoderPool:
    """Builds decoders on demand with ``factory`` and recycles them; safe to use from many threads.

    Call :meth:`acquire` to get a decoder for one utterance and :meth:`release` to give it back.
    """

    def __init__(self, factory: Callable[[], pocketsphinx.Decoder], *, max_idle: int = MAX_IDLE_DECODERS) -> None:
        self._factory = factory
        self._max_idle = max_idle
        self._idle: list[pocketsphinx.Decoder] = []
        self._lock = threading.Lock()
        self._created = 0

    @property
    def idle_count(self) -> int:
        """Decoders ready for reuse right now."""
        with self._lock:
            return len(self._idle)

    @property
    def created_count(self) -> int:
        """Decoders this pool has built so far."""
        with self._lock:
            return self._created

    def acquire(self) -> pocketsphinx.Decoder:
        """Return an idle decoder, or build one (outside the lock, so other threads are not blocked)."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        decoder = self._factory()
        with self._lock:
            self._created += 1
        return decoder

    def release(self, decoder: pocketsphinx.Decoder) -> None:
        """Give back a decoder that is not inside an utterance; it is kept for reuse if there is room."""
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(decoder)

    def prefill(self, count: int) -> None:
        """Build decoders until at least ``count`` are idle (capped at the pool's idle limit)."""
        target = min(count, self._max_idle)
        while self.idle_count < target:
            decoder = self._factory()
            with self._lock:
                self._created += 1
            self.release(decoder)


_pools: weakref.WeakValueDictionary[Hashable, DecoderPool] = weakref.WeakValueDictionary()
_pools_lock = threading.Lock()


def shared_pool(key: Hashable, factory: Callable[[], pocketsphinx.Decoder]) -> DecoderPool:
    """Return the process-wide pool for ``key`` (a vocabulary), creating it with ``factory`` if needed."""
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = DecoderPool(factory)
            _pools[key] = pool
        return pool
