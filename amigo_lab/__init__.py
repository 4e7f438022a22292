"""amigo_lab: prototype, debug and measure voice agents on Amigo's real-time voice WebSocket API.

Start with :func:`connect` (no arguments: an embedded offline emulator; with org, token, region and
service id: the real service), talk with ``session.say(...)`` or ``session.send_audio(...)``, then read
``session.frames`` (every frame, both ways) and hand it to :mod:`amigo_lab.analysis`. In a notebook,
``%load_ext amigo_lab`` gives the ``%amigo`` magics and ``%amigo mic`` the microphone panel.

Heavy parts (pandas, plotly, widgets) are imported on first use, so ``import amigo_lab`` is fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from amigo_lab.errors import AmigoError

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access (PEP 562).
_LAZY = {
    "connect": "amigo_lab._connect",
    "Session": "amigo_lab.session",
    "Turn": "amigo_lab.session",
    "Reply": "amigo_lab.session",
    "SessionError": "amigo_lab.session",
    "ConnectionClosedError": "amigo_lab.session",
    "TurnError": "amigo_lab.session",
    "ResponseTimeoutError": "amigo_lab.session",
    "FrameLog": "amigo_lab.framelog",
    "RecordedSession": "amigo_lab.framelog",
    "load_session": "amigo_lab.framelog",
    "Emulator": "amigo_lab.emulator",
    "load_ipython_extension": "amigo_lab.magics",
    "unload_ipython_extension": "amigo_lab.magics",
}
_SUBMODULES = ("protocol", "audio", "speech", "framelog", "session", "emulator", "analysis", "widgets", "magics",
               "experiments")

__all__ = [
    "AmigoError",
    "ConnectionClosedError",
    "Emulator",
    "FrameLog",
    "RecordedSession",
    "Reply",
    "ResponseTimeoutError",
    "Session",
    "SessionError",
    "Turn",
    "TurnError",
    "__version__",
    "connect",
    "load_ipython_extension",
    "load_session",
    "unload_ipython_extension",
]

if TYPE_CHECKING:
    from amigo_lab._connect import connect
    from amigo_lab.emulator import Emulator
    from amigo_lab.framelog import FrameLog, RecordedSession, load_session
    from amigo_lab.magics import load_ipython_extension, unload_ipython_extension
    from amigo_lab.session import (
        ConnectionClosedError,
        Reply,
        ResponseTimeoutError,
        Session,
        SessionError,
        Turn,
        TurnError,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"amigo_lab.{name}")
    raise AttributeError(f"module 'amigo_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(_SUBMODULES))
