// Microphone widget: captures the browser microphone and streams 16 kHz PCM16 to the kernel.
//
// Audio path: getUserMedia -> MediaStreamAudioSourceNode -> AudioWorkletNode ("amigo-capture") in an
// AudioContext running at the device's own rate. The worklet low-pass filters and resamples to 16 kHz,
// packs 20 ms (320 samples, 640 bytes) of PCM16 per chunk and posts it to this thread, which sends it to
// the kernel as the binary buffer of a custom message. Nothing audio-related ever goes through traits.
//
// Messages to the kernel: {kind: "start", mode, sample_rate}, {kind: "chunk"} + [pcm], {kind: "end"}
// (push-to-talk released), {kind: "stop", mode}. From the kernel: {kind: "release"} stops capture.

const TARGET_RATE = 16000;
const CHUNK_MS = 20;
// Push-to-talk keeps sending this long after release, so the words still in the capture pipeline
// (worklet block + the partly filled chunk) reach the kernel before the end of the turn.
const PTT_HANGOVER_MS = 120;

// The worklet runs in its own global scope and cannot import from this module, so its source is a string
// served through a Blob URL (the widget's ESM itself is served inline, there is no file to point at).
const WORKLET_SOURCE = `
const HALF_WIDTH_OUT = 8;      // filter half-width, in output samples
const TABLE_STEPS = 64;        // kernel table resolution, steps per input sample

class AmigoCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.ratio = sampleRate / o.targetRate;           // input samples per output sample
    this.chunkSamples = o.chunkSamples;
    this.passThrough = Math.abs(this.ratio - 1) < 1e-9;
    // Windowed-sinc low-pass with its cutoff just under the lower of the two Nyquist rates.
    const cutoff = 0.5 * Math.min(1, 1 / this.ratio) * 0.92;   // cycles per input sample
    this.half = Math.ceil(HALF_WIDTH_OUT * Math.max(1, this.ratio));
    const n = this.half * TABLE_STEPS + 2;
    this.table = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const d = i / TABLE_STEPS;
      const x = 2 * cutoff * d;
      const sinc = d === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      const w = d >= this.half ? 0 : 0.5 + 0.5 * Math.cos(Math.PI * d / this.half);   // Hann
      this.table[i] = 2 * cutoff * sinc * w;
    }
    this.buf = new Float32Array(8192);
    this.len = 0;        // valid samples in buf
    this.base = 0;       // absolute input index of buf[0]
    this.next = 0;       // absolute input position of the next output sample
    this.out = new Int16Array(this.chunkSamples);
    this.fill = 0;
    this.sumSquares = 0;
  }

  kernel(d) {
    const a = Math.abs(d) * TABLE_STEPS;
    const i = Math.floor(a);
    if (i >= this.table.length - 1) return 0;
    const f = a - i;
    return this.table[i] * (1 - f) + this.table[i + 1] * f;
  }

  append(channels) {
    const frames = channels[0].length;
    if (this.len + frames > this.buf.length) {
      const bigger = new Float32Array(Math.max(this.buf.length * 2, this.len + frames));
      bigger.set(this.buf.subarray(0, this.len));
      this.buf = bigger;
    }
    for (let i = 0; i < frames; i++) {
      let s = 0;
      for (let c = 0; c < channels.length; c++) s += channels[c][i];
      this.buf[this.len + i] = s / channels.length;
    }
    this.len += frames;
  }

  emit(sample) {
    const clipped = Math.max(-1, Math.min(1, sample));
    this.sumSquares += clipped * clipped;
    this.out[this.fill++] = clipped < 0 ? Math.round(clipped * 32768) : Math.round(clipped * 32767);
    if (this.fill === this.chunkSamples) {
      const rms = Math.sqrt(this.sumSquares / this.chunkSamples);
      const pcm = this.out.buffer;
      this.port.postMessage({ pcm, rms }, [pcm]);
      this.out = new Int16Array(this.chunkSamples);
      this.fill = 0;
      this.sumSquares = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0 || input[0].length === 0) return true;
    if (this.passThrough) {
      const frames = input[0].length;
      for (let i = 0; i < frames; i++) {
        let s = 0;
        for (let c = 0; c < input.length; c++) s += input[c][i];
        this.emit(s / input.length);
      }
      return true;
    }
    this.append(input);
    const last = this.base + this.len - 1;
    while (this.next + this.half <= last) {
      const centre = this.next;
      const lo = Math.max(this.base, Math.ceil(centre - this.half));
      const hi = Math.floor(centre + this.half);
      let acc = 0;
      for (let k = lo; k <= hi; k++) acc += this.buf[k - this.base] * this.kernel(centre - k);
      // The kernel sums to ~1 over integer taps at any ratio, so the gain needs no correction.
      this.emit(acc);
      this.next += this.ratio;
    }
    const keepFrom = Math.max(this.base, Math.floor(this.next - this.half) - 1);
    const drop = keepFrom - this.base;
    if (drop > 0) {
      this.buf.copyWithin(0, drop, this.len);
      this.len -= drop;
      this.base = keepFrom;
    }
    return true;
  }
}

registerProcessor("amigo-capture", AmigoCapture);
`;

const STATE_LABELS = {
  idle: "microphone off",
  waiting: "waiting for permission…",
  denied: "permission denied",
  suspended: "audio suspended: click to resume",
  insecure: "microphone blocked: insecure origin",
  streaming: "streaming",
  error: "error",
};

function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function render({ model, el }) {
  const root = h("div", "amigo-mic");
  const startButton = h("button", "amigo-mic-start", "Start microphone");
  const deviceSelect = h("select", "amigo-mic-device");
  deviceSelect.title = "Input device";
  const modeSelect = h("select", "amigo-mic-mode");
  modeSelect.title = "Turn taking";
  for (const [value, label] of [["push-to-talk", "push to talk"], ["vad", "voice activity (VAD)"]]) {
    const option = h("option", "", label);
    option.value = value;
    modeSelect.append(option);
  }
  // Browser audio processing, one checkbox each; changing one restarts capture with the new constraints.
  const processing = h("span", "amigo-mic-processing");
  const boxes = {};
  for (const [name, label, title] of [
    ["echo_cancellation", "echo cancel", "the browser removes the agent's voice picked up from the speakers"],
    ["noise_suppression", "noise suppr.", "the browser suppresses steady background noise"],
    ["auto_gain_control", "auto gain", "the browser levels the input volume"],
  ]) {
    const box = h("input");
    box.type = "checkbox";
    box.className = `amigo-mic-${name.replace(/_/g, "-")}`;
    const wrap = h("label", "amigo-mic-option");
    wrap.title = title;
    wrap.append(box, document.createTextNode(` ${label}`));
    box.addEventListener("change", () => {
      model.set(name, box.checked);
      model.save_changes();
    });
    boxes[name] = box;
    processing.append(wrap);
  }
  const talkButton = h("button", "amigo-mic-talk", "Hold to talk");
  const meter = h("div", "amigo-mic-meter");
  const meterFill = h("div", "amigo-mic-meter-fill");
  meter.append(meterFill);
  const stateLabel = h("span", "amigo-mic-state");
  const errorLabel = h("span", "amigo-mic-error");
  root.append(startButton, deviceSelect, modeSelect, processing, talkButton, meter, stateLabel, errorLabel);
  el.append(root);

  let kernelGone = false;     // the kernel behind this view restarted
  let capture = null;          // {stream, context, source, node} while the microphone is open
  let starting = false;
  let talking = false;         // push-to-talk button held
  let sendUntil = 0;           // push-to-talk hangover deadline (performance.now())
  let endTimer = null;
  let disposed = false;

  function send(content, buffers) {
    try {
      model.send(content, undefined, buffers);
    } catch (err) {
      // The kernel side is gone (widget closed); capture is being torn down anyway.
      console.debug("[amigo mic] send failed", err);
    }
  }

  function setState(state, error = "") {
    model.set("state", state);
    model.set("error", error);
    model.save_changes();
  }

  function renderState() {
    if (kernelGone) return;
    const state = model.get("state");
    root.dataset.state = state;
    stateLabel.textContent = STATE_LABELS[state] ?? state;
    errorLabel.textContent = model.get("error") || "";
    startButton.textContent = capture || starting ? "Stop microphone" : "Start microphone";
    const ptt = model.get("mode") === "push-to-talk";
    talkButton.style.display = ptt ? "" : "none";
    talkButton.disabled = !(capture && state === "streaming");
    modeSelect.value = model.get("mode");
    for (const [name, box] of Object.entries(boxes)) box.checked = Boolean(model.get(name));
  }

  function renderDevices() {
    const devices = model.get("devices") || [];
    const selected = model.get("device_id") || "";
    deviceSelect.replaceChildren();
    const fallback = h("option", "", devices.length ? "default input" : "input device (after permission)");
    fallback.value = "";
    deviceSelect.append(fallback);
    for (const device of devices) {
      const option = h("option", "", device.label || `input ${device.device_id.slice(0, 8)}`);
      option.value = device.device_id;
      deviceSelect.append(option);
    }
    deviceSelect.value = selected;
  }

  async function refreshDevices() {
    if (!navigator.mediaDevices?.enumerateDevices) return;
    const all = await navigator.mediaDevices.enumerateDevices();
    const inputs = all
      .filter((d) => d.kind === "audioinput" && d.deviceId)
      .map((d) => ({ device_id: d.deviceId, label: d.label }));
    if (disposed) return;
    model.set("devices", inputs);
    model.save_changes();
  }

  function onChunk(event) {
    const { pcm, rms } = event.data;
    const level = Math.min(1, Math.sqrt(rms) * 1.6);   // perceptual-ish scale for the meter
    meterFill.style.width = `${Math.round(level * 100)}%`;
    const vad = model.get("mode") === "vad";
    if (vad || talking || performance.now() < sendUntil) {
      send({ kind: "chunk" }, [pcm]);
    }
  }

  async function start() {
    if (capture || starting) return;
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
      setState("insecure", `this page (${location.origin}) cannot use the microphone: browsers allow it on ` +
        "https:// or http://localhost only; open JupyterLab through https or an SSH tunnel to localhost");
      return;
    }
    starting = true;
    setState("waiting");
    const constraints = {
      echoCancellation: model.get("echo_cancellation"),
      noiseSuppression: model.get("noise_suppression"),
      autoGainControl: model.get("auto_gain_control"),
      channelCount: 1,
    };
    const deviceId = model.get("device_id");
    if (deviceId) constraints.deviceId = { exact: deviceId };
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: constraints });
    } catch (err) {
      starting = false;
      const denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
      setState(denied ? "denied" : "error", `${err?.name ?? "Error"}: ${err?.message ?? err}`);
      return;
    }
    if (disposed) {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    try {
      const track = stream.getAudioTracks()[0];
      const deviceRate = track.getSettings().sampleRate;
      let context;
      try {
        context = deviceRate ? new AudioContext({ sampleRate: deviceRate }) : new AudioContext();
      } catch (_) {
        context = new AudioContext();   // the device reported a rate this browser cannot open
      }
      const url = URL.createObjectURL(new Blob([WORKLET_SOURCE], { type: "text/javascript" }));
      try {
        await context.audioWorklet.addModule(url);
      } finally {
        URL.revokeObjectURL(url);
      }
      const source = context.createMediaStreamSource(stream);
      const node = new AudioWorkletNode(context, "amigo-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        processorOptions: { targetRate: TARGET_RATE, chunkSamples: (TARGET_RATE * CHUNK_MS) / 1000 },
      });
      node.port.onmessage = onChunk;
      source.connect(node);
      // The node writes silence; connecting it keeps the graph pulling it in every browser.
      node.connect(context.destination);
      track.addEventListener("ended", () => stop("the input device went away"));
      context.onstatechange = () => {
        if (!capture || capture.context !== context) return;
        if (context.state === "suspended") setState("suspended");
        else if (context.state === "running") setState("streaming");
      };
      capture = { stream, context, source, node };
      starting = false;
      if (disposed) {
        stop();
        return;
      }
      setState(context.state === "suspended" ? "suspended" : "streaming");
      send({ kind: "start", mode: model.get("mode"), sample_rate: context.sampleRate });
      await refreshDevices();
    } catch (err) {
      starting = false;
      stream.getTracks().forEach((t) => t.stop());
      capture = null;
      setState("error", `could not start audio capture: ${err?.message ?? err}`);
    }
  }

  function stop(error = "") {
    clearTimeout(endTimer);
    endTimer = null;
    if (!capture) return;
    const { stream, context, source, node } = capture;
    capture = null;
    if (talking || performance.now() < sendUntil) send({ kind: "end" });
    talking = false;
    sendUntil = 0;
    node.port.onmessage = null;
    source.disconnect();
    node.disconnect();
    stream.getTracks().forEach((t) => t.stop());
    context.close().catch(() => {});
    meterFill.style.width = "0%";
    send({ kind: "stop", mode: model.get("mode") });
    if (!disposed) setState(error ? "error" : "idle", error);
  }

  async function restart() {
    if (!capture) return;
    stop();
    await start();
  }

  function pressTalk() {
    if (!capture || model.get("mode") !== "push-to-talk" || talking) return;
    clearTimeout(endTimer);     // pressed again during the hangover: same turn goes on
    endTimer = null;
    talking = true;
    talkButton.classList.add("amigo-mic-talking");
  }

  function releaseTalk() {
    if (!talking) return;
    talking = false;
    talkButton.classList.remove("amigo-mic-talking");
    sendUntil = performance.now() + PTT_HANGOVER_MS;
    endTimer = setTimeout(() => {
      endTimer = null;
      sendUntil = 0;
      if (capture) send({ kind: "end" });
    }, PTT_HANGOVER_MS);
  }

  startButton.addEventListener("click", () => {
    if (kernelGone) return;
    if (capture) stop();
    else if (!starting) start();
  });
  root.addEventListener("click", () => {
    if (capture && capture.context.state === "suspended") capture.context.resume();
  });
  deviceSelect.addEventListener("change", () => {
    model.set("device_id", deviceSelect.value);
    model.save_changes();
  });
  modeSelect.addEventListener("change", () => {
    model.set("mode", modeSelect.value);
    model.save_changes();
  });
  talkButton.addEventListener("pointerdown", (event) => {
    talkButton.setPointerCapture(event.pointerId);
    pressTalk();
  });
  talkButton.addEventListener("pointerup", releaseTalk);
  talkButton.addEventListener("pointercancel", releaseTalk);
  talkButton.addEventListener("keydown", (event) => {
    if ((event.key === " " || event.key === "Enter") && !event.repeat) {
      event.preventDefault();
      pressTalk();
    }
  });
  talkButton.addEventListener("keyup", (event) => {
    if (event.key === " " || event.key === "Enter") releaseTalk();
  });

  const onDeviceChange = () => {
    if (capture) refreshDevices();
  };
  navigator.mediaDevices?.addEventListener?.("devicechange", onDeviceChange);

  // A kernel restart leaves this view on the page with a dead model (see panel.js): release the
  // microphone and refuse to start one that would stream into nothing.
  model.on("comm_live_update", () => setTimeout(() => {
    if (!el.closest(".jupyter-widgets-disconnected")) return;
    kernelGone = true;
    stop();
    root.dataset.state = "kernel-gone";
    root.dataset.kernel = "gone";
    stateLabel.textContent = "kernel restarted: run the cell again";
    startButton.disabled = true;
    talkButton.disabled = true;
  }, 0));

  model.on("change:state", renderState);
  model.on("change:error", renderState);
  model.on("change:mode", () => {
    if (model.get("mode") !== "push-to-talk") releaseTalk();
    renderState();
  });
  model.on("change:devices", renderDevices);
  model.on("change:device_id", () => {
    renderDevices();
    restart();
  });
  for (const name of ["echo_cancellation", "noise_suppression", "auto_gain_control"]) {
    model.on(`change:${name}`, () => {
      renderState();
      restart();
    });
  }
  model.on("msg:custom", (msg) => {
    if (msg?.kind === "release") stop();
  });

  if (model.get("state") !== "idle") setState("idle");
  renderDevices();
  renderState();

  return () => {
    // Re-running the cell or closing the widget lands here: the microphone must be released.
    disposed = true;
    navigator.mediaDevices?.removeEventListener?.("devicechange", onDeviceChange);
    stop();
  };
}

export default { render };
