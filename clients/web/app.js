// minutes demo page: streams a bundled sample meeting (or the microphone) to /v1/stream
// (docs/protocol.md) and shows the live transcript by speaker, the speakers' directions on a
// polar plot, word confidences, latency and RTF. No build step, no dependencies.
//
// URL parameters: ?server=ws://host:port/v1/stream  ?api_key=KEY  ?speed=4  ?source=meeting|mic
//                 ?autostart=1 (start at once: used by the browser test)

const params = new URLSearchParams(location.search);
const BLOCK_SECONDS = 0.1;            // audio per binary message
const HISTORY_SECONDS = 30;           // how far back the polar plot shows directions
const LOW_CONF = 0.5;                 // words below this are marked as unsure
const PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d"];

const $ = (id) => document.getElementById(id);
const state = {
  ws: null, running: false, audioTime: 0, sent: [],   // sent: [audioEnd, performance.now()]
  lines: 0, partialLatency: [], finalLatency: [], speakers: new Map(), colours: new Map(),
  history: [], streamTime: 0, rtf: null, model: null, stopSend: null, micCleanup: null,
  polarPoints: 0, errors: [], revisions: 0,
};
window.minutesDemo = state;            // for tests and the curious

// ---------------------------------------------------------------- helpers
function streamUrl() {
  let url = params.get("server");
  if (!url) url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream`;
  const key = params.get("api_key");
  if (key) url += (url.includes("?") ? "&" : "?") + "api_key=" + encodeURIComponent(key);
  return url;
}
function clock(t) {
  const m = Math.floor(Math.max(t, 0) / 60), s = Math.max(t, 0) - 60 * m;
  return `${String(m).padStart(2, "0")}:${s.toFixed(1).padStart(4, "0")}`;
}
function colour(speaker) {
  if (!speaker) return "#9ca3af";
  if (!state.colours.has(speaker)) state.colours.set(speaker, PALETTE[state.colours.size % PALETTE.length]);
  return state.colours.get(speaker);
}
function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
function setStatus(text) { $("status").textContent = text; }
function note(text) {
  const p = document.createElement("p");
  p.textContent = text;
  $("warnings").appendChild(p);
}
// Wall time at which the audio up to `t` (stream seconds) was sent: latency = now - that.
function sentAt(t) {
  const s = state.sent;                 // sorted by audio time: binary search (hours of audio)
  let lo = 0, hi = s.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (s[mid][0] < t - 1e-6) lo = mid + 1; else hi = mid; }
  return lo < s.length ? s[lo][1] : null;
}

// ---------------------------------------------------------------- transcript
function addFinal(msg) {
  const words = msg.words || [];
  if (!words.length) return;
  const line = document.createElement("div");
  line.className = "line";
  const spk = msg.speaker || words.find((w) => w.speaker)?.speaker || null;
  line.style.setProperty("--spk", colour(spk));
  line.dataset.speaker = spk || "";
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = `${clock(msg.start)}–${clock(msg.end)}`;
  const who = document.createElement("span");
  who.className = "speaker";
  who.textContent = spk || "—";
  const text = document.createElement("span");
  text.className = "words";
  for (const w of words) {
    const span = document.createElement("span");
    span.className = "word" + (w.conf < LOW_CONF ? " low" : "");
    span.textContent = w.text;
    span.dataset.mid = String((w.start + w.end) / 2);
    span.dataset.speaker = w.speaker || "";
    span.style.opacity = (0.3 + 0.7 * Math.max(0, Math.min(1, w.conf))).toFixed(2);
    if (w.speaker && w.speaker !== spk) span.style.color = colour(w.speaker);
    const az = w.azimuth == null ? "" : `, ${w.azimuth.toFixed(0)}°`;
    span.title = `${w.text}: conf ${w.conf.toFixed(2)}, ${w.start.toFixed(2)}–${w.end.toFixed(2)} s` +
      (w.speaker ? `, ${w.speaker}` : "") + az;
    text.append(span, " ");             // a break opportunity between words
    if (w.azimuth != null) state.history.push({ t: (w.start + w.end) / 2, az: w.azimuth, speaker: w.speaker, kind: "word" });
  }
  line.append(time, who, text);
  $("transcript").appendChild(line);
  state.lines += 1;
  $("partial").textContent = "";
  line.scrollIntoView({ block: "nearest" });
  const at = sentAt(msg.end);
  if (at !== null) state.finalLatency.push((performance.now() - at) / 1000);
}

function showPartial(msg) {
  const el = $("partial");
  el.textContent = "";
  const stable = document.createElement("span");
  stable.className = "stable";
  stable.textContent = msg.text.slice(0, msg.stable_chars);
  el.append(`${clock(msg.start)}  `, stable, msg.text.slice(msg.stable_chars));
  state.streamTime = Math.max(state.streamTime, msg.end);
  const at = sentAt(msg.end);
  if (at !== null) state.partialLatency.push((performance.now() - at) / 1000);
}

// `speakers.revised`: the diariser relabelled a recent span; words already shown move speaker.
function applyRevisions(revised) {
  for (const r of revised || []) {
    for (const span of document.querySelectorAll("#transcript .word")) {
      const mid = parseFloat(span.dataset.mid);
      if (mid < r.start || mid >= r.end || span.dataset.speaker === r.speaker) continue;
      span.dataset.speaker = r.speaker;
      const line = span.closest(".line");
      const counts = {};
      for (const w of line.querySelectorAll(".word")) if (w.dataset.speaker) counts[w.dataset.speaker] = (counts[w.dataset.speaker] || 0) + 1;
      const major = Object.keys(counts).sort((a, b) => counts[b] - counts[a])[0];
      line.dataset.speaker = major;
      line.style.setProperty("--spk", colour(major));
      line.querySelector(".speaker").textContent = major;
      for (const w of line.querySelectorAll(".word")) w.style.color = w.dataset.speaker !== major ? colour(w.dataset.speaker) : "";
      state.revisions += 1;
    }
  }
}

function showSpeakers(list) {
  for (const s of list) state.speakers.set(s.speaker, { ...state.speakers.get(s.speaker), ...s });
  const ul = $("speakers");
  ul.textContent = "";
  for (const [name, s] of [...state.speakers].sort()) {
    const li = document.createElement("li");
    li.style.setProperty("--spk", colour(name));
    li.className = s.active === false ? "inactive" : "";
    li.textContent = `${name} ${s.azimuth == null ? "" : s.azimuth.toFixed(0) + "°"}`;
    ul.appendChild(li);
  }
}

function updateStats() {
  $("stat-audio").textContent = `${state.audioTime.toFixed(1)} s (decoded ${state.streamTime.toFixed(1)} s)`;
  const recent = state.partialLatency.slice(-30);
  const pl = median(recent);
  $("stat-latency").textContent = pl === null ? "–" : `${(pl * 1000).toFixed(0)} ms median (last ${recent.length})`;
  const fl = median(state.finalLatency);
  $("stat-final-latency").textContent = fl === null ? "–" : `${(fl * 1000).toFixed(0)} ms median`;
  $("stat-rtf").textContent = state.rtf === null ? "–" : state.rtf.toFixed(3);
  if (state.model) $("stat-model").textContent = `${state.model.name || "?"} v${state.model.version || "?"}`;
}

// ---------------------------------------------------------------- polar plot
function drawPolar() {
  const cv = $("polar"), ctx = cv.getContext("2d");
  const dpr = window.devicePixelRatio || 1;
  if (cv.width !== 360 * dpr) { cv.width = 360 * dpr; cv.height = 360 * dpr; }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const cx = 180, cy = 180, R = 150;
  ctx.clearRect(0, 0, 360, 360);
  ctx.strokeStyle = "#e5e7eb"; ctx.fillStyle = "#6b7280"; ctx.lineWidth = 1;
  ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
  for (const f of [1 / 3, 2 / 3, 1]) { ctx.beginPath(); ctx.arc(cx, cy, R * f, 0, 2 * Math.PI); ctx.stroke(); }
  for (let a = 0; a < 360; a += 30) {
    const r = (a * Math.PI) / 180;
    ctx.beginPath(); ctx.moveTo(cx, cy); ctx.lineTo(cx + R * Math.cos(r), cy - R * Math.sin(r)); ctx.stroke();
    if (a % 90 === 0) ctx.fillText(`${a}°`, cx + (R + 14) * Math.cos(r), cy - (R + 14) * Math.sin(r));
  }
  // the array itself: circular-7 seen from above (scaled up), centre mic last
  ctx.fillStyle = "#374151";
  for (let k = 0; k < 6; k++) ctx.fillRect(cx + 9 * Math.cos(k * Math.PI / 3) - 1.5, cy - 9 * Math.sin(k * Math.PI / 3) - 1.5, 3, 3);
  ctx.fillRect(cx - 1.5, cy - 1.5, 3, 3);
  const now = Math.max(state.streamTime, state.audioTime);
  if (state.history.length > 5000) state.history = state.history.filter((p) => now - p.t <= HISTORY_SECONDS);
  let points = 0;
  for (const p of state.history) {
    const age = now - p.t;
    if (age < 0 || age > HISTORY_SECONDS) continue;
    const r = R * (1 - age / HISTORY_SECONDS) * 0.92 + R * 0.08, a = (p.az * Math.PI) / 180;
    ctx.globalAlpha = 0.25 + 0.75 * (1 - age / HISTORY_SECONDS);
    ctx.fillStyle = colour(p.speaker);
    ctx.beginPath(); ctx.arc(cx + r * Math.cos(a), cy - r * Math.sin(a), p.kind === "word" ? 3.5 : 2.5, 0, 2 * Math.PI); ctx.fill();
    points += 1;
  }
  ctx.globalAlpha = 1;
  for (const [name, s] of state.speakers) {
    if (s.azimuth == null) continue;
    const a = (s.azimuth * Math.PI) / 180, x = cx + R * Math.cos(a), y = cy - R * Math.sin(a);
    ctx.fillStyle = colour(name); ctx.globalAlpha = s.active === false ? 0.45 : 1;
    ctx.beginPath(); ctx.arc(x, y, 9, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = "#fff"; ctx.font = "bold 9px system-ui, sans-serif"; ctx.fillText(name, x, y);
    points += 1;
  }
  ctx.globalAlpha = 1;
  state.polarPoints = points;
  cv.dataset.points = String(points);
}
function frame() { drawPolar(); updateStats(); requestAnimationFrame(frame); }

// ---------------------------------------------------------------- server messages
function onMessage(ev) {
  let msg;
  try { msg = JSON.parse(ev.data); } catch { return; }
  switch (msg.type) {
    case "ready":
      state.model = msg.model;
      state.ready = msg;
      for (const w of msg.warnings || []) note(w);
      setStatus(`streaming (${msg.stream_id})`);
      state.onReady?.();
      break;
    case "partial": showPartial(msg); break;
    case "final": addFinal(msg); break;
    case "speakers": showSpeakers(msg.speakers || []); applyRevisions(msg.revised); break;
    case "tracks": {
      const active = [];
      for (const tr of msg.tracks || []) {
        if (tr.azimuth != null && tr.active !== false) state.history.push({ t: msg.time, az: tr.azimuth, speaker: tr.speaker, kind: "track" });
        if (tr.speaker) active.push({ speaker: tr.speaker, azimuth: tr.azimuth, active: tr.active !== false });
      }
      if (active.length) showSpeakers(active);
      break;
    }
    case "error":
      state.errors.push(msg);
      note(`${msg.code}: ${msg.message}`);
      if (msg.fatal) setStatus(`error: ${msg.code}`);
      break;
    case "end":
      if (msg.rtf != null) state.rtf = msg.rtf;
      setStatus(`done: ${msg.segments} segments, ${msg.words} words, ${msg.duration.toFixed(1)} s of audio`);
      state.ended = true;
      state.end = msg;
      break;
  }
}

// Live RTF between `end`s: the server's decoder gauge from /metrics (Prometheus text).
async function pollRtf() {
  if (!state.running) return;
  try {
    const text = await (await fetch("/metrics")).text();
    const m = text.match(/^minutes_rtf(?:\{[^}]*\})?\s+([0-9.eE+-]+)/m);
    if (m && !state.ended) state.rtf = parseFloat(m[1]);
  } catch { /* the page may be served from elsewhere: RTF then comes with `end` */ }
  setTimeout(pollRtf, 2000);
}

function openStream(start) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(streamUrl());
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify(start));
    ws.onmessage = onMessage;
    ws.onerror = () => reject(new Error(`cannot connect to ${streamUrl()}`));
    ws.onclose = (e) => {
      reject(new Error(`the server closed the stream (${e.code}${e.reason ? " " + e.reason : ""})`));  // no-op after ready
      state.running = false;
      $("start").disabled = false; $("stop").disabled = true;
      if (!state.ended) setStatus(`closed (${e.code}${e.reason ? " " + e.reason : ""})`);
    };
    state.onReady = () => resolve(ws);
  });
}

function resetView() {
  Object.assign(state, { audioTime: 0, sent: [], lines: 0, partialLatency: [], finalLatency: [],
    history: [], streamTime: 0, rtf: null, ended: false, errors: [], revisions: 0 });
  state.speakers.clear(); state.colours.clear();
  $("transcript").textContent = ""; $("partial").textContent = ""; $("warnings").textContent = "";
  $("speakers").textContent = "";
}

// ---------------------------------------------------------------- sources
async function runSample(sample, speed) {
  setStatus("loading sample…");
  const data = await (await fetch(`samples/${sample.audio}`)).arrayBuffer();
  const decoder = new OfflineAudioContext(sample.channels, 1, sample.sample_rate);
  const buf = await decoder.decodeAudioData(data);   // keeps every channel, at the file's rate
  const C = buf.numberOfChannels, N = buf.length, rate = buf.sampleRate;
  const chans = Array.from({ length: C }, (_, c) => buf.getChannelData(c));
  const ws = await openStream({ type: "start", sample_rate: rate, encoding: "pcm_s16le", channels: C,
    array: sample.array, options: { partials: true } });
  state.running = true; pollRtf();
  if (speed === 1) playAlong(buf);
  const block = Math.round(BLOCK_SECONDS * rate);
  const t0 = performance.now();
  let stopped = false;
  state.stopSend = () => { stopped = true; };
  for (let i = 0; i < N && !stopped; i += block) {
    const n = Math.min(block, N - i), pcm = new Int16Array(n * C);
    for (let k = 0; k < n; k++) for (let c = 0; c < C; c++) {
      const v = Math.max(-1, Math.min(1, chans[c][i + k]));
      pcm[k * C + c] = Math.round(v * 32767);
    }
    if (speed > 0) {
      const due = t0 + ((i / rate) * 1000) / speed - performance.now();
      if (due > 0) await new Promise((r) => setTimeout(r, due));
    } else {
      while (ws.bufferedAmount > 1 << 20) await new Promise((r) => setTimeout(r, 10));
    }
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(pcm.buffer);
    state.audioTime = (i + n) / rate;
    state.sent.push([state.audioTime, performance.now()]);
  }
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "stop" }));
  setStatus("finishing…");
}

function playAlong(buf) {
  try {
    const ctx = new AudioContext();
    const src = ctx.createBufferSource();
    src.buffer = buf; src.connect(ctx.destination); src.start();
    state.stopPlayback = () => { try { src.stop(); ctx.close(); } catch { /* already stopped */ } };
  } catch { /* no audio output: the transcript still runs */ }
}

async function runMic() {
  setStatus("asking for the microphone…");
  const media = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: { ideal: 8 }, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const ctx = new AudioContext();
  await ctx.audioWorklet.addModule("mic-worklet.js");
  const input = ctx.createMediaStreamSource(media);
  const C = Math.max(1, input.channelCount);
  const tap = new AudioWorkletNode(ctx, "mic-tap", { channelCount: C, channelCountMode: "explicit" });
  // A browser does not know where its microphones are: no geometry, so no directions.
  const ws = await openStream({ type: "start", sample_rate: ctx.sampleRate, encoding: "pcm_f32le", channels: C,
    array: null, options: { partials: true } });
  state.running = true; pollRtf();
  let pending = [], frames = 0;
  const block = Math.round(BLOCK_SECONDS * ctx.sampleRate);
  tap.port.onmessage = ({ data }) => {
    if (ws.readyState !== WebSocket.OPEN || data.channels !== C) return;
    pending.push(data.samples); frames += data.samples.length / C;
    if (frames < block) return;
    const out = new Float32Array(frames * C);
    let o = 0;
    for (const p of pending) { out.set(p, o); o += p.length; }
    ws.send(out.buffer);
    state.audioTime += frames / ctx.sampleRate;
    state.sent.push([state.audioTime, performance.now()]);
    pending = []; frames = 0;
  };
  input.connect(tap);
  // Detach the handler first: frames the worklet already posted would otherwise still be sent
  // after `stop` (ctx.close() is asynchronous), and the server answers them with an error.
  state.micCleanup = () => {
    tap.port.onmessage = null; input.disconnect();
    media.getTracks().forEach((t) => t.stop()); ctx.close();
  };
}

// ---------------------------------------------------------------- wiring
async function start() {
  resetView();
  $("start").disabled = true; $("stop").disabled = false;
  const choice = $("source").value, speed = parseFloat($("speed").value);
  try {
    if (choice === "mic") await runMic();
    else await runSample(state.samples.find((s) => s.id === choice), speed);
  } catch (err) {
    const last = state.errors[state.errors.length - 1];
    setStatus(`error: ${last ? last.code + ": " + last.message : err.message}`);
    $("start").disabled = false; $("stop").disabled = true;
  }
}

function stop() {
  state.stopSend?.(); state.stopPlayback?.(); state.micCleanup?.();
  state.micCleanup = null;
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ type: "stop" }));
  $("stop").disabled = true;
}

async function init() {
  state.samples = await (await fetch("samples/samples.json")).json();
  const sel = $("source");
  for (const s of state.samples) sel.add(new Option(s.title, s.id));
  sel.add(new Option("Microphone (this browser)", "mic"));
  if (params.get("source")) sel.value = params.get("source");
  if (params.get("speed")) $("speed").value = params.get("speed");
  $("start").onclick = start;
  $("stop").onclick = stop;
  requestAnimationFrame(frame);
  if (params.get("autostart")) start();
}
init();
