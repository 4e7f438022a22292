// Latency waterfall: one row per interaction, segments from the user's end of speech to each later stamp of
// the protocol fold, each labelled with the fold's latency name (hover: its definition). The header holds the
// running p50 / p90. Everything comes from traits the kernel sets once per interaction; nothing is sent back.

const STEPS = [
  ["first_text", "latency_first_text_ms", "first text"],
  ["first_audio", "latency_first_audio_ms", "first audio"],
  ["first_answer_audio", "latency_first_answer_audio_ms", "answer audio"],
  ["first_heard", "latency_first_heard_ms", "heard"],
];
const SUMMARY = ["latency_first_text_ms", "latency_first_audio_ms", "latency_first_answer_audio_ms",
  "latency_first_heard_ms", "latency_complete_ms", "vad_latency_first_audio_ms"];

function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function ms(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value)} ms`;
}

function render({ model, el }) {
  const root = h("div", "amigo-waterfall");
  const summary = h("table", "amigo-waterfall-summary");
  const rows = h("div", "amigo-waterfall-rows");
  const empty = h("div", "amigo-waterfall-empty", "no completed turn yet");
  root.append(summary, rows, empty);
  el.append(root);

  function definition(name) {
    return (model.get("definitions") || {})[name]?.definition ?? name;
  }

  function renderSummary() {
    const stats = model.get("summary") || {};
    const head = h("tr");
    head.append(h("th", "", "latency (session)"), h("th", "", "p50"), h("th", "", "p90"), h("th", "", "n"));
    const body = [head];
    for (const name of SUMMARY) {
      const s = stats[name];
      if (!s) continue;
      const tr = h("tr");
      tr.dataset.latency = name;
      const label = h("td", "amigo-waterfall-name", name);
      label.title = definition(name);
      tr.append(label, h("td", "amigo-waterfall-p50", ms(s.p50)), h("td", "amigo-waterfall-p90", ms(s.p90)),
        h("td", "", String(s.n)));
      body.push(tr);
    }
    summary.replaceChildren(...body);
  }

  function renderTurns() {
    const turns = model.get("turns") || [];
    empty.style.display = turns.length ? "none" : "";
    let scale = 1;
    for (const turn of turns) {
      for (const value of Object.values(turn.offsets || {})) if (value > scale) scale = value;
    }
    const nodes = turns.slice(-50).map((turn) => {
      const row = h("div", "amigo-waterfall-turn");
      row.dataset.index = turn.index;
      row.dataset.status = turn.status;
      const label = h("div", "amigo-waterfall-label");
      const text = turn.user_text || `(${turn.kind})`;
      label.textContent = `#${turn.index} ${turn.kind}${turn.interrupted ? " · interrupted" : ""}: ${text}`;
      label.title = `${text}\n→ ${turn.reply_text}`;
      const track = h("div", "amigo-waterfall-track");
      const vad = turn.offsets?.vad_end;
      if (vad !== null && vad !== undefined) {
        const mark = h("div", "amigo-waterfall-vad");
        mark.style.left = `${Math.max(0, (vad / scale) * 100)}%`;
        mark.title = `server VAD end (arrival of server.vad-speech-ended): ${ms(vad)} after the user's end of speech`;
        mark.dataset.ms = String(vad);
        track.append(mark);
      }
      let previous = 0;
      for (const [stamp, name, short] of STEPS) {
        const at = turn.offsets?.[stamp];
        const value = turn.latencies?.[name];
        if (at === null || at === undefined) continue;
        const bar = h("div", `amigo-waterfall-bar amigo-waterfall-${stamp}`);
        const from = Math.min(previous, at);
        bar.style.left = `${(Math.max(0, from) / scale) * 100}%`;
        bar.style.width = `${Math.max(0.4, ((at - from) / scale) * 100)}%`;
        bar.title = `${name} = ${ms(value)}\n${definition(name)}`;
        bar.dataset.latency = name;
        bar.dataset.ms = value === null || value === undefined ? "" : String(value);
        track.append(bar);
        previous = Math.max(previous, at);
      }
      const values = h("div", "amigo-waterfall-values");
      for (const [, name, short] of STEPS) {
        const value = turn.latencies?.[name];
        const chip = h("span", "amigo-waterfall-value", `${short} ${ms(value)}`);
        chip.title = `${name}: ${definition(name)}`;
        chip.dataset.latency = name;
        values.append(chip);
      }
      row.append(label, track, values);
      return row;
    });
    rows.replaceChildren(...nodes);
  }

  model.on("change:summary", renderSummary);
  model.on("change:definitions", () => { renderSummary(); renderTurns(); });
  model.on("change:turns", renderTurns);
  renderSummary();
  renderTurns();
  return () => {};
}

export default { render };
