// audio2anim browser viewer: loads the rig GLB, receives ARKit weights (and audio, latency,
// visemes) over a WebSocket from sink.browser, and plays them on a media-time timeline.
// Clock: the audio clock when audio plays, else the wall clock; frames and audio are scheduled
// PLAYOUT_DELAY seconds after their first arrival so network jitter does not stall them.
// Access: the URL that the run prints carries ?token=…; the page passes it on the socket and
// the GLB request (the server refuses both without it).
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";

const PLAYOUT_DELAY = 0.12;
const TOKEN = new URLSearchParams(location.search).get("token") ?? "";
const withToken = (path) => `${path}?token=${encodeURIComponent(TOKEN)}`;
// Oculus/Meta 15-class viseme set, in the order of audio2anim's Visemes ids
const VISEMES = ["sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou"];

const state = { ready: false, frames: 0, applied: 0, t: null, weights: {}, audioScheduled: 0 };
window.viewerState = state;  // read by tests and for debugging

const canvas = document.getElementById("view");
const renderer = new THREE.WebGLRenderer({ canvas, antialias: true });
renderer.setPixelRatio(window.devicePixelRatio || 1);
renderer.outputColorSpace = THREE.SRGBColorSpace;
const scene = new THREE.Scene();
scene.background = new THREE.Color("#292e38");
// same framing as audio2anim.face.renderer.Camera defaults
const camera = new THREE.PerspectiveCamera(24, 1, 0.1, 3);
camera.position.set(0, 0, 0.03 + 0.58);
camera.lookAt(0, 0, 0.03);
scene.add(new THREE.HemisphereLight(0x9aa4b6, 0x8a7a70, 2.2));
const key = new THREE.DirectionalLight(0xfff4e8, 2.6);
key.position.set(-0.55, 0.6, 0.75);
scene.add(key);
const fill = new THREE.DirectionalLight(0xb8c8e0, 0.8);
fill.position.set(0.8, 0.05, 0.5);
scene.add(fill);

let meshes = [];  // meshes with morph targets
if (TOKEN) new GLTFLoader().load(withToken("/face.glb"), (gltf) => {
  scene.add(gltf.scene);
  gltf.scene.traverse((o) => {
    if (o.isMesh && o.morphTargetDictionary) {
      meshes.push(o);
      if (o.material) o.material.side = THREE.FrontSide;
    }
  });
  state.ready = meshes.length > 0 && socketOpen;
  setStatus();
}, undefined, (err) => { document.getElementById("status").textContent = "GLB failed: " + err; });

function resize() {
  const w = window.innerWidth, h = window.innerHeight;
  renderer.setSize(w, h, false);
  camera.aspect = w / h;
  camera.updateProjectionMatrix();
}
window.addEventListener("resize", resize);
resize();

// --- timeline --------------------------------------------------------------------------------
const queue = [];       // {t, names, values} one entry per frame, sorted by t
const visemeQueue = []; // {t, id}
let wallOffset = null;  // media time = performance.now()/1000 - wallOffset (no audio)
let audioCtx = null, audioOffset = null;  // media time = audioCtx.currentTime - audioOffset
let latency = null;

function mediaNow() {
  if (audioCtx && audioOffset !== null && audioCtx.state === "running") {
    return audioCtx.currentTime - audioOffset;
  }
  if (wallOffset === null) return null;
  return performance.now() / 1000 - wallOffset;
}

function startClock(t) {
  if (wallOffset === null) wallOffset = performance.now() / 1000 - t + PLAYOUT_DELAY;
}

function onParams(msg) {
  startClock(msg.t);
  const dt = 1 / msg.frame_rate;
  msg.values.forEach((row, i) => queue.push({ t: msg.t + i * dt, names: msg.names, values: row }));
  state.frames += msg.values.length;
  if (msg.latency !== null && msg.latency !== undefined) latency = msg.latency;
}

function onVisemes(msg) {
  const dt = 1 / msg.frame_rate;
  msg.ids.forEach((id, i) => visemeQueue.push({ t: msg.t + i * dt, id }));
}

// Made when the socket opens, not at the first audio block: creating an AudioContext can take
// longer than PLAYOUT_DELAY on a busy machine, and that block would then arrive too late to play.
function openAudio() {
  if (!audioCtx) audioCtx = new AudioContext();
}

function onAudio(buf) {
  const view = new DataView(buf);
  const t = view.getFloat64(0, true);
  const rate = view.getUint32(8, true);
  const samples = new Float32Array(buf, 16);
  startClock(t);
  openAudio();
  if (audioOffset === null) {
    if (audioCtx.state !== "running") {  // the page may not play sound before a user gesture
      const b = document.getElementById("sound");
      b.hidden = false;
      b.onclick = () => { audioCtx.resume(); b.hidden = true; };
    }
    // align the audio clock with the wall-clock timeline already running
    const now = mediaNow();
    audioOffset = audioCtx.currentTime - (now === null ? t - PLAYOUT_DELAY : now);
  }
  const when = audioOffset + t;
  if (when < audioCtx.currentTime) return;  // too late to play: skip, never queue up
  const buffer = audioCtx.createBuffer(1, samples.length, rate);
  buffer.copyToChannel(samples, 0);
  const src = audioCtx.createBufferSource();
  src.buffer = buffer;
  src.connect(audioCtx.destination);
  src.start(when);
  state.audioScheduled += 1;
}

function applyDue() {
  const now = mediaNow();
  if (now === null) return;
  let frame = null;
  while (queue.length && queue[0].t <= now) frame = queue.shift();
  if (frame) {
    for (const mesh of meshes) {
      const dict = mesh.morphTargetDictionary, infl = mesh.morphTargetInfluences;
      for (let k = 0; k < frame.names.length; k++) {
        const idx = dict[frame.names[k]];
        if (idx !== undefined) infl[idx] = frame.values[k];
      }
    }
    frame.names.forEach((n, k) => { state.weights[n] = frame.values[k]; });
    state.applied += 1;
    state.t = frame.t;
    document.getElementById("time").textContent = frame.t.toFixed(2) + " s";
  }
  let vis = null;
  while (visemeQueue.length && visemeQueue[0].t <= now) vis = visemeQueue.shift();
  if (vis) document.getElementById("viseme").textContent = VISEMES[vis.id] ?? String(vis.id);
  if (latency !== null) {
    document.getElementById("latency").textContent =
      `${Math.round(latency * 1000)} ms + ${Math.round(PLAYOUT_DELAY * 1000)} ms playout`;
  }
}

function loop() {
  applyDue();
  renderer.render(scene, camera);
  requestAnimationFrame(loop);
}
requestAnimationFrame(loop);

// --- socket ----------------------------------------------------------------------------------
let socketOpen = false;
function setStatus(text) {
  document.getElementById("status").textContent =
    text ?? (state.ready ? "live" : socketOpen ? "loading face…" : "connecting…");
}
function connect() {
  if (!TOKEN) {
    setStatus("no token: open the full URL that audio2anim printed (…/?token=…)");
    return;
  }
  const ws = new WebSocket(`ws://${location.host}${withToken("/ws")}`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    socketOpen = true; state.ready = meshes.length > 0; setStatus();
    openAudio();
  };
  ws.onclose = () => {
    socketOpen = false; state.ready = false; setStatus("disconnected; retrying");
    setTimeout(connect, 1000);
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") return onAudio(ev.data);
    const msg = JSON.parse(ev.data);
    if (msg.type === "params") onParams(msg);
    else if (msg.type === "visemes") onVisemes(msg);
    else if (msg.type === "end") setStatus("stream ended");
  };
}
connect();
