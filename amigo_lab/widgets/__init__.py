"""Notebook widgets: the browser microphone, an agent-audio player, the live event inspector, and a session
panel combining them.

Each is an anywidget: a small Python class plus an ES module (``*.js`` beside this file). Audio travels
as binary buffers of custom messages, never through traits::

    from amigo_lab.widgets import SessionPanel
    SessionPanel(session, mode="vad")

:class:`EventInspector` lists every frame live (audio runs folded, rows expand to wire JSON).
:class:`LatencyWaterfall` draws each turn's latencies (the protocol fold's names) with running p50 / p90.
:class:`LiveTimeline` shows the agent's state, a level meter and a small waveform per side (PCM and MP3), and a
timeline strip of the call whose marks list their frames on hover.
:class:`Microphone` streams 20 ms PCM16 chunks into ``session.send_chunk``; :class:`Player` plays agent
audio and logs ``playback.*`` entries; :class:`SessionPanel` shows connection, transcript, VAD, latency
and errors above both.
"""

from amigo_lab.widgets._fold_feed import replay_fold
from amigo_lab.widgets.inspector import EventInspector
from amigo_lab.widgets.mic import Microphone
from amigo_lab.widgets.panel import SessionPanel, SessionView
from amigo_lab.widgets.player import Player
from amigo_lab.widgets.timeline import LiveTimeline
from amigo_lab.widgets.waterfall import LatencyWaterfall

__all__ = ["EventInspector", "LatencyWaterfall", "LiveTimeline", "Microphone", "Player", "SessionPanel", "SessionView",
           "replay_fold"]
