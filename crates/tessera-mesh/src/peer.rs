//! The peer state machine: what a phone tab, a laptop or a Jetson runs.
//! It introduces itself (name, backend, capabilities, device profile),
//! answers RTT and throughput probes, loads the tasks the coordinator ships
//! (ONNX sub-graphs with only its slice of the weights), runs them on its
//! backend and returns their outputs, timed with an injected clock.
//!
//! No I/O, threads or clocks of its own: a driver feeds it [`Input`]s and
//! carries out the [`Output`]s, in the browser and natively alike. Tasks
//! run inside `handle` (a native peer), one per [`Peer::run_next`] (a
//! browser peer on the CPU, which must stay responsive), or are taken out
//! and handed back ([`Peer::next_task`] / [`Peer::complete`]) by a driver
//! whose kernels complete asynchronously (the browser's WebGPU).
//!
//! When the backend changes underneath (a GPU lost, the CPU taking over:
//! `Backend::take_notes`), the peer tells the coordinator in a `Backend`
//! message, with a fresh profile when the driver gave it a way to measure
//! one ([`Peer::with_reprofile`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use tessera_graph::Tensor;
use tessera_kernels::{Backend, KernelError, RunFuture};
use tessera_plan::DeviceProfile;
use tessera_runtime::{Job, RunTask, Runner};

use crate::endpoint::{Endpoint, LinkCounters, Received};
use crate::error::{ErrorCode, MeshError};
use crate::msg::{BackendNote, Hello, LoadAck, LoadPlan, Msg};
use crate::weights;
use crate::wire::{DEFAULT_CHUNK_BYTES, Limits};
use crate::{Input, Output, PeerId};

/// Measures a profile of a backend (see [`Peer::with_reprofile`]).
pub type Reprofile = Box<dyn Fn(&dyn Backend) -> Option<DeviceProfile>>;

/// How many recent task latencies the status keeps.
const RECENT: usize = 16;

/// What a peer says about itself and how it frames messages.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Display name.
    pub name: String,
    /// Capabilities announced in Hello ("webgpu", "simd128", "threads").
    pub caps: Vec<String>,
    /// The device's latency tables (`tessera profile` or the page's
    /// self-profile); without one the coordinator assumes a default.
    pub profile: Option<DeviceProfile>,
    /// Chunk payload size for outgoing messages.
    pub chunk_bytes: usize,
    /// Reassembly limits for incoming messages (plans can be large).
    pub limits: Limits,
    /// Most plans held at once (the running one, the one draining, the one
    /// loading); older ones are dropped first.
    pub max_plans: usize,
    /// Queue Run messages instead of running them inside `handle`: the
    /// driver then calls [`Peer::run_next`], so it can stay responsive
    /// (answer pings, repaint) between tasks.
    pub defer_runs: bool,
}

impl PeerConfig {
    /// Defaults for a peer called `name`.
    pub fn new(name: impl Into<String>) -> PeerConfig {
        PeerConfig {
            name: name.into(),
            caps: Vec::new(),
            profile: None,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            limits: Limits::peer(),
            max_plans: 3,
            defer_runs: false,
        }
    }
}

struct Loaded {
    device: usize,
    runner: Runner,
    labels: Vec<String>,
    summary: String,
    weight_bytes: u64,
    bytes_received: u64,
    /// Its weights by content hash: what later plans may refer to.
    weights: HashMap<u64, Arc<Tensor>>,
    /// Unique per load on this peer: a task taken from an earlier load
    /// under the same plan number (a new coordinator counts from 1 again)
    /// is not handed back to this one.
    load_id: u64,
}

/// A snapshot for the peer page.
#[derive(Clone, Debug, Serialize)]
pub struct PeerStatus {
    pub role: &'static str,
    pub name: String,
    pub backend: String,
    pub caps: Vec<String>,
    pub connected: bool,
    /// The id the coordinator gave this peer.
    pub id: Option<PeerId>,
    pub model: String,
    /// The newest plan held, its device index and what it does.
    pub plan: Option<u32>,
    pub plans_held: Vec<u32>,
    pub device: Option<usize>,
    pub summary: String,
    /// One line per task held (layers and tile/channel range).
    pub tasks: Vec<String>,
    /// Weight bytes held for the newest plan.
    pub weight_bytes: u64,
    /// Payload bytes of all plans received.
    pub plan_bytes_received: u64,
    pub tasks_run: u64,
    /// Tasks received and not yet run.
    pub queue: usize,
    /// Tasks taken by [`Peer::next_task`] and not yet completed.
    pub in_flight: usize,
    /// What the backend reported while serving (fallbacks), oldest first.
    pub backend_notes: Vec<String>,
    pub last_latencies_ms: Vec<f64>,
    pub mean_latency_ms: f64,
    pub link: LinkCounters,
    pub last_error: Option<String>,
}

/// The peer state machine.
pub struct Peer {
    cfg: PeerConfig,
    backend: Box<dyn Backend>,
    clock: Box<dyn Fn() -> f64>,
    ep: Endpoint,
    coordinator: Option<PeerId>,
    my_id: Option<PeerId>,
    model: String,
    plans: BTreeMap<u32, Loaded>,
    /// Recently dropped plans: late Runs for them are ignored, not errors.
    unloaded: VecDeque<u32>,
    queue: VecDeque<(u32, u32, RunTask)>,
    now: f64,
    tasks_run: u64,
    total_ms: f64,
    recent: VecDeque<f64>,
    plan_bytes: u64,
    last_error: Option<String>,
    in_flight: usize,
    backend_notes: Vec<String>,
    reprofile: Option<Reprofile>,
    /// The backend name the coordinator last heard (Hello or Backend).
    last_backend: Option<String>,
    /// Plans loaded so far (numbers each load).
    loads: u64,
    out: Vec<Output>,
}

/// A task taken out of the peer to run without blocking it (the browser's
/// WebGPU): [`Peer::next_task`] → [`PendingTask::execute`] (await) →
/// [`Peer::complete`]. Meanwhile the peer keeps handling messages.
pub struct PendingTask {
    about: u32,
    plan: u32,
    load_id: u64,
    job: Job,
}

impl PendingTask {
    /// Runs the task's kernels.
    pub fn execute(&mut self) -> RunFuture<'_> {
        self.job.execute()
    }

    /// "frame F, task S/K" (for logs).
    pub fn label(&self) -> String {
        format!("frame {}, task {}/{}", self.job.frame, self.job.stage, self.job.task)
    }
}

impl Peer {
    /// A peer running tasks on `backend`, timing them with `clock`
    /// (milliseconds, monotonic: `performance.now()` in the browser,
    /// `Instant` natively).
    pub fn new(cfg: PeerConfig, backend: Box<dyn Backend>, clock: Box<dyn Fn() -> f64>) -> Peer {
        let ep = Endpoint::new(cfg.limits, cfg.chunk_bytes);
        Peer {
            cfg,
            backend,
            clock,
            ep,
            coordinator: None,
            my_id: None,
            model: String::new(),
            plans: BTreeMap::new(),
            unloaded: VecDeque::new(),
            queue: VecDeque::new(),
            now: 0.0,
            tasks_run: 0,
            total_ms: 0.0,
            recent: VecDeque::new(),
            plan_bytes: 0,
            last_error: None,
            in_flight: 0,
            backend_notes: Vec::new(),
            reprofile: None,
            last_backend: None,
            loads: 0,
            out: Vec::new(),
        }
    }

    /// Measures a fresh profile with `f` when the backend changes under the
    /// peer (natively: `tessera_runtime::profile::measure` on the backend,
    /// ~1 s), so the coordinator re-plans on what the peer now is at once
    /// rather than after its tasks drift.
    pub fn with_reprofile(mut self, f: Reprofile) -> Peer {
        self.reprofile = Some(f);
        self
    }

    /// The Hello this peer introduces itself with.
    pub fn hello(&self) -> Hello {
        Hello {
            name: self.cfg.name.clone(),
            backend: self.backend.name(),
            agent: format!("tessera-mesh {} ({})", env!("CARGO_PKG_VERSION"), std::env::consts::ARCH),
            caps: self.cfg.caps.iter().cloned().chain((!self.cfg.caps.iter().any(|c| c == weights::CAP)).then(|| weights::CAP.to_string())).collect(),
            profile: self.cfg.profile.clone(),
        }
    }

    /// Forgets which weights it holds (tests: a later plan's references
    /// then go unresolved, as after a lost plan).
    #[doc(hidden)]
    pub fn forget_weights(&mut self) {
        for l in self.plans.values_mut() {
            l.weights.clear();
        }
    }

    /// Feeds one input; returns what to send.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        match input {
            Input::Connected(id) => {
                if self.coordinator.is_some_and(|c| c != id) {
                    self.out.push(Output::Close(id, "a peer talks to exactly one coordinator".into()));
                } else {
                    self.reset();
                    self.coordinator = Some(id);
                    self.ep.open(id);
                    let hello = Msg::Hello(self.hello());
                    self.last_backend = Some(self.backend.name());
                    self.ep.send(id, &hello, &mut self.out);
                    // What the backend went through so far (no GPU, a
                    // fallback), for this coordinator too.
                    self.take_backend_notes();
                    if !self.backend_notes.is_empty() {
                        let note = BackendNote { backend: self.backend.name(), notes: self.backend_notes.clone(), profile: None };
                        self.ep.send(id, &Msg::Backend(note), &mut self.out);
                    }
                }
            }
            Input::Frame(from, bytes) => {
                if self.coordinator == Some(from)
                    && let Some(r) = self.ep.receive(from, &bytes, self.now, &mut self.out)
                {
                    self.on_message(from, r);
                }
            }
            Input::Disconnected(id) => {
                if self.coordinator == Some(id) {
                    self.reset();
                    self.ep.remove(id);
                }
            }
            Input::Tick { now_ms } => {
                self.now = now_ms;
                self.ep.gc(now_ms);
                // A backend can change between tasks (a browser learns of a
                // lost GPU from a callback): report it without waiting for one.
                self.report_backend();
            }
        }
        if !self.cfg.defer_runs {
            while !self.queue.is_empty() {
                self.run_next_into();
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Leaves the room: Bye to the coordinator, then close.
    pub fn leave(&mut self, reason: &str) -> Vec<Output> {
        if let Some(c) = self.coordinator {
            self.ep.send(c, &Msg::Bye { reason: reason.to_string() }, &mut self.out);
            self.ep.close(c, reason, &mut self.out);
            self.reset();
        }
        std::mem::take(&mut self.out)
    }

    /// Tasks received and not yet run (only with `defer_runs`).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Runs the oldest queued task (with `defer_runs`); returns what to send.
    pub fn run_next(&mut self) -> Vec<Output> {
        self.run_next_into();
        std::mem::take(&mut self.out)
    }

    fn reset(&mut self) {
        self.coordinator = None;
        self.my_id = None;
        self.plans.clear();
        self.queue.clear();
        self.unloaded.clear();
    }

    fn on_message(&mut self, from: PeerId, r: Received) {
        let about = r.id;
        match r.msg {
            Msg::Welcome(w) => {
                self.my_id = Some(w.peer);
                self.model = w.model;
            }
            Msg::LoadPlan(p) => self.load(from, about, p, r.payload_bytes as u64),
            Msg::Run { plan, task } => self.queue.push_back((about, plan, task)),
            Msg::Forget { frame } => {
                for l in self.plans.values_mut() {
                    l.runner.forget(frame);
                }
            }
            Msg::Unload { plan } => self.unload(plan),
            Msg::Ping { seq, sent_ms } => {
                let now = self.now;
                self.ep.send(from, &Msg::Pong { seq, sent_ms, peer_ms: now }, &mut self.out);
            }
            Msg::Probe { seq, filler } => {
                self.ep.send(from, &Msg::ProbeAck { seq, bytes: filler.len() as u64 }, &mut self.out);
            }
            Msg::Error(e) => self.last_error = Some(format!("coordinator: {}: {}", e.code, e.text)),
            Msg::Bye { reason } => {
                self.last_error = Some(format!("coordinator left: {reason}"));
                self.plans.clear();
                self.queue.clear();
            }
            other => {
                let text = format!("a peer does not accept {} messages", other.kind().name());
                self.ep.refuse(from, ErrorCode::UNEXPECTED, about, &text, &mut self.out);
            }
        }
    }

    fn unload(&mut self, plan: u32) {
        self.plans.remove(&plan);
        self.queue.retain(|q| q.1 != plan);
        if !self.unloaded.contains(&plan) {
            if self.unloaded.len() == 16 {
                self.unloaded.pop_front();
            }
            self.unloaded.push_back(plan);
        }
    }

    fn load(&mut self, from: PeerId, about: u32, p: LoadPlan, bytes: u64) {
        self.plan_bytes += bytes;
        let t0 = (self.clock)();
        self.loads += 1;
        let load_id = self.loads;
        // Weights sent by reference come from the plans held (shared).
        let held = tessera_onnx::ExternalWeights(Arc::new(self.plans.values().flat_map(|l| l.weights.iter().map(|(h, t)| (weights::location(*h), t.clone()))).collect()));
        let res = (|| -> Result<Loaded, MeshError> {
            let mut labels = Vec::with_capacity(p.tasks.len());
            let mut tasks = Vec::with_capacity(p.tasks.len());
            let mut named = HashMap::new();
            for t in p.tasks {
                labels.push(t.meta.label.clone());
                let task = t.into_peer_task_with(held.clone())?;
                named.extend(weights::named(&task.graph));
                tasks.push(task);
            }
            let runner = Runner::new(p.device, tasks, self.backend.as_ref())?;
            let weight_bytes = runner.weight_bytes() as u64;
            Ok(Loaded { device: p.device, runner, labels, summary: p.summary, weight_bytes, bytes_received: bytes, weights: named, load_id })
        })();
        match res {
            Ok(l) => {
                let ack = LoadAck {
                    plan: p.plan,
                    tasks: l.labels.len(),
                    weight_bytes: l.weight_bytes,
                    bytes_received: l.bytes_received,
                    load_ms: (self.clock)() - t0,
                };
                self.plans.insert(p.plan, l);
                while self.plans.len() > self.cfg.max_plans.max(1) {
                    let oldest = *self.plans.keys().next().expect("non-empty");
                    self.unload(oldest);
                }
                self.ep.send(from, &Msg::LoadAck(ack), &mut self.out);
                self.report_backend();
            }
            Err(e) => {
                let text = format!("plan {}: {e}", p.plan);
                self.last_error = Some(text.clone());
                // Weights referred to but dropped meanwhile: the coordinator resends.
                let code = if matches!(e, MeshError::Onnx(tessera_onnx::OnnxError::MissingExternal { .. })) { ErrorCode::MISSING_WEIGHTS } else { ErrorCode::LOAD_FAILED };
                self.ep.refuse(from, code, about, &text, &mut self.out);
            }
        }
    }

    /// Runs the oldest queued task here and now; a backend that cannot
    /// complete synchronously fails the task (use [`Self::next_task`]).
    fn run_next_into(&mut self) {
        let Some(mut t) = self.take_task() else { return };
        let t0 = (self.clock)();
        let res = tessera_kernels::ready_now(t.execute()).unwrap_or_else(|| Err(KernelError::Device { backend: self.backend.name(), msg: "this backend completes asynchronously: drive the peer with next_task / complete".into() }));
        let ms = (self.clock)() - t0;
        self.complete_into(t, res, ms);
    }

    /// Takes the oldest queued task that can run (with `defer_runs`), its
    /// inputs assembled, for the driver to execute and hand back to
    /// [`Self::complete`]. Returns also what to send (refusals of tasks
    /// that cannot run). One at a time: a task's executable is lent to the
    /// pending task until it is completed.
    pub fn next_task(&mut self) -> (Option<PendingTask>, Vec<Output>) {
        let t = self.take_task();
        (t, std::mem::take(&mut self.out))
    }

    /// Hands back a task from [`Self::next_task`] with what its kernels
    /// returned and the time they took (ms); returns what to send.
    pub fn complete(&mut self, task: PendingTask, outputs: Result<Vec<Tensor>, KernelError>, compute_ms: f64) -> Vec<Output> {
        self.complete_into(task, outputs, compute_ms);
        std::mem::take(&mut self.out)
    }

    fn take_task(&mut self) -> Option<PendingTask> {
        while let Some((about, plan, task)) = self.queue.pop_front() {
            let to = self.coordinator?;
            let label = format!("frame {}, task {}/{}", task.frame, task.stage, task.task);
            let Some(l) = self.plans.get_mut(&plan) else {
                if !self.unloaded.contains(&plan) {
                    let text = format!("plan {plan} is not loaded here ({label})");
                    self.ep.refuse(to, ErrorCode::TASK_FAILED, about, &text, &mut self.out);
                }
                continue;
            };
            match l.runner.prepare(task) {
                Ok(job) => {
                    self.in_flight += 1;
                    return Some(PendingTask { about, plan, load_id: l.load_id, job });
                }
                Err(e) => self.task_failed(to, about, &format!("{label}: {e}")),
            }
        }
        None
    }

    fn complete_into(&mut self, t: PendingTask, outputs: Result<Vec<Tensor>, KernelError>, compute_ms: f64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.report_backend();
        let label = t.label();
        let (Some(to), Some(l)) = (self.coordinator, self.plans.get_mut(&t.plan).filter(|l| l.load_id == t.load_id)) else {
            return; // disconnected, unloaded or replaced meanwhile: nobody wants it
        };
        match l.runner.finish(t.job, outputs.map_err(Into::into), compute_ms) {
            Ok(done) => {
                self.tasks_run += 1;
                self.total_ms += done.compute_ms;
                if self.recent.len() == RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back(done.compute_ms);
                self.ep.send(to, &Msg::Done { plan: t.plan, done }, &mut self.out);
            }
            Err(e) => self.task_failed(to, t.about, &format!("{label}: {e}")),
        }
    }

    fn task_failed(&mut self, to: PeerId, about: u32, text: &str) {
        self.last_error = Some(text.to_string());
        self.ep.refuse(to, ErrorCode::TASK_FAILED, about, text, &mut self.out);
    }

    /// The backend's new notes, also kept (the last few) for the status.
    fn take_backend_notes(&mut self) -> Vec<String> {
        let notes = self.backend.take_notes();
        self.backend_notes.extend(notes.iter().cloned());
        let excess = self.backend_notes.len().saturating_sub(RECENT);
        self.backend_notes.drain(..excess);
        notes
    }

    /// Tells the coordinator when the backend changed underneath (a GPU
    /// fell back to the CPU), so it knows what this peer now computes on.
    fn report_backend(&mut self) {
        let notes = self.take_backend_notes();
        let name = self.backend.name();
        let changed = self.last_backend.as_ref().is_some_and(|b| *b != name);
        if notes.is_empty() && !changed {
            return;
        }
        if let Some(to) = self.coordinator {
            let profile = if changed { self.reprofile.as_ref().and_then(|f| f(self.backend.as_ref())) } else { None };
            if let Some(p) = &profile {
                self.cfg.profile = Some(p.clone());
            }
            self.last_backend = Some(name.clone());
            let note = BackendNote { backend: name, notes, profile };
            self.ep.send(to, &Msg::Backend(note), &mut self.out);
        }
    }

    /// Weight bytes held for the newest plan.
    pub fn weight_bytes(&self) -> u64 {
        self.plans.values().next_back().map_or(0, |l| l.weight_bytes)
    }

    /// A snapshot for the peer page.
    pub fn status(&self) -> PeerStatus {
        let newest = self.plans.iter().next_back();
        PeerStatus {
            role: "peer",
            name: self.cfg.name.clone(),
            backend: self.backend.name(),
            caps: self.cfg.caps.clone(),
            connected: self.coordinator.is_some(),
            id: self.my_id,
            model: self.model.clone(),
            plan: newest.map(|(k, _)| *k),
            plans_held: self.plans.keys().copied().collect(),
            device: newest.map(|(_, l)| l.device),
            summary: newest.map(|(_, l)| l.summary.clone()).unwrap_or_default(),
            tasks: newest.map(|(_, l)| l.labels.clone()).unwrap_or_default(),
            weight_bytes: self.weight_bytes(),
            plan_bytes_received: self.plan_bytes,
            tasks_run: self.tasks_run,
            queue: self.queue.len(),
            in_flight: self.in_flight,
            backend_notes: self.backend_notes.clone(),
            last_latencies_ms: self.recent.iter().copied().collect(),
            mean_latency_ms: if self.tasks_run > 0 { self.total_ms / self.tasks_run as f64 } else { 0.0 },
            link: self.coordinator.map(|c| self.ep.counters(c)).unwrap_or_default(),
            last_error: self.last_error.clone(),
        }
    }
}
