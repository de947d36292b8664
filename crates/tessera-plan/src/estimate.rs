//! What a plan costs on a cluster: per-task compute time from the device
//! profiles, bytes over each link, memory per device, and a fast analytic
//! bound on throughput and latency for planners' inner loops. The
//! discrete-event simulator ([`crate::sim`]) runs on the same costed tasks.

use tessera_graph::{Graph, NodeId};

use crate::device::Cluster;
use crate::error::{PlanError, Result};
use crate::plan::{Plan, SplitKind};
use crate::reuse::{self, StageIo, TaskIo};
use crate::split::{geometry, Piece};
use crate::volume::{is_free, Volume};

/// One task with its costs on its device.
#[derive(Clone, Debug)]
pub struct CostedTask {
    pub device: usize,
    /// Compute time on the device, ms (kernels + task overhead).
    pub compute_ms: f64,
    pub inputs: Vec<Piece>,
    pub outputs: Vec<Piece>,
    pub in_bytes: f64,
    pub out_bytes: f64,
    pub weight_bytes: f64,
    /// Peak bytes of activations while the task runs.
    pub working_bytes: f64,
}

/// A stage's costed tasks.
#[derive(Clone, Debug)]
pub struct CostedStage {
    pub kind: SplitKind,
    pub tasks: Vec<CostedTask>,
    /// Values the stage reads that an earlier stage produces.
    pub deps: Vec<NodeId>,
    /// Values the stage produces.
    pub outputs: Vec<NodeId>,
}

/// A plan with every task costed: the input of the simulator.
#[derive(Clone, Debug)]
pub struct CostedPlan {
    pub stages: Vec<CostedStage>,
    /// Producing stage of every value (None: graph input or constant).
    pub producer: Vec<Option<usize>>,
    pub graph_outputs: Vec<NodeId>,
}

impl CostedPlan {
    /// Where every task input comes from (the rule of [`crate::reuse`]).
    pub fn fetch_plan(&self) -> Vec<Vec<Vec<reuse::Fetch>>> {
        let io: Vec<StageIo> = self
            .stages
            .iter()
            .map(|st| StageIo { kind: st.kind, tasks: st.tasks.iter().map(|t| TaskIo { device: t.device, inputs: t.inputs.clone(), outputs: t.outputs.clone() }).collect() })
            .collect();
        reuse::plan(&io, &|v| self.producer[v])
    }
}

/// Costs every task of `plan` on `cluster` (the plan must be valid).
pub fn cost_plan(g: &Graph, plan: &Plan, cluster: &Cluster) -> Result<CostedPlan> {
    let consumers = g.consumers();
    let mut producer = vec![None; g.len()];
    let mut stages = Vec::with_capacity(plan.stages.len());
    for (si, st) in plan.stages.iter().enumerate() {
        let err = |msg: String| PlanError::Split { stage: si, first: st.first.clone(), last: st.last.clone(), msg };
        let vol = Volume::new(g, &consumers, st.start, st.end).map_err(err)?;
        let mut tasks = Vec::new();
        for (spec, d) in st.parts() {
            let geo = geometry(g, &vol, spec).map_err(err)?;
            let dev = &cluster.devices[d];
            let compute_ms = dev.profile.task_overhead_ms + geo.work.iter().map(|w| dev.profile.op_ms(w.class, w.flops)).sum::<f64>();
            let biggest = geo.regions.iter().map(|(_, r)| r.numel()).max().unwrap_or(0) as f64 * 4.0;
            tasks.push(CostedTask {
                device: d,
                compute_ms,
                in_bytes: geo.in_bytes(),
                out_bytes: geo.out_bytes(),
                weight_bytes: geo.weight_bytes,
                working_bytes: geo.in_bytes() + 2.0 * biggest,
                inputs: geo.inputs,
                outputs: geo.outputs,
            });
        }
        for n in st.start..st.end {
            if !is_free(&g.node(n).op) {
                producer[n] = Some(si);
            }
        }
        let deps = vol.inputs.iter().copied().filter(|&v| !is_free(&g.node(v).op)).collect();
        stages.push(CostedStage { kind: st.split.kind, tasks, deps, outputs: vol.outputs.clone() });
    }
    Ok(CostedPlan { stages, producer, graph_outputs: g.outputs().to_vec() })
}

/// Bytes a device must hold: twice the weights of all its tasks (the
/// received buffer and the kernel's packed copy) plus its largest working set.
pub fn memory_per_device(cp: &CostedPlan, devices: usize) -> Vec<f64> {
    let mut w = vec![0.0; devices];
    let mut work = vec![0.0f64; devices];
    for st in &cp.stages {
        for t in &st.tasks {
            w[t.device] += 2.0 * t.weight_bytes;
            work[t.device] = work[t.device].max(t.working_bytes);
        }
    }
    w.iter().zip(&work).map(|(a, b)| a + b).collect()
}

/// Weight bytes each device holds (once, not the packed copy).
pub fn weights_per_device(cp: &CostedPlan, devices: usize) -> Vec<f64> {
    let mut w = vec![0.0; devices];
    for t in cp.stages.iter().flat_map(|s| &s.tasks) {
        w[t.device] += t.weight_bytes;
    }
    w
}

/// HyPS's model-secret property: no device holds every weight of the model.
pub fn keeps_model_secret(g: &Graph, plan: &Plan, cluster: &Cluster) -> bool {
    let total: f64 = (0..g.len()).map(|n| g.node(n).op.weight_bytes() as f64).sum();
    match cost_plan(g, plan, cluster) {
        Ok(cp) => weights_per_device(&cp, cluster.len()).iter().all(|&w| w < total * (1.0 - 1e-9)),
        Err(_) => false,
    }
}

/// Fails if some device cannot hold its part of the plan.
pub fn check_memory(cp: &CostedPlan, cluster: &Cluster) -> Result<()> {
    for (d, need) in memory_per_device(cp, cluster.len()).into_iter().enumerate() {
        let have = cluster.devices[d].profile.usable_bytes();
        if need > have {
            return Err(PlanError::Infeasible(format!(
                "device '{}' needs {:.0} MB for its weights and activations but has {:.0} MB usable",
                cluster.devices[d].name,
                need / 1048576.0,
                have / 1048576.0
            )));
        }
    }
    Ok(())
}

/// Analytic figures of a costed plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    /// Steady-state throughput bound: 1000 / (busiest resource's ms per frame).
    pub ips: f64,
    /// One frame through an empty system, stage after stage.
    pub latency_ms: f64,
}

/// Throughput bound and latency estimate without simulation.
pub fn bound(cp: &CostedPlan, cluster: &Cluster) -> Bound {
    let n = cluster.len();
    let (mut comp, mut down, mut up) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let fetches = cp.fetch_plan();
    let mut latency = 0.0;
    for (st, fetch) in cp.stages.iter().zip(&fetches) {
        let share = if st.kind == SplitKind::Replicas { 1.0 / st.tasks.len() as f64 } else { 1.0 };
        let mut stage_ms: f64 = 0.0;
        for (t, f) in st.tasks.iter().zip(fetch) {
            let link = &cluster.devices[t.device].link;
            let d_ms = link.transfer_ms(f.iter().map(|x| x.remote_bytes()).sum(), 0.0);
            let u_ms = link.transfer_ms(t.out_bytes, 0.0);
            comp[t.device] += share * t.compute_ms;
            down[t.device] += share * d_ms;
            up[t.device] += share * u_ms;
            stage_ms = stage_ms.max(d_ms + t.compute_ms + u_ms);
        }
        latency += stage_ms;
    }
    let worst = comp.iter().chain(&down).chain(&up).fold(0.0f64, |m, v| m.max(*v));
    Bound { ips: if worst > 0.0 { 1000.0 / worst } else { f64::INFINITY }, latency_ms: latency }
}
