//! Baselines that model devices and links linearly (seed 004 §V-B):
//! - `modnn` (MoDNN): layer by layer, each layer split by rows (conv) or
//!   outputs (dense) in proportion to each device's computing capability;
//!   the network is not considered.
//! - `coedge` (CoEdge): layer by layer, shares chosen so that the linear
//!   compute + transfer time of every device is equal.
//! - `aofl` (AOFL): fused layer volumes, shares from the same linear
//!   compute + network model, partition points searched exhaustively under
//!   that model (here: an exact DP over unit boundaries, the same optimum).

use super::common::{capability, new_plan, unit_infos, weighted_stage, UnitInfo};
use super::{Planner, Request};
use crate::device::Cluster;
use crate::error::Result;
use crate::plan::{Plan, SplitKind};
use crate::units::{units, Unit};
use crate::volume::Volume;
use tessera_graph::Graph;

const PREFER: [SplitKind; 2] = [SplitKind::Rows, SplitKind::OutChannels];

pub struct Modnn;
impl Planner for Modnn {
    fn name(&self) -> &'static str {
        "modnn"
    }
    fn about(&self) -> &'static str {
        "MoDNN: layer-by-layer splits proportional to device capability (linear, network-blind)"
    }
    fn plan(&self, req: &Request) -> Result<Plan> {
        let g = req.graph;
        let us = units(g);
        let caps: Vec<f64> = req.cluster.devices.iter().map(|d| capability(&d.profile)).collect();
        let stages = (0..us.len()).map(|i| weighted_stage(g, &us, i, i + 1, &caps, &PREFER)).collect();
        Ok(new_plan(g, req.cluster, "modnn", stages))
    }
}

/// Linear per-unit-of-split cost on every device: compute ms per row at the
/// device's capability plus transfer ms per row at its bandwidth.
fn linear_weights(g: &Graph, us: &[Unit], a: usize, b: usize, info: &[UnitInfo], cluster: &Cluster) -> (Vec<f64>, f64) {
    let vol = Volume::new(g, &g.consumers(), us[a].start, us[b - 1].end).expect("unit range");
    let ext = PREFER.iter().find(|&&k| vol.supports(g, k).is_ok()).and_then(|&k| vol.extent(g, k)).unwrap_or(1) as f64;
    let flops: f64 = info[a..b].iter().map(|i| i.flops).sum();
    let in_bytes = if a == 0 { super::common::input_bytes(g) } else { info[a - 1].out_bytes };
    let out_bytes = info[b - 1].out_bytes;
    let per_unit: Vec<f64> = cluster
        .devices
        .iter()
        .map(|d| {
            let compute = flops / ext / capability(&d.profile);
            let bytes_per_ms = d.link.mbps * 1e3 / 8.0;
            compute + (in_bytes + out_bytes) / ext / bytes_per_ms
        })
        .collect();
    let speed: Vec<f64> = per_unit.iter().map(|c| 1.0 / c).collect();
    // Equal finish time: x_d ∝ 1 / cost_d; predicted time = ext / Σ(1/cost_d) + link latency.
    let lat = cluster.devices.iter().map(|d| 2.0 * d.link.latency_ms).fold(0.0, f64::max);
    let t = ext / speed.iter().sum::<f64>() + lat;
    (speed, t)
}

pub struct CoEdge;
impl Planner for CoEdge {
    fn name(&self) -> &'static str {
        "coedge"
    }
    fn about(&self) -> &'static str {
        "CoEdge: layer-by-layer splits equalising linear compute + transfer time"
    }
    fn plan(&self, req: &Request) -> Result<Plan> {
        let g = req.graph;
        let us = units(g);
        let info = unit_infos(g, &us);
        let stages = (0..us.len())
            .map(|i| {
                let (w, _) = linear_weights(g, &us, i, i + 1, &info, req.cluster);
                weighted_stage(g, &us, i, i + 1, &w, &PREFER)
            })
            .collect();
        Ok(new_plan(g, req.cluster, "coedge", stages))
    }
}

pub struct Aofl;
impl Planner for Aofl {
    fn name(&self) -> &'static str {
        "aofl"
    }
    fn about(&self) -> &'static str {
        "AOFL: fused layer volumes, linear compute + network shares, partition points optimal under the linear model"
    }
    fn plan(&self, req: &Request) -> Result<Plan> {
        let g = req.graph;
        let us = units(g);
        let info = unit_infos(g, &us);
        let n = us.len();
        let consumers = g.consumers();
        // dp[j]: best predicted latency of units [0, j).
        let mut dp = vec![f64::INFINITY; n + 1];
        let mut arg = vec![0usize; n + 1];
        dp[0] = 0.0;
        for j in 1..=n {
            for i in 0..j {
                if !dp[i].is_finite() {
                    continue;
                }
                let vol = Volume::new(g, &consumers, us[i].start, us[j - 1].end).expect("unit range");
                let splittable = PREFER.iter().any(|&k| vol.supports(g, k).is_ok());
                if !splittable && j - i > 1 {
                    continue;
                }
                let (_, t) = linear_weights(g, &us, i, j, &info, req.cluster);
                if dp[i] + t < dp[j] {
                    dp[j] = dp[i] + t;
                    arg[j] = i;
                }
            }
        }
        let mut bounds = vec![n];
        while *bounds.last().unwrap() > 0 {
            bounds.push(arg[*bounds.last().unwrap()]);
        }
        bounds.reverse();
        let stages = bounds
            .windows(2)
            .map(|w| {
                let (wts, _) = linear_weights(g, &us, w[0], w[1], &info, req.cluster);
                weighted_stage(g, &us, w[0], w[1], &wts, &PREFER)
            })
            .collect();
        Ok(new_plan(g, req.cluster, "aofl", stages))
    }
}
