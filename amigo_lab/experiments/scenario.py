"""Scenario files: a caller and what to expect, read from YAML and checked before anything is sent.

A scenario is a mapping with a ``turns`` list; each turn is one step of the caller::

    name: opening-hours
    service_id: 6650a1b2c3d4e5f6a7b8c9d0      # default: the emulator's demo service
    version_set: release
    vad: true                                 # server VAD for spoken turns (default true)
    language: eng                             # default language of speak steps
    turns:
      - say: What are your opening hours?
        expect: {reply_matches: "(?i)open", first_audio_ms: {max: 1500}}
      - speak: what is your address
        pause_inside_ms: 700                  # the caller pauses mid-sentence
        expect: {cut_off: false}
      - barge_in: {after_ms: 800, speak: wait a moment}
        expect: {agent_yields_ms: {max: 400}}
      - event: the patient's insurance card was scanned
      - audio: recordings/cough.wav           # relative to the scenario file
      - say: goodbye
        expect: {conversation_completed: true}

Steps (one key names the step): ``say`` (a text turn), ``speak`` (speech synthesized offline with eSpeak NG
in ``language``, streamed in real time; ``pause_inside_ms`` and ``pause_after_word`` split it with silence;
``rate_wpm``), ``audio`` (any audio file; ``sr`` for raw arrays is not needed), ``event`` (an external event),
``barge_in`` (``after_ms`` after the previous turn's first agent audio, ``speak``/``audio``/``language``),
``wait_ms`` (idle time) and ``vad`` (switch server VAD on or off). ``realtime: false`` streams audio as fast
as the protocol allows: quick for text and smoke runs, but the server's VAD positions then no longer map onto
the log clock, so timing and the placement of spoken turns on steps need ``realtime: true`` (the default).

Expectations (``expect:``) are listed in :data:`EXPECTATIONS`. Latency expectations take any name of
:data:`LATENCY_NAMES`, with or without the ``latency_`` prefix, and a number (the maximum) or a mapping of
``max``, ``min``, ``p50_max``, ``p90_max``, ``p95_max`` (the percentile ones are checked over all runs).

Every problem is reported with the file, the line and the field, all at once, as a :class:`ScenarioError`.
Start with :func:`load_scenario`, then :func:`amigo_lab.experiments.run`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amigo_lab.errors import AmigoError

__all__ = [
    "EXPECTATIONS", "LATENCY_NAMES", "STEP_KINDS", "Expectation", "Scenario", "ScenarioError", "Step",
    "load_scenario", "parse_scenario",
]

#: The fold's named latencies (ms from the user's end of turn, or from the server's VAD end for ``vad_*``).
LATENCY_NAMES = (
    "latency_first_text_ms",
    "latency_first_audio_ms",
    "latency_first_answer_audio_ms",
    "latency_first_heard_ms",
    "latency_complete_ms",
    "vad_latency_first_text_ms",
    "vad_latency_first_audio_ms",
    "vad_latency_first_answer_audio_ms",
)

#: Barge-in measures, derived from the turns table's stamps (see :mod:`amigo_lab.experiments.metrics`).
BARGE_IN_NAMES = ("agent_yields_ms", "talk_over_ms", "heard_ms")

#: Every expectation key and what it takes.
EXPECTATIONS: Mapping[str, str] = {
    "reply_matches": "a regular expression the agent's reply must match (re.search)",
    "reply_not_matches": "a regular expression the agent's reply must not match",
    "reply_contains": "a text (or list of texts) the reply must contain, case-insensitive",
    "reply_not_contains": "a text (or list of texts) the reply must not contain, case-insensitive",
    "transcript_matches": "a regular expression what the server heard must match",
    "reply_language": "the ISO 639-3 code the reply must be detected in, e.g. spa",
    **{name: "a number of ms (the maximum) or {max, min, p50_max, p90_max, p95_max}"
       for name in (*LATENCY_NAMES, *BARGE_IN_NAMES)},
    "interrupted": "true if the agent's reply must be cut short by the caller, false if it must not",
    "cut_off": "false if the server must not end the caller's turn during a pause (true: it must)",
    "fillers": "true if a filler must play before the answer, false if none may",
    "discarded": "true if the server must discard the step's sound as too short to be a turn (no reply)",
    "error": "none (default), any, an HTTP code such as 400, or a regular expression of the error text",
    "conversation_completed": "true if the agent must end the conversation here, false if it must not",
}

STEP_KINDS = ("say", "speak", "audio", "event", "barge_in", "wait_ms", "vad")
_STEP_OPTIONS = {
    "say": {"expect", "label"},
    "speak": {"expect", "label", "language", "rate_wpm", "pause_inside_ms", "pause_after_word"},
    "audio": {"expect", "label"},
    "event": {"expect", "label"},
    "barge_in": {"expect", "label"},
    "wait_ms": {"label"},
    "vad": {"label"},
}
_BARGE_KEYS = {"after_ms", "speak", "audio", "say", "language", "rate_wpm"}
_SCENARIO_KEYS = {"name", "description", "service_id", "version_set", "vad", "language", "rate_wpm", "runs",
                  "realtime", "response_format", "audio_format", "timeout_s", "tags", "turns", "expect_all"}
_LIMIT_KEYS = ("max", "min", "p50_max", "p90_max", "p95_max")
_LANGUAGES = ("eng", "spa", "fra", "deu", "ita", "por")  # amigo_lab.speech.LANGUAGES, without importing eSpeak
_SERVICE_ID = re.compile(r"^[0-9a-f]{24}$")


class ScenarioError(AmigoError):
    """A scenario file is wrong: ``.problems`` lists ``(file, line, field, message)``; nothing was sent."""

    def __init__(self, problems: list[tuple[str, int | None, str, str]]) -> None:
        self.problems = problems
        lines = [f"{file}:{line if line is not None else '?'}: {name}: {message}" if name else
                 f"{file}:{line if line is not None else '?'}: {message}" for file, line, name, message in problems]
        super().__init__("invalid scenario (nothing was sent):\n  " + "\n  ".join(lines))


@dataclass(frozen=True)
class Expectation:
    """One check on one step: ``key`` (from :data:`EXPECTATIONS`), its ``value`` and where it was written."""

    key: str
    value: Any
    step: int
    line: int | None = None

    @property
    def label(self) -> str:
        """``key`` and value as written, e.g. ``latency_first_audio_ms max 1500``."""
        if isinstance(self.value, Mapping):
            return f"{self.key} " + " ".join(f"{k} {v:g}" for k, v in self.value.items())
        return f"{self.key} {self.value}"

    @property
    def per_run(self) -> bool:
        """True when the expectation is checked in each run (False: only percentiles over all runs)."""
        return not isinstance(self.value, Mapping) or any(k in ("max", "min") for k in self.value)

    @property
    def run_label(self) -> str:
        """The label of the per-run part: the ``max`` / ``min`` limits only."""
        if isinstance(self.value, Mapping):
            return f"{self.key} " + " ".join(f"{k} {v:g}" for k, v in self.value.items() if k in ("max", "min"))
        return self.label


@dataclass(frozen=True)
class Step:
    """One step of the caller. ``kind`` is one of :data:`STEP_KINDS`; ``index`` counts from 0."""

    index: int
    kind: str
    line: int | None = None
    text: str | None = None          # say / speak / event / barge_in(speak|say)
    path: Path | None = None         # audio / barge_in(audio)
    language: str = "eng"
    rate_wpm: int | None = None
    pause_inside_ms: float = 0.0
    pause_after_word: int | None = None
    after_ms: float = 0.0            # barge_in
    spoken: bool = False             # barge_in: speak (else say or audio)
    wait_ms: float = 0.0
    vad: bool | None = None
    label: str | None = None
    expect: tuple[Expectation, ...] = ()

    @property
    def title(self) -> str:
        """A short human name: ``#3 speak 'what is your address'``."""
        what = self.text if self.text is not None else str(self.path) if self.path is not None else (
            f"{self.wait_ms:g} ms" if self.kind == "wait_ms" else "on" if self.vad else "off")
        return self.label or f"#{self.index} {self.kind} {what!r}"

    @property
    def is_user_turn(self) -> bool:
        """True for steps the agent answers (everything but ``wait_ms`` and ``vad``)."""
        return self.kind not in ("wait_ms", "vad")


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Build one with :func:`load_scenario` (a file) or :func:`parse_scenario` (text)."""

    name: str
    steps: tuple[Step, ...]
    source: str = "<scenario>"
    service_id: str | None = None
    version_set: str = "release"
    vad: bool = True
    language: str = "eng"
    runs: int = 1
    realtime: bool = True
    response_format: str = "voice"
    audio_format: str = "pcm"
    timeout_s: float = 60.0
    description: str | None = None
    tags: tuple[str, ...] = ()
    expect_all: tuple[Expectation, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def expectations(self) -> list[Expectation]:
        """Every expectation, per step, with ``expect_all`` applied to each user turn that has a reply."""
        out: list[Expectation] = []
        for step in self.steps:
            out.extend(step.expect)
            if step.is_user_turn:
                own = {e.key for e in step.expect}
                out.extend(Expectation(e.key, e.value, step.index, e.line) for e in self.expect_all
                           if e.key not in own)
        return out

    def with_options(self, **changes: Any) -> Scenario:
        """A copy with scenario-level fields replaced, e.g. ``version_set="canary"``."""
        from dataclasses import replace
        return replace(self, **changes)


# --- reading YAML with line numbers ----------------------------------------------------------------------------

class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[tuple[str, int | None, str, str]] = []

    def add(self, line: int | None, name: str, message: str) -> None:
        self.items.append((self.source, line, name, message))


def _lines(node: Any, path: tuple[Any, ...], out: dict[tuple[Any, ...], int], problems: _Problems) -> None:
    """Record the 1-based line of every node by its path of keys and indexes; flag duplicate keys."""
    import yaml

    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            name = key.value
            if name in seen:
                problems.add(key.start_mark.line + 1, _dotted((*path, name)), "appears twice in the same mapping")
            seen.add(name)
            out[(*path, name)] = key.start_mark.line + 1
            _lines(value, (*path, name), out, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out, problems)


def _dotted(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_scenario(text: str, *, source: str = "<scenario>", base_dir: str | os.PathLike[str] | None = None
                   ) -> Scenario:
    """Validate scenario YAML ``text``; ``source`` names it in errors, ``base_dir`` resolves audio paths.

    Raises :class:`ScenarioError` listing every problem with its line and field. Next: :func:`run`.
    """
    import yaml

    problems = _Problems(source)
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problems.add(mark.line + 1 if mark else None, "", f"not valid YAML: {exc.problem or exc}")
        raise ScenarioError(problems.items) from None
    except yaml.YAMLError as exc:
        problems.add(None, "", f"not valid YAML: {exc}")
        raise ScenarioError(problems.items) from None
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _lines(node, (), lines, problems)
    builder = _Builder(problems, lines, Path(base_dir) if base_dir is not None else Path.cwd())
    scenario = builder.scenario(data, source)
    if problems.items:
        raise ScenarioError(problems.items)
    assert scenario is not None
    return scenario


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate one scenario file (``.yaml``/``.yml``). Next: :func:`amigo_lab.experiments.run`."""
    file = Path(path)
    if not file.is_file():
        raise ScenarioError([(str(file), None, "", "no such file; pass the path of a scenario .yaml file")])
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([(str(file), None, "", f"cannot read it: {exc}")]) from None
    scenario = parse_scenario(text, source=str(file), base_dir=file.parent)
    if "name" not in scenario.raw:
        scenario = scenario.with_options(name=file.name.split(".")[0])
    return scenario


class _Builder:
    def __init__(self, problems: _Problems, lines: dict[tuple[Any, ...], int], base: Path) -> None:
        self.problems, self.lines, self.base = problems, lines, base

    def line(self, path: tuple[Any, ...]) -> int | None:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path)

    def bad(self, path: tuple[Any, ...], message: str) -> None:
        self.problems.add(self.line(path), _dotted(path), message)

    # typed getters: each returns the default (and records a problem) when the value is wrong
    def text(self, value: Any, path: tuple[Any, ...], *, empty: bool = False) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.bad(path, f"expected text, got {_kind(value)}")
            return None
        value = str(value)
        if not empty and not value.strip():
            self.bad(path, "must not be empty")
            return None
        return value

    def number(self, value: Any, path: tuple[Any, ...], *, low: float = 0.0,
               what: str = "a number of ms") -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.bad(path, f"expected {what}, got {_kind(value)}")
            return None
        if value < low:
            self.bad(path, f"must be at least {low:g}, got {value}")
            return None
        return float(value)

    def boolean(self, value: Any, path: tuple[Any, ...]) -> bool | None:
        if not isinstance(value, bool):
            self.bad(path, f"expected true or false, got {_kind(value)}")
            return None
        return value

    def language(self, value: Any, path: tuple[Any, ...]) -> str:
        if value not in _LANGUAGES:
            self.bad(path, f"unsupported language {value!r}; speech can be synthesized in {', '.join(_LANGUAGES)}")
            return "eng"
        return str(value)

    def regex(self, value: Any, path: tuple[Any, ...]) -> str | None:
        text = self.text(value, path)
        if text is None:
            return None
        try:
            re.compile(text)
        except re.error as exc:
            self.bad(path, f"not a valid regular expression: {exc}")
            return None
        return text

    def audio_file(self, value: Any, path: tuple[Any, ...]) -> Path | None:
        text = self.text(value, path)
        if text is None:
            return None
        file = Path(text).expanduser()
        file = file if file.is_absolute() else self.base / file
        if not file.is_file():
            self.bad(path, f"no audio file at {str(file)!r} (paths are relative to the scenario file)")
            return None
        return file

    def scenario(self, data: Any, source: str) -> Scenario | None:
        if not isinstance(data, dict):
            self.bad((), f"a scenario is a mapping with a 'turns' list, got {_kind(data)}")
            return None
        for key in data:
            if key not in _SCENARIO_KEYS:
                self.bad((key,), f"unknown field; scenario fields are {', '.join(sorted(_SCENARIO_KEYS))}")
        name = self.text(data.get("name", "scenario"), ("name",)) or "scenario"
        service_id = data.get("service_id")
        if service_id is not None:
            service_id = self.text(service_id, ("service_id",))
            if service_id is not None and not _SERVICE_ID.match(service_id):
                self.bad(("service_id",), f"expected 24 hexadecimal characters, got {service_id!r}")
        version_set = self.text(data.get("version_set", "release"), ("version_set",)) or "release"
        vad = self.boolean(data.get("vad", True), ("vad",))
        language = self.language(data.get("language", "eng"), ("language",))
        rate = data.get("rate_wpm")
        rate_wpm = self.rate(rate, ("rate_wpm",)) if rate is not None else None
        runs = data.get("runs", 1)
        if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
            self.bad(("runs",), f"expected a whole number of runs, at least 1, got {runs!r}")
            runs = 1
        realtime = self.boolean(data.get("realtime", True), ("realtime",))
        response_format = data.get("response_format", "voice")
        if response_format not in ("voice", "text"):
            self.bad(("response_format",), f"expected voice or text, got {response_format!r}")
        audio_format = data.get("audio_format", "pcm")
        if audio_format not in ("pcm", "mp3"):
            self.bad(("audio_format",), f"expected pcm or mp3, got {audio_format!r}")
        timeout = self.number(data.get("timeout_s", 60.0), ("timeout_s",), low=1.0, what="a number of seconds")
        description = data.get("description")
        tags = data.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            self.bad(("tags",), "expected a list of texts")
            tags = []
        expect_all = tuple(self.expectations(data.get("expect_all", {}), ("expect_all",), -1))
        raw_turns = data.get("turns")
        steps: list[Step] = []
        if not isinstance(raw_turns, list) or not raw_turns:
            self.bad(("turns",), "expected a non-empty list of steps (say, speak, audio, event, barge_in, ...)")
        else:
            for i, item in enumerate(raw_turns):
                step = self.step(item, i, language, rate_wpm)
                if step is not None:
                    steps.append(step)
            if steps and steps[0].kind == "barge_in":
                self.bad(("turns", 0), "a barge_in interrupts the previous turn's reply; it cannot come first")
        return Scenario(name=name, steps=tuple(steps), source=source, service_id=service_id,
                        version_set=version_set, vad=True if vad is None else vad, language=language,
                        runs=runs, realtime=True if realtime is None else realtime,
                        response_format=str(response_format), audio_format=str(audio_format),
                        timeout_s=timeout or 60.0, description=str(description) if description else None,
                        tags=tuple(tags), expect_all=expect_all, raw=data)

    def rate(self, value: Any, path: tuple[Any, ...]) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not 80 <= value <= 450:
            self.bad(path, f"expected words per minute, a whole number from 80 to 450, got {value!r}")
            return None
        return value

    def step(self, item: Any, i: int, language: str, rate_wpm: int | None) -> Step | None:
        path: tuple[Any, ...] = ("turns", i)
        if not isinstance(item, dict):
            self.bad(path, f"a step is a mapping such as {{say: hello}}, got {_kind(item)}")
            return None
        kinds = [k for k in item if k in STEP_KINDS]
        if len(kinds) != 1:
            unknown = [k for k in item if k not in STEP_KINDS and k not in _STEP_OPTIONS["speak"]]
            hint = f"unknown step {unknown[0]!r}; " if unknown and not kinds else ""
            self.bad(path, f"{hint}each step has exactly one of {', '.join(STEP_KINDS)}"
                     + (f", got {', '.join(kinds)}" if kinds else ""))
            return None
        kind = kinds[0]
        for key in item:
            if key != kind and key not in _STEP_OPTIONS[kind]:
                allowed = sorted(_STEP_OPTIONS[kind])
                self.bad((*path, key), f"not an option of a {kind} step (options: {', '.join(allowed) or 'none'})")
        value = item[kind]
        at = (*path, kind)
        fields: dict[str, Any] = {"index": i, "kind": kind, "line": self.line(path), "language": language,
                                  "rate_wpm": rate_wpm}
        if "label" in item:
            fields["label"] = self.text(item["label"], (*path, "label"))
        if kind in ("say", "event", "speak"):
            fields["text"] = self.text(value, at)
        elif kind == "audio":
            fields["path"] = self.audio_file(value, at)
        elif kind == "wait_ms":
            fields["wait_ms"] = self.number(value, at) or 0.0
        elif kind == "vad":
            fields["vad"] = self.boolean(value, at)
        elif kind == "barge_in":
            fields.update(self.barge_in(value, at, language, rate_wpm))
        if kind == "speak":
            if "language" in item:
                fields["language"] = self.language(item["language"], (*path, "language"))
            if "rate_wpm" in item:
                fields["rate_wpm"] = self.rate(item["rate_wpm"], (*path, "rate_wpm"))
            if "pause_inside_ms" in item:
                fields["pause_inside_ms"] = self.number(item["pause_inside_ms"], (*path, "pause_inside_ms")) or 0.0
            if "pause_after_word" in item:
                word = item["pause_after_word"]
                words = len((fields.get("text") or "").split())
                if isinstance(word, bool) or not isinstance(word, int) or not 1 <= word < max(words, 2):
                    self.bad((*path, "pause_after_word"),
                             f"expected a word number from 1 to {max(words - 1, 1)} (the pause follows that word)")
                else:
                    fields["pause_after_word"] = word
                if "pause_inside_ms" not in item:
                    self.bad((*path, "pause_after_word"), "needs pause_inside_ms (how long the pause is)")
            if fields.get("pause_inside_ms") and len((fields.get("text") or "").split()) < 2:
                self.bad((*path, "pause_inside_ms"), "a pause inside speech needs at least two words")
        fields["expect"] = tuple(self.expectations(item.get("expect", {}), (*path, "expect"), i, kind))
        return Step(**fields)

    def barge_in(self, value: Any, at: tuple[Any, ...], language: str, rate_wpm: int | None) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.bad(at, f"expected a mapping such as {{after_ms: 800, speak: wait a moment}}, got {_kind(value)}")
            return {}
        for key in value:
            if key not in _BARGE_KEYS:
                self.bad((*at, key), f"not an option of barge_in (options: {', '.join(sorted(_BARGE_KEYS))})")
        what = [k for k in ("speak", "audio", "say") if k in value]
        if len(what) != 1:
            self.bad(at, "barge_in needs exactly one of speak, audio or say (what the caller says over the agent)")
            return {}
        fields: dict[str, Any] = {"after_ms": self.number(value.get("after_ms", 0), (*at, "after_ms")) or 0.0}
        if what[0] == "audio":
            fields["path"] = self.audio_file(value["audio"], (*at, "audio"))
        else:
            fields["text"] = self.text(value[what[0]], (*at, what[0]))
            fields["spoken"] = what[0] == "speak"
        if "language" in value:
            fields["language"] = self.language(value["language"], (*at, "language"))
        if "rate_wpm" in value:
            fields["rate_wpm"] = self.rate(value["rate_wpm"], (*at, "rate_wpm"))
        return fields

    def expectations(self, raw: Any, path: tuple[Any, ...], step: int, kind: str = "") -> list[Expectation]:
        if raw is None or raw == {}:
            return []
        if not isinstance(raw, dict):
            self.bad(path, f"expected a mapping of expectations, got {_kind(raw)}")
            return []
        out = []
        for key, value in raw.items():
            at = (*path, key)
            name = _canonical(key)
            if name is None:
                close = [k for k in EXPECTATIONS if key in k or k.endswith(str(key))]
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.bad(at, f"unknown expectation{hint}; known: {', '.join(sorted(set(_SHORT) | set(EXPECTATIONS)))}")
                continue
            checked = self.expectation_value(name, value, at, kind)
            if checked is not _INVALID:
                out.append(Expectation(name, checked, step, self.line(at)))
        return out

    def expectation_value(self, name: str, value: Any, at: tuple[Any, ...], kind: str) -> Any:
        if name in ("reply_matches", "reply_not_matches", "transcript_matches"):
            return self.regex(value, at) or _INVALID
        if name in ("reply_contains", "reply_not_contains"):
            items = value if isinstance(value, list) else [value]
            texts = [self.text(v, at) for v in items]
            return tuple(texts) if all(t is not None for t in texts) else _INVALID
        if name == "reply_language":
            if value not in _LANGUAGES:
                self.bad(at, f"expected an ISO 639-3 code of {', '.join(_LANGUAGES)}, got {value!r}")
                return _INVALID
            return value
        if name in ("interrupted", "cut_off", "fillers", "conversation_completed", "discarded"):
            checked = self.boolean(value, at)
            return _INVALID if checked is None else checked
        if name == "error":
            if value is None or value in ("none", "any", False, True):
                return {None: "none", False: "none", True: "any"}.get(value, value)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
            if isinstance(value, str):
                return self.regex(value, at) or _INVALID
            self.bad(at, "expected none, any, an HTTP code (e.g. 400) or a regular expression")
            return _INVALID
        if name in ("agent_yields_ms", "talk_over_ms") and kind and kind != "barge_in":
            self.bad(at, f"{name} measures a barge-in; put it on a barge_in step")
            return _INVALID
        return self.limits(value, at)

    def limits(self, value: Any, at: tuple[Any, ...]) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"max": float(value)} if value >= 0 else self.number(value, at) or _INVALID
        if not isinstance(value, dict) or not value:
            self.bad(at, f"expected a number of ms or a mapping of {', '.join(_LIMIT_KEYS)}, got {_kind(value)}")
            return _INVALID
        limits = {}
        for key, limit in value.items():
            if key not in _LIMIT_KEYS:
                self.bad((*at, key), f"unknown limit; use {', '.join(_LIMIT_KEYS)}")
                continue
            checked = self.number(limit, (*at, key))
            if checked is not None:
                limits[key] = checked
        return limits if len(limits) == len(value) else _INVALID


_INVALID = object()
#: Short names accepted in files: ``first_audio_ms`` is ``latency_first_audio_ms``.
_SHORT = {name.removeprefix("latency_"): name for name in LATENCY_NAMES if name.startswith("latency_")}


def _canonical(key: Any) -> str | None:
    if not isinstance(key, str):
        return None
    if key in EXPECTATIONS:
        return key
    return _SHORT.get(key)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        return f"{value!r} (text)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
