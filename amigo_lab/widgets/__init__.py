"""Notebook widgets: the browser microphone, an agent-audio player, and a session panel combining both.

Each is an anywidget: a small Python class plus an ES module (``*.js`` beside this file). Audio travels
as binary buffers of custom messages, never through traits::

    from amigo_lab.widgets import SessionPanel
    SessionPanel(session, mode="vad")

:class:`Microphone` streams 20 ms PCM16 chunks into ``session.send_chunk``; :class:`Player` plays agent
audio and logs ``playback.*`` entries; :class:`SessionPanel` shows connection, transcript, VAD, latency
and errors above both.
"""

from amigo_lab.widgets.mic import Microphone
from amigo_lab.widgets.panel import SessionPanel, SessionView
from amigo_lab.widgets.player import Player

__all__ = ["Microphone", "Player", "SessionPanel", "SessionView"]
