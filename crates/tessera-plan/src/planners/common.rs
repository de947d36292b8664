//! Shared planning helpers: plan scaffolding, cut arithmetic, evaluation.

use serde::Serialize;
use tessera_graph::Graph;

use crate::device::Cluster;
use crate::error::Result;
use crate::estimate::{bound, check_memory, cost_plan, Bound};
use crate::plan::{Plan, Split, Stage};
use crate::sim::{simulate, SimConfig, SimReport};
use crate::units::Unit;

/// A plan skeleton for a request.
pub fn new_plan(g: &Graph, cluster: &Cluster, planner: &str, stages: Vec<Stage>) -> Plan {
    let _ = g;
    Plan { model: g.name.clone(), planner: planner.into(), devices: cluster.devices.iter().map(|d| d.name.clone()).collect(), stages }
}

/// Stage spanning units `[a, b)`.
pub fn unit_stage(g: &Graph, units: &[Unit], a: usize, b: usize, split: Split) -> Stage {
    Stage::new(g, units[a].start, units[b - 1].end, split)
}

/// Integer cut points `[0, .., extent]` with part sizes proportional to
/// `weights` (largest-remainder rounding; zero weight → empty part).
pub fn proportional_cuts(extent: usize, weights: &[f64]) -> Vec<usize> {
    let total: f64 = weights.iter().map(|w| w.max(0.0)).sum();
    let n = weights.len();
    if n == 0 {
        return vec![0, extent];
    }
    if total <= 0.0 {
        return proportional_cuts(extent, &vec![1.0; n]);
    }
    let exact: Vec<f64> = weights.iter().map(|w| w.max(0.0) / total * extent as f64).collect();
    let mut sizes: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut left = extent - sizes.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        if weights[i] > 0.0 {
            sizes[i] += 1;
            left -= 1;
        }
    }
    let mut cuts = vec![0];
    for s in sizes {
        cuts.push(cuts.last().unwrap() + s);
    }
    cuts
}

/// A plan's figures: analytic bound and simulation.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub ips: f64,
    pub latency_ms: f64,
    pub bound_ips: f64,
    pub bound_latency_ms: f64,
    pub report: SimReport,
}

/// Validates, memory-checks and simulates a plan.
pub fn evaluate(g: &Graph, plan: &Plan, cluster: &Cluster, sim: SimConfig) -> Result<Evaluation> {
    plan.validate(g, cluster)?;
    let cp = cost_plan(g, plan, cluster)?;
    check_memory(&cp, cluster)?;
    let Bound { ips, latency_ms } = bound(&cp, cluster);
    let report = simulate(&cp, cluster, sim);
    Ok(Evaluation { ips: report.ips, latency_ms: report.latency_ms, bound_ips: ips, bound_latency_ms: latency_ms, report })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_cuts_sum_and_follow_weights() {
        assert_eq!(proportional_cuts(10, &[1.0, 1.0]), vec![0, 5, 10]);
        assert_eq!(proportional_cuts(10, &[3.0, 1.0, 0.0]), vec![0, 8, 10, 10]);
        let c = proportional_cuts(224, &[0.3, 2.0, 1.7, 0.01]);
        assert_eq!(*c.last().unwrap(), 224);
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
    }
}

/// Per-unit figures planners share.
#[derive(Clone, Debug)]
pub struct UnitInfo {
    pub macs: f64,
    pub flops: f64,
    pub params: f64,
    pub weight_bytes: f64,
    /// Bytes of the unit's output value (what crosses to the next unit).
    pub out_bytes: f64,
    /// Largest activation inside the unit (bytes).
    pub peak_bytes: f64,
    /// Whether the unit contains a pooling node (HyPS optional split point).
    pub pools: bool,
}

/// Figures of every unit.
pub fn unit_infos(g: &Graph, units: &[Unit]) -> Vec<UnitInfo> {
    units
        .iter()
        .map(|u| {
            let mut i = UnitInfo { macs: 0.0, flops: 0.0, params: 0.0, weight_bytes: 0.0, out_bytes: 0.0, peak_bytes: 0.0, pools: false };
            for n in u.start..u.end {
                let c = tessera_graph::node_cost(g, n);
                i.macs += c.macs as f64;
                i.flops += c.flops() as f64;
                i.params += c.params as f64;
                i.weight_bytes += c.weight_bytes as f64;
                i.peak_bytes = i.peak_bytes.max(4.0 * (c.input_elems + c.output_elems) as f64);
                i.pools |= matches!(g.node(n).op, tessera_graph::Op::MaxPool(_) | tessera_graph::Op::AveragePool(_) | tessera_graph::Op::GlobalAveragePool);
            }
            let last = (u.start..u.end).rev().find(|&n| !crate::volume::is_free(&g.node(n).op)).unwrap_or(u.end - 1);
            i.out_bytes = 4.0 * g.node(last).out_elems() as f64;
            i
        })
        .collect()
}

/// Latency of unit `u` run whole on a device.
pub fn unit_ms(g: &Graph, u: &Unit, p: &crate::device::DeviceProfile) -> f64 {
    (u.start..u.end).filter(|&n| !crate::volume::is_free(&g.node(n).op)).map(|n| p.node_ms(g, n)).sum()
}

/// Bytes of the graph's first input.
pub fn input_bytes(g: &Graph) -> f64 {
    4.0 * g.input_shape().iter().product::<usize>() as f64
}

/// A device's speed on a reference 3x3 convolution (FLOPs per ms): the
/// "computing capability" single number that linear-model planners use.
pub fn capability(p: &crate::device::DeviceProfile) -> f64 {
    let f = 1e9;
    f / p.op_ms(crate::device::OpClass::Conv, f)
}

/// Index of the plan (among `plans`) with the best simulated throughput,
/// ties broken by latency; plans that fail evaluation are skipped.
pub fn best_of(g: &Graph, cluster: &Cluster, sim: SimConfig, plans: Vec<Plan>) -> Option<(Plan, Evaluation)> {
    let mut best: Option<(Plan, Evaluation)> = None;
    for p in plans {
        let Ok(e) = evaluate(g, &p, cluster, sim) else { continue };
        let better = match &best {
            None => true,
            Some((_, b)) => e.ips > b.ips * (1.0 + 1e-9) || (e.ips >= b.ips * (1.0 - 1e-9) && e.latency_ms < b.latency_ms),
        };
        if better {
            best = Some((p, e));
        }
    }
    best
}

/// Splits units `[a, b)` into one stage whose part sizes follow `weights`
/// (one per device, zero = unused): by output rows where the volume allows
/// it, else by output channels, else whole on the device of largest weight.
pub fn weighted_stage(g: &Graph, units: &[Unit], a: usize, b: usize, weights: &[f64], prefer: &[crate::plan::SplitKind]) -> Stage {
    use crate::plan::SplitKind;
    let vol = crate::volume::Volume::new(g, &g.consumers(), units[a].start, units[b - 1].end).expect("unit range");
    for &kind in prefer {
        if vol.supports(g, kind).is_ok() {
            let ext = vol.extent(g, kind).unwrap_or(1);
            let cuts = proportional_cuts(ext, weights);
            return unit_stage(g, units, a, b, Split::cut(kind, cuts, (0..weights.len()).collect()));
        }
    }
    let _ = SplitKind::Whole;
    let best = (0..weights.len()).max_by(|&x, &y| weights[x].total_cmp(&weights[y])).unwrap_or(0);
    unit_stage(g, units, a, b, Split::whole(best))
}

/// `rows × cols` factorisation of `n` closest to square (rows <= cols).
pub fn grid_shape(n: usize) -> (usize, usize) {
    let mut best = (1, n);
    for r in 1..=n {
        if n % r == 0 && r <= n / r {
            best = (r, n / r);
        }
    }
    best
}
