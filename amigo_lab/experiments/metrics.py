"""From a recorded run to its results rows: the turns table of the session, each row placed on a step.

Every latency comes from :func:`amigo_lab.analysis.turns` (one account of the conversation). The runner
records when each step began on the session clock (``steps.json`` next to the frame log); a turns row
belongs to the last step that began before the user's side of that row began. On top of the turns columns
each row gets:

- ``scenario``, ``run``, ``step`` (-1 for the greeting), ``step_kind``, ``step_title``, ``primary`` (the
  row the step's expectations are checked on: the last one of the step), ``step_error`` (what the client
  saw go wrong, e.g. a turn that timed out);
- ``vad_speech`` / ``vad_resets``: speech the server's VAD ended / discarded as too short during the step
  (from :func:`amigo_lab.analysis.vad_segments`);
- ``cut_off``: the server ended the caller's turn before the step's speech was over (more than one VAD
  speech end, or more than one turn row, for one spoken step, e.g. in a pause inside the sentence);
- barge-in measures on a ``barge_in`` step, from stamps of two turns rows (the interrupted reply and the
  barge-in's own turn): ``agent_yields_ms`` = the interrupted reply's ``complete_t`` (the agent's last
  frame of it) minus the start of the caller's barge-in speech (its ``vad_start_t``, but never before the
  step's audio began to stream);
  ``talk_over_ms`` = how long the caller's speech and the agent's reply overlapped (from the later of the
  two starts to the earlier of the caller's end and the reply's end); ``interrupted`` and ``heard_ms`` of
  the interrupted reply are copied onto the barge-in row as ``yielded`` and ``heard_ms``.

Next: :func:`evaluate` adds one ``check:<expectation>`` column per expectation.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amigo_lab.experiments.scenario import Expectation, Scenario

__all__ = ["STEPS_FILE", "aggregate_checks", "evaluate", "metric_columns", "run_rows"]

#: Written by the runner into each session folder: the scenario's steps and when each began.
STEPS_FILE = "steps.json"

# A VAD start mapped onto the log clock can sit a hair before the step's recorded start (the chunk's t
# is taken before it is handed to the socket); allow this much when placing rows on steps.
_SLACK_S = 0.05


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The latency and barge-in columns of a results table, in order (every ``*_ms`` measure)."""
    return [c for c in table.columns if c.endswith("_ms") and not c.startswith("check:")
            and pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]


def run_rows(turns: pd.DataFrame, steps: dict[str, Any], vad: pd.DataFrame | None = None) -> pd.DataFrame:
    """Place the rows of one session's turns table on its scenario steps (``steps``: the steps.json data).

    ``vad`` is :func:`amigo_lab.analysis.vad_segments` of the same log: it counts the server VAD's speech
    ends (``vad_speech``) and discarded speech (``vad_resets``) in each step.
    """
    table = turns.copy()
    marks = steps["steps"]
    starts = np.array([m["t_start"] if m["t_start"] is not None else math.inf for m in marks], dtype=float)
    vad_speech, vad_resets = _vad_counts(vad, starts)
    # The user's end of turn places a row: the server may date a VAD speech start back (its preroll) onto
    # audio of the previous step, but the end of speech lies in the audio that carried it.
    key = table["user_end_t"].astype(float)
    for fallback in ("user_start_t", "first_text_t", "first_audio_t", "complete_t"):
        key = key.fillna(table[fallback].astype(float))
    step_of = []
    for kind, at in zip(table["user_kind"], key, strict=True):
        if kind == "greeting" or math.isnan(at):
            step_of.append(-1)
            continue
        before = np.flatnonzero(starts <= at + _SLACK_S)
        step_of.append(int(before[-1]) if before.size else -1)
    table["step"] = pd.array(step_of, dtype="int64")
    rows = []
    for index, mark in enumerate(marks):
        if mark["kind"] in ("wait_ms", "vad"):
            continue
        if not (table["step"] == index).any():
            # A step the server did not answer still gets a row, so its expectations can fail visibly.
            rows.append({"step": index, "status": "no reply", "user_kind": mark["kind"]})
    if rows:
        table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
    table = table.sort_values(["step", "turn"], kind="stable", na_position="last").reset_index(drop=True)
    table["step_kind"] = [marks[s]["kind"] if s >= 0 else "greeting" for s in table["step"]]
    table["step_title"] = [marks[s]["title"] if s >= 0 else "greeting" for s in table["step"]]
    table["step_error"] = pd.array([marks[s].get("error") if s >= 0 else None for s in table["step"]],
                                   dtype="string")
    last = table.groupby("step")["step"].transform(lambda s: np.arange(len(s)) == len(s) - 1)
    table["primary"] = last.astype(bool)
    table["vad_speech"] = pd.array([vad_speech.get(s, 0) if s >= 0 else 0 for s in table["step"]], dtype="int64")
    table["vad_resets"] = pd.array([vad_resets.get(s, 0) if s >= 0 else 0 for s in table["step"]], dtype="int64")
    rows_per_step = table.groupby("step")["user_kind"].transform(
        lambda kinds: int(kinds.isin(["voice", "audio"]).sum()))
    # The server ended the turn more than once while this step's speech streamed: a cut-off. The VAD's own
    # count sees it even when the server answered only the last part.
    table["cut_off"] = ((table["vad_speech"] > 1) | (rows_per_step > 1)) & (
        table["step_kind"].isin(["speak", "audio", "barge_in"]))
    for column in ("agent_yields_ms", "talk_over_ms"):
        table[column] = np.nan
    table["yielded"] = pd.array([pd.NA] * len(table), dtype="boolean")
    for i in np.flatnonzero((table["step_kind"] == "barge_in").to_numpy() & table["primary"].to_numpy()):
        step = int(table.at[i, "step"])
        previous = table[(table["step"] < step) & table["primary"] & (table["step"] >= 0)]
        if previous.empty:
            continue
        reply = previous.iloc[-1]
        table.at[i, "yielded"] = bool(reply["interrupted"]) if pd.notna(reply["interrupted"]) else False
        table.at[i, "heard_ms"] = reply["heard_ms"]
        # The caller's speech began when its audio began to stream, or later (the VAD's start);
        # never earlier, even when the server dates its start back onto the previous step's audio.
        sent = marks[step]["t_start"]
        start = max(_first_number(table.at[i, "vad_start_t"], table.at[i, "user_start_t"], sent),
                    sent if sent is not None else -math.inf)
        end = _first_number(table.at[i, "vad_end_t"], table.at[i, "user_end_t"])
        agent_start = _first_number(reply["first_audio_t"], reply["first_text_t"])
        agent_end = float(reply["complete_t"]) if pd.notna(reply["complete_t"]) else math.nan
        interrupted = pd.notna(reply["interrupted"]) and bool(reply["interrupted"])
        if interrupted and not math.isnan(start) and not math.isnan(agent_end):
            table.at[i, "agent_yields_ms"] = round((agent_end - start) * 1000.0, 3)
        if not any(math.isnan(x) for x in (start, end, agent_start, agent_end)):
            table.at[i, "talk_over_ms"] = round(max(0.0, min(end, agent_end) - max(start, agent_start)) * 1000, 3)
    return table


def _vad_counts(vad: pd.DataFrame | None, starts: np.ndarray) -> tuple[dict[int, int], dict[int, int]]:
    speech: dict[int, int] = {}
    resets: dict[int, int] = {}
    if vad is None or not len(vad):
        return speech, resets
    server = vad[vad["source"] == "server-vad"]
    for kind, end in zip(server["kind"], server["end_t"].astype(float), strict=True):
        before = np.flatnonzero(starts <= end + _SLACK_S)
        if not before.size or math.isnan(end):
            continue
        step = int(before[-1])
        target = speech if kind == "speech" else resets if kind == "reset" else None
        if target is not None:
            target[step] = target.get(step, 0) + 1
    return speech, resets


def _first_number(*values: Any) -> float:
    for value in values:
        if value is not None and value is not pd.NA and not (isinstance(value, float) and math.isnan(value)):
            return float(value)
    return math.nan


def _value(row: pd.Series, column: str) -> Any:
    if column not in row.index:
        return None
    value = row[column]
    if value is pd.NA or value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def check_row(expectation: Expectation, row: pd.Series | None, step_rows: pd.DataFrame) -> tuple[bool, Any, str]:
    """One expectation on one run's step: ``(passed, measured value, what happened)``."""
    key, want = expectation.key, expectation.value
    if row is None or row.get("status") == "no reply":
        if key == "error" and want != "none":
            error = _value(row, "step_error") if row is not None else None
            return _error_check(want, error)
        if key == "cut_off":
            return (want is False, None, "no reply at all")
        if key == "discarded":
            resets = int(row["vad_resets"]) if row is not None and _value(row, "vad_resets") is not None else 0
            got = resets > 0
            return got == want, got, f"no reply; the server discarded {resets} sound(s) as too short"
        return False, None, "the agent did not answer this step" + (
            f" ({row['step_error']})" if row is not None and _value(row, "step_error") else "")
    if key in ("reply_matches", "reply_not_matches", "reply_contains", "reply_not_contains", "transcript_matches"):
        text = _value(row, "transcript" if key == "transcript_matches" else "reply_text") or ""
        if key.endswith("_matches"):
            found = re.search(want, text) is not None
            ok = found if not key.endswith("not_matches") else not found
            return ok, text, f"{'matched' if found else 'did not match'} {want!r}"
        hits = [w for w in want if w.casefold() in text.casefold()]
        ok = len(hits) == len(want) if key == "reply_contains" else not hits
        return ok, text, f"contains {hits!r}" if hits else "contains none of them"
    if key == "reply_language":
        got = _value(row, "agent_language")
        return got == want, got, f"detected {got!r}"
    if key == "discarded":
        return want is False, False, "the server took it for a turn and answered"
    if key in ("interrupted", "fillers", "cut_off", "conversation_completed"):
        column = {"interrupted": "yielded" if row["step_kind"] == "barge_in" else "interrupted",
                  "fillers": "n_fillers", "cut_off": "cut_off",
                  "conversation_completed": "conversation_completed"}[key]
        got = _value(row, column)
        got = bool(got) if got is not None else False
        return got == want, got, f"{key} was {str(got).lower()}"
    if key == "error":
        error = _value(row, "error") or _value(row, "step_error")
        for _, other in step_rows.iterrows():
            error = error or _value(other, "error")
        return _error_check(want, error)
    limits = {k: v for k, v in want.items() if k in ("max", "min")}
    got = _value(row, key)
    if key not in row.index:
        return (not limits), None, f"the turns table has no column {key}"
    if not limits:
        return True, got, "checked over all runs"
    if got is None:
        why = ("the agent did not yield (its reply was not interrupted)" if key == "agent_yields_ms"
               else "did not happen in this turn")
        return False, None, why
    ok = all((got <= v) if k == "max" else (got >= v) for k, v in limits.items())
    return ok, float(got), f"{float(got):.0f} ms"


def _error_check(want: Any, error: Any) -> tuple[bool, Any, str]:
    if want == "none":
        return error is None, error, f"error: {error}" if error else "no error"
    if error is None:
        return False, None, "no error, but one was expected"
    if want == "any":
        return True, error, f"error: {error}"
    if isinstance(want, int):
        return str(want) in str(error), error, f"error: {error}"
    return re.search(want, str(error)) is not None, error, f"error: {error}"


def evaluate(table: pd.DataFrame, scenario: Scenario) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check every per-run expectation; returns (table with ``check:<key>`` columns, checks table).

    The checks table has one row per expectation per run: ``scenario``, ``run``, ``step``, ``expectation``,
    ``key``, ``passed``, ``measured``, ``detail``, ``line``. Percentile limits are left to
    :func:`aggregate_checks` (they need every run).
    """
    table = table.copy()
    checks = []
    expectations = list(scenario.expectations())
    # Every answered step is checked for errors, unless it says which error it expects.
    for step in scenario.steps:
        if step.is_user_turn and not any(e.key in ("error", "discarded") and e.step == step.index
                                         for e in expectations):
            expectations.append(Expectation("error", "none", step.index, step.line))
    for run, part in table.groupby("run", sort=True):
        for expectation in expectations:
            if not expectation.per_run:
                continue
            step_rows = part[part["step"] == expectation.step]
            primary = step_rows[step_rows["primary"]]
            row = primary.iloc[0] if len(primary) else None
            passed, measured, detail = check_row(expectation, row, step_rows)
            column = f"check:{expectation.key}"
            if column not in table:
                table[column] = pd.array([pd.NA] * len(table), dtype="boolean")
            if len(primary):
                table.loc[primary.index, column] = passed
            checks.append({"scenario": scenario.name, "run": int(run), "step": expectation.step,  # type: ignore[call-overload]
                           "expectation": expectation.run_label, "key": expectation.key, "passed": bool(passed),
                           "measured": _jsonable(measured), "detail": detail, "line": expectation.line,
                           "source": scenario.source})
    return table, pd.DataFrame(checks, columns=["scenario", "run", "step", "expectation", "key", "passed",
                                                "measured", "detail", "line", "source"])


def aggregate_checks(table: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """The percentile limits (``p50_max``, ``p90_max``, ``p95_max``) over all runs of each step."""
    out = []
    for expectation in scenario.expectations():
        if not isinstance(expectation.value, dict):
            continue
        for limit, bound in expectation.value.items():
            if not limit.startswith("p"):
                continue
            q = float(limit[1:3])
            rows = table[(table["step"] == expectation.step) & table["primary"]]
            values = rows[expectation.key].astype(float).dropna().to_numpy() if expectation.key in rows else []
            got = float(np.percentile(values, q)) if len(values) else None
            passed = got is not None and got <= bound
            detail = (f"p{q:g} of {len(values)} runs: {got:.0f} ms" if got is not None
                      else "no run measured it")
            out.append({"scenario": scenario.name, "run": -1, "step": expectation.step,
                        "expectation": f"{expectation.key} {limit} {bound:g}", "key": expectation.key,
                        "passed": passed, "measured": got, "detail": detail, "line": expectation.line,
                        "source": scenario.source})
    return pd.DataFrame(out, columns=["scenario", "run", "step", "expectation", "key", "passed", "measured",
                                      "detail", "line", "source"])


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def read_steps(session_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The steps.json the runner wrote into a session folder."""
    return json.loads((Path(session_dir) / STEPS_FILE).read_text(encoding="utf-8"))
