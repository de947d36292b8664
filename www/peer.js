// The peer page: glue between the DOM and tessera-web's PeerApp (wasm).
// URL: ?room=R&token=T [&name=N] [&profile=quick|fast|none] [&gpu=0|1|auto]
import init, { PeerApp, capabilities, qr_svg } from "/pkg/tessera_web.js";
import { $, esc, bytes, ms, num, bar, joinUrl, coordinatorUrl } from "./common.js";

const q = new URLSearchParams(location.search);
const setState = (s, cls = "") => {
  document.body.dataset.state = s;
  const el = $("#state");
  el.textContent = s;
  el.className = "pill " + cls;
};

// wasm SIMD is required by this build: say so instead of failing obscurely.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);
const hasSimd = WebAssembly.validate(SIMD_PROBE);

async function adapterInfo() {
  if (!navigator.gpu) return null;
  try {
    const a = await navigator.gpu.requestAdapter();
    if (!a) return "no adapter";
    const i = a.info || {};
    return [i.vendor, i.architecture, i.description].filter(Boolean).join(" ") || "adapter found";
  } catch (e) {
    return "error: " + e.message;
  }
}

function deviceCard(caps, choice, gpuInfo) {
  $("#device").innerHTML = `
    <dt>WebGPU</dt><dd>${caps.webgpu ? "yes" + (gpuInfo ? " (" + esc(gpuInfo) + ")" : "") : "no"}</dd>
    <dt>wasm SIMD</dt><dd>${hasSimd ? "yes" : "no"}</dd>
    <dt>cores</dt><dd>${caps.cores}${caps.memory_gb ? ", " + caps.memory_gb + " GB" : ""}</dd>
    <dt>backend</dt><dd><b>${esc(choice ? choice.name : "–")}</b><br><span class="muted">${esc(choice ? choice.note : "")}</span></dd>`;
}

function profileTable(rows, note) {
  $("#profile-note").textContent = note;
  if (!rows.length) { $("#profile").innerHTML = ""; return; }
  $("#profile").innerHTML = "<tr><th>op class</th><th class=num>sizes</th><th class=num>largest GFLOP</th><th class=num>ms</th><th class=num>GFLOP/s</th></tr>" +
    rows.map((r) => `<tr><td>${esc(r.class)}</td><td class=num>${r.points.length}</td><td class=num>${num(r.largest_gflop, 3)}</td><td class=num>${num(r.largest_ms, 2)}</td><td class=num>${num(r.gflops, 2)}</td></tr>`).join("");
}

function render(app) {
  const st = JSON.parse(app.status());
  window.tessera.last = st;
  const p = st.peer, m = st.mesh;
  const sig = m ? m.signaling.state : "connecting";
  if (sig === "refused") setState("refused: " + m.signaling.code, "bad");
  else if (p && p.plan != null) setState("ready", "ok");
  else if (p && p.connected) setState("connected", "info");
  else if (sig === "joined") setState("waiting for the coordinator", "warn");
  else if (sig === "closed") setState("signaling closed", "bad");
  else setState("connecting", "");
  $("#who").textContent = st.name + (m && m.id != null ? " · member " + m.id + " of room " + m.room : "");
  if (m && m.signaling.state === "refused") {
    $("#log").textContent = "join refused (" + m.signaling.code + "): " + m.signaling.message + "\n" + m.log.join("\n");
  } else if (m) {
    $("#log").textContent = m.log.join("\n") + (st.last_error ? "\nlast error: " + st.last_error : "") + (p && p.last_error ? "\npeer: " + p.last_error : "");
  }
  if (!p) return;
  const link = m && m.links[0];
  $("#role").innerHTML = `
    <dt>role</dt><dd>peer${p.id != null ? " #" + p.id : ""}${p.device != null ? ", device " + p.device + " of the plan" : ""}</dd>
    <dt>coordinator</dt><dd>${m && m.coordinator != null ? "member " + m.coordinator : "–"}${link ? " · " + esc(link.state) + " (" + esc(link.connection) + ")" : ""}</dd>
    <dt>model</dt><dd>${esc(p.model || "–")}</dd>
    <dt>plan</dt><dd>${p.plan != null ? "#" + p.plan + (p.plans_held.length > 1 ? " (holding " + p.plans_held.join(", ") + ")" : "") : "–"}</dd>
    <dt>weights held</dt><dd>${bytes(p.weight_bytes)} <span class="muted">(only this device's slice)</span></dd>
    <dt>received</dt><dd>${bytes(p.plan_bytes_received)} of plans · ${bytes(p.link.bytes_in)} in / ${bytes(p.link.bytes_out)} out</dd>
    <dt>computing on</dt><dd>${esc(p.backend)}${p.backend_notes.length ? '<br><span class="err">' + p.backend_notes.map(esc).join("<br>") + "</span>" : ""}</dd>`;
  $("#tasks").innerHTML = p.tasks.length ? p.tasks.map((t) => `<li>${esc(t)}</li>`).join("") : '<li class="muted">none: waiting for a plan</li>';
  $("#queue").innerHTML = `
    <div><b class="big">${p.queue}${p.in_flight ? " + " + p.in_flight : ""}</b><span>queued${p.in_flight ? " + on the GPU" : ""}</span></div>
    <div><b class="big">${p.tasks_run}</b><span>tasks run</span></div>
    <div><b class="big">${num(p.mean_latency_ms, 2)}</b><span>mean ms / task</span></div>
    <div><b class="big">${link ? bytes(link.buffered) : "–"}</b><span>send buffer</span></div>`;
  const lat = p.last_latencies_ms, max = Math.max(1e-6, ...lat);
  $("#lat").innerHTML = lat.length ? "<p class=muted>last task latencies</p>" + lat.slice().reverse().map((v) => `<div style="display:flex;gap:.5rem;align-items:center"><span style="width:5rem" class=muted>${ms(v, 2)}</span>${bar(v / max)}</div>`).join("") : "";
}

async function main() {
  $("#coord-link").href = coordinatorUrl();
  $("#join-link").href = $("#join-link").textContent = joinUrl();
  $("#native-cmd").textContent = "tessera peer '" + joinUrl() + "'";
  window.tessera = { ready: false };
  if (!q.get("room") || !q.get("token")) {
    setState("no room in the URL", "bad");
    $("#device").innerHTML = "<dt>status</dt><dd class=err>This URL has no room and token: open the join URL printed by tessera serve.</dd>";
    return;
  }
  if (!hasSimd) {
    setState("unsupported browser", "bad");
    $("#device").innerHTML = "<dt>status</dt><dd class=err>This browser has no WebAssembly SIMD; Tessera's peer needs it.</dd>";
    return;
  }
  await init();
  try { $("#qr").innerHTML = qr_svg(joinUrl()); } catch (e) { $("#qr").textContent = e.message; }
  const caps = JSON.parse(capabilities());
  const name = q.get("name") || (/Android|iPhone|iPad/.test(navigator.userAgent) ? "phone" : "browser") + "-" + Math.random().toString(16).slice(2, 6);
  const app = new PeerApp(name);
  window.tessera.app = app;
  setState("choosing backend");
  const gpuInfo = await adapterInfo();
  const choice = JSON.parse(await app.init_backend(q.get("gpu") ?? "auto"));
  deviceCard(caps, choice, gpuInfo);
  const mode = q.get("profile") || "quick";
  setState("profiling", "warn");
  profileTable([], mode === "none" ? "skipped (the coordinator assumes a default profile)" : "profiling (" + mode + ")…");
  const t0 = performance.now();
  const rows = JSON.parse(await app.profile(mode));
  if (mode !== "none") profileTable(rows, `${mode} profile on ${choice.name} in ${num(performance.now() - t0, 0)} ms (per-op latency table, as tessera profile writes it; sent to the coordinator in Hello)`);
  try {
    app.start(location.href);
  } catch (e) {
    setState("cannot join", "bad");
    $("#log").textContent = e.message;
    return;
  }
  window.tessera.ready = true;
  window.tessera.status = () => JSON.parse(app.status());
  render(app);
  setInterval(() => render(app), 300);
  addEventListener("pagehide", () => app.leave());
}

main().catch((e) => {
  setState("error", "bad");
  $("#log").textContent = String(e && e.stack || e);
  console.error(e);
});
