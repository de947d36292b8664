//! Native drivers: the loops that connect a state machine to a
//! [`NativeMesh`] — `tessera peer URL`, `tessera demo` and the native tests
//! run these. (The browser's drivers live in `tessera-web`.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_graph::Tensor;

use crate::coordinator::{Coordinator, FrameId};
use crate::peer::Peer;
use crate::transport::native::{NativeError, NativeMesh};
use crate::transport::shaper::Shaper;
use crate::transport::LinkSim;
use crate::{Input, Output};

/// A monotonic millisecond clock for the state machines.
pub fn clock() -> Box<dyn Fn() -> f64 + Send> {
    let start = Instant::now();
    Box::new(move || start.elapsed().as_secs_f64() * 1e3)
}

/// Carries out a state machine's outputs on the mesh, in order.
fn apply(mesh: &NativeMesh, outs: Vec<Output>) -> Result<(), NativeError> {
    for o in outs {
        match o {
            Output::Send(to, frame) => match mesh.send(to, frame) {
                // A channel that just closed: its Disconnected event follows.
                Err(NativeError::Io(_)) => {}
                r => r?,
            },
            Output::Close(to, _) => mesh.close_peer(to),
        }
    }
    Ok(())
}

/// How often the state machines get a Tick.
const TICK: Duration = Duration::from_millis(20);

/// Runs a peer until `stop` is set or the mesh closes. The peer answers
/// every coordinator that connects (one at a time).
pub fn run_peer(mesh: &NativeMesh, peer: &mut Peer, stop: &AtomicBool, clock: &dyn Fn() -> f64) -> Result<(), NativeError> {
    run_peer_until(mesh, peer, stop, &AtomicBool::new(false), clock)
}

/// Like [`run_peer`]; setting `kill` drops out at once without a goodbye,
/// as a crashed or unplugged device would.
pub fn run_peer_until(mesh: &NativeMesh, peer: &mut Peer, stop: &AtomicBool, kill: &AtomicBool, clock: &dyn Fn() -> f64) -> Result<(), NativeError> {
    run_peer_shaped(mesh, peer, stop, kill, clock, None)
}

/// Like [`run_peer_until`], behind an emulated `link` (see
/// [`crate::transport::shaper`]): what the peer receives and sends is held
/// back as that link would.
pub fn run_peer_shaped(mesh: &NativeMesh, peer: &mut Peer, stop: &AtomicBool, kill: &AtomicBool, clock: &dyn Fn() -> f64, link: Option<LinkSim>) -> Result<(), NativeError> {
    let mut shaper: Option<Shaper<Output, Input>> = link.map(Shaper::new);
    let mut last_tick = f64::NEG_INFINITY;
    while !stop.load(Ordering::Relaxed) {
        if kill.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Wake for the link's next delivery too.
        let wait = shaper.as_ref().and_then(|s| s.next_at()).map_or(TICK, |at| Duration::from_secs_f64(((at - clock()) / 1e3).clamp(0.0005, TICK.as_secs_f64())));
        let ev = match mesh.recv_timeout(wait) {
            Ok(ev) => ev,
            Err(NativeError::Closed(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let now = clock();
        let mut outs = Vec::new();
        if ev.is_some() || now - last_tick >= TICK.as_secs_f64() * 1e3 {
            outs.extend(peer.handle(Input::Tick { now_ms: now }));
            last_tick = now;
        }
        match (&mut shaper, ev) {
            (Some(s), Some(ev)) => {
                let bytes = if let Input::Frame(_, f) = &ev { f.len() } else { 0 };
                s.receive(now, bytes, ev);
            }
            (None, Some(ev)) => outs.extend(peer.handle(ev)),
            (_, None) => {}
        }
        if let Some(s) = &mut shaper {
            for ev in s.take_received(clock()) {
                outs.extend(peer.handle(ev));
            }
            let now = clock();
            for o in outs.drain(..) {
                let bytes = if let Output::Send(_, f) = &o { f.len() } else { 0 };
                s.send(now, bytes, o);
            }
            outs = s.take_sent(now);
        }
        apply(mesh, outs)?;
    }
    let outs = peer.leave("peer stopped");
    apply(mesh, outs)
}

/// A coordinator on a native mesh, pumped by its owner.
pub struct CoordinatorLoop {
    pub mesh: NativeMesh,
    pub coordinator: Coordinator,
    clock: Box<dyn Fn() -> f64 + Send>,
    last_tick: f64,
}

impl CoordinatorLoop {
    pub fn new(mesh: NativeMesh, coordinator: Coordinator) -> CoordinatorLoop {
        CoordinatorLoop { mesh, coordinator, clock: clock(), last_tick: f64::NEG_INFINITY }
    }

    /// Milliseconds on this loop's clock.
    pub fn now(&self) -> f64 {
        (self.clock)()
    }

    /// Handles every event that arrives within `wait`, ticking the
    /// coordinator, and sends what it asks for.
    pub fn pump(&mut self, wait: Duration) -> Result<(), NativeError> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self.mesh.recv_timeout(left.min(TICK))?;
            let now = self.now();
            let mut outs = Vec::new();
            if ev.is_some() || now - self.last_tick >= TICK.as_secs_f64() * 1e3 {
                outs.extend(self.coordinator.handle(Input::Tick { now_ms: now }));
                self.last_tick = now;
            }
            if let Some(ev) = ev {
                outs.extend(self.coordinator.handle(ev));
            }
            outs.extend(self.coordinator.take_outputs());
            apply(&self.mesh, outs)?;
            if Instant::now() >= deadline {
                return Ok(());
            }
        }
    }

    /// Submits a frame (its messages go out on the next pump).
    pub fn submit(&mut self, inputs: Vec<Tensor>) -> crate::Result<FrameId> {
        let id = self.coordinator.submit(inputs)?;
        let outs = self.coordinator.take_outputs();
        apply(&self.mesh, outs).map_err(|e| crate::MeshError::Invalid(e.to_string()))?;
        Ok(id)
    }

    /// Pumps until `n` peers are live and a plan over them is loaded, or
    /// `timeout` passes; returns whether it got there.
    pub fn wait_ready(&mut self, n: usize, timeout: Duration) -> Result<bool, NativeError> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            self.pump(Duration::from_millis(20))?;
            let c = &self.coordinator;
            let live = c.live_peers().len();
            let planned = c.plan().is_some_and(|p| p.devices.len() >= n.min(live).max(1)) && !c.is_loading();
            if live >= n && planned {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Shuts the coordinator down (Bye to every peer) and leaves the room.
    pub fn close(mut self, reason: &str) {
        let outs = self.coordinator.shutdown(reason);
        let _ = apply(&self.mesh, outs);
        let _ = self.mesh.recv_timeout(Duration::from_millis(50));
        self.mesh.close();
    }
}

/// A peer running on its own thread (the demo's local peers).
pub struct PeerThread {
    pub name: String,
    stop: Arc<AtomicBool>,
    kill: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl PeerThread {
    /// Joins `url` as a peer named `name` on a thread; `make` builds the
    /// state machine there (backends are not `Send`).
    pub fn spawn(url: String, name: String, make: Box<dyn FnOnce() -> Peer + Send>) -> PeerThread {
        PeerThread::spawn_behind(url, name, None, make)
    }

    /// [`Self::spawn`] behind an emulated `link` (bandwidth, latency).
    pub fn spawn_behind(url: String, name: String, link: Option<LinkSim>, make: Box<dyn FnOnce() -> Peer + Send>) -> PeerThread {
        let stop = Arc::new(AtomicBool::new(false));
        let kill = Arc::new(AtomicBool::new(false));
        let (s, k, n) = (stop.clone(), kill.clone(), name.clone());
        let handle = std::thread::spawn(move || {
            let mesh = NativeMesh::join(&url, crate::transport::native::NativeConfig::new(crate::transport::signal::Role::Peer, n)).map_err(|e| e.to_string())?;
            let mut peer = make();
            let clock = clock();
            let r = run_peer_shaped(&mesh, &mut peer, &s, &k, &*clock, link).map_err(|e| e.to_string());
            mesh.close();
            r
        });
        PeerThread { name, stop, kill, handle: Some(handle) }
    }

    /// Kills the peer: its connections drop without a goodbye.
    pub fn kill(mut self) {
        self.kill.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }

    /// Stops the peer (it says Bye) and waits for its thread.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().map_or(Ok(()), |h| h.join().unwrap_or_else(|_| Err("peer thread panicked".into())))
    }

    /// Whether the thread has ended (crashed or stopped).
    pub fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }
}

impl Drop for PeerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
