"""The embedded emulator: a local server that speaks Amigo's real-time voice protocol (protocol.md).

It authenticates, starts and continues conversations, answers with scripted agents from
``data/services/*.json`` (or any callable you pass), detects speech (VAD), recognizes English speech,
synthesizes replies in six languages, plays fillers during slow tools, stops on barge-in, and enforces the
protocol's timeouts, limits and close codes. Start one and point a client at its URL::

    with Emulator() as emu:                      # on a background thread; stops with 1001
        url = emu.url(response_format="voice", audio_format="pcm")
        # connect offering the subprotocol "bearer.authorization.amigo.ai." + DEFAULT_TOKEN

``async with Emulator() as emu:`` serves on the running loop instead. ``Emulator(agent=fn)`` swaps the
scripted agent for ``fn(AgentTurn) -> AgentReply | str``; ``Emulator(profile="realistic")`` answers with
production-like timing, fillers and network jitter (:mod:`amigo_lab.emulator.profiles`).
"""

from amigo_lab.emulator.agent import AgentReply, AgentTurn, ScriptedAgent, ToolCall
from amigo_lab.emulator.errors import EmulatorError, Refusal, ServiceError
from amigo_lab.emulator.profiles import (
    PROFILES,
    Endpointing,
    Network,
    Profile,
    ResponseTiming,
)
from amigo_lab.emulator.runtime import Limits
from amigo_lab.emulator.server import (
    DEFAULT_ORG,
    DEFAULT_SERVICE_ID,
    DEFAULT_TOKEN,
    DEFAULT_USER,
    Emulator,
    serve_forever,
)
from amigo_lab.emulator.services import Intent, Service, Tool, VersionSet, load_services

#: The version set every shipped service answers to.
DEFAULT_VERSION_SET = "release"

__all__ = [
    "DEFAULT_ORG",
    "DEFAULT_SERVICE_ID",
    "DEFAULT_TOKEN",
    "DEFAULT_USER",
    "DEFAULT_VERSION_SET",
    "PROFILES",
    "AgentReply",
    "AgentTurn",
    "Emulator",
    "EmulatorError",
    "Endpointing",
    "Intent",
    "Limits",
    "Network",
    "Profile",
    "Refusal",
    "ResponseTiming",
    "ScriptedAgent",
    "Service",
    "ServiceError",
    "Tool",
    "ToolCall",
    "VersionSet",
    "load_services",
    "serve_forever",
]
