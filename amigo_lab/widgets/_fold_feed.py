"""Fold events of a session, for widgets: what was folded so far, then every new event live.

Widgets never keep their own account of the conversation: they read interactions and latencies from the
protocol's one fold. Live events are the session's own fold's (``session.on_event``); what the log held
before a widget subscribed is replayed through a :class:`~amigo_lab.protocol.fold.Fold` by
:func:`amigo_lab.framelog.feed_row`, the rule the analysis replays a saved log by, so a widget shows a session
that was already running when it was made.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from amigo_lab.framelog import feed_row
from amigo_lab.framelog._values import missing
from amigo_lab.protocol import NewAudioMessage, NewMessage
from amigo_lab.protocol.fold import Fold

__all__ = ["WIRE_TAIL", "follow_fold", "log_entries", "log_records", "replay_fold", "shared_history"]

_log = logging.getLogger(__name__)


WIRE_TAIL = 1000
"""Entries at the end of a replayed log that keep their wire text (the inspector expands them without a
read of the log); older audio entries come without it."""

# Columns no widget reads from a replayed entry: the wall clock, and the wire text (read where needed only).
_SKIPPED_COLUMNS = ("wall", "wire")


def _column(series: Any) -> list[Any]:
    """One column as Python values, missing ones (NaN, pandas NA) as None."""
    try:
        return series.to_numpy(dtype=object, na_value=None).tolist()
    except (TypeError, ValueError):
        return [_present(v) for v in series.astype(object).tolist()]


def _is_audio(types: Any, audio_bytes: Any) -> Any:
    """Rows of sent chunks and received agent audio pieces (the bulk of a voice log)."""
    carries = audio_bytes.fillna(0).to_numpy(dtype=float) > 0
    kinds = types.to_numpy(dtype=object)
    return carries & ((kinds == NewAudioMessage.TYPE) | (kinds == NewMessage.TYPE))


def log_records(frames: Any, *, wire_tail: int = WIRE_TAIL) -> list[dict[str, Any]]:
    """The rows of a frame-log DataFrame as dicts, missing values as None, for widgets to replay.

    Built column by column (several times faster than ``DataFrame.to_dict("records")``); the wire text, most
    of a voice log's bytes, is kept only where a widget reads it: for frames the fold parses (everything but
    audio chunks and agent audio pieces, which it rebuilds from their columns) and for the last
    ``wire_tail`` entries. Next: feed them to widgets, or let :func:`shared_history` do it.
    """
    if frames is None or not len(frames):
        return []
    names = [name for name in frames.columns if name not in _SKIPPED_COLUMNS]
    columns = [_column(frames[name]) for name in names]
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    if "wire" in frames.columns:
        wanted = np.ones(len(frames), dtype=bool)
        if "audio_bytes" in frames.columns:
            wanted = ~_is_audio(frames["type"], frames["audio_bytes"])
        if wire_tail > 0:
            wanted[-wire_tail:] = True
        where = np.flatnonzero(wanted)
        for i, wire in zip(where.tolist(), _column(frames["wire"].iloc[where]), strict=True):
            rows[i]["wire"] = wire
    return rows


def _present(value: Any) -> Any:
    """The value, or None when it is missing (NA, None or NaN: the frame log's own rule)."""
    return None if missing(value) else value


def replay_fold(frames: Any, *, response_format: str | None = None, audio_format: str | None = "pcm") -> list[Any]:
    """Every fold event of a frame-log DataFrame (``session.frames`` or ``load_session(...).frames``), in order.

    Next: pass the events to a widget's ``apply`` (e.g. :meth:`LatencyWaterfall.apply`).
    """
    fold = Fold(response_format=response_format, audio_format=audio_format)
    events: list[Any] = []
    for entry in log_records(frames, wire_tail=0):
        feed_row(fold, entry)
        events.extend(fold.events_received())
    return events


class _History:
    """One read of a session's log, shared by the widgets a panel attaches at once (see :func:`shared_history`).

    ``records`` is the log as read; entries logged since arrive in ``later`` (the collector subscribed before
    the read, so nothing falls between). The fold runs once over both.
    """

    def __init__(self, session: Any) -> None:
        params = getattr(session, "params", None)
        self._lock = threading.Lock()
        self._later: list[tuple[dict[str, Any], Any]] = []
        self.remove = session.on_frame(lambda entry, frame: self._collect(entry, frame))
        self.records: list[dict[str, Any]] = log_records(session.log.to_dataframe())
        self._fold = Fold(response_format=getattr(params, "response_format", None),
                          audio_format=getattr(params, "audio_format", "pcm"))
        self._events: list[Any] = []
        self._folded_seq = -1
        self._until = -math.inf
        self._fold_in(self.records, with_frames=False)

    def _collect(self, entry: Mapping[str, Any], frame: Any) -> None:
        with self._lock:
            self._later.append((dict(entry), frame))

    def _fold_in(self, items: Any, *, with_frames: bool) -> None:
        for item in items:
            entry, frame = item if with_frames else (item, None)
            seq = _present(entry.get("seq"))
            if seq is not None:
                if int(seq) <= self._folded_seq:
                    continue
                self._folded_seq = int(seq)
            feed_row(self._fold, entry, frame=frame)
            self._events.extend(self._fold.events_received())
            t = _present(entry.get("t"))
            if t is not None:
                self._until = max(self._until, float(t))

    def entries(self) -> list[Mapping[str, Any]]:
        """Every entry so far: the read, then what was logged since (a widget dedupes by ``seq``)."""
        with self._lock:
            later = [entry for entry, _ in self._later]
        return [*self.records, *later]

    def events(self) -> tuple[list[Any], float]:
        """The fold's events of every entry so far, and the session-clock time they reach."""
        with self._lock:
            later = list(self._later)
        self._fold_in(later, with_frames=True)
        return list(self._events), self._until


_shared: weakref.WeakKeyDictionary[Any, _History] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def shared_history(session: Any) -> Iterator[None]:
    """Inside this block, widgets that :meth:`follow` ``session`` share one read of its log and one replay
    of its fold, instead of each reading and replaying it (seconds each on an hour-long session).

    :class:`~amigo_lab.widgets.SessionPanel` uses it when it attaches a session.
    """
    history = _History(session)
    _shared[session] = history
    try:
        yield
    finally:
        _shared.pop(session, None)
        history.remove()


def log_entries(session: Any) -> list[Mapping[str, Any]]:
    """The session's frame-log entries so far, as dicts (from the shared read inside :func:`shared_history`)."""
    history = _shared.get(session)
    if history is not None:
        return history.entries()
    return list(log_records(session.log.to_dataframe()))


def follow_fold(session: Any, callback: Callable[[Any], None]) -> Callable[[], None]:
    """Call ``callback(event)`` for each fold event of ``session``: the log so far, then live. Returns a remover.

    Live events are the session's own fold's (``session.on_event``); what happened before this call is the
    same log replayed through the same rules, so the interaction indices agree. The callback runs on the
    session's loop thread (live) or the caller's (replay): keep it short.
    """
    params = getattr(session, "params", None)
    lock = threading.Lock()
    held: list[Any] | None = []         # live events that arrive during the replay

    def deliver(events: list[Any]) -> None:
        for event in events:
            try:
                callback(event)
            except Exception:
                _log.exception("a fold-event callback failed")

    def on_live(event: Any) -> None:
        with lock:
            if held is not None:
                held.append(event)
                return
        deliver([event])

    remove: Callable[[], None] = session.on_event(on_live)
    # Events of entries already logged come from a replay; the session's fold may report some of them again
    # just after (it folds on its loop thread), so only later ones are taken from the live feed.
    history = _shared.get(session)
    if history is not None:
        replayed, replayed_until = history.events()
    else:
        frames = session.log.to_dataframe()
        replayed_until = float(frames["t"].max()) if len(frames) else -math.inf
        replayed = replay_fold(frames, response_format=getattr(params, "response_format", None),
                               audio_format=getattr(params, "audio_format", "pcm"))
    deliver(replayed)
    while True:
        with lock:
            batch = list(held or [])
            if held:
                held.clear()
            else:
                held = None
                break
        deliver([event for event in batch if float(getattr(event, "t", math.inf)) > replayed_until])
    return remove
