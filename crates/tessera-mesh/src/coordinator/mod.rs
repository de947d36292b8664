//! The coordinator state machine: the hub of the mesh.
//!
//! It owns the model graph and the frame queue (every frame's inputs are
//! kept until its result is out: HyPS's hub), profiles each peer that joins
//! (Hello's device profile, RTT pings, a throughput probe), plans the model
//! over the live peers with a planner chosen by name, ships each peer only
//! its own tasks (ONNX sub-graphs with their weight slices), waits for every
//! ack, then streams frames through a [`tessera_runtime::Hub`] with a window
//! of frames in flight, returning results in submission order.
//!
//! It re-plans when a peer joins (once profiled), leaves or times out, or
//! drifts (runs ≥ 20 % slower than its profile predicts for N tasks in a
//! row), and on demand. A graceful re-plan (join, drift, request) keeps the
//! old plan running while the new one loads, then lets it drain. A lost peer
//! abandons every plan it was in; their unfinished frames are re-run from
//! their kept inputs on the new plan, so no frame is ever lost. With no live
//! peer at all it can run the model itself (`local_fallback`).

mod peers;
mod planning;
mod plans;
mod status;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tessera_graph::{Graph, Tensor};
use tessera_kernels::{Backend, CpuBackend};
use tessera_plan::planners;
use tessera_plan::{DeviceProfile, Plan};
use tessera_runtime::hub::Dispatch;
use tessera_runtime::{RunTask, TaskDone};

use crate::endpoint::{Endpoint, Received};
use crate::error::{ErrorCode, Result};
use crate::msg::{Msg, Welcome};
use crate::wire::{DEFAULT_CHUNK_BYTES, Limits};
use crate::{Input, Output, PeerId};

use peers::PeerEntry;
pub use peers::PeerState;
use plans::Active;
pub use plans::{Member, PlanState};
pub use status::{CoordinatorStatus, DeviceInfo, FrameCounts, PeerInfo, PlanInfo};

/// Frame number, in submission order from 0.
pub type FrameId = u64;

/// Makes the backend the coordinator runs tasks on when it has no peers.
pub type BackendFactory = Box<dyn Fn() -> Box<dyn Backend>>;

/// Knobs of the coordinator (serialisable, so the dashboard and the CLI can
/// pass them as JSON; every field has a default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoordinatorConfig {
    /// Model name recorded in plans.
    pub model: String,
    /// Planner name (`tessera_plan::planners::names()`).
    pub planner: String,
    /// `key=value` planner options.
    pub planner_options: Vec<(String, String)>,
    /// Most frames in flight.
    pub window: usize,
    /// Run the model on the coordinator when no peer is live.
    pub local_fallback: bool,
    /// Liveness / RTT ping period.
    pub ping_interval_ms: f64,
    /// A peer silent this long is dead.
    pub peer_timeout_ms: f64,
    /// A peer loading a plan may be silent this long.
    pub load_timeout_ms: f64,
    /// A peer with tasks in flight that finishes none for this long is
    /// dropped (its frames re-run elsewhere), though it answers pings: a
    /// hung GPU or a stuck page must not stall the stream.
    pub task_timeout_ms: f64,
    /// A join re-plan waits this long for other peers still probing.
    pub settle_ms: f64,
    /// Bytes of the throughput probe.
    pub probe_bytes: usize,
    /// Drift: live compute ≥ `drift_ratio` × predicted ...
    pub drift_ratio: f64,
    /// ... and at least `drift_min_ms` more ...
    pub drift_min_ms: f64,
    /// ... for this many consecutive tasks.
    pub drift_tasks: usize,
    /// Built-in profile assumed for peers that send none.
    pub default_profile: String,
    /// Chunk payload size of outgoing messages.
    pub chunk_bytes: usize,
    /// Reassembly limits for what peers send.
    pub limits: Limits,
    /// Seed for planners with randomness.
    pub seed: u64,
    /// HyPS's model-secret property: with two or more peers, no peer may
    /// receive the whole model. A plan from the chosen planner that gives
    /// one peer every weight (replicas, a single device) is replaced by the
    /// first of `secret_planners` that splits the weights.
    pub model_secret: bool,
    /// Fallback planners for `model_secret`, in order.
    pub secret_planners: Vec<String>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            model: "model".into(),
            planner: "tessera".into(),
            planner_options: Vec::new(),
            window: 4,
            local_fallback: true,
            ping_interval_ms: 1000.0,
            peer_timeout_ms: 15_000.0,
            load_timeout_ms: 120_000.0,
            task_timeout_ms: 60_000.0,
            settle_ms: 2000.0,
            probe_bytes: 256 * 1024,
            drift_ratio: 1.2,
            drift_min_ms: 1.0,
            drift_tasks: 8,
            default_profile: "local".into(),
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            limits: Limits::coordinator(),
            seed: 1,
            model_secret: false,
            secret_planners: vec!["hyps".into(), "dpm".into(), "deeperthings".into()],
        }
    }
}

struct FrameEntry {
    inputs: Vec<Tensor>,
    submitted_ms: f64,
    plan: Option<u32>,
    result: Option<std::result::Result<Vec<Tensor>, String>>,
}

/// A pending re-plan.
struct Want {
    reason: String,
    /// Forced by a loss: do not wait for probing peers.
    urgent: bool,
}

/// How many events the status keeps.
const EVENTS: usize = 32;
/// How many completions the IPS / latency figures average over.
const RECENT: usize = 64;
/// Dead peers kept in the table for the dashboard.
const DEAD_KEPT: usize = 32;

/// The coordinator state machine.
pub struct Coordinator {
    cfg: CoordinatorConfig,
    graph: Arc<Graph>,
    model_weight_bytes: u64,
    default_profile: DeviceProfile,
    now: f64,
    ep: Endpoint,
    peers: BTreeMap<PeerId, PeerEntry>,
    frames: BTreeMap<FrameId, FrameEntry>,
    queue: BTreeSet<FrameId>,
    next_frame: FrameId,
    next_out: FrameId,
    plans: BTreeMap<u32, Active>,
    current: Option<u32>,
    loading: Option<u32>,
    next_epoch: u32,
    want: Option<Want>,
    recovering_since: Option<f64>,
    local_backend: BackendFactory,
    clock: Box<dyn Fn() -> f64>,
    local_queue: VecDeque<(u32, RunTask)>,
    out: Vec<Output>,
    // Figures.
    submitted: u64,
    done: u64,
    delivered: u64,
    lost: u64,
    reruns: u64,
    replans: u32,
    last_reason: Option<String>,
    last_recovery_ms: Option<f64>,
    last_error: Option<String>,
    completions: VecDeque<(f64, f64)>,
    events: VecDeque<String>,
    weight_bytes_sent: u64,
}

impl Coordinator {
    /// A coordinator for `graph`, which must already be optimised
    /// (`tessera_graph::passes::optimize`): plans and tasks are cut from it
    /// as given. Fails only if `default_profile` names no built-in profile.
    pub fn new(graph: Arc<Graph>, cfg: CoordinatorConfig) -> Result<Coordinator> {
        let default_profile = tessera_plan::cluster::profile(&cfg.default_profile)?;
        let model_weight_bytes = graph.nodes().iter().map(|n| n.op.weight_bytes() as u64).sum();
        let ep = Endpoint::new(cfg.limits, cfg.chunk_bytes);
        Ok(Coordinator {
            cfg,
            graph,
            model_weight_bytes,
            default_profile,
            now: 0.0,
            ep,
            peers: BTreeMap::new(),
            frames: BTreeMap::new(),
            queue: BTreeSet::new(),
            next_frame: 0,
            next_out: 0,
            plans: BTreeMap::new(),
            current: None,
            loading: None,
            next_epoch: 1,
            want: None,
            recovering_since: None,
            local_backend: Box::new(|| Box::new(CpuBackend::new(1))),
            clock: Box::new(|| 0.0),
            local_queue: VecDeque::new(),
            out: Vec::new(),
            submitted: 0,
            done: 0,
            delivered: 0,
            lost: 0,
            reruns: 0,
            replans: 0,
            last_reason: None,
            last_recovery_ms: None,
            last_error: None,
            completions: VecDeque::new(),
            events: VecDeque::new(),
            weight_bytes_sent: 0,
        })
    }

    /// Uses `f` to make the backend for local fallback (default: one-thread CPU).
    pub fn with_local_backend(mut self, f: BackendFactory) -> Coordinator {
        self.local_backend = f;
        self
    }

    /// Times local tasks with `clock` (ms; default: none, 0 ms).
    pub fn with_clock(mut self, clock: Box<dyn Fn() -> f64>) -> Coordinator {
        self.clock = clock;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.cfg
    }

    /// The optimised model graph.
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// Weight bytes of the whole model.
    pub fn model_weight_bytes(&self) -> u64 {
        self.model_weight_bytes
    }

    // ---------------------------------------------------------------- API

    /// Feeds one input; returns what to send (including anything queued by
    /// `submit` / `replan` since the last call).
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        match input {
            Input::Connected(id) => self.on_connected(id),
            Input::Frame(from, bytes) => {
                if let Some(r) = self.ep.receive(from, &bytes, self.now, &mut self.out) {
                    self.on_message(from, r);
                } else if !self.peers.contains_key(&from) {
                    // Frames from a channel the driver never announced: track it so it can be closed.
                    self.peers.insert(from, PeerEntry::new(from, self.now));
                }
            }
            Input::Disconnected(id) => self.mark_dead(id, "disconnected", false),
            Input::Tick { now_ms } => self.on_tick(now_ms),
        }
        self.progress();
        std::mem::take(&mut self.out)
    }

    /// Queues a frame (graph inputs in order); returns its id. Frames run
    /// as soon as a plan is ready; call [`Coordinator::take_outputs`] (or
    /// the next `handle`) to get the messages this caused.
    pub fn submit(&mut self, inputs: Vec<Tensor>) -> Result<FrameId> {
        self.graph.check_inputs(&inputs)?;
        let id = self.next_frame;
        self.next_frame += 1;
        self.frames.insert(id, FrameEntry { inputs, submitted_ms: self.now, plan: None, result: None });
        self.queue.insert(id);
        self.submitted += 1;
        self.progress();
        Ok(id)
    }

    /// Results of completed frames, in submission order (a frame is
    /// returned once every earlier frame has been).
    pub fn take_results(&mut self) -> Vec<(FrameId, Vec<Tensor>)> {
        let mut out = Vec::new();
        while let Some(e) = self.frames.get(&self.next_out) {
            if e.result.is_none() {
                break;
            }
            let e = self.frames.remove(&self.next_out).expect("present");
            if let Some(Ok(t)) = e.result {
                out.push((self.next_out, t));
            }
            self.delivered += 1;
            self.next_out += 1;
        }
        out
    }

    /// Messages queued since the last `handle` / `take_outputs`.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// Re-plans now on the live peers (the dashboard's button).
    pub fn replan(&mut self) {
        self.want_replan("requested", true);
        self.progress();
    }

    /// Switches planner (re-plans). Fails on an unknown name.
    pub fn set_planner(&mut self, name: &str, options: Vec<(String, String)>) -> Result<()> {
        planners::by_name(name)?;
        self.cfg.planner = name.to_string();
        self.cfg.planner_options = options;
        self.want_replan(&format!("planner set to {name}"), true);
        self.progress();
        Ok(())
    }

    /// Changes the number of frames in flight.
    pub fn set_window(&mut self, window: usize) {
        self.cfg.window = window.max(1);
        self.progress();
    }

    /// Says goodbye to every peer (Bye, then close) before the coordinator
    /// goes away; returns what to send.
    pub fn shutdown(&mut self, reason: &str) -> Vec<Output> {
        let ids: Vec<PeerId> = self.live_peers();
        for id in ids {
            self.ep.send(id, &Msg::Bye { reason: reason.to_string() }, &mut self.out);
            self.ep.close(id, reason, &mut self.out);
            if let Some(p) = self.peers.get_mut(&id) {
                p.state = PeerState::Dead;
                p.dead_reason = Some(format!("coordinator shut down: {reason}"));
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Frames submitted and not yet returned by `take_results`.
    pub fn pending_frames(&self) -> usize {
        self.frames.len()
    }

    /// Ids of the live peers (profiled or not).
    pub fn live_peers(&self) -> Vec<PeerId> {
        self.peers.values().filter(|p| p.alive()).map(|p| p.id).collect()
    }

    /// Epoch of the plan frames are admitted to, if any.
    pub fn current_plan(&self) -> Option<u32> {
        self.current
    }

    /// The plan frames are admitted to.
    pub fn plan(&self) -> Option<&Plan> {
        self.current.and_then(|e| self.plans.get(&e)).map(|a| &a.plan)
    }

    /// True while a plan is being shipped.
    pub fn is_loading(&self) -> bool {
        self.loading.is_some()
    }

    // ------------------------------------------------------------ inputs

    fn event(&mut self, e: String) {
        if self.events.len() == EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(format!("[{:.0} ms] {e}", self.now));
    }

    fn on_connected(&mut self, id: PeerId) {
        if self.peers.get(&id).is_some_and(|p| p.alive()) {
            // A reconnect on the same id: the old session is gone.
            self.mark_dead(id, "reconnected", false);
        }
        self.ep.open(id);
        self.peers.insert(id, PeerEntry::new(id, self.now));
        self.prune_dead();
        self.event(format!("peer {id} connected"));
    }

    fn prune_dead(&mut self) {
        let dead: Vec<PeerId> = self.peers.values().filter(|p| !p.alive()).map(|p| p.id).collect();
        if dead.len() > DEAD_KEPT {
            for id in &dead[..dead.len() - DEAD_KEPT] {
                self.peers.remove(id);
                self.ep.remove(*id);
            }
        }
    }

    fn on_tick(&mut self, now: f64) {
        if now > self.now {
            self.now = now;
        }
        let now = self.now;
        let loading_pending: BTreeSet<PeerId> = self.loading.and_then(|e| self.plans.get(&e)).map(|a| a.pending.clone()).unwrap_or_default();
        let mut dead = Vec::new();
        let mut ping = Vec::new();
        for p in self.peers.values() {
            if !p.alive() {
                continue;
            }
            let limit = if loading_pending.contains(&p.id) { self.cfg.load_timeout_ms } else { self.cfg.peer_timeout_ms };
            if now - p.last_heard_ms > limit {
                let what = if p.state == PeerState::Joining { "sent no hello" } else { "silent" };
                dead.push((p.id, format!("timed out ({what} for {:.0} ms)", now - p.last_heard_ms)));
            } else if p.in_flight_total() > 0 && now - p.progress_ms > self.cfg.task_timeout_ms {
                dead.push((p.id, format!("stuck ({} tasks in flight, none done for {:.0} ms)", p.in_flight_total(), now - p.progress_ms)));
            } else if p.state != PeerState::Joining && now - p.last_ping_ms >= self.cfg.ping_interval_ms {
                ping.push(p.id);
            }
        }
        for (id, why) in dead {
            self.mark_dead(id, &why, true);
        }
        for id in ping {
            self.ping(id);
        }
        self.ep.gc(now);
    }

    fn ping(&mut self, id: PeerId) {
        let now = self.now;
        let Some(p) = self.peers.get_mut(&id) else { return };
        p.ping_seq = p.ping_seq.wrapping_add(1);
        let seq = p.ping_seq;
        if p.pings.len() >= 16 {
            p.pings.clear();
        }
        p.pings.insert(seq, now);
        p.last_ping_ms = now;
        self.ep.send(id, &Msg::Ping { seq, sent_ms: now }, &mut self.out);
    }

    fn on_message(&mut self, from: PeerId, r: Received) {
        let now = self.now;
        let Some(p) = self.peers.get_mut(&from) else {
            self.peers.insert(from, PeerEntry::new(from, now));
            self.ep.refuse(from, ErrorCode::UNEXPECTED, r.id, "no channel was announced for this peer", &mut self.out);
            return;
        };
        if !p.alive() {
            return;
        }
        p.last_heard_ms = now;
        let state = p.state;
        match r.msg {
            Msg::Hello(h) if state == PeerState::Joining => {
                p.name = if h.name.trim().is_empty() { format!("peer-{from}") } else { h.name.chars().take(64).collect() };
                p.backend = h.backend;
                p.agent = h.agent;
                p.weight_refs = h.caps.iter().any(|c| c == crate::weights::CAP);
                p.caps = h.caps;
                p.profile = h.profile;
                p.state = PeerState::Probing;
                let name = p.name.clone();
                let w = Welcome { peer: from, model: self.cfg.model.clone(), planner: self.cfg.planner.clone() };
                self.ep.send(from, &Msg::Welcome(w), &mut self.out);
                self.ping(from);
                self.event(format!("peer {from} is '{name}'"));
            }
            Msg::Pong { seq, .. } => {
                if let Some(sent) = p.pings.remove(&seq) {
                    p.rtt_sample(now - sent);
                }
                if p.state == PeerState::Probing && p.probe.is_none() {
                    p.ping_seq = p.ping_seq.wrapping_add(1);
                    let seq = p.ping_seq;
                    let n = self.cfg.probe_bytes;
                    p.probe = Some((seq, now, n));
                    self.ep.send(from, &Msg::Probe { seq, filler: vec![0u8; n] }, &mut self.out);
                }
            }
            Msg::ProbeAck { seq, bytes } => {
                if let Some((s, sent, n)) = p.probe
                    && s == seq
                    && p.state == PeerState::Probing
                {
                    let rtt = p.rtt_ms.unwrap_or(0.0);
                    // Serialisation time of the probe: total minus one round
                    // trip — the smallest one seen, since a peer busy joining
                    // answers its first pings late — and never credited with
                    // more than 10 Gbit/s.
                    let transfer_ms = (now - sent - p.rtt_min_ms.unwrap_or(0.0)).max(n as f64 * 8.0 / 1e7);
                    p.mbps = Some((bytes.min(n as u64) as f64 * 8.0 / (transfer_ms * 1e3)).clamp(0.01, 10_000.0));
                    p.state = PeerState::Live;
                    let msg = format!("peer {from} profiled: rtt {:.2} ms, {:.0} Mbit/s", rtt, p.mbps.unwrap_or(0.0));
                    let name = p.name.clone();
                    self.event(msg);
                    self.want_replan(&format!("peer {name} joined"), false);
                }
            }
            Msg::LoadAck(a) => {
                let Some(act) = self.plans.get_mut(&a.plan) else { return };
                if act.state == PlanState::Loading && act.pending.remove(&from) {
                    p.weight_bytes = a.weight_bytes;
                    if act.pending.is_empty() {
                        self.activate(a.plan);
                    }
                }
            }
            Msg::Done { plan, done } => self.on_done(from, plan, done, r.wire_bytes as u64),
            Msg::Error(e) => {
                let name = p.name.clone();
                self.last_error = Some(format!("peer {name}: {}: {}", e.code, e.text));
                self.event(format!("peer {from} reports {}: {}", e.code, e.text));
                if e.code == ErrorCode::MISSING_WEIGHTS {
                    self.resend_in_full(from);
                } else if e.code == ErrorCode::TASK_FAILED || e.code == ErrorCode::LOAD_FAILED {
                    self.mark_dead(from, &format!("cannot run its tasks ({}: {})", e.code, e.text), true);
                }
            }
            Msg::Bye { reason } => self.mark_dead(from, &format!("left ({reason})"), true),
            Msg::Backend(b) if state != PeerState::Joining => {
                // The peer's device changed under it (its GPU fell back to the
                // CPU). With a fresh profile, re-plan on it now; without one,
                // the drift check re-plans once its tasks run slower.
                let name = p.name.clone();
                let changed = p.backend != b.backend;
                p.backend = b.backend.chars().take(200).collect();
                let fresh = b.profile.is_some();
                if let Some(profile) = b.profile {
                    p.profile = Some(profile);
                    p.speed = 1.0;
                }
                for n in b.notes.iter().take(8) {
                    self.event(format!("peer {name}: {}", n.chars().take(300).collect::<String>()));
                }
                if changed {
                    self.event(format!("peer {name} now computes on {}", b.backend.chars().take(200).collect::<String>()));
                }
                // Only a real change re-plans (a chatty peer cannot keep the mesh re-planning).
                if fresh && changed {
                    self.want_replan(&format!("peer {name} changed backend"), false);
                }
            }
            Msg::Ping { seq, sent_ms } => {
                self.ep.send(from, &Msg::Pong { seq, sent_ms, peer_ms: now }, &mut self.out);
            }
            other => {
                let text = format!("the coordinator does not accept {} messages here", other.kind().name());
                self.ep.refuse(from, ErrorCode::UNEXPECTED, r.id, &text, &mut self.out);
            }
        }
    }

    fn on_done(&mut self, from: PeerId, epoch: u32, mut done: TaskDone, wire: u64) {
        let now = self.now;
        let Some(act) = self.plans.get_mut(&epoch) else { return }; // a stale plan
        let Some(device) = act.device_of(from) else {
            self.ep.refuse(from, ErrorCode::UNEXPECTED, 0, &format!("not a member of plan {epoch}"), &mut self.out);
            return;
        };
        let (s, k) = (done.stage, done.task);
        let owns = act.program.stages.get(s).and_then(|st| st.tasks.get(k)).is_some_and(|t| t.device == device);
        if !owns || !act.frames.contains(&done.frame) {
            let text = format!("task {s}/{k} of frame {} is not yours to finish in plan {epoch}", done.frame);
            self.ep.refuse(from, ErrorCode::UNEXPECTED, 0, &text, &mut self.out);
            return;
        }
        done.device = device;
        let predicted = act.predicted_ms[s][k];
        let tensor = done.bytes() as u64;
        act.traffic.done_wire += wire;
        act.traffic.done_tensor += tensor;
        let p = self.peers.get_mut(&from).expect("members are in the table");
        p.tensor_bytes_in += tensor;
        let drift = p.task_done(epoch, now, done.compute_ms, predicted, self.cfg.drift_ratio, self.cfg.drift_min_ms, self.cfg.drift_tasks);
        if let Some(ratio) = drift {
            p.speed *= ratio;
            p.drift_pending = true;
            let name = p.name.clone();
            self.want_replan(&format!("peer {name} drifted: {ratio:.2}x slower than its profile"), false);
        }
        self.complete(epoch, Member::Peer(from), done);
    }

    // ---------------------------------------------------------- frames

    /// Total frames in flight over all plans.
    fn in_flight(&self) -> usize {
        self.plans.values().map(|a| a.frames.len()).sum()
    }

    /// Admits queued frames and runs local tasks until nothing moves.
    fn progress(&mut self) {
        loop {
            self.maybe_replan();
            let mut moved = false;
            if let Some(cur) = self.current {
                while self.in_flight() < self.cfg.window.max(1) {
                    let Some(f) = self.queue.pop_first() else { break };
                    self.admit(cur, f);
                    moved = true;
                    if self.current != Some(cur) {
                        break;
                    }
                }
            }
            if let Some((epoch, task)) = self.local_queue.pop_front() {
                self.run_local(epoch, task);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    fn admit(&mut self, epoch: u32, f: FrameId) {
        let Some(fe) = self.frames.get_mut(&f) else { return };
        let inputs = fe.inputs.clone();
        let act = self.plans.get_mut(&epoch).expect("current plan exists");
        match act.hub.admit(f, inputs) {
            Ok(dispatches) => {
                fe.plan = Some(epoch);
                act.frames.insert(f);
                for d in dispatches {
                    self.dispatch(epoch, d);
                }
            }
            Err(e) => {
                // Inputs were checked at submit: this is a bug, not bad input.
                fe.result = Some(Err(e.to_string()));
                self.lost += 1;
                self.last_error = Some(format!("frame {f}: {e}"));
            }
        }
    }

    fn dispatch(&mut self, epoch: u32, d: Dispatch) {
        let Some(act) = self.plans.get_mut(&epoch) else { return };
        match act.members[d.device] {
            Member::Local => self.local_queue.push_back((epoch, d.task)),
            Member::Peer(id) => {
                let tensor = d.task.bytes() as u64;
                let wire = self.ep.send(id, &Msg::Run { plan: epoch, task: d.task }, &mut self.out);
                act.traffic.run_wire += wire;
                act.traffic.run_tensor += tensor;
                if let Some(p) = self.peers.get_mut(&id) {
                    p.task_sent(epoch, self.now);
                    p.tensor_bytes_out += tensor;
                }
            }
        }
    }

    fn run_local(&mut self, epoch: u32, task: RunTask) {
        let Some(act) = self.plans.get_mut(&epoch) else { return };
        let Some(runner) = act.local.as_mut() else { return };
        let clock = &self.clock;
        match runner.run(task, &|| clock()) {
            Ok(done) => self.complete(epoch, Member::Local, done),
            Err(e) => {
                // The coordinator's own plan failed: nothing else can run these frames.
                self.last_error = Some(format!("local run failed: {e}"));
                self.fail_plan(epoch, &e.to_string());
            }
        }
    }

    fn complete(&mut self, epoch: u32, who: Member, done: TaskDone) {
        let Some(act) = self.plans.get_mut(&epoch) else { return };
        match act.hub.complete(done) {
            Ok((dispatches, finished)) => {
                for d in dispatches {
                    self.dispatch(epoch, d);
                }
                if let Some((f, outs)) = finished {
                    self.finish(epoch, f, outs);
                }
            }
            Err(e) => match who {
                Member::Peer(id) => self.mark_dead(id, &format!("sent outputs that do not fit the plan: {e}"), true),
                Member::Local => self.fail_plan(epoch, &e.to_string()),
            },
        }
    }

    fn finish(&mut self, epoch: u32, f: FrameId, outs: Vec<Tensor>) {
        let now = self.now;
        let Some(act) = self.plans.get_mut(&epoch) else { return };
        act.frames.remove(&f);
        act.traffic.frames_done += 1;
        if let Some(r) = act.local.as_mut() {
            r.forget(f);
        }
        let members: Vec<PeerId> = act.members.iter().filter_map(|m| if let Member::Peer(id) = m { Some(*id) } else { None }).collect();
        let drained = act.state == PlanState::Draining && act.frames.is_empty();
        if let Some(fe) = self.frames.get_mut(&f) {
            fe.result = Some(Ok(outs));
            fe.plan = None;
            if self.completions.len() == RECENT {
                self.completions.pop_front();
            }
            self.completions.push_back((now, now - fe.submitted_ms));
        }
        self.done += 1;
        for id in members {
            self.ep.send(id, &Msg::Forget { frame: f }, &mut self.out);
        }
        if drained {
            self.drop_plan(epoch);
        }
    }

    /// A plan that cannot complete its frames (local failure): its frames
    /// are marked lost so results keep flowing in order.
    fn fail_plan(&mut self, epoch: u32, why: &str) {
        if let Some(act) = self.plans.remove(&epoch) {
            for f in act.frames {
                if let Some(fe) = self.frames.get_mut(&f) {
                    fe.result = Some(Err(why.to_string()));
                    self.lost += 1;
                }
            }
            self.local_queue.retain(|(e, _)| *e != epoch);
            if self.current == Some(epoch) {
                self.current = None;
            }
            self.cfg.local_fallback = false;
            self.event(format!("plan {epoch} failed on the coordinator: {why}; local fallback disabled"));
        }
    }

    // --------------------------------------------------------- failures

    fn mark_dead(&mut self, id: PeerId, why: &str, close: bool) {
        let Some(p) = self.peers.get_mut(&id) else { return };
        if !p.alive() {
            return;
        }
        let was_live = p.state == PeerState::Live;
        p.state = PeerState::Dead;
        p.dead_reason = Some(why.to_string());
        p.in_flight.clear();
        let name = p.name.clone();
        if close {
            self.ep.close(id, why, &mut self.out);
        }
        self.event(format!("peer {id} ('{name}') lost: {why}"));
        let affected: Vec<u32> = self.plans.values().filter(|a| a.has_peer(id)).map(|a| a.epoch).collect();
        let mut had_work = false;
        for e in affected {
            had_work |= self.plans.get(&e).is_some_and(|a| a.state != PlanState::Loading || !a.frames.is_empty());
            self.abandon(e);
        }
        if had_work || was_live {
            if had_work && self.recovering_since.is_none() {
                self.recovering_since = Some(self.now);
            }
            self.want_replan(&format!("peer {name} lost: {why}"), true);
        }
    }

    /// Drops a plan that can no longer finish (a member is gone): its
    /// unfinished frames go back to the queue, to re-run from their inputs.
    fn abandon(&mut self, epoch: u32) {
        let Some(act) = self.plans.remove(&epoch) else { return };
        for f in &act.frames {
            if let Some(fe) = self.frames.get_mut(f) {
                fe.plan = None;
                self.queue.insert(*f);
                self.reruns += 1;
            }
        }
        self.local_queue.retain(|(e, _)| *e != epoch);
        for m in &act.members {
            if let Member::Peer(pid) = m {
                if self.peers.get(pid).is_some_and(|p| p.alive()) {
                    self.ep.send(*pid, &Msg::Unload { plan: epoch }, &mut self.out);
                }
                if let Some(p) = self.peers.get_mut(pid) {
                    p.in_flight.remove(&epoch);
                    p.held_weights.remove(&epoch);
                }
            }
        }
        if self.current == Some(epoch) {
            self.current = None;
        }
        if self.loading == Some(epoch) {
            self.loading = None;
        }
        self.event(format!("plan {epoch} abandoned; {} frame(s) will re-run", act.frames.len()));
    }

    /// Unloads a finished plan everywhere.
    fn drop_plan(&mut self, epoch: u32) {
        let Some(act) = self.plans.remove(&epoch) else { return };
        for m in &act.members {
            if let Member::Peer(pid) = m
                && let Some(p) = self.peers.get_mut(pid)
            {
                p.held_weights.remove(&epoch);
                p.in_flight.remove(&epoch);
                if p.alive() {
                    self.ep.send(*pid, &Msg::Unload { plan: epoch }, &mut self.out);
                }
            }
        }
    }
}
