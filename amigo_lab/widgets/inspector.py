"""The event inspector: every frame of a session, both ways, live, findable in seconds.

One row per frame (direction, time on the session clock, type, a short payload); runs of audio fold into one
row that keeps counting ("audio ×250, 5.0 s") so microphone-rate traffic stays readable. Any row expands to
its exact wire JSON, fetched from the kernel only when asked. The browser keeps a bounded window of rows and
draws only what is on screen; the kernel sends new and changed rows in batches, a few times a second, as
compact custom messages (never one trait per frame)::

    from amigo_lab.widgets import EventInspector
    EventInspector(session)          # follows the session live, after replaying what it already logged

Use it on its own or inside :class:`~amigo_lab.widgets.SessionPanel` (its *Frames* section). Without a session,
:meth:`EventInspector.feed` takes frame-log entries (dicts with the columns of
:data:`amigo_lab.framelog.COLUMNS`) from anywhere, e.g. a recorded session.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anywidget
import pandas as pd
import traitlets

from amigo_lab.widgets._fold_feed import log_entries

__all__ = ["INSPECTOR_WINDOW", "EventInspector"]

_log = logging.getLogger(__name__)
_HERE = Path(__file__).parent

INSPECTOR_WINDOW = 5000
"""Rows the browser keeps (a folded audio run is one row); older rows scroll out of the inspector, the frame
log keeps everything."""

FLUSH_EVERY_S = 0.1
"""How often new and changed rows go to the browser, in one message."""

DETAIL_WINDOW = 1000
"""Entries whose wire text the kernel keeps at hand for expanding a row; older ones are read from the log."""

RUN_GAP_S = 1.0
"""A pause longer than this in the user's audio starts a new run row."""

_SUMMARY_CHARS = 120
# Columns of a row as sent to the browser, in this order (a list per row keeps the messages small).
ROW_FIELDS = ("id", "seq", "t", "direction", "type", "summary", "n", "audio_ms", "t_end", "last_seq", "flags")
_FOLDED_LOCAL = {"playback.progress"}


def _value(entry: Mapping[str, Any], name: str) -> Any:
    """A column of an entry, with pandas' missing values (a replayed DataFrame row) as None."""
    value = entry.get(name)
    if value is None or isinstance(value, (str, bool, int, dict, list)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):
        return value


def _cut(text: Any, limit: int = _SUMMARY_CHARS) -> str:
    text = str(text).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _alignment_text(alignment: Any) -> str:
    if not alignment:
        return ""
    try:
        pairs = json.loads(alignment) if isinstance(alignment, str) else alignment
        return "".join(str(pair[1]) for pair in pairs)
    except (ValueError, TypeError, IndexError, KeyError):
        return ""


def summarize(entry: Mapping[str, Any]) -> str:
    """A short, readable payload of one frame-log entry, as the inspector's *payload* column shows it."""
    kind = str(_value(entry, "type") or "")
    parts: list[str] = []
    code = _value(entry, "http_error_code")
    if code is not None:
        parts.append(f"error {code}")
    close = _value(entry, "close_code")
    if close is not None:
        parts.append(f"close {close}")
    vad_on = _value(entry, "vad_mode_on")
    if vad_on is not None:
        parts.append("VAD on" if vad_on else "VAD off")
    vad_ms = _value(entry, "vad_ms")
    if vad_ms is not None:
        parts.append(f"at {float(vad_ms):.0f} ms")
    played = _value(entry, "played_ms")
    if played is not None:
        parts.append(f"played {float(played):.0f} ms")
    number = _value(entry, "sequence_number")
    if number is not None:
        parts.append(f"#{number}")
    text = _value(entry, "text")
    if text is None and kind == "server.new-message":
        text = _alignment_text(_value(entry, "alignment")) or None
    for candidate in (text, _value(entry, "error_description"), _value(entry, "close_reason"),
                      _value(entry, "action_type")):
        if candidate:
            parts.append(f"“{_cut(candidate)}”" if candidate is text else _cut(candidate))
            break
    if kind == "client.new-audio-message" and not _value(entry, "audio_bytes"):
        parts.append("end of audio (null)")
    if _value(entry, "stop") is True and kind != "client.new-audio-message":
        parts.append("stop")
    if _value(entry, "conversation_completed") is True:
        parts.append("conversation completed")
    if not parts:
        extra = _value(entry, "extra")
        if extra:
            parts.append(_cut(extra if isinstance(extra, str) else json.dumps(extra), 80))
    return " ".join(parts)


class _Run:
    """An open run of audio (or playback progress) entries shown as one row."""

    __slots__ = ("last", "row", "text")

    def __init__(self, row: list[Any], text: str) -> None:
        self.row = row
        self.text = text
        self.last: Mapping[str, Any] | None = None     # its last entry, while a replay defers the summary


class EventInspector(anywidget.AnyWidget):
    """A live, scrolling list of every frame both ways; rows expand to their exact wire JSON.

    In the browser: include / exclude chips per type (click: include, again: exclude, again: neutral), a
    *hide audio* switch, text search over type and payload, *follow* (scroll with new rows) or *pause*, and a
    click on a row to see its wire JSON (a folded run shows its first and last frame).

    Traits: ``window`` (rows the browser keeps, default :data:`INSPECTOR_WINDOW`), ``hide_audio`` and
    ``search`` (also set from the browser), ``entries`` (how many entries were fed, set by the kernel).

    Next: :meth:`follow` a session (or pass it to the constructor), or :meth:`feed` entries yourself.
    """

    _esm = _HERE / "inspector.js"
    _css = _HERE / "inspector.css"

    window = traitlets.Int(INSPECTOR_WINDOW, min=100).tag(sync=True)
    hide_audio = traitlets.Bool(False).tag(sync=True)
    search = traitlets.Unicode("").tag(sync=True)
    entries = traitlets.Int(0).tag(sync=True)

    def __init__(self, session: Any = None, **kwargs: Any) -> None:
        self._lock = threading.RLock()
        self._rows: collections.OrderedDict[int, list[Any]] = collections.OrderedDict()
        self._dirty: dict[int, list[Any]] = {}
        self._runs: dict[tuple[Any, ...], _Run] = {}
        self._stale: set[_Run] = set()       # runs a replay grew, whose summary it writes at its end
        self._wire: collections.OrderedDict[int, tuple[str | None, dict[str, Any]]] = collections.OrderedDict()
        self._count = 0
        self._last_seq = -1
        self._session: Any = None
        self._remove_listener: Callable[[], None] | None = None
        self._stop = threading.Event()
        super().__init__(**kwargs)
        self.on_msg(self._handle_message)
        self._flusher = threading.Thread(target=self._flush_loop, name="amigo_lab-inspector", daemon=True)
        self._flusher.start()
        if session is not None:
            self.follow(session)

    # --- following a session -----------------------------------------------------------------------------

    @property
    def session(self) -> Any:
        """The session followed, or ``None``."""
        return self._session

    def follow(self, session: Any) -> None:
        """Show ``session``: replay what its log already holds, then follow new entries live."""
        self.unfollow()
        with self._lock:
            self._reset()
            self._session = session
            self._remove_listener = session.on_frame(self._on_live_entry)
        entries = log_entries(session)
        # Only the newest entries' wire text is kept at hand; expanding an older row reads the log.
        keep_from = len(entries) - DETAIL_WINDOW
        for index, entry in enumerate(entries):
            self._feed(entry, remember=index >= keep_from)
        with self._lock:
            for run in self._stale:
                if run.last is not None:
                    run.row[5] = self._run_summary(run.row[4], run.last, run.row, run.text)
                    run.last = None
            self._stale.clear()

    def unfollow(self) -> None:
        """Stop following the current session (what is shown stays)."""
        remove, self._remove_listener = self._remove_listener, None
        if remove is not None:
            remove()

    def close(self) -> None:
        """Stop following, stop sending, close the widget."""
        self.unfollow()
        self._stop.set()
        super().close()

    def _on_live_entry(self, entry: Mapping[str, Any], _frame: Any) -> None:
        self.feed(entry)

    def _reset(self) -> None:
        self._rows.clear()
        self._dirty.clear()
        self._runs.clear()
        self._wire.clear()
        self._count = 0
        self._last_seq = -1
        self._send_safely({"kind": "reset"})

    # --- entries -> rows ---------------------------------------------------------------------------------

    def feed(self, entry: Mapping[str, Any]) -> None:
        """Add one frame-log entry (a live dict or a replayed DataFrame row); safe from any thread.

        An entry already shown (same ``seq``) is ignored, so a replay and the live feed may overlap.
        """
        self._feed(entry, remember=True)

    def _feed(self, entry: Mapping[str, Any], *, remember: bool) -> None:
        seq = _value(entry, "seq")
        with self._lock:
            if seq is not None:
                seq = int(seq)
                if seq <= self._last_seq:
                    return
                self._last_seq = seq
            else:
                seq = self._last_seq = self._last_seq + 1
            self._count += 1
            direction = str(_value(entry, "direction") or "")
            kind = str(_value(entry, "type") or "")
            t = float(_value(entry, "t") or 0.0)
            audio_ms = _value(entry, "audio_ms")
            audio = _value(entry, "audio_bytes") not in (None, 0) or kind in _FOLDED_LOCAL
            if remember:
                self._remember(seq, entry)
            flags = str(_value(entry, "flags") or "")
            if audio:
                key, piece = self._run_key(direction, kind, entry)
                run = self._runs.get(key)
                if run is not None and (direction != "sent" or t - run.row[8] <= RUN_GAP_S):
                    row = run.row
                    row[6] += 1
                    if row[7] is not None:
                        row[7] = round(row[7] + float(audio_ms or 0.0), 3)
                    row[8] = t
                    row[9] = seq
                    if piece and len(run.text) <= _SUMMARY_CHARS:
                        run.text += piece       # enough for the summary; the log keeps the rest
                    if remember:
                        row[5] = self._run_summary(kind, entry, row, run.text)
                    else:
                        run.last = entry        # a replay writes the summary once, at its end
                        self._stale.add(run)
                    self._dirty[row[0]] = row
                else:
                    ms = None if kind in _FOLDED_LOCAL else float(audio_ms or 0.0)
                    row = [seq, seq, t, direction, kind, "", 1, ms, t, seq, flags]
                    run = _Run(row, piece)
                    row[5] = self._run_summary(kind, entry, row, run.text)
                    self._runs[key] = run
                    self._add(row)
                if _value(entry, "stop") is True:
                    self._runs.pop(key, None)
                return
            if direction in ("sent", "received"):
                # Anything else sent (end of audio, text, VAD switch) or heard from the server (VAD events, a
                # transcript) ends the microphone's run, so each stretch between two events is its own row.
                for key in [k for k in self._runs if k[0] == "sent"]:
                    del self._runs[key]
            if kind == "server.interaction-complete":
                self._runs.pop(("received", "server.new-message", _value(entry, "message_id") or ""), None)
            if kind.startswith("connection."):
                self._runs.clear()
            self._add([seq, seq, t, direction, kind, summarize(entry), 1, None, t, seq, flags])

    @staticmethod
    def _run_key(direction: str, kind: str, entry: Mapping[str, Any]) -> tuple[tuple[Any, ...], str]:
        message_id = _value(entry, "message_id") or ""
        piece = _alignment_text(_value(entry, "alignment")) if kind == "server.new-message" else ""
        return (direction, kind, message_id), piece

    @staticmethod
    def _run_summary(kind: str, entry: Mapping[str, Any], row: list[Any], text: str) -> str:
        if kind in _FOLDED_LOCAL:
            played = _value(entry, "played_ms")
            return f"×{row[6]}, played {float(played or 0):.0f} ms"
        head = f"audio ×{row[6]}, {row[7] / 1000:.1f} s"
        if _value(entry, "stop") is True:
            head += ", stop"
        return f"{head} “{_cut(text)}”" if text else head

    def _add(self, row: list[Any]) -> None:
        self._rows[row[0]] = row
        self._dirty[row[0]] = row
        while len(self._rows) > self.window:
            old_id, _ = self._rows.popitem(last=False)
            self._dirty.pop(old_id, None)

    def _remember(self, seq: int, entry: Mapping[str, Any]) -> None:
        wire = _value(entry, "wire")
        envelope = {name: _value(entry, name) for name in ("seq", "t", "direction", "type", "size", "flags")}
        envelope["t"] = None if envelope["t"] is None else float(envelope["t"])
        self._wire[seq] = (None if wire is None else str(wire), envelope)
        while len(self._wire) > DETAIL_WINDOW:
            self._wire.popitem(last=False)

    # --- to the browser -------------------------------------------------------------------------------------

    def pending_rows(self) -> list[list[Any]]:
        """Rows changed since the last batch, oldest first, and forget them (what the next batch carries).

        The flusher calls this; call it yourself only to read rows without a browser (tests, a console).
        """
        with self._lock:
            rows = [list(row) for row in self._dirty.values()]
            self._dirty.clear()
        rows.sort(key=lambda row: row[0])
        return rows

    def rows(self) -> list[dict[str, Any]]:
        """Every row in the kernel's window, as dicts with the names of :data:`ROW_FIELDS`."""
        with self._lock:
            return [dict(zip(ROW_FIELDS, row, strict=True)) for row in self._rows.values()]

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_EVERY_S):
            if self._dirty and self.comm is not None:
                rows = self.pending_rows()
                self._send_safely({"kind": "rows", "rows": rows, "entries": self._count})
                if self.entries != self._count:
                    self.entries = self._count

    def _send_safely(self, content: dict[str, Any]) -> None:
        if self.comm is None:
            return
        try:
            self.send(content)
        except Exception:
            _log.debug("could not send to the inspector's view", exc_info=True)

    def wire_json(self, seq: int) -> str | None:
        """The exact wire text of entry ``seq`` (tokens redacted), or None for a local entry.

        Reads the session's log on disk for entries older than the kernel keeps at hand.
        """
        with self._lock:
            kept = self._wire.get(int(seq))
        if kept is not None:
            return kept[0]
        session = self._session
        if session is None:
            return None
        frames = session.log.to_dataframe()
        match = frames[frames["seq"] == int(seq)]
        if match.empty or "wire" not in match.columns:
            return None
        return _value(match.iloc[0].to_dict(), "wire")

    def _handle_message(self, _widget: Any, content: Any, _buffers: list) -> None:
        kind = content.get("kind") if isinstance(content, dict) else None
        if kind == "hello":
            # A (new) view: send it the whole window at once.
            with self._lock:
                rows = [list(row) for row in self._rows.values()]
            self._send_safely({"kind": "reset"})
            self._send_safely({"kind": "rows", "rows": rows, "entries": self._count})
        elif kind == "detail":
            seqs = [int(s) for s in content.get("seqs", [])][:4]
            frames = []
            for seq in seqs:
                with self._lock:
                    envelope = dict(self._wire.get(seq, (None, {"seq": seq}))[1])
                envelope["wire"] = self.wire_json(seq)
                frames.append(envelope)
            self._send_safely({"kind": "detail", "id": content.get("id"), "frames": frames})
