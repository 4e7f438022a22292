"""The agent seam: what the emulator asks (:class:`AgentTurn`) and what an agent answers (:class:`AgentReply`).

An agent is any callable ``agent(turn) -> AgentReply | str``; a plain string means "reply this, in the
turn's language". The default, :class:`ScriptedAgent`, answers from the turn's service definition (the
JSON files in ``data/services``). Pass your own callable as ``Emulator(agent=...)`` to prototype another
behaviour against the same wire protocol. Agents run in a worker thread, so they may block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amigo_lab.emulator.matching import best_match
from amigo_lab.protocol.constants import DEFAULT_VERSION_SET, LANGUAGES

if TYPE_CHECKING:
    from amigo_lab.emulator.services import Service

#: Said while a slow tool runs when neither the agent nor the service gives a filler.
DEFAULT_FILLERS = {
    "eng": "One moment, please.",
    "spa": "Un momento, por favor.",
    "fra": "Un instant, s'il vous plaît.",
    "deu": "Einen Moment, bitte.",
    "ita": "Un momento, per favore.",
    "por": "Um momento, por favor.",
}


@dataclass(frozen=True)
class ToolCall:
    """A tool the reply needs first: it runs ``seconds``; ``filler`` is said if it is slow (None: default)."""

    name: str
    seconds: float
    filler: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("ToolCall.name must be a non-empty string")
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float)) or self.seconds < 0:
            raise ValueError(f"ToolCall.seconds must be a number >= 0, got {self.seconds!r}")


@dataclass(frozen=True)
class AgentTurn:
    """One turn the agent must answer.

    ``text`` is what the user wrote or said ("" when only external events started the turn); ``language``
    the ISO 639-3 code it was in; ``events`` the external events attached to this turn as
    ``(unix_time, text)``; ``history`` the earlier turns as ``(speaker, text)`` with speaker ``"user"``,
    ``"agent"`` or ``"event"``; ``service`` the :class:`~amigo_lab.emulator.services.Service` in use.
    """

    text: str
    language: str
    events: tuple[tuple[float, str], ...]
    history: tuple[tuple[str, str], ...]
    conversation_id: str
    service: Service
    #: The service version set the conversation was started with (its wording may differ, see services.py).
    version_set: str = DEFAULT_VERSION_SET


@dataclass(frozen=True)
class AgentReply:
    """The agent's answer: ``text`` in ``language``; optionally a ``tool`` call that runs first (a
    :class:`ToolCall` or a ``(name, seconds, filler)`` tuple); ``end_conversation`` ends the conversation
    after this reply."""

    text: str
    language: str
    tool: ToolCall | None = None
    end_conversation: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.tool, tuple):
            object.__setattr__(self, "tool", ToolCall(*self.tool))
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError("AgentReply.text must be a non-empty string")
        if self.language not in LANGUAGES:
            raise ValueError(f"AgentReply.language must be one of {list(LANGUAGES)}, got {self.language!r}")
        if self.tool is not None and not isinstance(self.tool, ToolCall):
            raise ValueError(
                f"AgentReply.tool must be a ToolCall or a (name, seconds, filler) tuple, got {self.tool!r}")


#: What ``Emulator(agent=...)`` accepts.
Agent = Callable[[AgentTurn], AgentReply | str]


def as_reply(result: AgentReply | str, turn: AgentTurn) -> AgentReply:
    """Normalise an agent's return value: a string becomes a reply in the turn's language."""
    if isinstance(result, AgentReply):
        return result
    if isinstance(result, str):
        return AgentReply(text=result, language=turn.language)
    raise TypeError(f"an agent must return AgentReply or str, got {type(result).__name__}")


def filler_text(reply: AgentReply) -> str:
    """What to say while ``reply.tool`` runs: the tool's own filler, else a polite default."""
    if reply.tool is not None and reply.tool.filler:
        return reply.tool.filler
    return DEFAULT_FILLERS.get(reply.language, DEFAULT_FILLERS["eng"])


class ScriptedAgent:
    """The default agent: answers from the turn's service definition.

    The user's text is matched to an intent (:func:`~amigo_lab.emulator.matching.best_match`); the reply is
    that intent's reply in the turn's language, or the service's fallback. External events are acknowledged
    first ("I see that <event>.") so the reply visibly reflects them. A ``farewell`` intent ends the
    conversation; an intent with a ``tool`` makes the emulator run it (and say its filler if it is slow).
    """

    def __call__(self, turn: AgentTurn) -> AgentReply:
        """Answer one turn. Next: the emulator streams the reply."""
        service = turn.service
        language = turn.language
        parts = [f"{service.say(service.event_ack, language)} {_as_clause(text)}" for _, text in turn.events]
        tool = None
        end = False
        if turn.text.strip() or not turn.events:
            match = best_match(turn.text, service, prefer_language=language)
            if match is None:
                parts.append(service.say(service.fallback, language))
            else:
                intent = match.intent
                parts.append(service.reply_text(intent, turn.version_set, language))
                end = intent.farewell
                if intent.tool is not None:
                    filler = intent.tool.filler.get(language) if intent.tool.filler else None
                    tool = ToolCall(intent.tool.name, intent.tool.seconds, filler)
        return AgentReply(text=" ".join(parts), language=language, tool=tool, end_conversation=end)


def _as_clause(text: str) -> str:
    """An event text as the end of a sentence: trimmed, with a full stop."""
    text = " ".join(text.split())
    return text if text[-1:] in ".!?" else text + "."


__all__ = ["DEFAULT_FILLERS", "Agent", "AgentReply", "AgentTurn", "ScriptedAgent", "ToolCall", "as_reply",
           "filler_text"]
