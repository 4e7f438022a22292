"""The per-turn latency waterfall, live: where the time went between the user's last word and the agent's voice.

One row per interaction, one segment per step: user's end of speech → server VAD end → first text → first
audio → first answer audio → first audio heard. Each segment ends at a stamp of the protocol's fold and is
labelled with the fold's latency name for that stamp and its definition; the header keeps running p50 / p90
of every latency of :data:`amigo_lab.protocol.fold.LATENCIES` over the session. The numbers are the fold's, so
they equal ``analysis.turns`` for the same session under the same names::

    from amigo_lab.widgets import LatencyWaterfall
    LatencyWaterfall(session)            # follows the session live (its log so far first)

Without a session, :meth:`LatencyWaterfall.apply` takes fold events (e.g. from
:func:`amigo_lab.widgets.replay_fold` on a recorded session's frames).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from amigo_lab.protocol.fold import (
    LATENCIES,
    InteractionCompleted,
    InteractionUpdated,
    InteractionVoided,
)

__all__ = ["WATERFALL_STEPS", "LatencyWaterfall"]

_HERE = Path(__file__).parent

WATERFALL_STEPS = (
    ("vad_end", None),
    ("first_text", "latency_first_text_ms"),
    ("first_audio", "latency_first_audio_ms"),
    ("first_answer_audio", "latency_first_answer_audio_ms"),
    ("first_heard", "latency_first_heard_ms"),
)
"""The stamps a waterfall row steps through after ``user_end``, each with the latency that ends there (the VAD
end is shown as a mark with its own delay from the user's end of speech)."""

MAX_TURNS = 200
"""Rows the waterfall keeps (the oldest scroll out; the p50 / p90 cover every turn)."""


def _ms(origin: float | None, target: float | None) -> float | None:
    if origin is None or target is None:
        return None
    return round((target - origin) * 1000.0, 3)


def _percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50": None, "p90": None, "n": 0}
    array = np.asarray(values, dtype=float)
    return {"p50": round(float(np.percentile(array, 50)), 3), "p90": round(float(np.percentile(array, 90)), 3),
            "n": int(array.size)}


class LatencyWaterfall(anywidget.AnyWidget):
    """Per-turn latency waterfall with running p50 / p90, from the protocol fold's interaction records.

    Traits (set from Python): ``turns`` (one dict per interaction: ``index``, ``kind``, ``status``,
    ``user_text``, ``reply_text``, ``interrupted``, ``offsets`` = each stamp of :data:`WATERFALL_STEPS` in ms
    after ``user_end``, ``latencies`` = the fold's latencies by name), ``summary`` (latency name ->
    ``{"p50", "p90", "n"}``, the greeting left out) and ``definitions`` (latency name -> its one-line
    definition). ``include_greeting`` puts the greeting in the p50 / p90 too.

    Next: display it beside a :class:`~amigo_lab.widgets.SessionPanel`; compare with ``analysis.turns``.
    """

    _esm = _HERE / "waterfall.js"
    _css = _HERE / "waterfall.css"

    turns = traitlets.List(traitlets.Dict()).tag(sync=True)
    summary = traitlets.Dict().tag(sync=True)
    definitions = traitlets.Dict().tag(sync=True)
    include_greeting = traitlets.Bool(False).tag(sync=True)

    def __init__(self, session: Any = None, **kwargs: Any) -> None:
        self._lock = threading.RLock()
        self._records: dict[int, dict[str, Any]] = {}
        self._stats: dict[int, tuple[str, str, dict[str, float | None]]] = {}   # every turn, for p50 / p90
        self._remove: Callable[[], None] | None = None
        self._quiet = False
        super().__init__(**kwargs)
        self.definitions = {name: {"definition": spec[2], "origin": spec[0], "target": spec[1]}
                            for name, spec in LATENCIES.items()}
        if session is not None:
            self.follow(session)

    def follow(self, session: Any) -> None:
        """Show ``session``'s interactions: those folded so far, then each one as it completes."""
        from amigo_lab.widgets._fold_feed import follow_fold

        self.unfollow()
        with self._lock:
            self._records.clear()
            self._stats.clear()
        with self.hold_sync():
            # The replay's turns are published once, at its end, not once per replayed turn.
            self._quiet = True
            try:
                self._remove = follow_fold(session, self.apply)
            finally:
                self._quiet = False
            self._publish()

    def unfollow(self) -> None:
        """Stop following (what is shown stays)."""
        remove, self._remove = self._remove, None
        if remove is not None:
            remove()

    def close(self) -> None:
        """Stop following and close the widget."""
        self.unfollow()
        super().close()

    def apply(self, event: Any) -> None:
        """Take one fold event; completed, voided and updated interactions change the waterfall."""
        if not isinstance(event, (InteractionCompleted, InteractionVoided, InteractionUpdated)):
            return
        record = event.record
        with self._lock:
            row = self._row(record)
            self._records[record.index] = row
            self._stats[record.index] = (row["kind"], row["status"], row["latencies"])
            while len(self._records) > MAX_TURNS:
                del self._records[min(self._records)]
        self._publish()

    @staticmethod
    def _row(record: Any) -> dict[str, Any]:
        stamps: Mapping[str, float | None] = record.stamps
        origin = stamps.get("user_end")
        return {
            "index": record.index,
            "kind": record.kind,
            "status": record.status,
            "user_text": record.user_text or record.sent_text or "",
            "reply_text": record.reply_text or "",
            "interrupted": bool(record.interrupted),
            "offsets": {stamp: _ms(origin, stamps.get(stamp)) for stamp, _ in WATERFALL_STEPS},
            "latencies": {name: (None if value is None else round(float(value), 3))
                          for name, value in record.latencies.items()},
        }

    def _publish(self) -> None:
        if self._quiet:
            return
        with self._lock:
            rows = [self._records[i] for i in sorted(self._records)]
            counted = [latencies for kind, status, latencies in self._stats.values()
                       if status == "completed" and (self.include_greeting or kind != "greeting")]
        summary = {name: _percentiles([value for lat in counted if (value := lat.get(name)) is not None])
                   for name in LATENCIES}
        with self.hold_sync():
            self.turns = rows
            self.summary = summary

    @traitlets.observe("include_greeting")
    def _greeting_changed(self, _change: dict) -> None:
        self._publish()
