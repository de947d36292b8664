//! A device's side of execution: compile its tasks once, then for each
//! `RunTask` assemble the inputs (what it holds from earlier tasks of the
//! frame plus what the hub sent) and run the sub-graph. A runner only ever
//! sees its own tasks ([`PeerTask`]), so a peer holds only its slice of the
//! model (HyPS's model-secret property).

use std::collections::HashMap;

use tessera_graph::{Graph, Tensor};
use tessera_kernels::{Backend, Executable, RunFuture};
use tessera_plan::region::{extract, insert, Region};
use tessera_plan::reuse::Fetch;
use tessera_plan::split::Piece;

use crate::error::{Result, RuntimeError};
use crate::hub::Program;
use crate::msg::{RunTask, TaskDone};

/// Everything a device needs to run one task: the sub-graph (its weights
/// only), the regions it reads and writes, and where each input comes from.
#[derive(Clone, Debug)]
pub struct PeerTask {
    pub stage: usize,
    pub task: usize,
    pub graph: Graph,
    pub inputs: Vec<Piece>,
    pub outputs: Vec<Piece>,
    pub fetch: Vec<Fetch>,
    /// For each input read locally: the region of the value that the
    /// producing task (same device) outputs, to index into its result.
    pub local_regions: Vec<Option<Region>>,
}

impl PeerTask {
    /// The tasks of `device` in `program`.
    pub fn for_device(program: &Program, device: usize) -> Vec<PeerTask> {
        let mut out = Vec::new();
        for (s, st) in program.stages.iter().enumerate() {
            for (k, t) in st.tasks.iter().enumerate().filter(|(_, t)| t.device == device) {
                let fetch = program.fetch[s][k].clone();
                let local_regions = t
                    .geometry
                    .inputs
                    .iter()
                    .zip(&fetch)
                    .map(|(p, f)| {
                        f.local.as_ref().and_then(|(ls, lk, _)| program.stages[*ls].tasks[*lk].geometry.outputs.iter().find(|o| o.value == p.value).map(|o| o.region.clone()))
                    })
                    .collect();
                out.push(PeerTask {
                    stage: s,
                    task: k,
                    graph: t.graph.clone(),
                    inputs: t.geometry.inputs.clone(),
                    outputs: t.geometry.outputs.clone(),
                    fetch,
                    local_regions,
                });
            }
        }
        out
    }

    /// Weight bytes of the task's sub-graph.
    pub fn weight_bytes(&self) -> usize {
        self.graph.nodes().iter().map(|n| n.op.weight_bytes()).sum()
    }
}

/// A task's executable, or `None` while lent to a [`Job`].
type Slot = Option<Box<dyn Executable>>;

/// One task between [`Runner::prepare`] and [`Runner::finish`]: its
/// assembled inputs and the executable lent out to run them.
pub struct Job {
    pub frame: u64,
    pub stage: usize,
    pub task: usize,
    inputs: Vec<Tensor>,
    exe: Box<dyn Executable>,
}

impl Job {
    /// Runs the task's kernels (see [`Executable::run_async`]).
    pub fn execute(&mut self) -> RunFuture<'_> {
        self.exe.run_async(&self.inputs)
    }
}

/// Runs the tasks of one device.
pub struct Runner {
    pub device: usize,
    /// Each task with its executable (`None` while a [`Job`] has it).
    tasks: HashMap<(usize, usize), (PeerTask, Slot)>,
    /// Outputs this device produced, per (frame, stage, task), for reuse.
    held: HashMap<(u64, usize, usize), Vec<Tensor>>,
}

impl Runner {
    /// Compiles the device's tasks on `backend` (weights uploaded once).
    pub fn new(device: usize, tasks: Vec<PeerTask>, backend: &dyn Backend) -> Result<Runner> {
        let mut map = HashMap::new();
        for t in tasks {
            let exe = backend.compile(&t.graph)?;
            map.insert((t.stage, t.task), (t, Some(exe)));
        }
        Ok(Runner { device, tasks: map, held: HashMap::new() })
    }

    /// Weight bytes this device holds for its tasks.
    pub fn weight_bytes(&self) -> usize {
        self.tasks.values().map(|(t, _)| t.weight_bytes()).sum()
    }

    /// Runs one task; `clock` times the kernels (ms).
    pub fn run(&mut self, msg: RunTask, clock: &dyn Fn() -> f64) -> Result<TaskDone> {
        let mut job = self.prepare(msg)?;
        let t0 = clock();
        let outputs = job.exe.run(&job.inputs);
        let compute_ms = clock() - t0;
        self.finish(job, outputs.map_err(Into::into), compute_ms)
    }

    /// The first half of [`Self::run`], for drivers whose kernels complete
    /// later (the browser's WebGPU): checks `msg`, assembles the task's
    /// inputs and lends out its executable. Run [`Job::execute`], then hand
    /// the job back to [`Self::finish`]; until then the task is busy.
    pub fn prepare(&mut self, msg: RunTask) -> Result<Job> {
        let key = (msg.stage, msg.task);
        let (task, exe) = self.tasks.get(&key).ok_or_else(|| RuntimeError::Protocol(format!("task {}/{} is not loaded on device {}", msg.stage, msg.task, self.device)))?;
        if exe.is_none() {
            return Err(RuntimeError::Protocol(format!("task {}/{} is already running on device {}", msg.stage, msg.task, self.device)));
        }
        if msg.remote.len() != task.fetch.len() {
            return Err(RuntimeError::Protocol(format!("task {}/{}: {} inputs sent, {} expected", msg.stage, msg.task, msg.remote.len(), task.fetch.len())));
        }
        let mut inputs = Vec::with_capacity(task.fetch.len());
        for (((piece, f), local_region), remote) in task.inputs.iter().zip(&task.fetch).zip(&task.local_regions).zip(msg.remote) {
            if remote.len() != f.remote.len() {
                return Err(RuntimeError::Protocol(format!("task {}/{}: wrong number of input pieces", msg.stage, msg.task)));
            }
            for (b, t) in f.remote.iter().zip(&remote) {
                if t.shape() != b.shape().as_slice() {
                    return Err(RuntimeError::Protocol(format!("task {}/{}: piece shape {:?}, expected {:?}", msg.stage, msg.task, t.shape(), b.shape())));
                }
            }
            // The common case: one box that is the whole piece.
            if f.local.is_none() && remote.len() == 1 {
                inputs.push(remote.into_iter().next().unwrap());
                continue;
            }
            let mut t = Tensor::zeros(&piece.region.shape());
            if let (Some((ls, lk, have)), Some(out_region)) = (&f.local, local_region) {
                let outs = self.held.get(&(msg.frame, *ls, *lk)).ok_or_else(|| RuntimeError::Protocol(format!("frame {}: local input from task {ls}/{lk} is missing", msg.frame)))?;
                let src = self.tasks[&(*ls, *lk)].0.outputs.iter().position(|o| o.value == piece.value).ok_or_else(|| RuntimeError::Protocol("local piece not produced".into()))?;
                let part = extract(&outs[src], &have.relative_to(out_region));
                insert(&mut t, &have.relative_to(&piece.region), &part, false);
            }
            for (b, data) in f.remote.iter().zip(&remote) {
                insert(&mut t, &b.relative_to(&piece.region), data, false);
            }
            inputs.push(t);
        }
        let exe = self.tasks.get_mut(&key).and_then(|(_, e)| e.take()).expect("checked above");
        Ok(Job { frame: msg.frame, stage: msg.stage, task: msg.task, inputs, exe })
    }

    /// The second half of [`Self::run`]: takes the job back with what its
    /// kernels returned and the time they took, keeps the outputs for
    /// later tasks of the frame on this device, and says what to send.
    pub fn finish(&mut self, job: Job, outputs: Result<Vec<Tensor>>, compute_ms: f64) -> Result<TaskDone> {
        let Job { frame, stage, task, exe, .. } = job;
        // The slot is gone if the plan was replaced meanwhile; it is never
        // refilled over an executable it already has.
        if let Some((_, slot @ None)) = self.tasks.get_mut(&(stage, task)) {
            *slot = Some(exe);
        }
        let outputs = outputs?;
        self.held.insert((frame, stage, task), outputs.clone());
        Ok(TaskDone { device: self.device, frame, stage, task, outputs, compute_ms })
    }

    /// Drops what this device holds for a completed frame.
    pub fn forget(&mut self, frame: u64) {
        self.held.retain(|k, _| k.0 != frame);
    }
}
