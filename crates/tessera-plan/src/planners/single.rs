//! `single`: the whole model on device 0 (the reference every speed-up is
//! measured against). `offload`: the whole model on the one device that
//! finishes a frame soonest, link included (seed 004 §V-B "Offload").

use super::common::{best_of, new_plan};
use super::{Planner, Request};
use crate::error::{PlanError, Result};
use crate::plan::{Plan, Split, Stage};
use crate::sim::SimConfig;
use crate::volume::is_free;

fn whole_on(req: &Request, device: usize, name: &str) -> Result<Plan> {
    let g = req.graph;
    let first = (0..g.len()).find(|&n| !is_free(&g.node(n).op)).ok_or_else(|| PlanError::Invalid("model has no computation".into()))?;
    Ok(new_plan(g, req.cluster, name, vec![Stage::new(g, first, g.len(), Split::whole(device))]))
}

pub struct Single;
impl Planner for Single {
    fn name(&self) -> &'static str {
        "single"
    }
    fn about(&self) -> &'static str {
        "whole model on device 0"
    }
    fn plan(&self, req: &Request) -> Result<Plan> {
        whole_on(req, 0, "single")
    }
}

pub struct Offload;
impl Planner for Offload {
    fn name(&self) -> &'static str {
        "offload"
    }
    fn about(&self) -> &'static str {
        "whole model on the fastest device, link included (seed 004 baseline)"
    }
    fn plan(&self, req: &Request) -> Result<Plan> {
        let plans = (0..req.cluster.len()).map(|d| whole_on(req, d, "offload")).collect::<Result<Vec<_>>>()?;
        // One frame at a time: offload is judged on latency.
        best_of(req.graph, req.cluster, SimConfig { frames: 1, window: 1 }, plans)
            .map(|(p, _)| p)
            .ok_or_else(|| PlanError::Infeasible("no single device can hold the whole model".into()))
    }
}
