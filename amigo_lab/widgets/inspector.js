// Event inspector: a live list of every frame, drawn from batches of rows the kernel sends a few times a
// second ({kind: "rows", rows: [[id, seq, t, direction, type, summary, n, audio_ms, t_end, last_seq, flags]]}).
// A row that comes again (same id) replaces the old one: that is how a folded audio run keeps counting.
//
// Only a bounded window of rows is kept (model "window"), and only the rows on screen are in the DOM (a
// fixed row height and a pool of row nodes), so an hour at microphone rate costs the page what a minute does.
// Messages to the kernel: {kind: "hello"} (send me the window), {kind: "detail", id, seqs} (wire JSON).

const ROW_HEIGHT = 20;
const F = { id: 0, seq: 1, t: 2, direction: 3, type: 4, summary: 5, n: 6, audio_ms: 7, t_end: 8, last_seq: 9, flags: 10 };
const ARROWS = { sent: "↑", received: "↓", local: "·" };

function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function render({ model, el }) {
  const root = h("div", "amigo-inspector");
  const toolbar = h("div", "amigo-inspector-toolbar");
  const follow = h("label", "amigo-inspector-follow");
  const followBox = h("input");
  followBox.type = "checkbox";
  followBox.checked = true;
  follow.append(followBox, document.createTextNode(" follow"));
  const hide = h("label", "amigo-inspector-hide-audio");
  const hideBox = h("input");
  hideBox.type = "checkbox";
  hide.append(hideBox, document.createTextNode(" hide audio"));
  const search = h("input", "amigo-inspector-search");
  search.type = "search";
  search.placeholder = "search type or payload, or #seq";
  const counts = h("span", "amigo-inspector-counts");
  const newer = h("button", "amigo-inspector-newer");
  newer.style.display = "none";
  toolbar.append(follow, hide, search, counts, newer);
  const chips = h("div", "amigo-inspector-chips");
  const header = h("div", "amigo-inspector-row amigo-inspector-head");
  for (const [cls, label] of [["dir", ""], ["t", "t (s)"], ["type", "type"], ["summary", "payload"]]) {
    header.append(h("span", `amigo-inspector-${cls}`, label));
  }
  const list = h("div", "amigo-inspector-list");
  const spacer = h("div", "amigo-inspector-spacer");
  const viewport = h("div", "amigo-inspector-viewport");
  list.append(spacer, viewport);
  const detail = h("pre", "amigo-inspector-detail");
  detail.style.display = "none";
  root.append(toolbar, chips, header, list, detail);
  el.append(root);

  const byId = new Map();       // id -> row (array)
  let order = [];               // ids, oldest first
  let shown = [];               // rows passing the filters, oldest first
  const chipState = new Map();  // type -> "include" | "exclude" | "" (neutral)
  const chipNodes = new Map();
  let entries = 0;
  let selected = null;
  let unseen = 0;
  let frameRequested = false;
  let renders = 0;
  const pool = [];

  function isAudio(row) {
    return row[F.audio_ms] !== null && row[F.audio_ms] !== undefined;
  }

  function passes(row) {
    if (hideBox.checked && isAudio(row)) return false;
    const type = row[F.type];
    const state = chipState.get(type) || "";
    if (state === "exclude") return false;
    let anyInclude = false;
    for (const value of chipState.values()) if (value === "include") { anyInclude = true; break; }
    if (anyInclude && state !== "include") return false;
    const query = search.value.trim().toLowerCase();
    // "#123" finds frame 123, also inside a folded run.
    const seqQuery = /^#(\d+)$/.exec(query);
    if (seqQuery) return row[F.seq] <= Number(seqQuery[1]) && Number(seqQuery[1]) <= row[F.last_seq];
    if (query && !(`${type} ${row[F.summary]}`.toLowerCase().includes(query))) return false;
    return true;
  }

  function refilter() {
    shown = order.map((id) => byId.get(id)).filter(passes);
    schedule(true);
  }

  function addChip(type) {
    if (chipNodes.has(type)) return;
    const chip = h("button", "amigo-inspector-chip", type);
    chip.dataset.type = type;
    chip.title = "click: only this type; again: hide it; again: back to neutral";
    chip.addEventListener("click", () => {
      const next = { "": "include", include: "exclude", exclude: "" }[chipState.get(type) || ""];
      chipState.set(type, next);
      chip.dataset.state = next;
      refilter();
    });
    chipNodes.set(type, chip);
    const sorted = [...chipNodes.keys()].sort();
    chips.insertBefore(chip, chipNodes.get(sorted[sorted.indexOf(type) + 1]) || null);
  }

  function trim() {
    const window = model.get("window");
    if (order.length <= window + Math.max(50, window / 10)) return;   // drop in slices, not one by one
    const drop = order.length - window;
    for (const id of order.slice(0, drop)) byId.delete(id);
    order = order.slice(drop);
    const oldest = order.length ? order[0] : Infinity;
    let cut = 0;
    while (cut < shown.length && shown[cut][F.id] < oldest) cut++;
    if (cut) shown = shown.slice(cut);
  }

  function onRows(rows) {
    let added = 0;
    let searchActive = search.value.trim() !== "";
    for (const row of rows) {
      const id = row[F.id];
      const known = byId.get(id);
      if (known) {
        for (let i = 0; i < row.length; i++) known[i] = row[i];   // shown[] holds the same array
        continue;
      }
      byId.set(id, row);
      if (order.length && id < order[order.length - 1]) {
        order.push(id);
        order.sort((a, b) => a - b);
        searchActive = true;      // out of order: rebuild the filtered list below
      } else {
        order.push(id);
      }
      addChip(row[F.type]);
      if (!searchActive && passes(row)) {
        shown.push(row);
        added++;
      }
    }
    trim();
    if (searchActive) shown = order.map((id) => byId.get(id)).filter(passes);
    if (!followBox.checked) unseen += added;
    schedule(followBox.checked);
  }

  function schedule(scrollToEnd) {
    if (scrollToEnd) root.dataset.scrollToEnd = "1";
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(draw);
  }

  function rowNode(i) {
    while (pool.length <= i) {
      const node = h("div", "amigo-inspector-row");
      node.append(h("span", "amigo-inspector-dir"), h("span", "amigo-inspector-t"),
        h("span", "amigo-inspector-type"), h("span", "amigo-inspector-summary"));
      node.addEventListener("click", () => select(node.__row));
      viewport.append(node);
      pool.push(node);
    }
    return pool[i];
  }

  function draw() {
    frameRequested = false;
    renders++;
    spacer.style.height = `${shown.length * ROW_HEIGHT}px`;
    if (root.dataset.scrollToEnd === "1" && followBox.checked) list.scrollTop = list.scrollHeight;
    delete root.dataset.scrollToEnd;
    const first = Math.max(0, Math.floor(list.scrollTop / ROW_HEIGHT) - 5);
    const count = Math.ceil((list.clientHeight || 320) / ROW_HEIGHT) + 10;
    const last = Math.min(shown.length, first + count);
    viewport.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    let i = 0;
    for (let k = first; k < last; k++, i++) {
      const row = shown[k];
      const node = rowNode(i);
      node.__row = row;
      node.style.display = "";
      node.dataset.direction = row[F.direction];
      node.dataset.type = row[F.type];
      node.dataset.seq = row[F.seq];
      node.classList.toggle("amigo-inspector-audio", isAudio(row));
      node.classList.toggle("amigo-inspector-run", row[F.n] > 1);
      node.classList.toggle("amigo-inspector-selected", selected !== null && selected[F.id] === row[F.id]);
      node.classList.toggle("amigo-inspector-problem", /error|invalid|violation/.test(row[F.type]) ||
        /error \d|close 4/.test(row[F.summary]));
      const [dir, t, type, summary] = node.children;
      dir.textContent = ARROWS[row[F.direction]] ?? row[F.direction];
      t.textContent = Number(row[F.t]).toFixed(3);
      type.textContent = row[F.type];
      summary.textContent = row[F.summary];
    }
    for (; i < pool.length; i++) pool[i].style.display = "none";
    counts.textContent = `${entries} frames · ${shown.length} of ${order.length} rows`;
    newer.style.display = !followBox.checked && unseen > 0 ? "" : "none";
    newer.textContent = `${unseen} new ↓`;
    root.dataset.entries = String(entries);
    root.dataset.rows = String(order.length);
    root.dataset.shown = String(shown.length);
    root.dataset.renders = String(renders);
    root.dataset.domRows = String(viewport.childElementCount);
  }

  let detailRequest = 0;
  function select(row) {
    if (!row) return;
    if (selected && selected[F.id] === row[F.id]) {
      selected = null;
      detail.style.display = "none";
      schedule(false);
      return;
    }
    selected = row;
    detailRequest++;
    const seqs = row[F.n] > 1 ? [row[F.seq], row[F.last_seq]] : [row[F.seq]];
    detail.style.display = "";
    detail.textContent = "loading…";
    model.send({ kind: "detail", id: detailRequest, seqs });
    schedule(false);
  }

  function showDetail(msg) {
    if (msg.id !== detailRequest || !selected) return;
    const parts = [];
    if (selected[F.n] > 1) {
      parts.push(`${selected[F.n]} frames folded, t ${Number(selected[F.t]).toFixed(3)}–${Number(selected[F.t_end]).toFixed(3)} s` +
        (isAudio(selected) ? `, ${(selected[F.audio_ms] / 1000).toFixed(2)} s of audio` : "") + "; first and last:");
    }
    for (const frame of msg.frames) {
      let wire = frame.wire;
      if (wire) {
        try { wire = JSON.stringify(JSON.parse(wire), null, 2); } catch (_) { /* keep the text as it came */ }
      }
      parts.push(`#${frame.seq} ${frame.direction ?? ""} ${frame.type ?? ""} t=${frame.t ?? ""}` +
        (frame.flags ? ` [${frame.flags}]` : "") + "\n" + (wire ?? "(local entry: no wire frame)"));
    }
    detail.textContent = parts.join("\n\n");
  }

  list.addEventListener("scroll", () => {
    const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < ROW_HEIGHT * 2;
    if (atEnd && !followBox.checked) {
      followBox.checked = true;
      unseen = 0;
    } else if (!atEnd && followBox.checked && !frameRequested) {
      followBox.checked = false;        // scrolling up pauses following
    }
    schedule(false);
  });
  followBox.addEventListener("change", () => {
    unseen = 0;
    schedule(followBox.checked);
  });
  newer.addEventListener("click", () => {
    followBox.checked = true;
    unseen = 0;
    schedule(true);
  });
  hideBox.addEventListener("change", () => {
    model.set("hide_audio", hideBox.checked);
    model.save_changes();
    refilter();
  });
  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      model.set("search", search.value);
      model.save_changes();
      refilter();
    }, 120);
  });

  function onMessage(msg) {
    if (!msg) return;
    if (msg.kind === "reset") {
      byId.clear();
      order = [];
      shown = [];
      selected = null;
      detail.style.display = "none";
      schedule(true);
    } else if (msg.kind === "rows") {
      entries = msg.entries ?? entries;
      onRows(msg.rows);
    } else if (msg.kind === "detail") {
      showDetail(msg);
    }
  }
  model.on("msg:custom", onMessage);
  model.on("change:hide_audio", () => {
    hideBox.checked = model.get("hide_audio");
    refilter();
  });
  model.on("change:search", () => {
    if (search.value !== model.get("search")) {
      search.value = model.get("search");
      refilter();
    }
  });
  hideBox.checked = model.get("hide_audio");
  search.value = model.get("search");
  model.send({ kind: "hello" });
  schedule(true);
  return () => {
    clearTimeout(searchTimer);
    model.off("msg:custom", onMessage);
  };
}

export default { render };
