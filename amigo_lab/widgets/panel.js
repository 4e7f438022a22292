// Session panel view: connection controls, state, VAD indicator, last turn's latency, live transcript and
// errors. All of it is drawn from traits the kernel keeps up to date; the only messages sent back are
// {kind: "connect"}, {kind: "disconnect"} and {kind: "replay", index} (a turn's ▶ button). The microphone
// and player are sibling widgets in the same box.

function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const VAD_LABELS = { off: "VAD off", listening: "listening", speech: "speech" };

function render({ model, el }) {
  const root = h("div", "amigo-panel");
  const header = h("div", "amigo-panel-header");
  const connectButton = h("button", "amigo-panel-connect", "Connect");
  const stateBadge = h("span", "amigo-panel-state");
  const conversation = h("span", "amigo-panel-conversation");
  const vad = h("span", "amigo-panel-vad");
  const vadDot = h("span", "amigo-panel-vad-dot");
  const vadLabel = h("span", "amigo-panel-vad-label");
  vad.append(vadDot, vadLabel);
  const latency = h("span", "amigo-panel-latency");
  header.append(connectButton, stateBadge, conversation, vad, latency);
  const errorBox = h("div", "amigo-panel-error");
  const errorText = h("div", "amigo-panel-error-text");
  const errorHint = h("div", "amigo-panel-error-hint");
  errorBox.append(errorText, errorHint);
  const transcript = h("div", "amigo-panel-transcript");
  root.append(header, errorBox, transcript);
  el.append(root);
  let kernelGone = false;     // the kernel behind this view restarted

  function renderHeader() {
    if (kernelGone) return;
    const state = model.get("state");
    root.dataset.state = state;
    stateBadge.textContent = state;
    const busy = state === "connecting" || state === "closing";
    const live = state === "connected";
    connectButton.textContent = live || state === "closing" ? "Disconnect" : "Connect";
    connectButton.disabled = busy;
    const id = model.get("conversation_id");
    conversation.textContent = id ? `conversation ${id}` : "";
    const vadState = model.get("vad");
    vad.dataset.vad = vadState;
    vadLabel.textContent = VAD_LABELS[vadState] ?? vadState;
    const ms = model.get("latency_ms");
    const name = model.get("latency_name");
    latency.textContent = ms === null || ms === undefined ? "" : `last turn ${name} ${Math.round(ms)} ms`;
    latency.title = name ? `${name}: ${(model.get("definitions") || {})[name] ?? ""}` : "";
  }

  function renderError() {
    if (kernelGone) return;
    const error = model.get("error");
    errorBox.style.display = error ? "" : "none";
    errorText.textContent = error;
    errorHint.textContent = model.get("hint");
  }

  function renderTranscript() {
    const lines = model.get("transcript") || [];
    const atBottom = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 24;
    transcript.replaceChildren(
      ...lines.map((line) => {
        const row = h("div", `amigo-panel-line amigo-panel-${line.role}`);
        if (line.filler) row.classList.add("amigo-panel-filler");
        if (line.interrupted) row.classList.add("amigo-panel-interrupted");
        row.dataset.messageId = line.message_id || "";
        const t = h("span", "amigo-panel-t", line.t === null || line.t === undefined ? "" : `${Number(line.t).toFixed(1)} s`);
        row.append(t, h("span", "amigo-panel-role", line.role), h("span", "amigo-panel-text", line.text));
        if (line.latency_ms !== null && line.latency_ms !== undefined) {
          const chip = h("span", "amigo-panel-turn-latency", `${Math.round(line.latency_ms)} ms`);
          chip.title = `${line.latency_name}: ${(model.get("definitions") || {})[line.latency_name] ?? ""}`;
          row.append(chip);
        }
        if (line.index !== null && line.index !== undefined) {
          row.dataset.index = line.index;
          const replay = h("button", "amigo-panel-replay", "▶");
          replay.title = `replay turn ${line.index}: the user's audio, then the agent's as heard`;
          replay.addEventListener("click", (event) => {
            event.stopPropagation();
            model.send({ kind: "replay", index: line.index });
          });
          if (line.role === "agent") row.append(replay);
        }
        return row;
      }),
    );
    if (atBottom) transcript.scrollTop = transcript.scrollHeight;
  }

  // After a kernel restart the widget's model is dead but its view stays on the page: ipywidgets marks the
  // view's node "jupyter-widgets-disconnected" and fires comm_live_update. Say so instead of "connected".
  function checkKernel() {
    if (!el.closest(".jupyter-widgets-disconnected")) return;
    kernelGone = true;
    root.dataset.kernel = "gone";
    stateBadge.textContent = "kernel restarted";
    connectButton.disabled = true;
    errorBox.style.display = "";
    errorText.textContent = "this panel belongs to a kernel that is gone";
    errorHint.textContent = "run the cell again to get a working panel";
  }
  model.on("comm_live_update", () => setTimeout(checkKernel, 0));

  connectButton.addEventListener("click", () => {
    const live = model.get("state") === "connected";
    model.send({ kind: live ? "disconnect" : "connect" });
  });

  for (const name of ["state", "conversation_id", "vad", "latency_ms", "latency_name"]) {
    model.on(`change:${name}`, renderHeader);
  }
  model.on("change:error", renderError);
  model.on("change:hint", renderError);
  model.on("change:transcript", renderTranscript);
  renderHeader();
  renderError();
  renderTranscript();
  return () => {};
}

export default { render };
