//! Plan → tasks: every part of every stage becomes a task (a device, the
//! regions it reads and writes, and the sub-graph that computes them), and
//! the merge that turns part outputs back into the stage's output values.
//! The in-process executor and the mesh run exactly these tasks.

use std::collections::HashMap;

use tessera_graph::{Graph, NodeId, Tensor};

use crate::error::{PlanError, Result};
use crate::plan::{Plan, SplitKind};
use crate::region::{extract, insert, Region};
use crate::split::{geometry, part_graph, Merge, PartGeometry};
use crate::volume::Volume;

/// One unit of work for one device.
#[derive(Clone, Debug)]
pub struct Task {
    pub stage: usize,
    pub device: usize,
    pub geometry: PartGeometry,
    /// Computes `geometry.outputs` from `geometry.inputs` (in order).
    pub graph: Graph,
}

impl Task {
    /// Cuts this task's inputs out of the full stage-input values.
    pub fn slice_inputs(&self, values: &HashMap<NodeId, Tensor>) -> Result<Vec<Tensor>> {
        self.geometry
            .inputs
            .iter()
            .map(|p| {
                let t = values.get(&p.value).ok_or_else(|| PlanError::Invalid(format!("value {} is not available", p.value)))?;
                Ok(if p.region == Region::full(t.shape()) { t.clone() } else { extract(t, &p.region) })
            })
            .collect()
    }
}

/// The tasks of one stage.
#[derive(Clone, Debug)]
pub struct StageTasks {
    pub stage: usize,
    pub kind: SplitKind,
    pub volume: Volume,
    pub tasks: Vec<Task>,
}

impl StageTasks {
    /// Tasks that run for frame `frame`: all of them, or for replicas the
    /// one whose turn it is.
    pub fn tasks_for_frame(&self, frame: usize) -> Vec<&Task> {
        match self.kind {
            SplitKind::Replicas => vec![&self.tasks[frame % self.tasks.len()]],
            _ => self.tasks.iter().collect(),
        }
    }

    /// Combines task outputs (one `Vec` per task run, in the order of
    /// `tasks_for_frame`) into the stage's output values.
    pub fn merge(&self, g: &Graph, ran: &[&Task], outputs: Vec<Vec<Tensor>>) -> Result<HashMap<NodeId, Tensor>> {
        let mut values: HashMap<NodeId, Tensor> = HashMap::new();
        for (task, outs) in ran.iter().zip(outputs) {
            if outs.len() != task.geometry.outputs.len() {
                return Err(PlanError::Invalid(format!("stage {}: a task returned {} outputs, expected {}", self.stage, outs.len(), task.geometry.outputs.len())));
            }
            for (piece, t) in task.geometry.outputs.iter().zip(outs) {
                if t.shape() != piece.region.shape().as_slice() {
                    return Err(PlanError::Invalid(format!("stage {}: a task returned shape {:?}, expected {:?}", self.stage, t.shape(), piece.region.shape())));
                }
                let full = &g.node(piece.value).shape;
                let dst = values.entry(piece.value).or_insert_with(|| Tensor::zeros(full));
                let add = matches!(task.geometry.merge, Merge::Sum { .. });
                insert(dst, &piece.region, &t, add);
            }
        }
        if let Some(t) = ran.first() {
            if let Merge::Sum { bias, act } = &t.geometry.merge {
                for v in values.values_mut() {
                    epilogue(v, bias.as_deref(), *act);
                }
            }
        }
        Ok(values)
    }
}

/// Adds a per-channel (axis 1) bias and applies an activation in place.
fn epilogue(t: &mut Tensor, bias: Option<&Tensor>, act: tessera_graph::Activation) {
    let shape = t.shape().to_vec();
    let c = shape.get(1).copied().unwrap_or(1);
    let inner: usize = shape.get(2..).map_or(1, |s| s.iter().product());
    for (i, v) in t.data_mut().iter_mut().enumerate() {
        let ch = (i / inner) % c;
        let b = bias.map_or(0.0, |b| b.data()[ch]);
        *v = act.apply(*v + b);
    }
}

/// Builds the tasks of every stage of a validated plan, checking that the
/// parts of each stage cover its output exactly once.
pub fn build(g: &Graph, plan: &Plan) -> Result<Vec<StageTasks>> {
    let consumers = g.consumers();
    let mut out = Vec::with_capacity(plan.stages.len());
    for (i, st) in plan.stages.iter().enumerate() {
        let err = |msg: String| PlanError::Split { stage: i, first: st.first.clone(), last: st.last.clone(), msg };
        let volume = Volume::new(g, &consumers, st.start, st.end).map_err(err)?;
        let mut tasks = Vec::new();
        for (spec, device) in st.parts() {
            let geo = geometry(g, &volume, spec).map_err(err)?;
            let graph = part_graph(g, &volume, &geo).map_err(err)?;
            tasks.push(Task { stage: i, device, geometry: geo, graph });
        }
        if tasks.is_empty() {
            return Err(err("every part is empty".into()));
        }
        check_cover(g, &tasks, st.split.kind).map_err(err)?;
        out.push(StageTasks { stage: i, kind: st.split.kind, volume, tasks });
    }
    Ok(out)
}

/// Every output element computed exactly once: placed pieces are pairwise
/// disjoint and fill the value; partial sums each cover the whole value.
fn check_cover(g: &Graph, tasks: &[Task], kind: SplitKind) -> std::result::Result<(), String> {
    if matches!(kind, SplitKind::Whole | SplitKind::Replicas) {
        return Ok(());
    }
    let pieces: Vec<_> = tasks.iter().flat_map(|t| t.geometry.outputs.iter().map(move |p| (p, &t.geometry.merge))).collect();
    let value = pieces[0].0.value;
    let full = Region::full(&g.node(value).shape);
    if matches!(pieces[0].1, Merge::Sum { .. }) {
        if pieces.iter().all(|(p, _)| p.region == full) {
            return Ok(());
        }
        return Err("partial sums must each cover the whole output".into());
    }
    let total: usize = pieces.iter().map(|(p, _)| p.region.numel()).sum();
    for (a, (p, _)) in pieces.iter().enumerate() {
        for (q, _) in &pieces[a + 1..] {
            if !p.region.disjoint(&q.region) {
                return Err(format!("parts {:?} and {:?} overlap", p.region, q.region));
            }
        }
    }
    if total != full.numel() {
        return Err(format!("parts cover {total} of {} output elements", full.numel()));
    }
    Ok(())
}
