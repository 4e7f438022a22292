"""Scripted services: the JSON files in ``data/services`` that say what the emulator's agents say.

One file is one service (schema in ``data/README.md``, section "Services"): an id, a name, the version
sets it answers to, a greeting, a fallback reply, the words that acknowledge an external event, and a list
of intents. Each intent has example phrases per language, a reply per language, optionally a tool call
(with a filler said while a slow tool runs) and ``farewell: true`` when it ends the conversation.

:func:`load_services` reads a directory and returns ``{service_id: Service}``; :func:`services_dir` finds
the directory to read. Every problem raises :class:`ServiceError` naming the file and the field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

from amigo_lab.emulator.errors import ServiceError
from amigo_lab.protocol.constants import LANGUAGES

#: Environment variable that points the emulator at another directory of service files.
SERVICES_ENV = "AMIGO_LAB_SERVICES"

_HEX24 = re.compile(r"[0-9a-f]{24}\Z")


@dataclass(frozen=True)
class Tool:
    """A tool call an intent makes: it takes ``seconds``; ``filler`` (per language) is said if it is slow."""

    name: str
    seconds: float
    filler: Mapping[str, str]


@dataclass(frozen=True)
class Intent:
    """Something a user may ask: example ``phrases`` per language and the agent's ``reply`` per language."""

    name: str
    phrases: Mapping[str, tuple[str, ...]]
    reply: Mapping[str, str]
    tool: Tool | None = None
    farewell: bool = False


@dataclass(frozen=True)
class VersionSet:
    """How one version set of a service differs from the service file's defaults.

    ``delay_s`` is added to every reply's response time (a slower model or prompt); ``greeting`` and
    ``replies`` (``{intent name: {language: text}}``) replace texts; anything not named stays as in the file.
    """

    name: str
    delay_s: float = 0.0
    greeting: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    replies: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Service:
    """One scripted service, as loaded from its JSON file. Look texts up with :meth:`say`."""

    id: str
    name: str
    version_sets: tuple[str, ...]
    default_language: str
    greeting: Mapping[str, str]
    fallback: Mapping[str, str]
    event_ack: Mapping[str, str]
    intents: tuple[Intent, ...]
    path: Path | None = None
    #: The settings of version sets that differ from the defaults (``version_set_settings`` in the file).
    version_set_settings: Mapping[str, VersionSet] = field(default_factory=lambda: MappingProxyType({}))

    def version_set(self, name: str) -> VersionSet:
        """The settings of version set ``name`` (the defaults when the file gives none for it)."""
        return self.version_set_settings.get(name) or VersionSet(name)

    def greeting_text(self, version_set: str, language: str) -> str:
        """The greeting of ``version_set`` in ``language``."""
        override = self.version_set(version_set).greeting
        return self.say(override, language) if override.get(language) or override.get(self.default_language) \
            else self.say(self.greeting, language)

    def reply_text(self, intent: Intent, version_set: str, language: str) -> str:
        """The reply of ``intent`` as ``version_set`` words it, in ``language``."""
        override = self.version_set(version_set).replies.get(intent.name)
        if override and (override.get(language) or override.get(self.default_language)):
            return self.say(override, language)
        return self.say(intent.reply, language)

    def say(self, texts: Mapping[str, str], language: str) -> str:
        """The text for ``language`` from a per-language mapping, else the default language's."""
        return texts.get(language) or texts[self.default_language]

    def english_phrases(self) -> tuple[str, ...]:
        """Every English example phrase, in file order: the only sentences the recognizer listens for."""
        seen: dict[str, None] = {}
        for intent in self.intents:
            for phrase in intent.phrases.get("eng", ()):
                seen.setdefault(phrase, None)
        return tuple(seen)


def services_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """The directory of service files: ``directory`` if given, else ``$AMIGO_LAB_SERVICES``, else the repo's
    ``data/services``. Raises :class:`ServiceError` when it does not exist. Next: :func:`load_services`."""
    if directory is not None:
        path, source = Path(directory), "the services_dir argument"
    elif os.environ.get(SERVICES_ENV):
        path, source = Path(os.environ[SERVICES_ENV]), f"${SERVICES_ENV}"
    else:
        import amigo_lab

        path = Path(amigo_lab.__file__).resolve().parents[1] / "data" / "services"
        source = "the default (data/services next to the amigo_lab package)"
    if not path.is_dir():
        raise ServiceError(
            f"service directory {path} (from {source}) does not exist; pass services_dir=... or set "
            f"${SERVICES_ENV} to a directory of service JSON files (see data/README.md, 'Services')"
        )
    return path


def load_services(directory: str | os.PathLike[str] | None = None) -> dict[str, Service]:
    """Load every ``*.json`` in the services directory (see :func:`services_dir`) as ``{id: Service}``.

    Raises :class:`ServiceError` for an empty directory, an invalid file or two files with one id.
    Next: give the result to :class:`~amigo_lab.emulator.Emulator` (it does this itself by default).
    """
    path = services_dir(directory)
    services: dict[str, Service] = {}
    for file in sorted(path.glob("*.json")):
        service = load_service(file)
        if service.id in services:
            raise ServiceError(f"{file}: id {service.id} is also used by {services[service.id].path}; "
                               "give every service its own id")
        services[service.id] = service
    if not services:
        raise ServiceError(f"service directory {path} has no *.json service files; add one (see data/README.md)")
    return services


def load_service(file: str | os.PathLike[str]) -> Service:
    """Read and validate one service file. Raises :class:`ServiceError` naming the file and field."""
    file = Path(file)
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ServiceError(f"{file}: cannot be read ({exc})") from exc
    except ValueError as exc:
        raise ServiceError(f"{file}: is not valid JSON ({exc})") from exc
    return parse_service(raw, source=str(file), path=file)


def parse_service(raw: Any, *, source: str = "service", path: Path | None = None) -> Service:
    """Validate a decoded service object (the JSON schema of data/README.md) and build a :class:`Service`."""
    check = _Checker(source)
    obj = check.mapping(raw, "")
    service_id = check.string(obj, "id")
    if not _HEX24.match(service_id):
        check.fail("id", f"must be 24 lowercase hex characters, got {service_id!r}")
    default_language = obj.get("default_language", "eng")
    if default_language not in LANGUAGES:
        check.fail("default_language", f"must be one of {list(LANGUAGES)}, got {default_language!r}")
    version_sets = check.strings(obj, "version_sets")
    intents_raw = obj.get("intents")
    if not isinstance(intents_raw, list) or not intents_raw:
        check.fail("intents", "must be a non-empty list of intents")
    intents = tuple(check.intent(item, f"intents[{i}]", default_language) for i, item in enumerate(intents_raw))
    names = [intent.name for intent in intents]
    if len(set(names)) != len(names):
        check.fail("intents", f"intent names must be unique, got {names}")
    if not any(intent.phrases.get("eng") for intent in intents):
        check.fail("intents", "at least one intent needs English ('eng') phrases for speech recognition")
    settings = check.version_set_settings(obj.get("version_set_settings"), version_sets, names, default_language)
    return Service(
        version_set_settings=settings,
        id=service_id,
        name=check.string(obj, "name"),
        version_sets=version_sets,
        default_language=default_language,
        greeting=check.texts(obj, "greeting", default_language),
        fallback=check.texts(obj, "fallback", default_language),
        event_ack=check.texts(obj, "event_ack", default_language),
        intents=intents,
        path=path,
    )


class _Checker:
    """Field checks that raise ServiceError as ``<source>: <field>: <problem>``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> NoReturn:
        raise ServiceError(f"{self.source}: {where or 'the file'}: {problem}")

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(where, f"must be a JSON object, got {type(value).__name__}")
        return value

    def string(self, obj: Mapping[str, Any], key: str, where: str = "") -> str:
        value = obj.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(_join(where, key), "must be a non-empty string")
        return value

    def strings(self, obj: Mapping[str, Any], key: str, where: str = "") -> tuple[str, ...]:
        value = obj.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(_join(where, key), "must be a non-empty list of non-empty strings")
        return tuple(value)

    def texts(self, obj: Mapping[str, Any], key: str, default_language: str, where: str = "",
              required: bool = True) -> Mapping[str, str]:
        """A ``{language: text}`` object that has at least the default language."""
        value = obj.get(key)
        if value is None and not required:
            return MappingProxyType({})
        field = _join(where, key)
        value = self.mapping(value, field)
        for language, text in value.items():
            if language not in LANGUAGES:
                self.fail(field, f"unknown language {language!r}; use {list(LANGUAGES)}")
            if not isinstance(text, str) or not text.strip():
                self.fail(f"{field}.{language}", "must be a non-empty string")
        if default_language not in value:
            self.fail(field, f"needs a text in the default language {default_language!r}")
        return MappingProxyType(dict(value))

    def intent(self, raw: Any, where: str, default_language: str) -> Intent:
        obj = self.mapping(raw, where)
        phrases_raw = self.mapping(obj.get("phrases"), f"{where}.phrases")
        phrases: dict[str, tuple[str, ...]] = {}
        for language in phrases_raw:
            if language not in LANGUAGES:
                self.fail(f"{where}.phrases", f"unknown language {language!r}; use {list(LANGUAGES)}")
            phrases[language] = self.strings(phrases_raw, language, f"{where}.phrases")
        if not phrases:
            self.fail(f"{where}.phrases", "needs phrases in at least one language")
        farewell = obj.get("farewell", False)
        if not isinstance(farewell, bool):
            self.fail(f"{where}.farewell", "must be true or false")
        return Intent(
            name=self.string(obj, "name", where),
            phrases=MappingProxyType(phrases),
            reply=self.texts(obj, "reply", default_language, where),
            tool=self.tool(obj.get("tool"), f"{where}.tool", default_language),
            farewell=farewell,
        )

    def version_set_settings(self, raw: Any, version_sets: tuple[str, ...], intents: list[str],
                             default_language: str) -> Mapping[str, VersionSet]:
        if raw is None:
            return MappingProxyType({})
        obj = self.mapping(raw, "version_set_settings")
        settings: dict[str, VersionSet] = {}
        for name, item in obj.items():
            where = f"version_set_settings.{name}"
            if name not in version_sets:
                self.fail(where, f"is not one of the service's version_sets {list(version_sets)}; add it there")
            entry = self.mapping(item, where)
            unknown = set(entry) - {"delay_s", "greeting", "replies"}
            if unknown:
                self.fail(where, f"unknown keys {sorted(unknown)}; use delay_s, greeting and replies")
            delay = entry.get("delay_s", 0.0)
            if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= 30:
                self.fail(f"{where}.delay_s", f"must be a number of seconds from 0 to 30, got {delay!r}")
            replies_raw = self.mapping(entry.get("replies", {}), f"{where}.replies")
            replies = {}
            for intent in replies_raw:
                if intent not in intents:
                    self.fail(f"{where}.replies.{intent}", f"names no intent of this service; have {intents}")
                replies[intent] = self.texts(replies_raw, intent, default_language, f"{where}.replies")
            settings[name] = VersionSet(
                name=name, delay_s=float(delay),
                greeting=self.texts(entry, "greeting", default_language, where, required=False),
                replies=MappingProxyType(replies))
        return MappingProxyType(settings)

    def tool(self, raw: Any, where: str, default_language: str) -> Tool | None:
        if raw is None:
            return None
        obj = self.mapping(raw, where)
        seconds = obj.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 60:
            self.fail(f"{where}.seconds", f"must be a number of seconds from 0 to 60, got {seconds!r}")
        return Tool(
            name=self.string(obj, "name", where),
            seconds=float(seconds),
            filler=self.texts(obj, "filler", default_language, where, required=False),
        )


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


__all__ = ["SERVICES_ENV", "Intent", "Service", "Tool", "VersionSet", "load_service", "load_services", "parse_service",
           "services_dir"]
