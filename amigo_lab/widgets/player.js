// Player widget: plays the agent's audio as it streams in, and reports how much of each message was heard.
//
// From the kernel: {kind: "audio", message_id, format: "pcm"|"mp3"} + [bytes] (one piece),
// {kind: "end", message_id} (no more pieces for it), {kind: "flush", message_ids} (barge-in: silence now,
// and drop whatever still arrives for those messages).
// To the kernel: {kind: "ready"} once this view can play, then {kind: "progress"|"flushed"|"finished",
// message_id, played_ms}.
//
// Pieces are scheduled back to back on the AudioContext clock. When the queue runs dry (first piece, or a
// piece arriving late) playback restarts `jitter_ms` in the future, which absorbs network jitter without
// gaps inside a message. MP3 pieces are decoded one by one with decodeAudioData; a promise chain keeps them
// in arrival order even though decoding is asynchronous.

const PCM_RATE = 16000;
const REPORT_EVERY_MS = 250;

function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function pcm16ToAudioBuffer(context, view) {
  const samples = Math.floor(view.byteLength / 2);
  const buffer = context.createBuffer(1, Math.max(samples, 1), PCM_RATE);
  const channel = buffer.getChannelData(0);
  for (let i = 0; i < samples; i++) channel[i] = view.getInt16(i * 2, true) / 32768;
  return buffer;
}

function asDataView(buffer) {
  if (buffer instanceof DataView) return buffer;
  if (ArrayBuffer.isView(buffer)) return new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  return new DataView(buffer);
}

function render({ model, el }) {
  const root = h("div", "amigo-player");
  const label = h("span", "amigo-player-label", "agent audio:");
  const status = h("span", "amigo-player-status", "idle");
  const resume = h("button", "amigo-player-resume", "Enable audio");
  resume.style.display = "none";
  // Output device picker: AudioContext.setSinkId where the browser has it (Chromium 110+). Device labels
  // show once the page has microphone permission; before that the list holds the default output only.
  const output = h("select", "amigo-player-output");
  output.title = "Output device";
  root.append(label, status, resume, output);
  el.append(root);

  const context = new AudioContext();
  async function listOutputs() {
    const canPick = typeof context.setSinkId === "function" && navigator.mediaDevices?.enumerateDevices;
    output.style.display = canPick ? "" : "none";
    if (!canPick) return;
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audiooutput");
    const chosen = output.value;
    output.replaceChildren();
    const fallback = h("option", "", "default output");
    fallback.value = "";
    output.append(fallback);
    for (const device of devices) {
      if (!device.deviceId || device.deviceId === "default") continue;
      const option = h("option", "", device.label || `output ${device.deviceId.slice(0, 8)}`);
      option.value = device.deviceId;
      output.append(option);
    }
    output.value = chosen;
  }
  output.addEventListener("change", () => {
    context.setSinkId(output.value).catch((err) => console.warn("[amigo player] cannot use that output", err));
  });
  output.addEventListener("focus", listOutputs);
  navigator.mediaDevices?.addEventListener?.("devicechange", listOutputs);
  listOutputs();
  const gain = context.createGain();
  gain.gain.value = model.get("volume");
  gain.connect(context.destination);

  // message_id -> {segments: [{start, duration, source}], ended, done}
  const messages = new Map();
  const flushedIds = new Set();
  let queueEnd = 0;                  // context time when the scheduled audio runs out
  let chain = Promise.resolve();     // orders asynchronous decodes
  let disposed = false;

  function send(content) {
    try {
      model.send(content);
    } catch (err) {
      console.debug("[amigo player] send failed", err);
    }
  }

  function playedMs(message, now) {
    let seconds = 0;
    for (const s of message.segments) seconds += Math.min(Math.max(now - s.start, 0), s.duration);
    return Math.round(seconds * 1000);
  }

  function messageEnd(message) {
    const last = message.segments[message.segments.length - 1];
    return last ? last.start + last.duration : 0;
  }

  function schedule(messageId, audioBuffer) {
    if (disposed || flushedIds.has(messageId)) return;
    let message = messages.get(messageId);
    if (!message) {
      message = { segments: [], ended: false, done: false, reported: -1 };
      messages.set(messageId, message);
    }
    const now = context.currentTime;
    const jitter = model.get("jitter_ms") / 1000;
    const start = queueEnd > now + 0.005 ? queueEnd : now + jitter;
    const source = context.createBufferSource();
    source.buffer = audioBuffer;
    source.connect(gain);
    source.start(start);
    source.onended = () => finishIfDone(messageId);
    message.segments.push({ start, duration: audioBuffer.duration, source });
    queueEnd = start + audioBuffer.duration;
  }

  async function decode(msg, view) {
    if (view.byteLength === 0) return null;
    if (msg.format === "mp3") {
      const copy = view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
      try {
        return await context.decodeAudioData(copy);
      } catch (err) {
        console.warn("[amigo player] could not decode an MP3 piece", err);
        return null;
      }
    }
    return pcm16ToAudioBuffer(context, view);
  }

  function finishIfDone(messageId) {
    const message = messages.get(messageId);
    if (!message || message.done || !message.ended) return;
    if (context.currentTime + 0.001 < messageEnd(message)) return;
    message.done = true;
    messages.delete(messageId);
    send({ kind: "finished", message_id: messageId, played_ms: playedMs(message, context.currentTime) });
  }

  function flush() {
    const now = context.currentTime;
    for (const [messageId, message] of messages) {
      for (const s of message.segments) {
        try {
          s.source.onended = null;
          s.source.stop();
          s.source.disconnect();
        } catch (_) {
          // already stopped
        }
      }
      flushedIds.add(messageId);
      if (message.segments.length) {
        send({ kind: "flushed", message_id: messageId, played_ms: playedMs(message, now) });
      }
    }
    messages.clear();
    queueEnd = now;
    updateStatus();
  }

  function report() {
    const now = context.currentTime;
    for (const [messageId, message] of messages) {
      const played = playedMs(message, now);
      if (played > 0 && played !== message.reported) {
        message.reported = played;
        send({ kind: "progress", message_id: messageId, played_ms: played });
      }
      finishIfDone(messageId);
    }
    updateStatus();
  }

  function updateStatus() {
    const suspended = context.state === "suspended";
    resume.style.display = suspended ? "" : "none";
    const now = context.currentTime;
    const playing = [...messages.values()].some((m) => m.segments.some((s) => s.start <= now && now < s.start + s.duration));
    root.dataset.state = suspended ? "suspended" : playing ? "playing" : "idle";
    status.textContent = suspended ? "audio blocked by the browser" : playing ? "playing" : "idle";
  }

  model.on("msg:custom", (msg, buffers) => {
    if (!msg || disposed) return;
    if (msg.kind === "audio") {
      const view = asDataView(buffers[0]);
      chain = chain.then(async () => {
        const audioBuffer = await decode(msg, view);
        if (audioBuffer) schedule(msg.message_id, audioBuffer);
      });
    } else if (msg.kind === "end") {
      chain = chain.then(() => {
        const message = messages.get(msg.message_id);
        if (message) {
          message.ended = true;
          finishIfDone(msg.message_id);
        } else if (!flushedIds.has(msg.message_id)) {
          send({ kind: "finished", message_id: msg.message_id, played_ms: 0 });
        }
      });
    } else if (msg.kind === "flush") {
      // Pieces of these messages may still be decoding or in flight: drop them when they arrive.
      for (const id of msg.message_ids ?? []) flushedIds.add(id);
      flush();
    }
  });
  model.on("change:volume", () => {
    gain.gain.setTargetAtTime(model.get("volume"), context.currentTime, 0.02);
  });
  resume.addEventListener("click", () => context.resume().then(updateStatus));
  context.onstatechange = updateStatus;
  // Browsers start audio suspended until the user interacts with the page; any click on it (such as
  // starting the microphone) is enough to let the agent be heard.
  const resumeOnGesture = () => {
    if (context.state === "suspended") context.resume().then(updateStatus).catch(() => {});
  };
  document.addEventListener("pointerdown", resumeOnGesture, true);

  const timer = setInterval(report, REPORT_EVERY_MS);
  updateStatus();
  send({ kind: "ready" });

  return () => {
    disposed = true;
    document.removeEventListener("pointerdown", resumeOnGesture, true);
    navigator.mediaDevices?.removeEventListener?.("devicechange", listOutputs);
    clearInterval(timer);
    flush();
    context.close().catch(() => {});
  };
}

export default { render };
