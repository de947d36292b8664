// End-to-end test of the mesh in real browsers: `tessera serve` + a
// coordinator tab + 3 peer tabs (+ 1 native `tessera peer`) over WebRTC,
// LeNet on bundled MNIST digits. Run by `./run test`, inside a loopback-only
// network namespace (it refuses to run on a host network):
//
//   unshare --net -- sh -c 'ip link set lo up && exec "$@"' sh node tests/e2e/run.mjs
//
// Asserts: a tokenless (or wrong-token) join is refused; the distributed
// outputs equal the local-only run (max-norm relative difference ≤ 1e-4, the
// same top class) for every frame; killing a peer tab mid-stream still
// completes every frame, in order, none lost; every peer received fewer
// weight bytes than the whole model. Prints the figures (join-to-ready,
// per-task round trip, recovery after the kill, frames lost) and writes
// them, with screenshots, to $TESSERA_E2E_OUT (default /tmp/tessera-e2e).
//
// Environment: TESSERA (binary, default target/release/tessera), CHROMIUM
// (default /usr/lib/chromium/chromium), TESSERA_E2E_NATIVE=0 to skip the
// native peer, TESSERA_E2E_ALLOW_HOST_NET=1 to run outside a namespace.
import { chromium } from "playwright-core";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const TESSERA = process.env.TESSERA || join(ROOT, "target/release/tessera");
const CHROMIUM = process.env.CHROMIUM || (existsSync("/usr/lib/chromium/chromium") ? "/usr/lib/chromium/chromium" : "/usr/bin/chromium");
const OUT = process.env.TESSERA_E2E_OUT || "/tmp/tessera-e2e";
const BROWSER_PEERS = 3;
const FRAMES_MATCH = 60;
const SINGLE_FRAMES = 15;
const FRAMES_KILL = 400;
const KILL_AFTER = 40; // results of the second batch before a peer tab is crashed
// A larger zoo model run after LeNet ("" to skip): TESSERA_E2E_LARGE.
const LARGE = process.env.TESSERA_E2E_LARGE ?? "mobilenetv2";
const LARGE_FRAMES = 4;

const t0 = Date.now();
const log = (...a) => console.log(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const children = [];
const figures = {};
let failures = 0;

function check(cond, what) {
  if (cond) log("ok  ", what);
  else { failures++; log("FAIL", what); }
  return cond;
}

async function until(what, fn, timeoutMs = 60000, everyMs = 200) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

// /proc/self/net/dev lists the interfaces of this process's network namespace.
function loopbackOnly() {
  const ifaces = readFileSync("/proc/self/net/dev", "utf8").split("\n").slice(2).map((l) => l.split(":")[0].trim()).filter(Boolean);
  return ifaces.length === 1 && ifaces[0] === "lo";
}

function startServer() {
  return new Promise((res, rej) => {
    const p = spawn(TESSERA, ["serve", "--port", "0", "--no-qr", "--root", ROOT], { stdio: ["ignore", "pipe", "pipe"] });
    children.push(p);
    let out = "";
    const timer = setTimeout(() => rej(new Error("tessera serve printed no join URL:\n" + out)), 15000);
    p.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/join URL: (http:\/\/127\.0\.0\.1:\d+\/\?room=\w+&token=\w+)/);
      if (m) { clearTimeout(timer); res(m[1]); }
    });
    p.stderr.on("data", (d) => { out += d; });
    p.on("exit", (c) => rej(new Error(`tessera serve exited (${c}):\n${out}`)));
  });
}

function nativePeerSupported() {
  if (process.env.TESSERA_E2E_NATIVE === "0") return false;
  const r = spawnSync(TESSERA, ["peer", "--help"], { encoding: "utf8" });
  return r.status === 0;
}

function startNativePeer(url) {
  const p = spawn(TESSERA, ["peer", url, "--name", "native-1", "--threads", "1"], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(p);
  p.stderr.on("data", (d) => process.env.TESSERA_E2E_VERBOSE && process.stdout.write("[native] " + d));
  p.stdout.on("data", (d) => process.env.TESSERA_E2E_VERBOSE && process.stdout.write("[native] " + d));
  return p;
}

const FLAGS = [
  "--no-sandbox", "--no-first-run", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--disable-quic", "--allow-loopback-in-peer-connection", "--enable-unsafe-webgpu",
  "--disable-background-timer-throttling", "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
];

async function openPage(browser, origin, url, name) {
  // One context per tab: separate renderer processes, like separate devices.
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  // Chromium gathers ICE candidates in the namespace only with media permission.
  await ctx.grantPermissions(["microphone", "camera"], { origin });
  const page = await ctx.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" || process.env.TESSERA_E2E_VERBOSE) log(`[${name}] ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => log(`[${name}] page error: ${e.message}`));
  await page.goto(url);
  return { ctx, page, name };
}

const status = (tab) => tab.page.evaluate(() => window.tessera && window.tessera.ready ? window.tessera.status() : null);
const rows = (tab, from = 0) => tab.page.evaluate((f) => window.tessera.rows(f), from);

async function main() {
  if (!loopbackOnly() && process.env.TESSERA_E2E_ALLOW_HOST_NET !== "1") {
    throw new Error("refusing to run outside a loopback-only network namespace (see the header of this file)");
  }
  for (const f of [TESSERA, CHROMIUM, join(ROOT, "pkg/tessera_web_bg.wasm"), join(ROOT, "www/index.html")]) {
    if (!existsSync(f)) throw new Error(`missing ${f} (./run test builds it)`);
  }
  mkdirSync(OUT, { recursive: true });
  const url = await startServer();
  const origin = new URL(url).origin;
  log("server", url);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
  try {
    await scenario(browser, url, origin);
  } finally {
    await browser.close().catch(() => {});
  }
}

async function scenario(browser, url, origin) {
  const room = new URL(url).searchParams.get("room");

  // 1. No token, no join.
  const intruder = await openPage(browser, origin, `${origin}/peer.html?room=${room}&token=not-the-token&profile=none&name=intruder`, "intruder");
  const refused = await until("the wrong-token page to be refused", () => intruder.page.evaluate(() => document.body.dataset.state.startsWith("refused") && document.body.dataset.state), 20000);
  check(refused === "refused: unauthorized", `a join with a wrong token is refused (${refused})`);
  const raw = await intruder.page.evaluate((room) => Promise.all([
    `ws://${location.host}/ws?room=${room}`,
    `ws://${location.host}/ws`,
  ].map((u, i) => new Promise((res) => {
    const ws = new WebSocket(u);
    const got = [];
    // Both send a join without a token: URL `?room=R` only, or no query at all.
    ws.onopen = () => ws.send(JSON.stringify(i ? { type: "join", role: "peer", name: "x", room } : { type: "join", role: "peer", name: "x" }));
    ws.onmessage = (e) => got.push(JSON.parse(e.data));
    ws.onclose = (e) => res({ code: e.code, got });
    setTimeout(() => res({ code: "open", got }), 5000);
  }))), room);
  for (const [i, r] of raw.entries()) {
    const err = r.got.find((m) => m.type === "error");
    check(err && err.code === "unauthorized" && r.code === 1008 && !r.got.some((m) => m.type === "welcome"),
      `a tokenless join (${i ? "token missing from the join message" : "no token in the URL"}) is refused: ${JSON.stringify(r)}`);
  }
  await intruder.ctx.close();

  // 2. The coordinator tab, then the peers.
  const coord = await openPage(browser, origin, `${url}&role=coordinator&model=lenet&planner=tessera&window=4&name=e2e-dashboard`, "coordinator");
  await until("the coordinator to start", () => coord.page.evaluate(() => window.tessera && window.tessera.ready), 30000);
  const opened = {};
  const peers = [];
  for (let i = 1; i <= BROWSER_PEERS; i++) {
    const name = `tab-${i}`;
    opened[name] = Date.now();
    // tab-1 computes on WebGPU (SwiftShader: gpu=1 forces a software
    // adapter; its profile would keep it out of the plan, so it announces none).
    const extra = i === 1 ? "&gpu=1&profile=none" : "&profile=fast";
    peers.push(await openPage(browser, origin, `${url}&name=${name}${extra}`, name));
  }
  let native = null;
  if (nativePeerSupported()) {
    opened["native-1"] = Date.now();
    native = startNativePeer(url);
    log("native peer started (tessera peer)");
  } else {
    log("NOTE: this tessera binary has no `peer` command: running without the native peer");
  }
  const expected = BROWSER_PEERS + (native ? 1 : 0);

  // Every peer live, a plan running that the coordinator is happy with.
  const ready = await until(`${expected} peers profiled and a plan running`, async () => {
    const s = await status(coord);
    const c = s && s.coordinator;
    if (!c) return null;
    const live = c.peers.filter((p) => p.state !== "dead" && p.state !== "joining" && p.state !== "probing");
    return live.length === expected && c.phase === "running" && !c.loading && c.plan && !c.plan.reason.includes("no live") ? s : null;
  }, 90000, 250);
  const joinReady = {};
  for (const p of ready.coordinator.peers) joinReady[p.name] = p.join_to_ready_ms;
  figures.join_to_ready_ms = joinReady;
  // Wall clock: tab opened → its page shows a plan (for the peers in the plan).
  const wall = {};
  for (const t of peers) {
    const st = await status(t);
    const first = st && st.timings.first_plan_ms;
    if (first != null) wall[t.name] = Math.round(first);
  }
  figures.page_load_to_first_plan_ms = wall;
  figures.plan = { epoch: ready.coordinator.plan.epoch, render: ready.coordinator.plan.render, members: ready.coordinator.plan.members, reason: ready.coordinator.plan.reason };
  log("plan", ready.coordinator.plan.epoch, ready.coordinator.plan.members.join(", "), "—", ready.coordinator.plan.reason);
  log("join → ready (coordinator, ms):", JSON.stringify(joinReady));
  check(ready.coordinator.plan.members.length >= 2, `the plan spreads LeNet over ${ready.coordinator.plan.members.length} peers`);

  // 3. Distributed = local, in order.
  await coord.page.evaluate((n) => window.tessera.app.submit_mnist(n), FRAMES_MATCH);
  const s1 = await until(`${FRAMES_MATCH} results`, async () => { const s = await status(coord); return s.totals.results >= FRAMES_MATCH ? s : null; }, 60000);
  const r1 = await rows(coord);
  check(r1.length === FRAMES_MATCH && r1.every((r, i) => r.frame === i), "every frame came back, in submission order");
  check(s1.totals.compared === FRAMES_MATCH && s1.totals.matched === FRAMES_MATCH, `distributed outputs equal the local run: ${s1.totals.matched}/${s1.totals.compared} within 1e-4 (worst ${s1.totals.worst_rel_diff.toExponential(2)})`);
  check(r1.every((r) => r.logits && r.logits.length === 10 && r.max_rel_diff <= 1e-4 && r.class === r.local_class), "logits of every frame within 1e-4 of the local run, same digit");
  check(s1.totals.correct / s1.totals.labelled >= 0.95, `LeNet reads the digits: ${s1.totals.correct}/${s1.totals.labelled}`);
  const c1 = s1.coordinator;
  figures.match = { frames: FRAMES_MATCH, worst_rel_diff: s1.totals.worst_rel_diff, accuracy: s1.totals.correct / s1.totals.labelled, ips: c1.ips, latency_ms: c1.latency_ms, local_ms_per_frame: s1.totals.local_ms_avg };
  if (c1.plan) {
    figures.bytes = { predicted_per_frame: c1.plan.predicted_bytes_per_frame, tensor_per_frame: c1.plan.tensor_bytes_per_frame, wire_per_frame: c1.plan.wire_bytes_per_frame, wire_over_predicted: c1.plan.wire_bytes_per_frame / Math.max(1, c1.plan.predicted_bytes_per_frame) };
  }

  // The WebGPU tab: chose WebGPU, the coordinator knows, and it computed.
  // (MoDNN gives every peer a share of every layer, so the tab has work
  // whatever the tessera planner made of its profile.)
  {
    const planned = (name) => async () => {
      const c = (await status(coord)).coordinator;
      return c.phase === "running" && !c.loading && c.plan && c.plan.plan.planner === name && c.plan.members.length === expected ? c : null;
    };
    await coord.page.evaluate(() => window.tessera.app.set_planner("modnn"));
    await until("a MoDNN plan over every peer", planned("modnn"), 30000, 100);
    const n0 = (await status(coord)).totals.results;
    await coord.page.evaluate(() => window.tessera.app.submit_mnist(10));
    const sg = await until("10 results on the MoDNN plan", async () => { const s = await status(coord); return s.totals.results >= n0 + 10 ? s : null; }, 30000, 100);
    check(sg.totals.matched === sg.totals.compared, `MoDNN plan with the WebGPU tab matches the local run (${sg.totals.matched}/${sg.totals.compared})`);
    const gst = await status(peers[0]);
    const cp = sg.coordinator.peers.find((p) => p.name === peers[0].name);
    check(gst.backend && gst.backend.kind === "webgpu", `${peers[0].name} computes on WebGPU: ${gst.backend && gst.backend.note}`);
    check(cp && cp.backend.startsWith("gpu "), `the coordinator sees ${peers[0].name}'s backend as ${cp && cp.backend}`);
    check(gst.peer && gst.peer.tasks_run > 0 && gst.peer.in_flight === 0, `${peers[0].name} ran ${gst.peer && gst.peer.tasks_run} tasks on WebGPU (${gst.peer && gst.peer.mean_latency_ms.toFixed(2)} ms each), none left in flight`);
    figures.webgpu_peer = { name: peers[0].name, backend: cp && cp.backend, tasks_run: gst.peer && gst.peer.tasks_run, mean_task_ms: gst.peer && gst.peer.mean_latency_ms };
    // Its GPU is lost (a driver reset): its tasks move to its CPU, the
    // coordinator is told, results stay equal, nothing is lost.
    check(await peers[0].page.evaluate(() => window.tessera.app.simulate_gpu_loss()), `${peers[0].name}'s WebGPU device destroyed`);
    const n1 = (await status(coord)).totals.results;
    await coord.page.evaluate(() => window.tessera.app.submit_mnist(10));
    const sl = await until("10 results after the GPU loss", async () => { const s = await status(coord); return s.totals.results >= n1 + 10 ? s : null; }, 30000, 100);
    check(sl.totals.matched === sl.totals.compared && sl.coordinator.frames.lost === 0, `after the GPU loss results still match (${sl.totals.matched}/${sl.totals.compared}), none lost`);
    const lost = await until("the coordinator to see the fallback", async () => {
      const c = (await status(coord)).coordinator;
      const p = c.peers.find((x) => x.name === peers[0].name);
      return p && p.backend.includes("GPU lost") ? { backend: p.backend, events: c.events.filter((e) => e.includes(peers[0].name)).slice(-4) } : null;
    }, 20000, 100);
    const tst = await status(peers[0]);
    check(tst.peer.backend_notes.some((n) => n.includes("lost")), `${peers[0].name} computes on its CPU now and said why: ${lost.backend}; ${JSON.stringify(tst.peer.backend_notes)}`);
    figures.webgpu_peer.after_loss = { backend: lost.backend, events: lost.events, tasks_run: tst.peer.tasks_run };
    await coord.page.evaluate(() => window.tessera.app.set_planner("tessera"));
    await until("the tessera plan again", planned("tessera"), 30000, 100);
  }

  // Per-task round trip: single frames, one at a time (no queueing): the
  // frame latency minus the compute on its critical path, per stage; and
  // the data-channel ping RTT the coordinator measures.
  const single = [];
  // Each peer's task count and total compute before the single frames, so
  // that their compute is the mean of exactly those frames' tasks.
  const before = new Map((await status(coord)).coordinator.peers.map((p) => [p.id, [p.tasks_done, p.compute_avg_ms * p.tasks_done]]));
  for (let i = 0; i < SINGLE_FRAMES; i++) {
    const n0 = (await status(coord)).totals.results;
    await coord.page.evaluate(() => window.tessera.app.submit_mnist(1));
    await until("a single frame", async () => (await status(coord)).totals.results > n0, 10000, 20);
    single.push((await rows(coord, n0))[0].latency_ms);
  }
  const s2 = await status(coord);
  single.sort((a, b) => a - b);
  const lat = single[single.length >> 1];
  const plan = s2.coordinator.plan;
  let compute = 0;
  for (const st of plan ? plan.plan.stages : []) {
    let worst = 0;
    for (const d of st.split.devices) {
      const p = s2.coordinator.peers.find((x) => "peer " + x.id === plan.members[d]);
      // The mean over these single frames' tasks only (a peer that moved
      // from a software GPU to its CPU mid-test has a lifetime mean of both).
      const [tasks0, total0] = (p && before.get(p.id)) || [0, 0];
      if (p && p.tasks_done > tasks0) worst = Math.max(worst, (p.compute_avg_ms * p.tasks_done - total0) / (p.tasks_done - tasks0));
    }
    compute += worst;
  }
  const stages = plan ? plan.plan.stages.length : 1;
  const rtts = s2.coordinator.peers.filter((p) => p.rtt_ms != null && p.state !== "dead").map((p) => [p.name, p.rtt_ms]);
  figures.round_trip = {
    single_frame_latency_ms: { median: lat, min: single[0], max: single[single.length - 1] },
    stages,
    compute_on_critical_path_ms: compute,
    per_task_round_trip_ms: (lat - compute) / stages,
    ping_rtt_ms: Object.fromEntries(rtts),
  };
  log(`single frames: median latency ${lat.toFixed(2)} ms (min ${single[0].toFixed(2)}) over ${stages} stage(s); compute ${compute.toFixed(2)} ms; per-task round trip ${((lat - compute) / stages).toFixed(2)} ms; ping RTT ${rtts.map(([n, r]) => n + " " + r.toFixed(2)).join(", ")}`);

  // 4. Kill a peer tab mid-stream: every frame still completes, in order.
  const base = (await status(coord)).totals.results;
  const cur = (await status(coord)).coordinator;
  const inPlan = new Set(cur.plan.members.map((m) => Number(m.replace("peer ", ""))));
  let victim = null;
  // TESSERA_E2E_VICTIM=tab-N crashes that tab (if it holds work) first.
  const byChoice = [...peers].sort((a, b) => (b.name === process.env.TESSERA_E2E_VICTIM) - (a.name === process.env.TESSERA_E2E_VICTIM));
  for (const t of byChoice) {
    const st = await status(t);
    if (st && st.mesh && st.peer && st.peer.id != null && inPlan.has(st.peer.id) && st.peer.tasks.length) { victim = { tab: t, id: st.peer.id }; break; }
  }
  check(victim != null, "a browser peer holds part of the plan (the one to kill)");
  await coord.page.evaluate((n) => window.tessera.app.submit_mnist(n), FRAMES_KILL);
  await until(`${KILL_AFTER} results of the second batch`, async () => { const s = await status(coord); return s.totals.results >= base + KILL_AFTER; }, 60000, 50);
  const tKill = Date.now();
  const atKill = (await status(coord)).totals.results;
  // A crash, not a goodbye: the renderer dies without sending Bye; the
  // coordinator learns from the signaling server (the socket closes) or
  // from the data channel.
  const cdp = await victim.tab.ctx.newCDPSession(victim.tab.page);
  const crashed = new Promise((r) => victim.tab.page.once("crash", () => r(true)));
  cdp.send("Page.crash").catch(() => {}); // never answers: the renderer is gone
  const didCrash = await Promise.race([crashed, new Promise((r) => setTimeout(() => r(false), 5000))]);
  check(didCrash, `the ${victim.tab.name} renderer crashed`);
  victim.tab.ctx.close().catch(() => {});
  log(`killed ${victim.tab.name} (peer ${victim.id}) after ${atKill - base} results of ${FRAMES_KILL}`);
  const s3 = await until(`all ${base + FRAMES_KILL} results after the kill`, async () => { const s = await status(coord); return s.totals.results >= base + FRAMES_KILL && s.coordinator.frames.in_flight === 0 && s.coordinator.plan && !s.coordinator.loading ? s : null; }, 90000, 100);
  const tDone = Date.now();
  if (process.env.TESSERA_E2E_VERBOSE) log("events:\n" + s3.coordinator.events.join("\n"));
  const all = await rows(coord);
  const c3 = s3.coordinator;
  check(all.length === base + FRAMES_KILL && all.every((r, i) => r.frame === i), `every one of ${base + FRAMES_KILL} frames completed, in order`);
  check(c3.frames.lost === 0 && s3.totals.skipped === 0 && s3.totals.out_of_order === 0, `no frame lost (lost ${c3.frames.lost}, skipped ${s3.totals.skipped}, out of order ${s3.totals.out_of_order})`);
  check(s3.totals.matched === s3.totals.compared && s3.totals.mismatched === 0, `still equal to the local run after the kill: ${s3.totals.matched}/${s3.totals.compared}`);
  const dead = c3.peers.find((p) => p.id === victim.id);
  check(dead && dead.state === "dead", `the coordinator dropped the killed peer (${dead && dead.dead_reason})`);
  check(c3.plan && !c3.plan.members.includes("peer " + victim.id), `re-planned without it (plan ${c3.plan && c3.plan.epoch}: ${c3.plan && c3.plan.members.join(", ")})`);
  figures.kill = {
    killed: victim.tab.name,
    results_before_kill: atKill - base,
    recovery_ms: c3.last_recovery_ms,
    kill_to_last_result_ms: tDone - tKill,
    reruns: c3.frames.reruns,
    frames_lost: c3.frames.lost + s3.totals.skipped,
    replans: c3.replans,
  };
  log(`recovery ${c3.last_recovery_ms?.toFixed(0)} ms (peer loss → replacement plan running); ${c3.frames.reruns} frame re-runs; lost ${figures.kill.frames_lost}`);

  // 5. The model secret: nobody received the whole model.
  const whole = c3.model_weight_bytes;
  const held = c3.peers.map((p) => [p.name, p.weight_bytes, p.weight_bytes_total]);
  check(c3.peers.length === expected && held.every(([, w]) => w < whole), `each peer received fewer weight bytes than the whole model (${whole} B): ${JSON.stringify(held)}`);
  for (const t of peers.filter((t) => t !== victim.tab)) {
    const st = await status(t);
    check(st.peer.weight_bytes < whole, `${t.name} holds ${st.peer.weight_bytes} of ${whole} weight bytes (its own page)`);
  }
  figures.weights = { model_bytes: whole, per_peer: Object.fromEntries(held.map(([n, w, tot]) => [n, { newest_plan: w, all_plans: tot }])) };

  // Idle ping RTT (smoothed over the pings of a few quiet seconds).
  await new Promise((r) => setTimeout(r, 4000));
  const idle = (await status(coord)).coordinator.peers.filter((p) => p.state !== "dead").map((p) => [p.name, p.rtt_ms]);
  figures.idle_ping_rtt_ms = Object.fromEntries(idle);
  log("idle ping RTT:", idle.map(([n, r]) => n + " " + r.toFixed(2)).join(", "));

  // 6. The coordinator tab reloads: the peers reconnect to the new one.
  const tReload = Date.now();
  await coord.page.reload();
  await until("the reloaded coordinator", () => coord.page.evaluate(() => window.tessera && window.tessera.ready), 30000);
  const live = expected - 1;
  let lastC = null;
  await until(`${live} peers back with a plan running`, async () => {
    const c = (lastC = (await status(coord)).coordinator);
    return c.peers.filter((p) => p.state === "ready" || p.state === "idle").length === live && c.phase === "running" && !c.loading;
  }, 60000, 100).catch((e) => {
    log("coordinator after the reload:", JSON.stringify({ phase: lastC?.phase, loading: lastC?.loading, peers: lastC?.peers.map((p) => [p.name, p.state, p.dead_reason]), events: lastC?.events.slice(-12) }));
    throw e;
  });
  figures.coordinator_reload_to_running_ms = Date.now() - tReload;
  await coord.page.evaluate(() => window.tessera.app.submit_mnist(20));
  const s6 = await until("20 results after the reload", async () => { const s = await status(coord); return s.totals.results >= 20 ? s : null; }, 30000, 100);
  check(s6.totals.matched === 20 && s6.totals.compared === 20, `after a coordinator reload the peers reconnect and results match again (${figures.coordinator_reload_to_running_ms} ms to running)`);

  // 7. A dropped .onnx (here: the zoo LeNet exported by tessera) is parsed
  // in the browser and run over the mesh.
  const onnx = join(OUT, "lenet.onnx");
  const ex = spawnSync(TESSERA, ["export", "lenet", onnx], { encoding: "utf8" });
  check(ex.status === 0, "tessera export lenet");
  await coord.page.setInputFiles("#onnx", onnx);
  await until("the .onnx model to load and a plan to run", async () => {
    const s = await status(coord);
    return s.model.source === "onnx" && s.coordinator.phase === "running" && !s.coordinator.loading && s.coordinator.peers.filter((p) => p.state === "ready" || p.state === "idle").length === live;
  }, 60000, 100);
  await coord.page.evaluate(() => window.tessera.app.submit_mnist(20));
  const s7 = await until("20 results of the .onnx model", async () => { const s = await status(coord); return s.totals.results >= 20 ? s : null; }, 30000, 100);
  check(s7.model.source === "onnx" && s7.totals.matched === 20, `a dropped .onnx runs over the mesh and matches the local run (${s7.totals.matched}/20)`);

  // 8. Camera frames (Chromium's fake camera) as an input stream.
  await coord.page.selectOption("#source", "camera");
  await until("the camera", () => coord.page.evaluate(() => document.querySelector("#cam").videoWidth > 0), 15000);
  await coord.page.fill("#count", "3");
  await coord.page.click("#run");
  const s8 = await until("3 camera results", async () => { const s = await status(coord); return s.totals.results >= 23 ? s : null; }, 30000, 100);
  check(s8.recent.slice(-3).every((r) => r.source === "camera" && r.matched), "camera frames run over the mesh and match the local run");
  await coord.page.selectOption("#source", "mnist");

  // 9. A larger zoo model on the bundled sample photographs: the plan
  // ships megabytes of weight slices and splits feature maps into tiles.
  if (LARGE) {
    const tLoad = Date.now();
    await coord.page.evaluate((m) => { const sel = document.querySelector("#model"); sel.value = m; sel.dispatchEvent(new Event("change")); }, LARGE);
    const s9a = await until(`${LARGE} loaded and planned`, async () => {
      const s = await status(coord);
      return s.model.name === LARGE && s.coordinator.phase === "running" && !s.coordinator.loading && s.coordinator.plan && s.coordinator.plan.members.length > 1 ? s : null;
    }, 120000, 250);
    figures.large = { model: LARGE, load_and_plan_ms: Date.now() - tLoad, plan: s9a.coordinator.plan.render, weight_bytes: s9a.model.weight_bytes, per_peer_weights: s9a.coordinator.peers.filter((p) => p.state !== "dead").map((p) => [p.name, p.weight_bytes]) };
    await coord.page.evaluate(() => window.tessera.app.set_compare_every(1));
    const tRun = Date.now();
    await coord.page.selectOption("#source", "photos");
    await coord.page.fill("#count", String(LARGE_FRAMES));
    await coord.page.click("#run");
    const s9 = await until(`${LARGE_FRAMES} ${LARGE} results`, async () => { const s = await status(coord); return s.totals.results >= LARGE_FRAMES ? s : null; }, 120000, 250);
    check(s9.recent.slice(-LARGE_FRAMES).every((r) => r.source.startsWith("photo ")), `${LARGE} ran on the bundled sample photographs`);
    figures.large.frames = LARGE_FRAMES;
    figures.large.seconds = (Date.now() - tRun) / 1000;
    figures.large.worst_rel_diff = s9.totals.worst_rel_diff;
    figures.large.local_ms_per_frame = s9.totals.local_ms_avg;
    figures.large.ips = s9.coordinator.ips;
    check(s9.totals.matched === LARGE_FRAMES, `${LARGE} over the mesh matches the local run: ${s9.totals.matched}/${LARGE_FRAMES} (worst ${s9.totals.worst_rel_diff.toExponential(2)})`);
    check(s9.coordinator.peers.every((p) => p.weight_bytes < s9.model.weight_bytes), `${LARGE}: every peer holds less than the whole model`);
    log(`${LARGE}: ${JSON.stringify(figures.large)}`);
  }

  // Screenshots for people.
  await coord.page.screenshot({ path: join(OUT, "coordinator.png"), fullPage: true });
  const alive = peers.find((t) => t !== victim.tab);
  await alive.page.screenshot({ path: join(OUT, "peer.png"), fullPage: true });
  await alive.page.setViewportSize({ width: 390, height: 844 });
  await alive.page.screenshot({ path: join(OUT, "peer-phone.png"), fullPage: true });
  await coord.page.setViewportSize({ width: 390, height: 844 });
  await coord.page.screenshot({ path: join(OUT, "coordinator-phone.png"), fullPage: true });
  figures.native_peer = native ? "included" : "not available (no `tessera peer`)";

  await browserJoinsNativeDemo(browser);
}

// 10. The other direction: a browser tab joins the room of `tessera demo`
// (a native coordinator and native peer), is welcomed, profiled and
// counted live by the native coordinator.
async function browserJoinsNativeDemo(browser) {
  const demo = spawn(TESSERA, ["demo", "--peers", "1", "--larger", "none", "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(demo);
  let out = "";
  demo.stdout.on("data", (d) => { out += d; if (process.env.TESSERA_E2E_VERBOSE) process.stdout.write("[demo] " + d); });
  demo.stderr.on("data", (d) => { out += d; });
  try {
    const url = await until("tessera demo to open its room to browsers", () => {
      const m = out.match(/join URL: (http:\/\/127\.0\.0\.1:\d+\/\?room=\w+&token=\w+)/);
      return m && out.includes("The room stays open") ? m[1] : null;
    }, 120000, 250);
    const origin = new URL(url).origin;
    const tab = await openPage(browser, origin, `${url}&name=tab-into-demo&profile=fast&gpu=0`, "tab-into-demo");
    const st = await until("the tab to be welcomed by the native coordinator", async () => {
      const s = await status(tab);
      return s && s.peer && s.peer.connected && s.peer.id != null && s.peer.model === "lenet" ? s : null;
    }, 60000, 200);
    check(true, `a browser tab joined tessera demo's room: member ${st.mesh.id}, peer ${st.peer.id}, model ${st.peer.model}`);
    const live = await until("the demo to count the tab live", () => {
      const m = [...out.matchAll(/(\d+) live peers/g)].pop();
      return m && Number(m[1]) >= 2 ? Number(m[1]) : null;
    }, 30000, 250);
    check(live >= 2, `tessera demo's coordinator counts ${live} live peers (its native peer and the tab)`);
    figures.browser_into_native_demo = { peer: st.peer.id, live_peers: live, tasks_run: (await status(tab)).peer.tasks_run };
    await tab.ctx.close();
  } finally {
    try { demo.kill("SIGTERM"); } catch {}
  }
}

main()
  .catch((e) => { failures++; log("ERROR", e.stack || e.message || e); })
  .finally(() => {
    for (const c of children) { try { c.kill("SIGTERM"); } catch {} }
    figures.failures = failures;
    figures.seconds = (Date.now() - t0) / 1000;
    try { writeFileSync(join(OUT, "figures.json"), JSON.stringify(figures, null, 2)); } catch {}
    console.log(JSON.stringify(figures, null, 2));
    log(failures ? `${failures} check(s) FAILED` : "all end-to-end checks passed");
    process.exit(failures ? 1 : 0);
  });
