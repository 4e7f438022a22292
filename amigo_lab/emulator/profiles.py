"""Behaviour profiles: how the emulator's agent and network behave in time.

A :class:`Profile` bundles three independent choices:

* :class:`ResponseTiming`: how long after the end of the user's input (VAD end of speech, ``audio: null``,
  or a text message) the agent's answer starts. ``None`` answers at once (the instant agent). Otherwise
  each turn draws its delay from a log-normal distribution fixed by its median ``p50_s`` and 90th
  percentile ``p90_s``, clipped to ``[min_s, max_s]``; a turn whose delay exceeds ``filler_over_s`` says a
  short filler (``action-too-long``, its own ``message_id``) ``filler_after_s`` after the end of input, as
  production agents do to cover a slow turn. A slow tool still gets its own filler as before; the delay
  counts from the end of input, so a tool's time is part of it.
* :class:`Network`: what the link adds to every server frame: a one-way ``latency_ms``, ``jitter_ms``
  (the standard deviation of a normal added to it, never below zero), and ``loss`` (the probability that
  a frame is lost once and retransmitted ``retransmit_ms`` later, as TCP does). Frames keep their order:
  a late frame holds back the ones behind it (head-of-line blocking), like a real socket.
* :class:`Endpointing`: when the user's turn is over. ``"silence"`` ends it after ``end_silence_ms`` of
  silence (protocol.md §6: 500 ms). ``"semantic"`` is not offered: see ``data/README.md``.

The named profiles (:data:`PROFILES`): ``"instant"`` (the default: no delay, a perfect link) and
``"realistic"`` (p50 1.2 s / p90 2.2 s to the answer, fillers past 1.6 s, 40 ms ± 15 ms one way, 0.5 %
loss). Pick one with ``Emulator(profile="realistic")`` or ``amigo-lab emulator --profile realistic``, or pass
your own ``Profile(...)``. Draws come from a random generator seeded by ``seed`` per connection, so a run
is reproducible for a given connection order.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

from amigo_lab.protocol.constants import VAD_END_SILENCE_MS

_Z90 = 1.2815515655446004  # the 90th percentile of the standard normal


@dataclass(frozen=True)
class ResponseTiming:
    """Delay from the end of the user's input to the agent's answer (see the module docstring)."""

    p50_s: float
    p90_s: float
    min_s: float = 0.3
    max_s: float = 8.0
    #: A turn slower than this gets a filler; None: never.
    filler_over_s: float | None = 1.6
    #: When the filler starts, after the end of input.
    filler_after_s: float = 0.8

    def __post_init__(self) -> None:
        if not 0 < self.p50_s <= self.p90_s:
            raise ValueError(f"ResponseTiming needs 0 < p50_s <= p90_s, got p50_s={self.p50_s!r}, "
                             f"p90_s={self.p90_s!r}")
        if not 0 <= self.min_s <= self.max_s:
            raise ValueError(f"ResponseTiming needs 0 <= min_s <= max_s, got {self.min_s!r} and {self.max_s!r}")
        if self.filler_over_s is not None and not 0 <= self.filler_after_s < self.filler_over_s:
            raise ValueError("ResponseTiming.filler_after_s must be >= 0 and below filler_over_s "
                             f"({self.filler_after_s!r} vs {self.filler_over_s!r})")

    def draw(self, rng: random.Random) -> float:
        """One turn's delay in seconds."""
        sigma = math.log(self.p90_s / self.p50_s) / _Z90
        value = self.p50_s * math.exp(sigma * rng.gauss(0.0, 1.0))
        return min(self.max_s, max(self.min_s, value))


@dataclass(frozen=True)
class Network:
    """What the link adds to each server frame (see the module docstring)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    retransmit_ms: float = 200.0

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.jitter_ms < 0 or self.retransmit_ms < 0:
            raise ValueError("Network latency_ms, jitter_ms and retransmit_ms must not be negative")
        if not 0 <= self.loss < 1:
            raise ValueError(f"Network.loss is a probability from 0 to below 1, got {self.loss!r}")

    @property
    def perfect(self) -> bool:
        """True when the link adds nothing."""
        return self.latency_ms == 0 and self.jitter_ms == 0 and self.loss == 0

    def draw_s(self, rng: random.Random) -> float:
        """One frame's one-way delay in seconds."""
        delay = self.latency_ms + (rng.gauss(0.0, self.jitter_ms) if self.jitter_ms else 0.0)
        if self.loss and rng.random() < self.loss:
            delay += self.retransmit_ms
        return max(0.0, delay) / 1000


#: The endpointing modes :class:`Endpointing` accepts.
ENDPOINTING_MODES = ("silence",)


@dataclass(frozen=True)
class Endpointing:
    """When the user's turn is over: ``mode="silence"`` after ``end_silence_ms`` of silence."""

    mode: str = "silence"
    end_silence_ms: int = VAD_END_SILENCE_MS

    def __post_init__(self) -> None:
        if self.mode not in ENDPOINTING_MODES:
            raise ValueError(f"Endpointing.mode must be one of {list(ENDPOINTING_MODES)}, got {self.mode!r} "
                             "(semantic endpointing is not offered; see data/README.md)")
        if not 20 <= self.end_silence_ms <= 5000:
            raise ValueError(f"Endpointing.end_silence_ms must be from 20 to 5000, got {self.end_silence_ms!r}")


@dataclass(frozen=True)
class Profile:
    """How the emulator behaves in time: response timing, the network, endpointing. See the module docstring."""

    name: str
    response: ResponseTiming | None = None
    network: Network = field(default_factory=Network)
    endpointing: Endpointing = field(default_factory=Endpointing)
    seed: int = 0

    def with_options(self, **changes: object) -> Profile:
        """A copy with fields replaced, e.g. ``PROFILES["realistic"].with_options(seed=7)``."""
        return replace(self, **changes)  # type: ignore[arg-type]


PROFILES: dict[str, Profile] = {
    "instant": Profile(name="instant"),
    "realistic": Profile(
        name="realistic",
        response=ResponseTiming(p50_s=1.2, p90_s=2.2, filler_over_s=1.6, filler_after_s=0.8),
        network=Network(latency_ms=40.0, jitter_ms=15.0, loss=0.005),
    ),
}

#: The profile used when none is given.
DEFAULT_PROFILE = "instant"


def resolve_profile(profile: str | Profile | None) -> Profile:
    """The :class:`Profile` for a name of :data:`PROFILES`, a Profile, or None (the default). Raises
    ValueError naming the known profiles for an unknown name."""
    if profile is None:
        return PROFILES[DEFAULT_PROFILE]
    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, str) and profile in PROFILES:
        return PROFILES[profile]
    raise ValueError(f"unknown emulator profile {profile!r}; use one of {sorted(PROFILES)} or a Profile(...)")


__all__ = ["DEFAULT_PROFILE", "ENDPOINTING_MODES", "PROFILES", "Endpointing", "Network", "Profile", "ResponseTiming",
           "resolve_profile"]
