//! A plan in execution on the coordinator: the plan, its compiled program
//! and hub, which member runs each device index, what was shipped, what the
//! cost model predicts, and the traffic it actually caused.

use std::collections::BTreeSet;
use std::sync::Arc;

use tessera_graph::Graph;
use tessera_plan::estimate;
use tessera_plan::plan::PartSpec;
use tessera_plan::{Cluster, Plan, SplitKind};
use tessera_runtime::{Hub, Program, Runner};

use crate::PeerId;

/// Who runs a device index of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    /// A peer of the room.
    Peer(PeerId),
    /// The coordinator itself (local fallback).
    Local,
}

/// Lifecycle of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanState {
    /// Shipped; waiting for every member's LoadAck.
    Loading,
    /// New frames are admitted here.
    Running,
    /// Superseded: finishing its frames, then unloaded.
    Draining,
}

impl PlanState {
    /// Lower-case name for the status.
    pub fn name(self) -> &'static str {
        match self {
            PlanState::Loading => "loading",
            PlanState::Running => "running",
            PlanState::Draining => "draining",
        }
    }
}

/// Traffic a plan caused while running.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    pub frames_done: u64,
    pub run_wire: u64,
    pub done_wire: u64,
    pub run_tensor: u64,
    pub done_tensor: u64,
}

/// A plan being loaded, run or drained.
pub(crate) struct Active {
    pub epoch: u32,
    pub reason: String,
    pub plan: Plan,
    pub cluster: Cluster,
    pub program: Arc<Program>,
    pub hub: Hub,
    pub members: Vec<Member>,
    pub pending: BTreeSet<PeerId>,
    pub state: PlanState,
    /// Predicted compute ms of every task, `[stage][task]`.
    pub predicted_ms: Vec<Vec<f64>>,
    /// Frames admitted and not complete.
    pub frames: BTreeSet<u64>,
    pub local: Option<Runner>,
    pub started_ms: f64,
    pub ready_ms: Option<f64>,
    /// Task bytes (hub → devices and back) per frame the plan implies.
    pub predicted_bytes_per_frame: f64,
    pub bound: Option<estimate::Bound>,
    /// Weight bytes shipped to each member.
    pub weight_bytes: Vec<u64>,
    pub traffic: Traffic,
}

impl Active {
    /// True if `id` runs part of this plan.
    pub fn has_peer(&self, id: PeerId) -> bool {
        self.members.contains(&Member::Peer(id))
    }

    /// The device index of peer `id`.
    pub fn device_of(&self, id: PeerId) -> Option<usize> {
        self.members.iter().position(|m| *m == Member::Peer(id))
    }
}

/// Per-task predicted compute time on its device, `[stage][task]` (0 where
/// the plan cannot be costed).
pub fn predicted_ms(g: &Graph, plan: &Plan, cluster: &Cluster) -> Vec<Vec<f64>> {
    match estimate::cost_plan(g, plan, cluster) {
        Ok(cp) => cp.stages.iter().map(|s| s.tasks.iter().map(|t| t.compute_ms).collect()).collect(),
        Err(_) => plan.stages.iter().map(|s| vec![0.0; s.parts().len()]).collect(),
    }
}

/// The analytic bound of a plan, if it can be costed.
pub fn bound(g: &Graph, plan: &Plan, cluster: &Cluster) -> Option<estimate::Bound> {
    estimate::cost_plan(g, plan, cluster).ok().map(|cp| estimate::bound(&cp, cluster))
}

/// Bytes per frame between hub and devices that the plan implies: for
/// every task that runs for a frame, what the hub sends (its fetch plan's
/// remote boxes) and what the device returns (its output pieces); replica
/// stages count one replica per frame. Tensor payload only: the same
/// quantity `tessera_plan::estimate::bound` charges the links with.
pub fn predicted_bytes_per_frame(p: &Program) -> f64 {
    let mut total = 0.0;
    for (s, st) in p.stages.iter().enumerate() {
        let share = if st.kind == SplitKind::Replicas { 1.0 / st.tasks.len().max(1) as f64 } else { 1.0 };
        for (k, t) in st.tasks.iter().enumerate() {
            let down: f64 = p.fetch[s][k].iter().map(|f| f.remote_bytes()).sum();
            total += share * (down + t.geometry.out_bytes());
        }
    }
    total
}

/// One line describing task `k` of stage `s` for the peer page.
pub fn task_label(g: &Graph, plan: &Plan, s: usize, k: usize) -> String {
    let st = &plan.stages[s];
    let layers = (st.start..st.end).filter(|&n| !tessera_plan::volume::is_free(&g.node(n).op)).count();
    let part = match st.parts().get(k).map(|p| p.0) {
        Some(PartSpec::Whole) if st.split.kind == SplitKind::Replicas => format!("replica {} of {}", k + 1, st.split.devices.len()),
        Some(PartSpec::Whole) | None => "whole".to_string(),
        Some(PartSpec::Tile { rows, cols }) if cols.end == usize::MAX => format!("rows {}..{}", rows.start, rows.end),
        Some(PartSpec::Tile { rows, cols }) => format!("tile rows {}..{} x cols {}..{}", rows.start, rows.end, cols.start, cols.end),
        Some(PartSpec::OutChannels(c)) => format!("out-channels {}..{}", c.start, c.end),
        Some(PartSpec::InChannels(c)) => format!("in-channels {}..{} (partial sums)", c.start, c.end),
        Some(PartSpec::Fused(c)) => format!("fused channels {}..{}", c.start, c.end),
    };
    format!("stage {}/{}: {}..{} ({} layer{}), {}", s + 1, plan.stages.len(), st.first, st.last, layers, if layers == 1 { "" } else { "s" }, part)
}
