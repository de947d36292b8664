//! The in-process multi-device executor: one worker thread per device,
//! message passing to and from the hub — the mesh with channels instead of
//! WebRTC. Used by `tessera run --planner/--plan` and the property tests.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tessera_graph::{Graph, Tensor};
use tessera_kernels::Backend;
use tessera_plan::Plan;

use crate::error::{Result, RuntimeError};
use crate::hub::{Dispatch, Hub, Program};
use crate::msg::{RunTask, TaskDone};
use crate::runner::{PeerTask, Runner};

enum ToWorker {
    Run(RunTask),
    Forget(u64),
}

type FromWorker = std::result::Result<TaskDone, (usize, String)>;

/// Makes the backend of device `d` (inside its thread).
pub type BackendFactory = Arc<dyn Fn(usize) -> Box<dyn Backend> + Send + Sync>;

/// Per-device figures of a run.
#[derive(Clone, Debug, Default)]
pub struct DeviceStats {
    pub tasks: usize,
    pub compute_ms: f64,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub weight_bytes: usize,
}

/// Runs a plan with one thread per device.
pub struct LocalExecutor {
    hub: Hub,
    to: Vec<Sender<ToWorker>>,
    from: Receiver<FromWorker>,
    handles: Vec<JoinHandle<()>>,
    pub stats: Vec<DeviceStats>,
}

impl LocalExecutor {
    /// Builds the program and starts one worker per device of the plan;
    /// every worker compiles its tasks before this returns.
    pub fn new(graph: Arc<Graph>, plan: &Plan, backends: BackendFactory) -> Result<LocalExecutor> {
        let program = Arc::new(Program::new(graph, plan)?);
        let n = plan.devices.len();
        let (done_tx, from) = channel::<FromWorker>();
        let (ready_tx, ready_rx) = channel::<std::result::Result<(usize, usize), (usize, String)>>();
        let mut to = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for d in 0..n {
            let (tx, rx) = channel::<ToWorker>();
            to.push(tx);
            let (program, done_tx, ready_tx, backends) = (program.clone(), done_tx.clone(), ready_tx.clone(), backends.clone());
            handles.push(std::thread::spawn(move || {
                let start = Instant::now();
                let clock = move || start.elapsed().as_secs_f64() * 1e3;
                let backend = backends(d);
                let mut runner = match Runner::new(d, PeerTask::for_device(&program, d), backend.as_ref()) {
                    Ok(r) => {
                        let _ = ready_tx.send(Ok((d, r.weight_bytes())));
                        r
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err((d, e.to_string())));
                        return;
                    }
                };
                while let Ok(m) = rx.recv() {
                    match m {
                        ToWorker::Run(task) => {
                            let r = runner.run(task, &clock).map_err(|e| (d, e.to_string()));
                            if done_tx.send(r).is_err() {
                                return;
                            }
                        }
                        ToWorker::Forget(f) => runner.forget(f),
                    }
                }
            }));
        }
        let mut stats = vec![DeviceStats::default(); n];
        for _ in 0..n {
            match ready_rx.recv() {
                Ok(Ok((d, w))) => stats[d].weight_bytes = w,
                Ok(Err((device, msg))) => return Err(RuntimeError::Device { device, msg }),
                Err(_) => return Err(RuntimeError::Device { device: usize::MAX, msg: "a worker died while compiling".into() }),
            }
        }
        Ok(LocalExecutor { hub: Hub::new(program), to, from, handles, stats })
    }

    fn send(&mut self, d: Dispatch) -> Result<()> {
        self.stats[d.device].bytes_in += d.task.bytes();
        self.to[d.device].send(ToWorker::Run(d.task)).map_err(|_| RuntimeError::Device { device: d.device, msg: "worker stopped".into() })
    }

    /// Runs a stream of frames with at most `window` in flight; returns the
    /// graph outputs of every frame, in order.
    pub fn run_stream(&mut self, frames: Vec<Vec<Tensor>>, window: usize) -> Result<Vec<Vec<Tensor>>> {
        let total = frames.len();
        let mut pending = frames.into_iter().enumerate();
        let mut results: Vec<Option<Vec<Tensor>>> = vec![None; total];
        let mut finished = 0;
        let admit = |ex: &mut LocalExecutor, pending: &mut dyn Iterator<Item = (usize, Vec<Tensor>)>| -> Result<()> {
            while ex.hub.in_flight() < window.max(1) {
                let Some((f, inputs)) = pending.next() else { break };
                for d in ex.hub.admit(f as u64, inputs)? {
                    ex.send(d)?;
                }
            }
            Ok(())
        };
        admit(self, &mut pending)?;
        while finished < total {
            let done = self.from.recv().map_err(|_| RuntimeError::Device { device: usize::MAX, msg: "all workers stopped".into() })?;
            let done = done.map_err(|(device, msg)| RuntimeError::Device { device, msg })?;
            let s = &mut self.stats[done.device];
            s.tasks += 1;
            s.compute_ms += done.compute_ms;
            s.bytes_out += done.bytes();
            let (dispatch, out) = self.hub.complete(done)?;
            for d in dispatch {
                self.send(d)?;
            }
            if let Some((f, outs)) = out {
                results[f as usize] = Some(outs);
                finished += 1;
                for tx in &self.to {
                    let _ = tx.send(ToWorker::Forget(f));
                }
                admit(self, &mut pending)?;
            }
        }
        Ok(results.into_iter().map(|r| r.expect("every frame finished")).collect())
    }

    /// Runs one frame.
    pub fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        Ok(self.run_stream(vec![inputs], 1)?.remove(0))
    }
}

impl Drop for LocalExecutor {
    fn drop(&mut self) {
        self.to.clear(); // closes the channels: workers exit
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
