"""The turn-taking benchmark: how an agent's endpointing treats pauses, short sounds, backchannels and barge-ins.

Measured the way end-of-turn benchmarks measure models, but against the agent's real-time socket, with
scenario files written to ``OUT/scenarios/`` (so every case can be re-run on its own):

- **pauses**: a caller pauses mid-sentence for 200 ... 1,200 ms; a *false cut-off* is the server ending the
  turn during the pause (the ``cut_off`` column: two turns for one sentence). Rate by pause length.
- **short sounds**: bursts of voiced sound 60 ... 400 ms long; does the server take them for a turn?
- **backchannels** ("mm-hm", "okay", ...) spoken while the agent talks; a *false barge-in* is the agent
  yielding to one (its reply interrupted).
- **barge-ins**: the caller really talks over the agent; ``agent_yields_ms`` (until the agent's reply ends)
  and ``talk_over_ms`` (both talking at once).
- **response gap**: ``latency_first_audio_ms`` of spoken questions, against the human norm of about 200 ms
  between turns (Stivers et al. 2009, PNAS 106:10587).

Each case also gets the outcome that the lab's own offline detector predicts for the exact audio sent
(:class:`~amigo_lab.speech.VoiceActivityDetector` with the protocol's 500 ms end silence and 200 ms minimum
speech, :data:`amigo_lab.protocol.constants.VAD_END_SILENCE_MS` / ``VAD_MIN_SPEECH_MS``). Against the
embedded emulator, whose VAD follows those rules, measured and predicted agree case by case (the
webrtc frames' hangover makes the thresholds in raw audio sit about a frame or two past the nominal
values: a 500 ms rule cuts pauses of roughly 600 ms and more). Against another agent, the difference
between the two columns is that agent's endpointing.

Start with :func:`turn_taking_bench` (``amigo-lab bench turn-taking``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["HUMAN_GAP_MS", "BenchResult", "bench_agent", "predict_vad", "turn_taking_bench"]

#: The typical gap between turns in human conversation, ms (Stivers et al. 2009: a mode near 200 ms).
HUMAN_GAP_MS = 200.0
PAUSES_MS = (200, 300, 400, 500, 600, 700, 800, 1000, 1200)
BURSTS_MS = (60, 80, 120, 200, 300, 400)
#: How long after the agent's first audio the caller speaks over it (backchannels and barge-ins).
TALK_OVER_AFTER_MS = 1500.0

SENTENCES = {
    "eng": "I would like to book an appointment for tomorrow morning",
    "spa": "quisiera pedir una cita para mañana por la mañana",
    "fra": "je voudrais prendre un rendez-vous pour demain matin",
    "deu": "ich möchte einen Termin für morgen früh vereinbaren",
    "ita": "vorrei prenotare un appuntamento per domani mattina",
    "por": "eu gostaria de marcar uma consulta para amanhã de manhã",
}
BACKCHANNELS = {
    "eng": ("mm-hm", "okay", "yeah"), "spa": ("ajá", "vale", "sí"), "fra": ("oui", "d'accord", "hum"),
    "deu": ("ja", "genau", "mhm"), "ita": ("sì", "certo", "ok"), "por": ("sim", "tá", "certo"),
}
#: A request the demo agent answers at length (something to talk over), and a real interruption.
LONG_REQUEST = "tell me about the clinic"
INTERRUPTION = "what is your address"


#: What the benchmark's agent says at length, so the caller has something to talk over (about 20 s).
LONG_ANSWER = ("Riverside Clinic is a family practice with four doctors, two nurses and a small laboratory. "
               "We see patients of every age, from newborns to grandparents, and we offer check ups, "
               "vaccinations, blood tests, travel advice and care for long term conditions. Most visits last "
               "twenty minutes, and we keep a few appointments free every morning for urgent cases.")


def bench_agent(turn: Any) -> str:
    """The emulator agent of the benchmark: a long answer to :data:`LONG_REQUEST`, else a short one.

    It never ends the conversation (a burst heard as "bye" must not end the suite) and answers at once,
    so the figures are the endpointing's alone.
    """
    return LONG_ANSWER if turn.text.strip().casefold() == LONG_REQUEST else "I see."


def predict_vad(samples: np.ndarray) -> dict[str, Any]:
    """What a VAD with the protocol's rules does with ``samples`` (16 kHz float): the events it reports.

    Returns ``{"turns": n speech-ended, "discarded": n reset-zero, "started": bool}``. The audio gets the
    same trailing silence the runner's caller sends after each utterance.
    """
    from amigo_lab.audio import float_to_pcm16, silence
    from amigo_lab.experiments.runner import TRAILING_SILENCE_MS
    from amigo_lab.protocol.constants import VAD_END_SILENCE_MS, VAD_MIN_SPEECH_MS
    from amigo_lab.speech import (
        SPEECH_ENDED,
        SPEECH_RESET_ZERO,
        SPEECH_STARTED,
        VoiceActivityDetector,
    )

    detector = VoiceActivityDetector(end_silence_ms=VAD_END_SILENCE_MS, min_speech_ms=VAD_MIN_SPEECH_MS)
    audio = np.concatenate([np.asarray(samples, np.float32), silence(TRAILING_SILENCE_MS)])
    events = detector.feed(float_to_pcm16(audio))
    kinds = [e.kind for e in events]
    return {"turns": kinds.count(SPEECH_ENDED), "discarded": kinds.count(SPEECH_RESET_ZERO),
            "started": SPEECH_STARTED in kinds}


def _burst(ms: float) -> np.ndarray:
    """``ms`` of a voiced sound (a 140 Hz harmonic series, like a held vowel) with silence around it."""
    from amigo_lab.audio import SAMPLE_RATE

    t = np.arange(int(SAMPLE_RATE * ms / 1000.0)) / SAMPLE_RATE
    tone = np.zeros_like(t)
    for k in range(1, 20):
        tone = tone + np.sin(2 * np.pi * 140.0 * k * t) / k
    tone = 0.3 * tone / max(float(np.max(np.abs(tone))), 1e-9) if t.size else tone
    pad = np.zeros(SAMPLE_RATE // 4, np.float32)
    return np.concatenate([pad, np.asarray(tone, np.float32), pad])


@dataclass
class BenchResult:
    """The benchmark's tables (DataFrames), where it wrote them, and whether measured = predicted.

    ``pauses`` (language, pause_ms, runs, cut_offs, cut_off_rate, predicted_rate), ``bursts`` (burst_ms,
    turn_rate, predicted_rate), ``backchannels`` (language, word, false_barge_in_rate, predicted_rate),
    ``barge_ins`` (language, run, agent_yields_ms, talk_over_ms), ``gaps`` (language, run, gap_ms).
    Next: :meth:`text`, or open ``report_path``.
    """

    out: Path
    pauses: pd.DataFrame
    bursts: pd.DataFrame
    backchannels: pd.DataFrame
    barge_ins: pd.DataFrame
    gaps: pd.DataFrame
    report_path: Path
    experiments: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def matches_prediction(self) -> bool:
        """True when every pause, burst and backchannel case came out as the VAD rules predict."""
        return all(bool((t["measured_rate"] == t["predicted_rate"]).all())
                   for t in (self.pauses, self.bursts, self.backchannels) if len(t))

    def summary(self) -> dict[str, Any]:
        """The figures in one dict (what bench.json holds)."""
        gaps = self.gaps["gap_ms"].astype(float).dropna().to_numpy()
        yields = self.barge_ins["agent_yields_ms"].astype(float).dropna().to_numpy()
        return {
            "pauses": self.pauses.to_dict("records"),
            "bursts": self.bursts.to_dict("records"),
            "backchannels": self.backchannels.to_dict("records"),
            "false_barge_in_rate": float(self.backchannels["measured_rate"].mean()) if len(self.backchannels) else None,
            "agent_yields_ms_p50": float(np.percentile(yields, 50)) if yields.size else None,
            "talk_over_ms_p50": (float(self.barge_ins["talk_over_ms"].astype(float).median())
                                 if len(self.barge_ins) else None),
            "response_gap_ms_p50": float(np.percentile(gaps, 50)) if gaps.size else None,
            "human_gap_ms": HUMAN_GAP_MS,
            "matches_prediction": self.matches_prediction,
        }

    def text(self) -> str:
        """A plain-text account of the figures (what the command prints)."""
        s = self.summary()
        lines = ["false cut-offs by pause length (measured / predicted by the VAD rules):"]
        for lang, part in self.pauses.groupby("language", sort=False):
            cells = "  ".join(f"{int(r.pause_ms)}:{r.measured_rate:.0%}/{r.predicted_rate:.0%}"
                              for r in part.itertuples())
            lines.append(f"  {lang}  {cells}")
        if len(self.bursts):
            cells = "  ".join(f"{int(r.burst_ms)}:{r.measured_rate:.0%}/{r.predicted_rate:.0%}"
                              for r in self.bursts.itertuples())
            lines.append(f"short sounds taken as a turn (ms: measured/predicted): {cells}")
        if s["false_barge_in_rate"] is not None:
            lines.append(f"false barge-ins on backchannels: {s['false_barge_in_rate']:.0%}")
        if s["agent_yields_ms_p50"] is not None:
            lines.append(f"real barge-ins: the agent yields in {s['agent_yields_ms_p50']:.0f} ms (p50), "
                         f"talk-over {s['talk_over_ms_p50']:.0f} ms (p50)")
        if s["response_gap_ms_p50"] is not None:
            lines.append(f"response gap: {s['response_gap_ms_p50']:.0f} ms (p50) vs about {HUMAN_GAP_MS:.0f} ms "
                         "between human turns")
        lines.append("measured = predicted in every case" if self.matches_prediction
                     else "measured differs from the VAD rules' prediction in some cases (see the tables)")
        return "\n".join(lines)


def _write_scenario(folder: Path, data: dict[str, Any]) -> Path:
    import yaml

    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def turn_taking_bench(*, out: str | os.PathLike[str] | None = None, languages: Sequence[str] = ("eng", "spa", "fra"),
                      runs: int = 1, pauses_ms: Sequence[float] = PAUSES_MS, bursts_ms: Sequence[float] = BURSTS_MS,
                      backchannels: int = 3, emulator_options: dict[str, Any] | None = None,
                      connect_options: dict[str, Any] | None = None, progress: bool = True) -> BenchResult:
    """Run the turn-taking suite (against a fresh embedded emulator unless ``connect_options`` say otherwise).

    ``languages`` are the callers' languages (ISO 639-3, from :data:`SENTENCES`); ``runs`` repeats every
    case; ``backchannels`` is how many of each language's backchannel words to try. Writes to ``out``:
    ``scenarios/``, one experiment folder per suite, ``bench.json``, tables as Parquet, ``report.html``.
    Next: ``result.text()``, ``result.matches_prediction``.
    """
    from amigo_lab.audio import write_wav
    from amigo_lab.experiments.experiment import ExperimentError, run
    from amigo_lab.experiments.speech import _with_pause, speech_samples

    unknown = [lang for lang in languages if lang not in SENTENCES]
    if unknown or not languages:
        raise ExperimentError(f"unsupported bench language(s) {unknown or '(none)'}; "
                              f"choose from {', '.join(SENTENCES)}")
    root = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="amigo-bench-"))
    scenarios_dir = root / "scenarios"
    scenarios_dir.mkdir(parents=True, exist_ok=True)

    # Pauses and short sounds depend on the caller's audio alone: streamed in real time (so the server's VAD
    # positions map onto the log clock), answered by an agent that does not pace its audio.
    quick: list[Path] = []
    predictions: dict[tuple[str, int], dict[str, Any]] = {}
    for lang in languages:
        sentence = SENTENCES[lang]
        samples, alignment = speech_samples(sentence, language=lang)
        steps = []
        for i, pause in enumerate(pauses_ms):
            steps.append({"speak": sentence, "language": lang, "pause_inside_ms": float(pause),
                          "label": f"pause {pause:g} ms"})
            predictions[(f"pauses-{lang}", i)] = predict_vad(
                _with_pause(samples, alignment, sentence, float(pause), None))
        quick.append(_write_scenario(scenarios_dir, {"name": f"pauses-{lang}", "vad": True, "realtime": True,
                                                     "turns": steps}))
    if bursts_ms:
        steps = []
        for i, ms in enumerate(bursts_ms):
            audio = _burst(float(ms))
            write_wav(scenarios_dir / f"burst-{int(ms)}ms.wav", audio, sr=16000)
            steps.append({"audio": f"burst-{int(ms)}ms.wav", "label": f"burst {ms:g} ms"})
            predictions[("bursts", i)] = predict_vad(audio)
        quick.append(_write_scenario(scenarios_dir, {"name": "bursts", "vad": True, "realtime": True,
                                                     "turns": steps}))

    # Backchannels, barge-ins and response gaps are about timing: everything in real time.
    timed: list[Path] = []
    for lang in languages:
        talk: list[dict[str, Any]] = [{"speak": SENTENCES[lang], "language": lang, "label": "question"}]
        for word in BACKCHANNELS[lang][:backchannels]:
            talk.append({"say": LONG_REQUEST, "label": f"long answer before {word!r}"})
            talk.append({"barge_in": {"after_ms": TALK_OVER_AFTER_MS, "speak": word, "language": lang},
                          "label": f"backchannel {word}"})
            samples, _ = speech_samples(word, language=lang)
            predictions[(f"talk-{lang}", len(talk) - 1)] = predict_vad(samples)
        talk.append({"say": LONG_REQUEST, "label": "long answer before the barge-in"})
        talk.append({"barge_in": {"after_ms": TALK_OVER_AFTER_MS, "speak": INTERRUPTION}, "label": "barge-in"})
        timed.append(_write_scenario(scenarios_dir, {"name": f"talk-{lang}", "vad": True, "realtime": True,
                                                     "turns": talk}))

    options = dict(connect_options or {})
    experiments = {}
    for name, files, realtime in (("timing-free", quick, False), ("timed", timed, True)):
        emulator = None
        if not options:
            from amigo_lab.emulator import Emulator
            from amigo_lab.experiments.runner import CallerPool
            emulator = Emulator(realtime=realtime, **{"agent": bench_agent, "tokens": CallerPool.emulator_tokens(),
                                                      **dict(emulator_options or {})}).start()
        try:
            experiments[name] = run(files, runs=runs, out=root / name, emulator=emulator,
                                    connect_options=options or None, progress=progress)
        finally:
            if emulator is not None:
                emulator.stop()
    result = _tables(root, experiments, predictions, languages)
    return result


def _tables(root: Path, experiments: dict[str, Any], predictions: dict[tuple[str, int], dict[str, Any]],
            languages: Sequence[str]) -> BenchResult:
    quick = experiments["timing-free"].results
    timed = experiments["timed"].results
    primary_q = quick[quick["primary"].astype(bool) & (quick["step"] >= 0)]
    pauses, bursts, talks, barges, gaps = [], [], [], [], []
    for (scenario, step), part in primary_q.groupby(["scenario", "step"], sort=True):
        predicted = predictions.get((str(scenario), int(step)))
        if predicted is None:
            continue
        title = str(part["step_title"].iloc[0])
        if str(scenario).startswith("pauses-"):
            pauses.append({"language": str(scenario).split("-", 1)[1], "pause_ms": float(title.split()[1]),
                           "runs": len(part), "cut_offs": int(part["cut_off"].sum()),
                           "measured_rate": float(part["cut_off"].mean()),
                           "predicted_rate": 1.0 if predicted["turns"] > 1 else 0.0})
        else:
            taken = part["vad_speech"] > 0
            bursts.append({"burst_ms": float(title.split()[1]), "runs": len(part),
                           "measured_rate": float(taken.mean()),
                           "predicted_rate": 1.0 if predicted["turns"] >= 1 else 0.0})
    primary_t = timed[timed["primary"].astype(bool) & (timed["step"] >= 0)]
    for (scenario, step), part in primary_t.groupby(["scenario", "step"], sort=True):
        language = str(scenario).split("-", 1)[1]
        title = str(part["step_title"].iloc[0])
        if title.startswith("backchannel"):
            predicted = predictions[(str(scenario), int(step))]
            yielded = part["yielded"].fillna(False).astype(bool)
            talks.append({"language": language, "word": title.split(" ", 1)[1], "runs": len(part),
                          "measured_rate": float(yielded.mean()),
                          "predicted_rate": 1.0 if predicted["started"] else 0.0})
        elif title == "barge-in":
            for row in part.itertuples():
                barges.append({"language": language, "run": int(row.run), "agent_yields_ms": row.agent_yields_ms,
                               "talk_over_ms": row.talk_over_ms, "yielded": row.yielded})
        elif title == "question":
            for row in part.itertuples():
                gaps.append({"language": language, "run": int(row.run), "gap_ms": row.latency_first_audio_ms,
                             "human_gap_ms": HUMAN_GAP_MS})
    result = BenchResult(
        out=root,
        pauses=pd.DataFrame(pauses, columns=["language", "pause_ms", "runs", "cut_offs", "measured_rate",
                                             "predicted_rate"]),
        bursts=pd.DataFrame(bursts, columns=["burst_ms", "runs", "measured_rate", "predicted_rate"]),
        backchannels=pd.DataFrame(talks, columns=["language", "word", "runs", "measured_rate", "predicted_rate"]),
        barge_ins=pd.DataFrame(barges, columns=["language", "run", "agent_yields_ms", "talk_over_ms", "yielded"]),
        gaps=pd.DataFrame(gaps, columns=["language", "run", "gap_ms", "human_gap_ms"]),
        report_path=root / "report.html", experiments=experiments)
    for name in ("pauses", "bursts", "backchannels", "barge_ins", "gaps"):
        table = getattr(result, name)
        table.to_parquet(root / f"{name}.parquet", index=False)
    (root / "bench.json").write_text(json.dumps(result.summary(), indent=1, default=_json), encoding="utf-8")
    _write_report(result)
    return result


def _json(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _write_report(result: BenchResult) -> None:
    import plotly.graph_objects as go

    from amigo_lab.experiments.report import _Figures, _table, document

    figures = _Figures()
    curve = go.Figure()
    for lang, part in result.pauses.groupby("language", sort=False):
        curve.add_trace(go.Scatter(x=part["pause_ms"], y=part["measured_rate"], mode="lines+markers",
                                   name=f"{lang} measured"))
        curve.add_trace(go.Scatter(x=part["pause_ms"], y=part["predicted_rate"], mode="lines", name=f"{lang} predicted",
                                   line={"dash": "dot"}))
    curve.update_layout(title="False cut-off rate by pause length", xaxis_title="pause inside the sentence (ms)",
                        yaxis_title="turns cut off", yaxis_range=[-0.05, 1.05], height=380)
    bursts = go.Figure()
    if len(result.bursts):
        bursts.add_trace(go.Scatter(x=result.bursts["burst_ms"], y=result.bursts["measured_rate"],
                                    mode="lines+markers", name="measured"))
        bursts.add_trace(go.Scatter(x=result.bursts["burst_ms"], y=result.bursts["predicted_rate"], mode="lines",
                                    name="predicted", line={"dash": "dot"}))
    bursts.update_layout(title="Short sounds taken as a turn", xaxis_title="voiced sound (ms)", height=340)
    gaps = go.Figure()
    gaps.add_trace(go.Box(x=result.gaps["gap_ms"].astype(float), name="response gap", boxpoints="all"))
    gaps.add_vline(x=HUMAN_GAP_MS, line_dash="dash", annotation_text="human norm ~200 ms")
    gaps.update_layout(title="Response gap after a completed turn (latency_first_audio_ms)", height=300)
    barge = go.Figure()
    barge.add_trace(go.Box(y=result.barge_ins["agent_yields_ms"].astype(float), name="agent_yields_ms",
                           boxpoints="all"))
    barge.add_trace(go.Box(y=result.barge_ins["talk_over_ms"].astype(float), name="talk_over_ms", boxpoints="all"))
    barge.update_layout(title="Real barge-ins (ms)", height=320)
    sections = [
        ("Pauses: false cut-offs",
         figures.add(curve) + _table(result.pauses.to_dict("records"), list(result.pauses.columns))),
        ("Short sounds", figures.add(bursts) + _table(result.bursts.to_dict("records"), list(result.bursts.columns))),
        ("Backchannels: false barge-ins",
         _table(result.backchannels.to_dict("records"), list(result.backchannels.columns))),
        ("Barge-ins", figures.add(barge) + _table(result.barge_ins.to_dict("records"), list(result.barge_ins.columns))),
        ("Response gap", figures.add(gaps) + _table(result.gaps.to_dict("records"), list(result.gaps.columns))),
    ]
    intro = "<pre>" + result.text().replace("&", "&amp;").replace("<", "&lt;") + "</pre>"
    result.report_path.write_text(document("amigo_lab turn-taking benchmark", sections, intro), encoding="utf-8")
