// Live strip: the agent's state, a scrolling level trace of both sides, and lanes of segments on the session
// clock (server VAD, user audio, agent audio received, agent audio heard) with marks (barge-in, events,
// errors). A click on a segment sends {kind: "select", seq} (its first frame); the pointer resting on a segment
// or mark sends {kind: "hover", id, segments, marks} (their ids) and the kernel answers {kind: "hover", id,
// items: [{title, frames}], more} with the frames they stand for, which the tip lists. The kernel sends
// {kind: "update", now, segments, marks, levels} five times a second; a segment that comes again (same id)
// replaces the old one. The browser keeps a bounded window and draws on one canvas.

const LANES = [["vad", "server VAD"], ["user", "user audio"], ["agent", "agent received"], ["heard", "agent heard"]];
const COLORS = { vad: "#e6550d", user: "#2a7ab9", answer: "#3182bd", filler: "#9e9ac8", heard: "#31a354" };
const MARK_COLORS = { "barge-in": "#d62728", event: "#8c564b", error: "#c0392b", discarded: "#999" };
const ARROWS = { sent: "↑", received: "↓", local: "·" };
const KEEP_S = 600;          // seconds of history the browser keeps
const LEVEL_KEEP = 6000;     // level points kept (both sides, 20 a second each: over two minutes)
const STATES = { idle: "idle", listening: "listening", "user speaking": "user speaking", thinking: "thinking",
  "agent speaking": "agent speaking", interrupted: "interrupted" };

function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function render({ model, el }) {
  const root = h("div", "amigo-timeline");
  const header = h("div", "amigo-timeline-header");
  const state = h("span", "amigo-timeline-state");
  const meters = h("span", "amigo-timeline-meters");
  const inMeter = h("span", "amigo-timeline-meter amigo-timeline-in");
  const outMeter = h("span", "amigo-timeline-meter amigo-timeline-out");
  meters.append(h("span", "", "in"), inMeter, h("span", "", "out"), outMeter);
  header.append(state, meters);
  const canvas = h("canvas", "amigo-timeline-canvas");
  const tip = h("div", "amigo-timeline-tip");
  tip.style.display = "none";
  root.append(header, canvas, tip);
  el.append(root);

  const segments = new Map();
  let marks = [];
  let levels = [];      // [t, side, db]
  let now = 0;
  let frameRequested = false;
  const peak = { in: -90, out: -90 };   // the loudest each meter showed (a test reads it)
  let kernelNow = 0;      // the session clock at the last update, and when it came
  let kernelAt = 0;
  let animating = false;
  const LANE_H = 14, LEVEL_H = 34, LABEL_W = 92, TOP = 4;

  function schedule() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(draw);
  }

  function x(t, width) {
    const span = model.get("span_s");
    const start = Math.max(0, now - span);
    return LABEL_W + ((t - start) / span) * (width - LABEL_W);
  }

  function draw() {
    frameRequested = false;
    // Between updates the session clock moves on as real time does.
    if (kernelAt) now = Math.max(now, kernelNow + (performance.now() - kernelAt) / 1000);
    const width = Math.max(300, root.clientWidth || 600);
    const height = TOP + LEVEL_H + LANES.length * (LANE_H + 4) + 18;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    g.font = "11px sans-serif";
    g.fillStyle = "#666";
    // Two small waveforms, the user's above the agent's: each bin's lowest to highest sample.
    const ROW = LEVEL_H / 2;
    g.fillText("user", 4, TOP + ROW - 4);
    g.fillText("agent", 4, TOP + LEVEL_H - 4);
    g.fillStyle = "#eee";
    g.fillRect(LABEL_W, TOP + ROW / 2, width - LABEL_W, 0.5);
    g.fillRect(LABEL_W, TOP + ROW + ROW / 2, width - LABEL_W, 0.5);
    let drawnIn = 0, drawnOut = 0;
    for (const [t, side, , lo, hi] of levels) {
      if (t > now) continue;          // agent audio received ahead of its time shows as it plays
      const px = x(t, width);
      if (px < LABEL_W) continue;
      const centre = TOP + (side === "in" ? ROW / 2 : ROW + ROW / 2);
      const half = ROW / 2 - 1;
      g.fillStyle = side === "in" ? COLORS.user : COLORS.answer;
      const y0 = centre - Math.max(0, hi) * half;
      const y1 = centre - Math.min(0, lo) * half;
      g.fillRect(px, y0, 1.5, Math.max(1, y1 - y0));
      if (side === "in") drawnIn++; else drawnOut++;
    }
    root.dataset.waveIn = String(drawnIn);
    root.dataset.waveOut = String(drawnOut);
    LANES.forEach(([lane, label], i) => {
      const y = TOP + LEVEL_H + i * (LANE_H + 4);
      g.fillStyle = "#666";
      g.fillText(label, 4, y + LANE_H - 3);
      g.fillStyle = "#f2f2f2";
      g.fillRect(LABEL_W, y, width - LABEL_W, LANE_H);
    });
    for (const seg of segments.values()) {
      const lane = LANES.findIndex(([name]) => name === seg.lane);
      if (lane < 0) continue;
      const x0 = Math.max(LABEL_W, x(seg.t0, width));
      const x1 = x(Math.max(seg.t1, seg.t0), width);
      if (x1 < LABEL_W) continue;
      const y = TOP + LEVEL_H + lane * (LANE_H + 4);
      g.fillStyle = seg.lane === "agent" ? COLORS[seg.role] ?? COLORS.answer : COLORS[seg.lane];
      g.fillRect(x0, y + 1, Math.max(2, x1 - x0), LANE_H - 2);
    }
    const bottom = TOP + LEVEL_H + LANES.length * (LANE_H + 4);
    for (const mark of marks) {
      const px = x(mark.t, width);
      if (px < LABEL_W) continue;
      g.fillStyle = MARK_COLORS[mark.kind] ?? "#333";
      g.fillRect(px - 1, TOP + LEVEL_H, 2, bottom - TOP - LEVEL_H);
    }
    g.fillStyle = "#888";
    const span = model.get("span_s");
    const start = Math.max(0, now - span);
    const step = span > 60 ? 10 : span > 20 ? 5 : 1;
    for (let t = Math.ceil(start / step) * step; t <= now; t += step) {
      g.fillText(`${t}s`, x(t, width) - 6, bottom + 12);
    }
    state.textContent = STATES[model.get("state")] ?? model.get("state");
    root.dataset.state = model.get("state");
    root.dataset.segments = String(segments.size);
    root.dataset.marks = String(marks.length);
    // The meters show each side's level at the clock's now: the newest bin not ahead of it, if recent.
    const current = { in: -90, out: -90 };
    let ahead = false;
    for (let i = levels.length - 1; i >= 0; i--) {
      const [t, side, db] = levels[i];
      if (t > now) { ahead = true; continue; }
      if (now - t > 0.25) break;
      if (current[side] === -90) current[side] = db;
    }
    for (const [side, meter] of [["in", inMeter], ["out", outMeter]]) {
      meter.style.setProperty("--level", `${Math.max(0, (current[side] + 60) / 60) * 100}%`);
      meter.dataset.db = String(current[side]);
      peak[side] = Math.max(peak[side], current[side]);
    }
    root.dataset.levelIn = String(current.in);
    root.dataset.levelOut = String(current.out);
    root.dataset.peakOut = String(peak.out);
    root.dataset.peakIn = String(peak.in);
    // While audio is playing ahead or a level is fresh, keep the clock and meters moving (20 frames a second
    // is enough for a meter, and leaves the page's time to the player and the microphone).
    if ((ahead || current.in > -90 || current.out > -90) && !animating) {
      animating = true;
      setTimeout(() => { animating = false; schedule(); }, 50);
    }
  }

  // What is under the pointer: the marks within 3 px and the segments of the lane it is in.
  function under(event) {
    const rect = canvas.getBoundingClientRect();
    const width = rect.width;
    const px = event.clientX - rect.left;
    const py = event.clientY - rect.top;
    const lane = Math.floor((py - TOP - LEVEL_H) / (LANE_H + 4));
    const found = { marks: [], segments: [], px, py, width };
    for (const mark of marks) if (Math.abs(x(mark.t, width) - px) <= 3) found.marks.push(mark);
    if (lane >= 0 && lane < LANES.length && py >= TOP + LEVEL_H) {
      for (const seg of segments.values()) {
        if (seg.lane === LANES[lane][0] && px >= x(seg.t0, width) - 2 && px <= x(seg.t1, width) + 2) {
          found.segments.push(seg);
        }
      }
    }
    return found;
  }

  // The tip lists the frames each mark stands for; the kernel sends them when asked ({kind: "hover"}), so
  // the browser never holds a frame it does not show.
  let hoverKey = "";
  let hoverRequest = 0;
  let hoverTitles = [];
  function frameLine(frame) {
    const line = h("div", "amigo-timeline-tip-frame");
    line.dataset.seq = String(frame.seq);
    line.dataset.type = frame.type;
    const when = frame.n > 1 ? `${Number(frame.t).toFixed(3)}–${Number(frame.t_end).toFixed(3)} s`
      : `${Number(frame.t).toFixed(3)} s`;
    line.append(h("span", "amigo-timeline-tip-dir", ARROWS[frame.direction] ?? frame.direction),
      h("span", "amigo-timeline-tip-t", when), h("span", "amigo-timeline-tip-type", frame.type),
      h("span", "amigo-timeline-tip-summary", frame.summary));
    line.title = frame.n > 1 ? `frames #${frame.seq}–#${frame.last_seq}` : `frame #${frame.seq}`;
    return line;
  }
  function showTip(titles, answer) {
    const nodes = [];
    if (answer) {
      for (const item of answer.items) {
        nodes.push(h("div", "amigo-timeline-tip-title", item.title));
        if (!item.frames.length) nodes.push(h("div", "amigo-timeline-tip-none", "(no frame kept)"));
        for (const frame of item.frames) nodes.push(frameLine(frame));
      }
      if (answer.more) nodes.push(h("div", "amigo-timeline-tip-more", `and ${answer.more} more`));
      tip.dataset.loaded = "1";
    } else {
      for (const title of titles) nodes.push(h("div", "amigo-timeline-tip-title", title));
      nodes.push(h("div", "amigo-timeline-tip-none", "frames…"));
      delete tip.dataset.loaded;
    }
    tip.replaceChildren(...nodes);
  }

  function hit(event) {
    const found = under(event);
    if (!found.marks.length && !found.segments.length) {
      tip.style.display = "none";
      hoverKey = "";
      return;
    }
    const key = [...found.marks.map((m) => `m${m.id}`), ...found.segments.map((s) => `s${s.id}`)].join(",");
    if (key !== hoverKey) {
      hoverKey = key;
      hoverRequest++;
      hoverTitles = [...found.marks.map((m) => `${m.kind} at ${m.t.toFixed(3)} s: ${m.label}`),
        ...found.segments.map((s) => `${s.label}: ${s.t0.toFixed(3)}–${s.t1.toFixed(3)} s`)];
      showTip(hoverTitles, null);
      model.send({ kind: "hover", id: hoverRequest, marks: found.marks.map((m) => m.id).slice(0, 8),
        segments: found.segments.map((s) => s.id).slice(0, 8) });
    }
    tip.style.display = "";
    tip.style.left = `${Math.max(0, Math.min(found.px + 8, found.width - 400))}px`;
    tip.style.top = `${found.py + 12}px`;
  }

  function onMessage(msg) {
    if (!msg) return;
    if (msg.kind === "hover") {
      if (msg.id === hoverRequest && hoverKey) showTip(hoverTitles, msg);
      return;
    }
    if (msg.kind === "reset") {
      segments.clear();
      marks = [];
      levels = [];
      now = 0;
      kernelNow = 0;
      kernelAt = 0;
    } else if (msg.kind === "update") {
      if (msg.now !== undefined && msg.now !== null) {
        kernelNow = msg.now;
        kernelAt = performance.now();
        now = Math.max(now, msg.now);
      }
      for (const seg of msg.segments) segments.set(seg.id, seg);
      marks.push(...msg.marks);
      for (const level of msg.levels) levels.push(level);
      if (msg.levels.length) levels.sort((a, b) => a[0] - b[0]);
      if (levels.length > LEVEL_KEEP) levels = levels.slice(-LEVEL_KEEP);
      const oldest = now - KEEP_S;
      if (marks.length && marks[0].t < oldest) marks = marks.filter((m) => m.t >= oldest);
      for (const [id, seg] of segments) if (seg.t1 < oldest) segments.delete(id);
    }
    schedule();
  }

  canvas.addEventListener("mousemove", hit);
  canvas.addEventListener("click", (event) => {
    // A click on a segment or mark asks for its first frame (the panel shows it in the inspector).
    const found = under(event);
    const mark = found.marks.find((m) => m.seq !== null && m.seq !== undefined);
    if (mark) return model.send({ kind: "select", seq: mark.seq });
    if (!found.segments.length) return;
    // Of segments touching the pointer, the one it is inside (two may meet within the 2 px of slack).
    const inside = found.segments.find((seg) => found.px >= x(seg.t0, found.width) && found.px <= x(seg.t1, found.width));
    model.send({ kind: "select", seq: (inside ?? found.segments[0]).seq0 });
  });
  canvas.addEventListener("mouseleave", () => {
    tip.style.display = "none";
    hoverKey = "";
  });
  model.on("msg:custom", onMessage);
  model.on("change:state", schedule);
  model.on("change:span_s", schedule);
  const resize = new ResizeObserver(schedule);
  resize.observe(root);
  model.send({ kind: "hello" });
  schedule();
  return () => {
    resize.disconnect();
    model.off("msg:custom", onMessage);
  };
}

export default { render };
