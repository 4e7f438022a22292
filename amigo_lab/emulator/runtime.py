"""What every connection of one emulator shares: settings, limits, services, the agent, the store, the
speech engines, the worker threads and the counters behind ``Emulator.stats()``."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from amigo_lab.emulator.agent import Agent
from amigo_lab.emulator.profiles import Profile, resolve_profile
from amigo_lab.emulator.recognition import SHARED_RECOGNITION, RecognitionWorker
from amigo_lab.emulator.rendering import SHARED_SPEECH_CACHE, SpeechCache
from amigo_lab.emulator.services import Service
from amigo_lab.emulator.store import ConversationStore
from amigo_lab.protocol import constants

#: A slow tool (longer than this, in seconds) gets a filler.
SLOW_TOOL_S = 1.5
#: A slow tool's filler starts after the tool has run this long without a result.
FILLER_AFTER_S = 1.0
# The emulator's own bounds on work one client can ask for (protocol.md §6 is silent on them).
MAX_TEXT_CHARS = 4000
MAX_EVENT_CHARS = 1000
MAX_UTTERANCE_S = 60.0
MAX_AUDIO_AHEAD_S = 30.0


@dataclass(frozen=True)
class Limits:
    """The limits of protocol.md §6, one field each; the defaults are the protocol's.

    Tests shrink them (e.g. ``idle_timeout_s=0.5``) to exercise a limit quickly.
    """

    idle_timeout_s: float = constants.IDLE_TIMEOUT_S
    max_frame_bytes: int = constants.MAX_FRAME_BYTES
    frames_per_second: float = constants.MAX_FRAMES_PER_SECOND
    new_conversations_per_minute: int = constants.MAX_NEW_CONVERSATIONS_PER_MINUTE
    keepalive_interval_s: float = constants.KEEPALIVE_INTERVAL_S
    keepalive_timeout_s: float = constants.KEEPALIVE_TIMEOUT_S
    #: How long a close waits for the client's close reply before dropping the socket.
    close_timeout_s: float = 3.0
    slow_tool_s: float = SLOW_TOOL_S
    filler_after_s: float = FILLER_AFTER_S
    #: Characters of one user text message; longer gets ``server.error`` 400 (the text is not answered).
    max_text_chars: int = MAX_TEXT_CHARS
    #: Characters of one external event (the agent repeats it, so its audio grows with it); longer gets 400.
    max_event_chars: int = MAX_EVENT_CHARS
    #: Seconds of one user utterance: push-to-talk audio beyond it gets 400 per chunk (end the turn with
    #: ``audio: null``); VAD speech this long ends as if the user had paused.
    max_utterance_s: float = MAX_UTTERANCE_S
    #: How far the user's audio may run ahead of real time, counted from its first chunk; a chunk beyond
    #: it gets 400 and is dropped (send in real time, or wait).
    max_audio_ahead_s: float = MAX_AUDIO_AHEAD_S


@dataclass
class Counters:
    """Running totals of one emulator; read through ``Emulator.stats()``."""

    connections_open: int = 0
    connections_total: int = 0
    frames_in: int = 0
    frames_out: int = 0
    interactions: int = 0
    barge_ins: int = 0
    close_codes: Counter = field(default_factory=Counter)


class LoopLag:
    """How late the serving event loop runs, for the frame-rate limiter (see ``FrameRateLimiter.allow``).

    :meth:`run` ticks every ``interval_s``; :attr:`seconds` is the worst lateness of the last ``memory_s``,
    or how overdue the current tick is when the loop is stalled right now.
    """

    def __init__(self, *, interval_s: float = 0.05, memory_s: float = 5.0) -> None:
        self._interval_s = interval_s
        self._memory_s = memory_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_tick = 0.0
        self._peak = 0.0
        self._peak_at = 0.0

    async def run(self) -> None:
        """Measure until cancelled (the emulator runs it on its serving loop)."""
        loop = self._loop = asyncio.get_running_loop()
        self._last_tick = loop.time()
        while True:
            await asyncio.sleep(self._interval_s)
            now = loop.time()
            late = now - self._last_tick - self._interval_s
            if late >= self._peak or now - self._peak_at > self._memory_s:
                self._peak, self._peak_at = max(0.0, late), now
            self._last_tick = now

    @property
    def seconds(self) -> float:
        """The loop's lag now, in seconds (0 when not measured)."""
        if self._loop is None:
            return 0.0
        now = self._loop.time()
        overdue = now - self._last_tick - self._interval_s
        recent = self._peak if now - self._peak_at <= self._memory_s else 0.0
        return max(0.0, overdue, recent)


class Runtime:
    """The shared state of one emulator. Built by :class:`~amigo_lab.emulator.Emulator`; connections read it."""

    def __init__(self, *, org: str, users: Mapping[str, str], services: Mapping[str, Service], agent: Agent,
                 limits: Limits, realtime: bool, profile: Profile | None = None,
                 speech_cache: SpeechCache = SHARED_SPEECH_CACHE,
                 recognition: RecognitionWorker = SHARED_RECOGNITION) -> None:
        self.org = org
        self.users = dict(users)
        self.services = dict(services)
        self.agent = agent
        self.limits = limits
        self.realtime = realtime
        self.profile = profile if profile is not None else resolve_profile(None)
        self.store = ConversationStore(max_new_per_minute=limits.new_conversations_per_minute)
        self.speech_cache = speech_cache
        self.counters = Counters()
        self.loop_lag = LoopLag()
        # Synthesis, MP3 coding, language identification and agents run here, never on the event loop.
        self.executor = ThreadPoolExecutor(max_workers=min(8, 4 * (os.cpu_count() or 1)),
                                           thread_name_prefix="amigo-emulator")
        # Speech recognition runs in worker processes (see recognition.py), started when speech first comes;
        # each then builds the recognizers of these services before its first stream.
        self.recognition = recognition
        for service in self.services.values():
            recognition.warm(service.english_phrases())
        self._holds_recognition = False

    def open(self) -> None:
        """The emulator starts serving: hold the recognition pool (its workers stop with the last holder)."""
        if not self._holds_recognition:
            self._holds_recognition = True
            self.recognition.acquire()

    @property
    def loop_lag_s(self) -> float:
        """How late the serving loop runs now (see :class:`LoopLag`)."""
        return self.loop_lag.seconds

    def close(self) -> None:
        """Release the worker threads (running jobs finish on their own) and the recognition pool."""
        self.executor.shutdown(wait=False, cancel_futures=False)
        if self._holds_recognition:
            self._holds_recognition = False
            self.recognition.release()

    def stats(self) -> dict[str, object]:
        """A snapshot of the counters and the store's counts."""
        counters = self.counters
        return {
            "connections_open": counters.connections_open,
            "connections_total": counters.connections_total,
            **self.store.counts(),
            "frames_in": counters.frames_in,
            "frames_out": counters.frames_out,
            "interactions": counters.interactions,
            "barge_ins": counters.barge_ins,
            "close_codes": dict(counters.close_codes),
            "speech_cache_hits": self.speech_cache.hits,
            "speech_cache_misses": self.speech_cache.misses,
            "speech_cache_bytes": self.speech_cache.size_bytes,
            "recognition_workers": len(self.recognition.running),
        }


__all__ = ["FILLER_AFTER_S", "MAX_AUDIO_AHEAD_S", "MAX_EVENT_CHARS", "MAX_TEXT_CHARS", "MAX_UTTERANCE_S", "SLOW_TOOL_S",
           "Counters", "Limits", "LoopLag", "Runtime"]
