//! The coordinator's side of execution: frames in, tasks out, outputs
//! merged, results out. Every stage's input and output values are kept
//! until the frame completes, so any task can be re-sent (to the same or
//! another device) without recomputing earlier stages.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tessera_graph::{Graph, NodeId, Tensor};
use tessera_plan::region::extract;
use tessera_plan::reuse::{self, Fetch, StageIo, TaskIo};
use tessera_plan::tasks::{self, StageTasks};
use tessera_plan::Plan;

use crate::error::{Result, RuntimeError};
use crate::msg::{RunTask, TaskDone};

/// A compiled plan: stages with their tasks and fetch plans. Shared by the
/// hub and every runner.
pub struct Program {
    pub graph: Arc<Graph>,
    pub stages: Vec<StageTasks>,
    /// `[stage][task][input]`.
    pub fetch: Vec<Vec<Vec<Fetch>>>,
    /// Producing stage of every value.
    pub producer: Vec<Option<usize>>,
}

impl Program {
    /// Builds the tasks of a validated plan.
    pub fn new(g: Arc<Graph>, plan: &Plan) -> Result<Program> {
        let stages = tasks::build(&g, plan)?;
        let mut producer = vec![None; g.len()];
        for (si, st) in plan.stages.iter().enumerate() {
            for n in st.start..st.end {
                if !tessera_plan::volume::is_free(&g.node(n).op) {
                    producer[n] = Some(si);
                }
            }
        }
        let io: Vec<StageIo> = stages
            .iter()
            .map(|s| StageIo {
                kind: s.kind,
                tasks: s.tasks.iter().map(|t| TaskIo { device: t.device, inputs: t.geometry.inputs.clone(), outputs: t.geometry.outputs.clone() }).collect(),
            })
            .collect();
        let fetch = reuse::plan(&io, &|v| producer[v]);
        Ok(Program { graph: g, stages, fetch, producer })
    }
}

/// What a frame is waiting for.
struct FrameState {
    values: HashMap<NodeId, Tensor>,
    dispatched: Vec<Vec<bool>>,
    /// Outputs received per stage, per task (in `tasks_for_frame` order).
    received: Vec<Vec<Option<Vec<Tensor>>>>,
    merged: Vec<bool>,
}

/// Send this task to this device.
#[derive(Debug)]
pub struct Dispatch {
    pub device: usize,
    pub task: RunTask,
}

/// The hub state machine.
pub struct Hub {
    pub program: Arc<Program>,
    frames: BTreeMap<u64, FrameState>,
}

impl Hub {
    pub fn new(program: Arc<Program>) -> Hub {
        Hub { program, frames: BTreeMap::new() }
    }

    /// Frames admitted and not yet complete.
    pub fn in_flight(&self) -> usize {
        self.frames.len()
    }

    /// Starts frame `frame` with the graph inputs; returns the tasks that
    /// can be sent right away.
    pub fn admit(&mut self, frame: u64, inputs: Vec<Tensor>) -> Result<Vec<Dispatch>> {
        let p = &self.program;
        p.graph.check_inputs(&inputs)?;
        if self.frames.contains_key(&frame) {
            return Err(RuntimeError::Protocol(format!("frame {frame} admitted twice")));
        }
        let mut values = HashMap::new();
        for (&id, t) in p.graph.inputs().iter().zip(inputs) {
            values.insert(id, t);
        }
        let ns = p.stages.len();
        let st = FrameState {
            values,
            dispatched: p.stages.iter().map(|s| vec![false; s.tasks.len()]).collect(),
            received: (0..ns).map(|s| vec![None; p.stages[s].tasks_for_frame(frame as usize).len()]).collect(),
            merged: vec![false; ns],
        };
        self.frames.insert(frame, st);
        Ok(self.ready(frame))
    }

    /// Index of task `task` within stage `stage`'s tasks for `frame`.
    fn slot(&self, frame: u64, stage: usize, task: usize) -> Option<usize> {
        let st = &self.program.stages[stage];
        st.tasks_for_frame(frame as usize).iter().position(|t| std::ptr::eq(*t, &st.tasks[task]))
    }

    /// Tasks of `frame` whose hub inputs are present and whose local inputs
    /// were dispatched (to the same device, which runs them in order).
    fn ready(&mut self, frame: u64) -> Vec<Dispatch> {
        let p = self.program.clone();
        let Some(fs) = self.frames.get_mut(&frame) else { return vec![] };
        let mut out = Vec::new();
        // Stages in order, so local producers are dispatched before consumers.
        for (s, st) in p.stages.iter().enumerate() {
            let runs: Vec<usize> = st.tasks_for_frame(frame as usize).iter().map(|t| st.tasks.iter().position(|x| std::ptr::eq(x, *t)).unwrap()).collect();
            for k in runs {
                if fs.dispatched[s][k] {
                    continue;
                }
                let fetch = &p.fetch[s][k];
                let task = &st.tasks[k];
                let hub_ok = task.geometry.inputs.iter().zip(fetch).all(|(piece, f)| f.remote.is_empty() || fs.values.contains_key(&piece.value));
                let local_ok = fetch.iter().all(|f| f.local.as_ref().is_none_or(|(ls, lk, _)| fs.dispatched[*ls][*lk]));
                if !(hub_ok && local_ok) {
                    continue;
                }
                let remote = task
                    .geometry
                    .inputs
                    .iter()
                    .zip(fetch)
                    .map(|(piece, f)| {
                        let v = &fs.values.get(&piece.value);
                        f.remote.iter().map(|b| extract(v.expect("checked"), b)).collect()
                    })
                    .collect();
                fs.dispatched[s][k] = true;
                out.push(Dispatch { device: task.device, task: RunTask { frame, stage: s, task: k, remote } });
            }
        }
        out
    }

    /// Accepts a task's outputs; returns new dispatches and, if the frame is
    /// complete, its graph outputs.
    pub fn complete(&mut self, done: TaskDone) -> Result<(Vec<Dispatch>, Option<(u64, Vec<Tensor>)>)> {
        let p = self.program.clone();
        let (frame, s, k) = (done.frame, done.stage, done.task);
        if s >= p.stages.len() || k >= p.stages[s].tasks.len() {
            return Err(RuntimeError::Protocol(format!("no task {k} in stage {s}")));
        }
        let slot = self.slot(frame, s, k).ok_or_else(|| RuntimeError::Protocol(format!("task {s}/{k} does not run for frame {frame}")))?;
        let fs = self.frames.get_mut(&frame).ok_or_else(|| RuntimeError::Protocol(format!("frame {frame} is not in flight")))?;
        if fs.merged[s] || fs.received[s][slot].is_some() {
            return Ok((vec![], None)); // a duplicate (re-sent task): ignore
        }
        fs.received[s][slot] = Some(done.outputs);
        if fs.received[s].iter().all(|r| r.is_some()) {
            let st = &p.stages[s];
            let ran = st.tasks_for_frame(frame as usize);
            let outs: Vec<Vec<Tensor>> = fs.received[s].iter_mut().map(|r| r.take().unwrap()).collect();
            let merged = st.merge(&p.graph, &ran, outs)?;
            fs.values.extend(merged);
            fs.merged[s] = true;
        }
        let dispatch = self.ready(frame);
        let fs = &self.frames[&frame];
        let done_frame = p.graph.outputs().iter().all(|o| fs.values.contains_key(o));
        if done_frame {
            let mut fs = self.frames.remove(&frame).unwrap();
            let outs = p.graph.outputs().iter().map(|o| fs.values.remove(o).unwrap()).collect();
            return Ok((dispatch, Some((frame, outs))));
        }
        Ok((dispatch, None))
    }
}
