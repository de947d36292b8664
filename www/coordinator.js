// The coordinator dashboard: glue between the DOM and tessera-web's
// CoordinatorApp (wasm). Planning, the mesh, image preprocessing and the
// comparison with a local run all happen in wasm; this file draws.
// URL: ?room=R&token=T&role=coordinator [&model=lenet] [&planner=tessera]
//      [&window=4] [&name=N]
import init, { CoordinatorApp, planners, zoo, qr_svg } from "/pkg/tessera_web.js";
import { $, esc, bytes, ms, num, bar, colour, joinUrl, sparkline } from "./common.js";

const q = new URLSearchParams(location.search);
let app = null;
let streaming = null;
let files = [];
let fileCursor = 0;
let camStream = null;
const history = [];
const thumbs = new Map();

const setState = (s, cls = "") => {
  document.body.dataset.state = s;
  $("#state").textContent = s;
  $("#state").className = "pill " + cls;
};
const showError = (e) => { $("#error").textContent = e ? String(e.message || e) : ""; };

// ---------------------------------------------------------------- inputs

function imageDataOf(source, w, h) {
  const c = $("#scratch");
  c.width = w; c.height = h;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(source, 0, 0, w, h);
  return ctx.getImageData(0, 0, w, h);
}

// Photographs bundled in www/samples/ (public domain / CC0; see its README).
const SAMPLES = ["astronaut", "cat", "coffee", "rocket"];
let sampleCursor = 0;
const sampleBlobs = new Map();

async function submitSample() {
  const name = SAMPLES[sampleCursor++ % SAMPLES.length];
  if (!sampleBlobs.has(name)) {
    const r = await fetch(`/samples/${name}.jpg`);
    if (!r.ok) throw new Error(`sample ${name}: HTTP ${r.status}`);
    sampleBlobs.set(name, await r.blob());
  }
  const bmp = await createImageBitmap(sampleBlobs.get(name));
  const d = imageDataOf(bmp, bmp.width, bmp.height);
  return app.submit_rgba(new Uint8Array(d.data.buffer), bmp.width, bmp.height, "photo " + name, undefined);
}

async function submitFile() {
  if (!files.length) throw new Error("choose image files first");
  const f = files[fileCursor++ % files.length];
  const bmp = await createImageBitmap(f);
  const scale = Math.min(1, 640 / Math.max(bmp.width, bmp.height));
  const w = Math.max(1, Math.round(bmp.width * scale)), h = Math.max(1, Math.round(bmp.height * scale));
  const d = imageDataOf(bmp, w, h);
  return app.submit_rgba(new Uint8Array(d.data.buffer), w, h, "file " + f.name, undefined);
}

function submitCamera() {
  const v = $("#cam");
  if (!camStream || !v.videoWidth) throw new Error("the camera is not running");
  const scale = Math.min(1, 480 / Math.max(v.videoWidth, v.videoHeight));
  const w = Math.round(v.videoWidth * scale), h = Math.round(v.videoHeight * scale);
  const d = imageDataOf(v, w, h);
  return app.submit_rgba(new Uint8Array(d.data.buffer), w, h, "camera", undefined);
}

async function submit(n) {
  const src = $("#source").value;
  if (src === "mnist") return app.submit_mnist(n);
  if (src === "synthetic") return app.submit_synthetic(n);
  for (let i = 0; i < n; i++) {
    if (src === "photos") await submitSample();
    else if (src === "files") await submitFile();
    else submitCamera();
  }
}

async function startCamera() {
  if (camStream) return;
  try {
    camStream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    const v = $("#cam");
    v.srcObject = camStream;
    v.hidden = false;
    $("#source-note").textContent = "camera on";
  } catch (e) {
    camStream = null;
    $("#source-note").textContent = "no camera: " + e.message;
  }
}

function stopCamera() {
  if (!camStream) return;
  for (const t of camStream.getTracks()) t.stop();
  camStream = null;
  $("#cam").hidden = true;
}

function onSource() {
  const src = $("#source").value;
  if (src !== "camera") stopCamera();
  const note = {
    mnist: "the first 1000 MNIST test digits, bundled in the wasm binary",
    synthetic: "procedurally generated ImageNet-style images: no real photographs are bundled, so classes are arbitrary (zoo weights are seeded, except LeNet's)",
    photos: "four bundled photographs (astronaut, cat, coffee, rocket; public domain / CC0), resized to the model's input",
    files: "",
    camera: "",
  }[src];
  $("#source-note").textContent = note;
  if (src === "files") $("#files").click();
  if (src === "camera") startCamera();
}

function toggleStream() {
  if (streaming) {
    clearInterval(streaming);
    streaming = null;
    $("#stream").textContent = "Stream";
    return;
  }
  $("#stream").textContent = "Stop";
  let busy = false;
  streaming = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const target = 2 * Number($("#window").value || 4);
      const cam = $("#source").value === "camera";
      if (app.pending() < (cam ? 2 : target)) await submit(1);
      showError(null);
    } catch (e) {
      showError(e);
    }
    busy = false;
  }, 40);
}

async function loadOnnx(file) {
  try {
    setState("parsing " + file.name, "warn");
    const buf = new Uint8Array(await file.arrayBuffer());
    const info = JSON.parse(app.load_onnx(buf, file.name));
    modelInfo(info);
    const opt = document.createElement("option");
    opt.value = "onnx:" + file.name;
    opt.textContent = file.name + " (dropped)";
    $("#model").append(opt);
    $("#model").value = opt.value;
    thumbs.clear();
    history.length = 0;
    showError(null);
  } catch (e) {
    showError(e);
  }
}

function modelInfo(info) {
  $("#model-info").textContent = `${info.name} (${info.source}): input ${JSON.stringify(info.input_shape)} → ${JSON.stringify(info.output_shape)}, ${info.layers} layers, ${num(info.macs / 1e6, 1)} M MACs, ${num(info.params / 1e6, 2)} M parameters (${bytes(info.weight_bytes)})` +
    (info.image_input ? "" : " — not an image model: only its own inputs can feed it");
}

// ---------------------------------------------------------------- drawing

function planSvg(view) {
  const n = view.stages.length;
  const colW = Math.max(70, Math.min(150, 900 / Math.max(1, n))), H = 170, top = 34;
  const W = n * colW + 10;
  let s = `<svg class="chart" viewBox="0 0 ${W} ${H + top + 24}" style="max-width:${W}px">`;
  view.stages.forEach((st, i) => {
    const x = 5 + i * colW;
    const fit = (t, px) => { const n = Math.max(4, Math.floor(px / 6)); return t.length > n ? t.slice(0, n - 1) + "…" : t; };
    s += `<text x="${x + colW / 2}" y="13" font-size="11" text-anchor="middle" fill="#1d232b">${esc(fit("stage " + (i + 1) + ": " + st.split, colW))}</text>`;
    s += `<text x="${x + colW / 2}" y="27" font-size="10" text-anchor="middle" fill="#667080"><title>${esc(st.first)} … ${esc(st.last)}: ${st.layers} layer(s)</title>${esc(fit(st.layers + " layer" + (st.layers === 1 ? "" : "s") + ": " + st.first, colW - 4))}</text>`;
    for (const p of st.parts) {
      const px = x + 4 + p.x0 * (colW - 8), pw = (p.x1 - p.x0) * (colW - 8);
      const py = top + p.y0 * H, ph = Math.max(1, (p.y1 - p.y0) * H);
      s += `<rect x="${px.toFixed(1)}" y="${py.toFixed(1)}" width="${Math.max(1, pw - 1).toFixed(1)}" height="${Math.max(1, ph - 1).toFixed(1)}" rx="3" fill="${colour(p.device)}" opacity=".85"><title>${esc(p.label)} → ${esc(view.devices[p.device] || "device " + p.device)}</title></rect>`;
      if (ph > 14 && pw > 24) s += `<text x="${(px + pw / 2).toFixed(1)}" y="${(py + ph / 2 + 4).toFixed(1)}" font-size="10" text-anchor="middle" fill="#fff">d${p.device}</text>`;
    }
    if (i + 1 < n) s += `<path d="M${x + colW - 3} ${top + H / 2}l6 0" stroke="#667080" marker-end=""/>`;
  });
  s += `<text x="5" y="${H + top + 18}" font-size="10" fill="#667080">columns: stages (pipeline order) · rectangles: tiles / channel groups / replicas, sized by their share · colour: device</text>`;
  return s + "</svg>";
}

function peersTable(st) {
  const plan = st.coordinator.plan;
  const rows = st.coordinator.peers.map((p) => {
    const dev = plan && p.device != null ? plan.devices[p.device] : null;
    const stateCls = { ready: "ok", idle: "info", loading: "warn", probing: "warn", joining: "warn", dead: "bad" }[p.state] || "";
    const maxLat = Math.max(1, ...st.coordinator.peers.map((x) => x.compute_recent_ms || 0));
    return `<tr>
      <td><b>${esc(p.name)}</b> <span class="muted">#${p.id}</span>${p.device != null ? ` <i style="display:inline-block;width:.7rem;height:.7rem;border-radius:.2rem;background:${colour(p.device)}"></i>` : ""}</td>
      <td><span class="pill ${stateCls}">${esc(p.state)}</span>${p.dead_reason ? `<br><span class="muted">${esc(p.dead_reason)}</span>` : ""}</td>
      <td>${esc(p.backend)}<br><span class="muted">${esc(p.caps.join(", "))}</span></td>
      <td>${esc(p.profile)}${dev ? `<br><span class="muted">1 GFLOP conv ≈ ${ms(dev.conv_gflop_ms, 0)}</span>` : ""}</td>
      <td class="num">${num(p.speed_factor, 2)}×</td>
      <td class="num">${ms(p.rtt_ms, 2)}</td>
      <td class="num">${num(p.mbps, 0)}</td>
      <td class="num">${p.tasks_done}</td>
      <td class="num">${ms(p.compute_last_ms, 2)} / ${ms(p.compute_recent_ms, 2)}<br><span class="muted">pred. ${ms(p.predicted_avg_ms, 2)}</span></td>
      <td>${bar((p.compute_recent_ms || 0) / maxLat)}</td>
      <td>${bar(p.utilisation, "util")}<span class="muted">${num(100 * p.utilisation, 0)}%</span></td>
      <td class="num">${bytes(p.link.bytes_out)} / ${bytes(p.link.bytes_in)}</td>
      <td class="num">${bytes(p.weight_bytes)}<br><span class="muted">${num((100 * p.weight_bytes) / Math.max(1, st.model.weight_bytes), 0)}% of model${p.weight_bytes_reused ? ", " + bytes(p.weight_bytes_reused) + " reused" : ""}</span></td>
      <td class="num">${ms(p.join_to_ready_ms, 0)}</td>
    </tr>`;
  });
  $("#peers").innerHTML = `<tr><th>peer</th><th>state</th><th>backend</th><th>profile</th><th class=num>slowdown</th><th class=num>RTT</th><th class=num>Mbit/s</th><th class=num>tasks</th><th class=num>compute last / recent</th><th>latency</th><th>utilisation</th><th class=num>bytes out / in</th><th class=num>weights held</th><th class=num>join→ready</th></tr>` +
    (rows.join("") || `<tr><td colspan=14 class=muted>no peers yet: share the join link</td></tr>`);
}

function thumbUrl(frame) {
  if (thumbs.has(frame)) return thumbs.get(frame);
  const t = app.thumb(frame);
  if (!t) return null;
  const c = document.createElement("canvas");
  c.width = t.width; c.height = t.height;
  c.getContext("2d").putImageData(new ImageData(t.rgba, t.width, t.height), 0, 0);
  const url = c.toDataURL();
  thumbs.set(frame, url);
  if (thumbs.size > 200) thumbs.delete(thumbs.keys().next().value);
  return url;
}

function resultsTable(st) {
  const t = st.totals;
  $("#totals").innerHTML = `
    <div><b class="big">${t.results}</b><span>results</span></div>
    <div><b class="big match ${t.mismatched ? "no" : "yes"}">${t.matched}/${t.compared}</b><span>equal to the local run</span></div>
    <div><b class="big">${t.worst_rel_diff.toExponential(1)}</b><span>worst relative difference</span></div>
    <div><b class="big">${t.labelled ? num((100 * t.correct) / t.labelled, 1) + "%" : "–"}</b><span>accuracy (labelled)</span></div>
    <div><b class="big">${ms(t.local_ms_avg, 2)}</b><span>local-only run / frame</span></div>
    <div><b class="big">${t.skipped + t.out_of_order}</b><span>lost or out of order</span></div>`;
  const rows = st.recent.slice(-12).reverse().map((r) => {
    const url = thumbUrl(r.frame);
    const m = r.matched == null ? `<span class="muted">not compared</span>` : r.matched ? `<span class="match yes">✓ match</span>` : `<span class="match no">✗ differs</span>`;
    return `<tr><td class=num>${r.frame}</td><td>${url ? `<img class="thumb" src="${url}" width="28" height="28" alt="">` : ""}</td><td>${esc(r.source)}</td>
      <td><b>${esc(r.class)}</b> ${num(100 * r.confidence, 1)}%<br><span class="muted">${r.top.slice(1).map((c) => c[0] + ": " + num(100 * c[1], 1) + "%").join(", ")}</span></td>
      <td>${esc(r.local_class ?? "–")}</td><td class=num>${r.max_rel_diff == null ? "–" : r.max_rel_diff.toExponential(1)}</td><td>${m}</td>
      <td>${r.label == null ? "–" : esc(r.label) + (r.correct ? " ✓" : " ✗")}</td><td class=num>${ms(r.latency_ms, 1)}</td></tr>`;
  });
  $("#results").innerHTML = `<tr><th class=num>frame</th><th></th><th>input</th><th>mesh: top classes</th><th>local run</th><th class=num>rel. diff</th><th>match</th><th>label</th><th class=num>latency</th></tr>` + rows.join("");
}

function render() {
  const st = JSON.parse(app.status());
  window.tessera.last = st;
  const c = st.coordinator, m = st.mesh;
  const sig = m ? m.signaling.state : "connecting";
  if (sig === "refused") setState("refused: " + m.signaling.code, "bad");
  else if (!c) setState("no model", "warn");
  else setState(c.phase + (c.loading ? " (shipping plan " + c.loading.epoch + ")" : ""), { running: "ok", local: "info", loading: "warn", waiting: "warn" }[c.phase] || "");
  $("#who").textContent = (m && m.id != null ? "member " + m.id + " of room " + m.room + " · " : "") + (c ? c.model + " · " + c.planner : "");
  if (!c) return;
  const f = c.frames;
  // Throughput now: frames completed over the last ~2 s (falls to 0 when idle).
  history.push([st.now_ms, f.done]);
  while (history.length > 300) history.shift();
  const rate = [];
  for (let i = 0, j = 0; i < history.length; i++) {
    while (history[i][0] - history[j][0] > 2000) j++;
    const dt = history[i][0] - history[j][0];
    rate.push([history[i][0], dt > 0 ? ((history[i][1] - history[j][1]) * 1000) / dt : 0]);
  }
  const ipsNow = rate.length ? rate[rate.length - 1][1] : 0;
  const single = st.totals.local_ms_avg > 0 ? 1000 / st.totals.local_ms_avg : null;
  $("#stats").innerHTML = `
    <div><b class="big">${num(ipsNow, 1)}</b><span>frames/s now</span></div>
    <div><b class="big">${num(c.ips, 1)}</b><span>frames/s (last 64)</span></div>
    <div><b class="big">${single ? num(single, 0) : "–"}</b><span>frames/s on this tab alone</span></div>
    <div><b class="big">${ms(c.latency_ms, 1)}</b><span>submit → result</span></div>
    <div><b class="big">${f.done}/${f.submitted}</b><span>done / submitted</span></div>
    <div><b class="big">${f.in_flight} · ${f.queued}</b><span>in flight · queued</span></div>
    <div><b class="big">${f.lost}</b><span>lost</span></div>
    <div><b class="big">${f.reruns}</b><span>re-runs</span></div>
    <div><b class="big">${c.replans}</b><span>plans</span></div>
    <div><b class="big">${ms(c.last_recovery_ms, 0)}</b><span>last recovery</span></div>
    <div><b class="big">${bytes(c.weight_bytes_sent)}</b><span>weights shipped (model ${bytes(c.model_weight_bytes)}; re-plans re-use what peers hold)</span></div>`;
  $("#chart").innerHTML = sparkline(rate, { label: "frames/s over time (2 s window)" });
  peersTable(st);
  if (st.plan_view && c.plan) {
    const p = c.plan;
    $("#plan-note").textContent = `plan #${p.epoch} (${p.state}) by ${p.plan.planner}: ${p.reason}. Predicted ${num(p.predicted_ips, 1)} frames/s, ${ms(p.predicted_latency_ms, 1)}; ${bytes(p.predicted_bytes_per_frame)} per frame predicted, ${bytes(p.tensor_bytes_per_frame)} measured` + (c.last_replan_reason ? "" : "");
    $("#plan").innerHTML = planSvg(st.plan_view);
    $("#legend").innerHTML = st.plan_view.devices.map((d, i) => `<span><i style="background:${colour(i)}"></i>d${i}: ${esc(d)}</span>`).join("");
  } else {
    $("#plan-note").textContent = c.loading ? "shipping plan " + c.loading.epoch + "…" : "no plan yet: waiting for peers (frames run on this tab meanwhile)";
    $("#plan").innerHTML = "";
    $("#legend").innerHTML = "";
  }
  resultsTable(st);
  $("#events").textContent = c.events.join("\n") + (c.last_error ? "\nlast error: " + c.last_error : "") + (st.last_error ? "\ntransport: " + st.last_error : "") + (m ? "\n--- link\n" + m.log.join("\n") : "");
}

// ---------------------------------------------------------------- start

async function main() {
  window.tessera = { ready: false };
  const join = joinUrl();
  $("#join-link").href = $("#join-link").textContent = join;
  $("#native-cmd").textContent = "tessera peer '" + join + "'";
  if (!q.get("room") || !q.get("token")) {
    setState("no room in the URL", "bad");
    showError("This URL has no room and token: open the join URL printed by tessera serve, with &role=coordinator.");
    return;
  }
  await init();
  try { $("#qr").innerHTML = qr_svg(join); } catch (e) { $("#qr").textContent = e.message; }
  const models = JSON.parse(zoo());
  const model = q.get("model") || "lenet";
  $("#model").innerHTML = models.map((m) => `<option value="${m.name}"${m.name === model ? " selected" : ""}>${m.name} — ${num(m.params / 1e6, 2)} M params, ${num(m.macs / 1e9, 2)} GMAC</option>`).join("");
  const planner = q.get("planner") || "tessera";
  $("#planner").innerHTML = JSON.parse(planners()).map((p) => `<option${p === planner ? " selected" : ""}>${p}</option>`).join("");
  $("#window").value = q.get("window") || "4";
  const config = { coordinator: { planner, window: Number($("#window").value), model_secret: true, local_fallback: true } };
  app = new CoordinatorApp(q.get("name") || "dashboard", JSON.stringify(config));
  setState("loading " + model, "warn");
  modelInfo(JSON.parse(app.load_zoo(model)));
  app.start(location.href);
  window.tessera = { ready: true, app, status: () => JSON.parse(app.status()), rows: (from) => JSON.parse(app.rows(from || 0)) };
  onSource();

  $("#model").onchange = () => {
    const v = $("#model").value;
    if (v.startsWith("onnx:")) return;
    try { setState("loading " + v, "warn"); modelInfo(JSON.parse(app.load_zoo(v))); thumbs.clear(); history.length = 0; showError(null); } catch (e) { showError(e); }
  };
  $("#planner").onchange = () => { try { app.set_planner($("#planner").value); showError(null); } catch (e) { showError(e); } };
  $("#window").onchange = () => app.set_window(Number($("#window").value) || 1);
  $("#compare").onchange = () => app.set_compare_every(Number($("#compare").value));
  $("#source").onchange = onSource;
  $("#files").onchange = () => { files = [...$("#files").files]; fileCursor = 0; $("#source-note").textContent = files.length + " image file(s)"; };
  $("#run").onclick = async () => { try { await submit(Number($("#count").value) || 1); showError(null); } catch (e) { showError(e); } };
  $("#stream").onclick = toggleStream;
  $("#replan").onclick = () => app.replan();
  $("#onnx").onchange = () => $("#onnx").files[0] && loadOnnx($("#onnx").files[0]);
  const drop = $("#drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); const f = e.dataTransfer.files[0]; if (f) loadOnnx(f); };
  addEventListener("pagehide", () => app.shutdown());
  render();
  setInterval(render, 400);
}

main().catch((e) => {
  setState("error", "bad");
  showError(e.stack || e);
  console.error(e);
});
