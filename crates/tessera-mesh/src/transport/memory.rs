//! The in-memory transport and a deterministic test driver.
//!
//! [`MemoryTransport`] is a set of per-destination frame queues (the
//! [`Transport`] trait without a network). [`MemoryMesh`] wires one
//! [`Coordinator`] and N [`Peer`]s through it on a virtual clock: every
//! coordinator–peer link has a latency and a bandwidth (frames serialise one
//! after another, in order), peers' task times come from a simulated compute
//! clock, chunks of different messages can be interleaved at random, and
//! peers can be added, killed (channel closes), frozen (silently stops:
//! found only by timeout) or slowed down mid-stream. Everything runs in one
//! thread, deterministically, with the real kernels computing the real
//! outputs — the whole mesh end to end, in-process, for tests and the CLI.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::rc::Rc;

use tessera_graph::Tensor;
use tessera_graph::rng::Rng;
use tessera_kernels::{Backend, CpuBackend, KernelError, ready_now};
use tessera_plan::DeviceProfile;

use super::Transport;
use crate::coordinator::{Coordinator, FrameId};
use crate::peer::{Peer, PeerConfig, PendingTask};
use crate::wire::HEADER_LEN;
use crate::{Input, Output, PeerId};

/// The id peers know the coordinator by in a [`MemoryMesh`].
pub const COORDINATOR: PeerId = 0;

/// Per-destination frame queues.
#[derive(Default)]
pub struct MemoryTransport {
    queues: BTreeMap<PeerId, VecDeque<Vec<u8>>>,
}

impl MemoryTransport {
    /// An empty transport.
    pub fn new() -> MemoryTransport {
        MemoryTransport::default()
    }
    /// Takes every frame queued for `to`, oldest first.
    pub fn drain(&mut self, to: PeerId) -> Vec<Vec<u8>> {
        self.queues.remove(&to).map(Vec::from).unwrap_or_default()
    }
    /// Destinations with queued frames.
    pub fn destinations(&self) -> Vec<PeerId> {
        self.queues.iter().filter(|(_, q)| !q.is_empty()).map(|(k, _)| *k).collect()
    }
}

impl Transport for MemoryTransport {
    fn send(&mut self, to: PeerId, frame: Vec<u8>) -> Result<(), String> {
        self.queues.entry(to).or_default().push_back(frame);
        Ok(())
    }
    fn buffered(&self, to: PeerId) -> usize {
        self.queues.get(&to).map_or(0, |q| q.iter().map(Vec::len).sum())
    }
}

pub use super::LinkSim;

/// A peer to add to a [`MemoryMesh`].
pub struct PeerSpec {
    pub name: String,
    pub caps: Vec<String>,
    pub profile: Option<DeviceProfile>,
    pub link: LinkSim,
    /// Simulated compute time of every task (what the peer's clock reports).
    pub compute_ms: f64,
    /// The backend (default: one-thread CPU).
    pub backend: Option<Box<dyn Backend>>,
    /// Queue tasks and run them one per event, as a browser peer that stays
    /// responsive between tasks does (`PeerConfig::defer_runs`).
    pub defer_runs: bool,
    /// Run tasks as a WebGPU peer does (implies `defer_runs`): taken with
    /// `Peer::next_task`, handed back with `Peer::complete` one task time
    /// later, while the peer keeps handling messages.
    pub async_tasks: bool,
}

impl PeerSpec {
    /// A peer with the defaults: no profile, a 1 Gbit/s 0.1 ms link, 1 ms tasks.
    pub fn new(name: impl Into<String>) -> PeerSpec {
        PeerSpec { name: name.into(), caps: vec![], profile: None, link: LinkSim::default(), compute_ms: 1.0, backend: None, defer_runs: false, async_tasks: false }
    }
}

/// Knobs of the driver.
#[derive(Clone, Copy, Debug)]
pub struct MeshOptions {
    /// Virtual time between ticks.
    pub tick_ms: f64,
    /// Interleave the chunks of messages sent together at random (seed).
    pub interleave: Option<u64>,
}

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions { tick_ms: 50.0, interleave: None }
    }
}

enum Node {
    Peer {
        peer: Box<Peer>,
        compute: Rc<Cell<f64>>,
        calls: Rc<Cell<u64>>,
        frozen: bool,
        /// Answers messages but never finishes the task it has out.
        stalled: bool,
        busy: bool,
        async_tasks: bool,
        /// The task out "on the GPU" (async peers) and what it returned.
        pending: Option<(PendingTask, Result<Vec<Tensor>, KernelError>)>,
    },
    /// A scripted peer: records what it receives, sends only what the test injects.
    Raw {
        inbox: Vec<Vec<u8>>,
    },
}

struct SimPeer {
    node: Node,
    link: LinkSim,
    down_free: f64,
    up_free: f64,
    bytes_down: u64,
    bytes_up: u64,
    /// The channel accepts new frames.
    open: bool,
    /// The peer exists (false once killed: whatever it had in flight is lost).
    alive: bool,
}

enum Event {
    ToCoordinator(PeerId, Vec<u8>),
    ToPeer(PeerId, Vec<u8>),
    CoordinatorLost(PeerId),
    PeerLost(PeerId),
    /// A deferred-run peer takes its next queued task.
    RunNext(PeerId),
    /// An async peer's task comes back from its kernels.
    Complete(PeerId),
}

struct Scheduled {
    at: f64,
    seq: u64,
    ev: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    /// Reversed: the heap pops the earliest event (FIFO among equals).
    fn cmp(&self, o: &Self) -> Ordering {
        o.at.total_cmp(&self.at).then(o.seq.cmp(&self.seq))
    }
}

/// One coordinator and its peers on a virtual clock.
pub struct MemoryMesh {
    /// The coordinator under test (read its status, call its API).
    pub coordinator: Coordinator,
    peers: BTreeMap<PeerId, SimPeer>,
    now: Rc<Cell<f64>>,
    last_tick_sent: f64,
    heap: BinaryHeap<Scheduled>,
    seq: u64,
    next_id: PeerId,
    next_tick: f64,
    opts: MeshOptions,
    rng: Rng,
    transport: MemoryTransport,
    results: Vec<(FrameId, Vec<Tensor>)>,
    /// Channels the coordinator closed, with its reasons.
    pub closed: Vec<(PeerId, String)>,
}

impl MemoryMesh {
    /// A mesh around `coordinator`, with no peers yet.
    pub fn new(coordinator: Coordinator, opts: MeshOptions) -> MemoryMesh {
        let mut m = MemoryMesh {
            coordinator,
            peers: BTreeMap::new(),
            now: Rc::new(Cell::new(0.0)),
            last_tick_sent: f64::NEG_INFINITY,
            heap: BinaryHeap::new(),
            seq: 0,
            next_id: 1,
            next_tick: 0.0,
            opts,
            rng: Rng::new(opts.interleave.unwrap_or(0)),
            transport: MemoryTransport::new(),
            results: Vec::new(),
            closed: Vec::new(),
        };
        m.tick();
        m
    }

    /// Virtual time, ms.
    pub fn now(&self) -> f64 {
        self.now.get()
    }

    fn alloc_id(&mut self) -> PeerId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn insert(&mut self, id: PeerId, node: Node, link: LinkSim) {
        let now = self.now();
        self.peers.insert(id, SimPeer { node, link, down_free: now, up_free: now, bytes_down: 0, bytes_up: 0, open: true, alive: true });
    }

    /// Adds a peer; its channel opens now. Returns its id.
    pub fn add_peer(&mut self, spec: PeerSpec) -> PeerId {
        let id = self.alloc_id();
        let compute = Rc::new(Cell::new(spec.compute_ms));
        let calls = Rc::new(Cell::new(0u64));
        let (now, c2, k2) = (self.now.clone(), compute.clone(), calls.clone());
        // Consecutive readings differ by the simulated task time.
        let clock = Box::new(move || {
            let c = k2.get();
            k2.set(c + 1);
            now.get() + c as f64 * c2.get()
        });
        let mut cfg = PeerConfig::new(spec.name);
        cfg.caps = spec.caps;
        cfg.profile = spec.profile;
        cfg.defer_runs = spec.defer_runs || spec.async_tasks;
        let backend = spec.backend.unwrap_or_else(|| Box::new(CpuBackend::new(1)));
        let peer = Box::new(Peer::new(cfg, backend, clock));
        self.insert(id, Node::Peer { peer, compute, calls, frozen: false, stalled: false, busy: false, async_tasks: spec.async_tasks, pending: None }, spec.link);
        self.connect(id);
        id
    }

    /// Adds a scripted peer whose frames are injected by the test
    /// ([`MemoryMesh::inject`]) and whose received frames are kept
    /// ([`MemoryMesh::inbox`]).
    pub fn add_raw_peer(&mut self, link: LinkSim) -> PeerId {
        let id = self.alloc_id();
        self.insert(id, Node::Raw { inbox: Vec::new() }, link);
        self.connect(id);
        id
    }

    fn connect(&mut self, id: PeerId) {
        self.tick_coordinator();
        let outs = self.coordinator.handle(Input::Connected(id));
        self.route_from_coordinator(outs);
        if let Some(SimPeer { node: Node::Peer { peer, .. }, .. }) = self.peers.get_mut(&id) {
            let outs = peer.handle(Input::Connected(COORDINATOR));
            self.route_from_peer(id, outs, 0.0);
        }
        self.flush();
    }

    /// Sends raw bytes to the coordinator as if from `from` (a raw peer).
    pub fn inject(&mut self, from: PeerId, frame: Vec<u8>) {
        self.route_from_peer(from, vec![Output::Send(COORDINATOR, frame)], 0.0);
    }

    /// Frames a raw peer received.
    pub fn inbox(&self, id: PeerId) -> &[Vec<u8>] {
        match self.peers.get(&id).map(|p| &p.node) {
            Some(Node::Raw { inbox }) => inbox,
            _ => &[],
        }
    }

    /// True while the coordinator–peer channel is open.
    pub fn is_open(&self, id: PeerId) -> bool {
        self.peers.get(&id).is_some_and(|p| p.open)
    }

    /// The peer state machine of `id`.
    pub fn peer(&self, id: PeerId) -> Option<&Peer> {
        match self.peers.get(&id).map(|p| &p.node) {
            Some(Node::Peer { peer, .. }) => Some(peer),
            _ => None,
        }
    }

    /// The peer state machine of `id`, to act on it (tests).
    pub fn peer_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        match self.peers.get_mut(&id).map(|p| &mut p.node) {
            Some(Node::Peer { peer, .. }) => Some(peer),
            _ => None,
        }
    }

    /// Ids of peers whose channel is open.
    pub fn peer_ids(&self) -> Vec<PeerId> {
        self.peers.iter().filter(|(_, p)| p.open).map(|(k, _)| *k).collect()
    }

    /// Wire bytes sent to and from `id`: (down, up).
    pub fn link_bytes(&self, id: PeerId) -> (u64, u64) {
        self.peers.get(&id).map_or((0, 0), |p| (p.bytes_down, p.bytes_up))
    }

    /// Changes the simulated task time of a peer (drift).
    pub fn set_compute_ms(&mut self, id: PeerId, ms: f64) {
        if let Some(SimPeer { node: Node::Peer { compute, .. }, .. }) = self.peers.get(&id) {
            compute.set(ms);
        }
    }

    /// Kills a peer: its channel closes (the coordinator hears it one
    /// latency later) and whatever it had in flight is lost.
    pub fn kill(&mut self, id: PeerId) {
        let now = self.now();
        let Some(p) = self.peers.get_mut(&id) else { return };
        if !p.alive {
            return;
        }
        p.alive = false;
        p.open = false;
        let at = now + p.link.latency_ms;
        self.schedule(at, Event::CoordinatorLost(id));
    }

    /// An async peer's kernels hang (a lost GPU that never says so): it
    /// keeps answering pings, but the task it has out never comes back.
    pub fn stall(&mut self, id: PeerId) {
        if let Some(SimPeer { node: Node::Peer { stalled, .. }, .. }) = self.peers.get_mut(&id) {
            *stalled = true;
        }
    }

    /// Freezes a peer: it silently stops answering (no close); only the
    /// coordinator's timeout can find out.
    pub fn freeze(&mut self, id: PeerId) {
        if let Some(SimPeer { node: Node::Peer { frozen, .. }, .. }) = self.peers.get_mut(&id) {
            *frozen = true;
        }
    }

    fn schedule(&mut self, at: f64, ev: Event) {
        self.seq += 1;
        self.heap.push(Scheduled { at, seq: self.seq, ev });
    }

    /// Orders a batch of frames for one link: as given, or with the chunks
    /// of different messages randomly interleaved (each message's own
    /// chunks stay in order).
    fn interleave(&mut self, frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        if self.opts.interleave.is_none() || frames.len() < 2 {
            return frames;
        }
        type Group = (Option<[u8; 4]>, VecDeque<Vec<u8>>);
        let mut groups: Vec<Group> = Vec::new();
        for f in frames {
            let id = (f.len() >= HEADER_LEN).then(|| [f[8], f[9], f[10], f[11]]);
            match groups.iter_mut().find(|g| g.0.is_some() && g.0 == id) {
                Some(g) => g.1.push_back(f),
                None => groups.push((id, VecDeque::from([f]))),
            }
        }
        let mut out = Vec::new();
        while !groups.is_empty() {
            let i = self.rng.range(0, groups.len() - 1);
            out.push(groups[i].1.pop_front().expect("non-empty"));
            if groups[i].1.is_empty() {
                groups.remove(i);
            }
        }
        out
    }

    /// Puts the coordinator's queued frames on their links.
    fn flush(&mut self) {
        for to in self.transport.destinations() {
            self.flush_one(to);
        }
    }

    fn flush_one(&mut self, to: PeerId) {
        let now = self.now();
        let frames = self.transport.drain(to);
        let frames = self.interleave(frames);
        let Some(p) = self.peers.get_mut(&to) else { return };
        if !p.open {
            return;
        }
        let mut sched = Vec::with_capacity(frames.len());
        for f in frames {
            let start = p.down_free.max(now);
            p.down_free = start + f.len() as f64 * 8.0 / (p.link.mbps * 1e3);
            p.bytes_down += f.len() as u64;
            sched.push((p.down_free + p.link.latency_ms, f));
        }
        for (at, f) in sched {
            self.schedule(at, Event::ToPeer(to, f));
        }
    }

    fn route_from_coordinator(&mut self, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Send(to, f) => {
                    let _ = self.transport.send(to, f);
                }
                Output::Close(to, reason) => {
                    self.closed.push((to, reason));
                    // Frames queued before the close still go out (as a data channel's do).
                    self.flush_one(to);
                    let now = self.now();
                    if let Some(p) = self.peers.get_mut(&to)
                        && p.open
                    {
                        p.open = false;
                        let at = p.down_free.max(now) + p.link.latency_ms;
                        self.schedule(at, Event::PeerLost(to));
                        self.schedule(at, Event::CoordinatorLost(to));
                    }
                }
            }
        }
        self.results.extend(self.coordinator.take_results());
    }

    /// Puts a peer's outputs on its uplink, departing `delay_ms` from now.
    fn route_from_peer(&mut self, id: PeerId, outs: Vec<Output>, delay_ms: f64) {
        let now = self.now();
        let mut frames = Vec::new();
        let mut close = false;
        for o in outs {
            match o {
                Output::Send(_, f) if !close => frames.push(f),
                Output::Send(..) => {}
                Output::Close(..) => close = true,
            }
        }
        let frames = self.interleave(frames);
        let Some(p) = self.peers.get_mut(&id) else { return };
        if !p.open {
            return;
        }
        let mut sched = Vec::with_capacity(frames.len());
        for f in frames {
            let start = p.up_free.max(now + delay_ms);
            p.up_free = start + f.len() as f64 * 8.0 / (p.link.mbps * 1e3);
            p.bytes_up += f.len() as u64;
            sched.push((p.up_free + p.link.latency_ms, f));
        }
        let lost_at = p.up_free.max(now) + p.link.latency_ms;
        if close {
            // The peer closed its channel: what it sent first still arrives.
            p.open = false;
        }
        for (at, f) in sched {
            self.schedule(at, Event::ToCoordinator(id, f));
        }
        if close {
            self.schedule(lost_at, Event::CoordinatorLost(id));
        }
    }

    /// The peer leaves gracefully (Bye, then close).
    pub fn leave(&mut self, id: PeerId, reason: &str) {
        if let Some(SimPeer { node: Node::Peer { peer, .. }, open: true, .. }) = self.peers.get_mut(&id) {
            let outs = peer.leave(reason);
            self.route_from_peer(id, outs, 0.0);
        }
    }

    fn tick_coordinator(&mut self) {
        let now = self.now();
        if now > self.last_tick_sent {
            self.last_tick_sent = now;
            let outs = self.coordinator.handle(Input::Tick { now_ms: now });
            self.route_from_coordinator(outs);
        }
    }

    fn tick(&mut self) {
        self.tick_coordinator();
        let now = self.now();
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            if let Some(SimPeer { node: Node::Peer { peer, frozen: false, .. }, open: true, .. }) = self.peers.get_mut(&id) {
                let outs = peer.handle(Input::Tick { now_ms: now });
                self.route_from_peer(id, outs, 0.0);
            }
        }
        self.flush();
        self.next_tick = now + self.opts.tick_ms;
    }

    /// Processes the next event (or tick); false if virtual time would pass `deadline`.
    fn step(&mut self, deadline: f64) -> bool {
        let next_ev = self.heap.peek().map(|s| s.at);
        let t = match next_ev {
            Some(t) if t < self.next_tick => t,
            _ => self.next_tick,
        };
        if t > deadline {
            return false;
        }
        self.now.set(t.max(self.now()));
        if next_ev.is_none_or(|e| e >= self.next_tick) {
            self.tick();
            return true;
        }
        let ev = self.heap.pop().expect("peeked").ev;
        match ev {
            Event::ToCoordinator(from, f) => {
                if self.peers.get(&from).is_some_and(|p| p.alive) {
                    self.tick_coordinator();
                    let outs = self.coordinator.handle(Input::Frame(from, f));
                    self.route_from_coordinator(outs);
                }
            }
            Event::ToPeer(to, f) => self.deliver_to_peer(to, f),
            Event::CoordinatorLost(id) => {
                self.tick_coordinator();
                let outs = self.coordinator.handle(Input::Disconnected(id));
                self.route_from_coordinator(outs);
            }
            Event::RunNext(id) => self.run_next(id),
            Event::Complete(id) => self.complete(id),
            Event::PeerLost(id) => {
                if let Some(SimPeer { node: Node::Peer { peer, .. }, .. }) = self.peers.get_mut(&id) {
                    let _ = peer.handle(Input::Disconnected(COORDINATOR));
                }
            }
        }
        self.flush();
        true
    }

    fn run_next(&mut self, id: PeerId) {
        let now = self.now();
        let Some(SimPeer { node: Node::Peer { peer, compute, frozen, busy, async_tasks, pending, .. }, alive: true, .. }) = self.peers.get_mut(&id) else { return };
        *busy = false;
        if *frozen || peer.queued() == 0 {
            return;
        }
        if *async_tasks {
            let (task, outs) = peer.next_task();
            let ms = compute.get();
            if let Some(mut t) = task {
                // The kernels run now; their results come back one task time later.
                let res = ready_now(t.execute()).unwrap_or_else(|| Err(KernelError::Device { backend: "memory mesh".into(), msg: "the kernels did not complete at once".into() }));
                *pending = Some((t, res));
                *busy = true;
                self.schedule(now + ms, Event::Complete(id));
            } else if peer.queued() > 0 {
                *busy = true;
                self.schedule(now, Event::RunNext(id));
            }
            self.route_from_peer(id, outs, 0.0);
            return;
        }
        let outs = peer.run_next();
        let ms = compute.get();
        let more = peer.queued() > 0;
        *busy = more;
        self.route_from_peer(id, outs, ms);
        if more {
            self.schedule(now + ms, Event::RunNext(id));
        }
    }

    fn complete(&mut self, id: PeerId) {
        let now = self.now();
        let Some(SimPeer { node: Node::Peer { peer, compute, frozen: false, stalled: false, busy, pending, .. }, alive: true, .. }) = self.peers.get_mut(&id) else { return };
        let Some((t, res)) = pending.take() else { return };
        let outs = peer.complete(t, res, compute.get());
        *busy = peer.queued() > 0;
        if *busy {
            self.schedule(now, Event::RunNext(id));
        }
        self.route_from_peer(id, outs, 0.0);
    }

    fn deliver_to_peer(&mut self, to: PeerId, f: Vec<u8>) {
        let Some(p) = self.peers.get_mut(&to) else { return };
        if !p.alive {
            return;
        }
        match &mut p.node {
            Node::Raw { inbox } => inbox.push(f),
            Node::Peer { peer, compute, calls, frozen, busy, .. } => {
                if *frozen {
                    return;
                }
                let before = calls.get();
                let outs = peer.handle(Input::Frame(COORDINATOR, f));
                // Outputs leave once the simulated work is done.
                let delay = (calls.get() - before) as f64 / 2.0 * compute.get();
                let start = peer.queued() > 0 && !*busy;
                *busy |= start;
                self.route_from_peer(to, outs, delay);
                if start {
                    let at = self.now() + delay;
                    self.schedule(at, Event::RunNext(to));
                }
            }
        }
    }

    /// Runs until `done` holds (checked between events) or `max_ms` of
    /// virtual time pass; returns whether `done` held.
    pub fn run_until(&mut self, mut done: impl FnMut(&mut MemoryMesh) -> bool, max_ms: f64) -> bool {
        let deadline = self.now() + max_ms;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(deadline) {
                return done(self);
            }
        }
    }

    /// Runs for `ms` of virtual time.
    pub fn run_for(&mut self, ms: f64) {
        let deadline = self.now() + ms;
        while self.step(deadline) {}
    }

    /// Runs until the coordinator has a running plan and nothing is loading.
    pub fn wait_ready(&mut self, max_ms: f64) -> bool {
        self.run_until(|m| m.coordinator.current_plan().is_some() && !m.coordinator.is_loading(), max_ms)
    }

    /// Submits a frame.
    pub fn submit(&mut self, inputs: Vec<Tensor>) -> crate::Result<FrameId> {
        let id = self.coordinator.submit(inputs)?;
        let outs = self.coordinator.take_outputs();
        self.route_from_coordinator(outs);
        self.flush();
        Ok(id)
    }

    /// Results delivered so far (in order), taken.
    pub fn take_results(&mut self) -> Vec<(FrameId, Vec<Tensor>)> {
        std::mem::take(&mut self.results)
    }

    /// Results delivered and not yet taken.
    pub fn results_ready(&self) -> usize {
        self.results.len()
    }

    /// Asks the coordinator to re-plan.
    pub fn replan(&mut self) {
        self.coordinator.replan();
        let outs = self.coordinator.take_outputs();
        self.route_from_coordinator(outs);
        self.flush();
    }

    /// Submits every frame and runs until all results are in (or
    /// `max_ms` of virtual time pass); returns the results in order.
    pub fn run_frames(&mut self, frames: Vec<Vec<Tensor>>, max_ms: f64) -> Result<Vec<(FrameId, Vec<Tensor>)>, String> {
        let n = frames.len();
        for f in frames {
            self.submit(f).map_err(|e| e.to_string())?;
        }
        let mut got = Vec::with_capacity(n);
        let ok = self.run_until(
            |m| {
                got.extend(m.take_results());
                got.len() >= n
            },
            max_ms,
        );
        if !ok {
            return Err(format!("{} of {n} frames done after {max_ms} ms of virtual time; status: {:?}", got.len(), self.coordinator.status().frames));
        }
        Ok(got)
    }
}
