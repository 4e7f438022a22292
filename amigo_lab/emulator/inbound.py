"""Checks on what a client sends that the frame parser does not make, and safe error descriptions.

Two problems reach the emulator in frames that parse:

* **Lone UTF-16 surrogates.** ``"\\ud83d"`` is valid JSON (a JavaScript peer that splits an emoji between
  two strings sends one), but the string it decodes to cannot be encoded as UTF-8, so echoing it (an
  external event is acknowledged by repeating it) would fail when the frame is written. :func:`surrogate_field`
  finds such a string anywhere in the wire object, keys included, and names its field so the emulator can
  answer ``server.error`` 400 before the text goes anywhere.
* **Error descriptions that repeat the bad value.** A parse error quotes what was wrong, escaped; for a
  547 kB value that is a ``server.error`` over the 1 MiB frame limit, which the client's own WebSocket
  library refuses (1009). :func:`error_description` cuts every long quoted value and the whole text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

#: A quoted value in an error description keeps this many characters; the rest is summarised.
MAX_QUOTED_CHARS = 60
#: An error description is cut to this many characters (a JSON-escaped character is at most 6 bytes,
#: so a server.error stays far below the 1 MiB frame limit).
MAX_DESCRIPTION_CHARS = 1000

# One quoted value as repr() writes it. The two alternatives cannot match the same text, so the scan is
# linear even for a value of a megabyte.
_BODY = rf"(?:[^{{q}}\\]|\\.){{{{{MAX_QUOTED_CHARS + 1},}}}}"
_QUOTED = re.compile("'(" + _BODY.format(q="'") + ")'|\"(" + _BODY.format(q='"') + ')"', re.DOTALL)


def has_surrogate(text: str) -> bool:
    """True if ``text`` holds a lone surrogate (it then cannot be encoded as UTF-8)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def surrogate_field(wire: Mapping[str, Any], frame_type: str) -> str | None:
    """The field of the wire object ``wire`` whose text (key or value) holds a lone surrogate, as
    ``"<frame_type>.<path>"``, or None when every string is valid Unicode.

    For a received text, :func:`surrogate_in_json` parses it and calls this.
    """
    return _walk(wire, frame_type)


def surrogate_in_json(text: str) -> str | None:
    """Like :func:`surrogate_field`, for a received JSON text: the field holding a lone surrogate, or None
    (also None when the text is not a JSON object with a string ``type``; parsing it reports that)."""
    try:
        wire = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(wire, dict):
        return None
    frame_type = wire.get("type")
    if isinstance(frame_type, str) and has_surrogate(frame_type):
        return "frame.type"
    return _walk(wire, frame_type if isinstance(frame_type, str) and frame_type else "frame")


def _walk(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if has_surrogate(value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}"
            if has_surrogate(key):
                return f"{where.encode('utf-8', 'backslashreplace').decode('utf-8')} (the key)"
            found = _walk(item, where)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _walk(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def error_description(text: str) -> str:
    """``text`` made safe to send as ``error_description``: every quoted value longer than
    :data:`MAX_QUOTED_CHARS` is cut (its length is said instead), the whole is at most
    :data:`MAX_DESCRIPTION_CHARS`, and it encodes as UTF-8 (a surrogate becomes its escape)."""
    text = _QUOTED.sub(_shorten, text)
    if len(text) > MAX_DESCRIPTION_CHARS:
        cut = len(text) - MAX_DESCRIPTION_CHARS
        text = text[:MAX_DESCRIPTION_CHARS] + f"... ({cut} more characters)"
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _shorten(match: re.Match[str]) -> str:
    quote = "'" if match.group(1) is not None else '"'
    body = match.group(1) if match.group(1) is not None else match.group(2)
    return f"{quote}{body[:MAX_QUOTED_CHARS]}...{quote} ({len(body)} characters)"


__all__ = ["MAX_DESCRIPTION_CHARS", "MAX_QUOTED_CHARS", "error_description", "has_surrogate", "surrogate_field",
           "surrogate_in_json"]
