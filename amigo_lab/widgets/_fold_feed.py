"""Fold events of a session, for widgets: what was folded so far, then every new event live.

Widgets never keep their own account of the conversation: they read interactions and latencies from the
protocol's one fold. A session that offers ``on_event`` delivers its own fold's events; otherwise this module
runs a :class:`~amigo_lab.protocol.fold.Fold` over the session's frame log (the same frames, the same rules),
fed from ``session.on_frame`` entries. Either way a widget starts with the log replayed, so it shows a session
that was already running when it was made.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from amigo_lab.protocol import parse
from amigo_lab.protocol.fold import Fold

__all__ = ["follow_fold", "replay_fold"]

_log = logging.getLogger(__name__)

_LOCAL_FIELDS = ("close_code", "close_reason", "message_id", "played_ms")


def _present(value: Any) -> Any:
    if value is None:
        return None
    try:
        if isinstance(value, float) and math.isnan(value):
            return None
        import pandas as pd

        if value is pd.NA:
            return None
    except (TypeError, ValueError):
        pass
    return value


def _feed_entry(fold: Fold, entry: Mapping[str, Any], frame: Any) -> None:
    direction = _present(entry.get("direction"))
    t = _present(entry.get("t"))
    kind = _present(entry.get("type"))
    if t is None or kind is None:
        return
    if direction == "local":
        fields = {name: _present(entry.get(name)) for name in _LOCAL_FIELDS}
        fold.feed_local(str(kind), float(t), **{k: v for k, v in fields.items() if v is not None})
        return
    if direction not in ("sent", "received"):
        return
    if frame is None:
        wire = _present(entry.get("wire"))
        if wire is None:
            return
        try:
            frame = parse(wire)
        except Exception:  # noqa: BLE001 - a frame that does not parse is the log's business, not the fold's
            return
    audio_ms = _present(entry.get("audio_ms"))
    fold.feed(str(direction), frame, float(t), audio_ms=None if audio_ms is None else float(audio_ms))


def replay_fold(frames: Any, *, response_format: str | None = None, audio_format: str | None = "pcm") -> list[Any]:
    """Every fold event of a frame-log DataFrame (``session.frames`` or ``load_session(...).frames``), in order.

    Next: pass the events to a widget's ``apply`` (e.g. :meth:`LatencyWaterfall.apply`).
    """
    fold = Fold(response_format=response_format, audio_format=audio_format)
    events: list[Any] = []
    for entry in frames.to_dict("records"):
        _feed_entry(fold, entry, None)
        events.extend(fold.events_received())
    return events


def follow_fold(session: Any, callback: Callable[[Any], None]) -> Callable[[], None]:
    """Call ``callback(event)`` for each fold event of ``session``: the log so far, then live. Returns a remover.

    The callback runs on the session's loop thread (live) or the caller's (replay): keep it short.
    """
    params = getattr(session, "params", None)
    response_format = getattr(params, "response_format", None)
    audio_format = getattr(params, "audio_format", "pcm")
    fold = Fold(response_format=response_format, audio_format=audio_format)
    lock = threading.Lock()
    last_seq = [-1]
    held: list[tuple[Mapping[str, Any], Any]] | None = []     # live entries that arrive during the replay

    def deliver(events: list[Any]) -> None:
        for event in events:
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - one widget's bug must not stop the feed
                _log.exception("a fold-event callback failed")

    def fold_entry(entry: Mapping[str, Any], frame: Any) -> list[Any]:
        seq = _present(entry.get("seq"))
        if seq is not None:
            if int(seq) <= last_seq[0]:
                return []       # already folded: the replay and the live feed overlap
            last_seq[0] = int(seq)
        _feed_entry(fold, entry, frame)
        return fold.events_received()

    def on_entry(entry: Mapping[str, Any], frame: Any) -> None:
        with lock:
            if held is not None:
                held.append((dict(entry), frame))
                return
            events = fold_entry(entry, frame)
        deliver(events)

    remove = session.on_frame(on_entry)
    for entry in session.log.to_dataframe().to_dict("records"):
        deliver(fold_entry(entry, None))
    while True:
        with lock:
            batch = list(held or [])
            if held:
                held.clear()
            else:
                held = None
                break
        for entry, frame in batch:
            deliver(fold_entry(entry, frame))
    return remove
