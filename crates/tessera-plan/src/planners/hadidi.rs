//! `hadidi` — seed 001, Procedure 1 (GenerateDistribution):
//! Step 1: layers whose memory exceeds a device's are put on the model-
//! parallelism list and split by output (dense "output splitting", conv
//! "channel splitting", Table 1-2) over as many devices as they need.
//! Step 2: the other layers are grouped into sequential stages of about the
//! same latency (a balanced pipeline), fastest devices first; devices left
//! over become data-parallel replicas of the slowest stages (§4).
//! Step 3: deploy, monitor each device's load (here: the simulator) and
//! re-run Step 2 around the bottleneck while throughput improves.

use super::common::{best_of, capability, new_plan, proportional_cuts, unit_infos, unit_ms, unit_stage};
use super::{Planner, Request};
use crate::error::Result;
use crate::plan::{Plan, Split, SplitKind, Stage};
use crate::units::{units, Unit};
use crate::volume::Volume;

pub struct Hadidi;

/// A stage under construction: units `[a, b)` and its devices.
#[derive(Clone, Debug)]
struct Group {
    a: usize,
    b: usize,
    devices: Vec<usize>,
    /// Model-parallel (output split) instead of whole/replicas.
    split: bool,
}

impl Planner for Hadidi {
    fn name(&self) -> &'static str {
        "hadidi"
    }
    fn about(&self) -> &'static str {
        "seed 001 Proc. 1: memory check -> model parallelism, latency-balanced pipeline, data-parallel replicas"
    }
    fn plan(&self, req: &Request) -> Result<Plan> {
        let g = req.graph;
        let cl = req.cluster;
        let us = units(g);
        let info = unit_infos(g, &us);
        let nd = cl.len();
        // Devices fastest first.
        let mut order: Vec<usize> = (0..nd).collect();
        order.sort_by(|&a, &b| capability(&cl.devices[b].profile).total_cmp(&capability(&cl.devices[a].profile)));
        let max_mem = cl.devices.iter().map(|d| d.profile.usable_bytes()).fold(0.0, f64::max);
        // Step 1: the model-parallelism list.
        let consumers = g.consumers();
        let needs_split: Vec<usize> = (0..us.len())
            .filter(|&i| 2.0 * info[i].weight_bytes + info[i].peak_bytes > max_mem)
            .filter(|&i| Volume::new(g, &consumers, us[i].start, us[i].end).is_ok_and(|v| v.supports(g, SplitKind::OutChannels).is_ok()))
            .collect();
        let mut candidates = Vec::new();
        for m in 1..=nd.min(us.len()) {
            let groups = balanced_groups(req, &us, &order, m, &needs_split, &info);
            candidates.push(self.to_plan(req, &us, &groups));
        }
        let Some((mut best, mut eval)) = best_of(g, cl, req.sim, candidates) else {
            return Err(crate::error::PlanError::Infeasible("no pipeline of whole layers fits the devices' memory".into()));
        };
        // Step 3: monitor and rebalance around the bottleneck.
        for _ in 0..12 {
            let Some(next) = rebalance(req, &best, &eval) else { break };
            match best_of(g, cl, req.sim, next) {
                Some((p, e)) if e.ips > eval.ips * 1.001 => {
                    best = p;
                    eval = e;
                }
                _ => break,
            }
        }
        Ok(best)
    }
}

impl Hadidi {
    fn to_plan(&self, req: &Request, us: &[Unit], groups: &[Group]) -> Plan {
        let g = req.graph;
        let stages = groups
            .iter()
            .map(|gr| {
                let split = if gr.split {
                    let vol = Volume::new(g, &g.consumers(), us[gr.a].start, us[gr.b - 1].end).expect("unit range");
                    let ext = vol.extent(g, SplitKind::OutChannels).unwrap_or(1);
                    // Memory is why the layer is split: parts follow usable memory.
                    let w: Vec<f64> = gr.devices.iter().map(|&d| req.cluster.devices[d].profile.usable_bytes()).collect();
                    Split::cut(SplitKind::OutChannels, proportional_cuts(ext, &w), gr.devices.clone())
                } else if gr.devices.len() > 1 {
                    Split { kind: SplitKind::Replicas, cuts: vec![], col_cuts: vec![], devices: gr.devices.clone() }
                } else {
                    Split::whole(gr.devices[0])
                };
                unit_stage(g, us, gr.a, gr.b, split)
            })
            .collect();
        new_plan(g, req.cluster, "hadidi", stages)
    }
}

/// Step 2: contiguous groups of units, at most `m` whole-layer stages on
/// the fastest devices (min-max latency DP), model-parallel units alone on
/// their own stage, spare devices as replicas of the slowest stages.
fn balanced_groups(req: &Request, us: &[Unit], order: &[usize], m: usize, split_units: &[usize], info: &[super::common::UnitInfo]) -> Vec<Group> {
    let g = req.graph;
    let n = us.len();
    let cl = req.cluster;
    let need = |a: usize, b: usize| -> f64 { info[a..b].iter().map(|i| 2.0 * i.weight_bytes).sum::<f64>() + info[a..b].iter().map(|i| i.peak_bytes).fold(0.0, f64::max) };
    let lat = |a: usize, b: usize, d: usize| -> f64 {
        let p = &cl.devices[d].profile;
        let link = &cl.devices[d].link;
        // Step 1's memory check, per device: a group must fit where it runs.
        if need(a, b) > p.usable_bytes() {
            return f64::INFINITY;
        }
        let inb = if a == 0 { super::common::input_bytes(g) } else { info[a - 1].out_bytes };
        (a..b).map(|u| unit_ms(g, &us[u], p)).sum::<f64>() + link.transfer_ms(inb, 0.0) + link.transfer_ms(info[b - 1].out_bytes, 0.0)
    };
    // Segments between model-parallel units are balanced independently.
    let mut groups = Vec::new();
    let mut pos = 0;
    let mut dev_cursor = 0;
    let mut bounds: Vec<usize> = split_units.to_vec();
    bounds.push(n);
    for &s in &bounds {
        if s > pos {
            let seg_len = s - pos;
            let k = m.min(seg_len).max(1);
            // dp[i][j]: min over partitions of units pos..pos+i into j groups on devices order[dev_cursor..] of the max latency.
            let devs: Vec<usize> = (0..k).map(|j| order[(dev_cursor + j) % order.len()]).collect();
            let mut dp = vec![vec![f64::INFINITY; k + 1]; seg_len + 1];
            let mut arg = vec![vec![0usize; k + 1]; seg_len + 1];
            dp[0][0] = 0.0;
            for j in 1..=k {
                for i in 1..=seg_len {
                    for c in (j - 1)..i {
                        let v = dp[c][j - 1].max(lat(pos + c, pos + i, devs[j - 1]));
                        if v < dp[i][j] {
                            dp[i][j] = v;
                            arg[i][j] = c;
                        }
                    }
                }
            }
            let (mut i, mut j) = (seg_len, (1..=k).min_by(|&a, &b| dp[seg_len][a].total_cmp(&dp[seg_len][b])).unwrap_or(1));
            let mut segs = Vec::new();
            while j > 0 {
                let c = arg[i][j];
                segs.push(Group { a: pos + c, b: pos + i, devices: vec![devs[j - 1]], split: false });
                i = c;
                j -= 1;
            }
            segs.reverse();
            dev_cursor += segs.len();
            groups.extend(segs);
        }
        if s < n {
            // A model-parallel unit: output-split over enough devices to fit.
            let need = 2.0 * info[s].weight_bytes + info[s].peak_bytes;
            let mut devs = Vec::new();
            let mut have = 0.0;
            for &d in order.iter().cycle().skip(dev_cursor).take(order.len()) {
                devs.push(d);
                have += cl.devices[d].profile.usable_bytes();
                if have > need * 1.1 && devs.len() >= 2 {
                    break;
                }
            }
            groups.push(Group { a: s, b: s + 1, devices: devs, split: true });
            pos = s + 1;
        } else {
            pos = s;
        }
    }
    // Spare devices: replicas of the slowest whole stages.
    let used: std::collections::HashSet<usize> = groups.iter().flat_map(|gr| gr.devices.iter().copied()).collect();
    for d in order.iter().copied().filter(|d| !used.contains(d)) {
        let slowest = groups
            .iter_mut()
            .filter(|gr| !gr.split && need(gr.a, gr.b) <= cl.devices[d].profile.usable_bytes())
            .max_by(|x, y| (lat(x.a, x.b, x.devices[0]) / x.devices.len() as f64).total_cmp(&(lat(y.a, y.b, y.devices[0]) / y.devices.len() as f64)));
        if let Some(gr) = slowest {
            gr.devices.push(d);
        }
    }
    groups
}

/// Step 3 candidates: give the busiest device's stage a replica from the
/// least busy device, or shift one unit off the busiest stage to a
/// neighbour.
fn rebalance(req: &Request, plan: &Plan, eval: &super::Evaluation) -> Option<Vec<Plan>> {
    let g = req.graph;
    let devs = &eval.report.devices;
    let busiest = (0..devs.len()).max_by(|&a, &b| devs[a].busy_ms.total_cmp(&devs[b].busy_ms))?;
    let idle = (0..devs.len()).min_by(|&a, &b| devs[a].busy_ms.total_cmp(&devs[b].busy_ms))?;
    let si = plan.stages.iter().position(|s| s.split.devices.contains(&busiest) && matches!(s.split.kind, SplitKind::Whole | SplitKind::Replicas))?;
    let mut out = Vec::new();
    if idle != busiest && !plan.stages[si].split.devices.contains(&idle) {
        let mut p = plan.clone();
        let s = &mut p.stages[si].split;
        s.kind = SplitKind::Replicas;
        s.devices.push(idle);
        out.push(p);
    }
    let us = units(g);
    let unit_at = |node: usize| us.iter().position(|u| u.start == node);
    // Move the stage's first unit to the previous stage, or its last unit to the next one.
    for (dir, ok) in [(-1i32, si > 0), (1, si + 1 < plan.stages.len())] {
        if !ok {
            continue;
        }
        let st = &plan.stages[si];
        let (Some(a), Some(b)) = (unit_at(st.start), us.iter().position(|u| u.end == st.end)) else { continue };
        if a == b {
            continue;
        }
        let mut p = plan.clone();
        if dir < 0 {
            let prev = p.stages[si - 1].clone();
            if !matches!(prev.split.kind, SplitKind::Whole | SplitKind::Replicas) {
                continue;
            }
            p.stages[si - 1] = Stage::new(g, prev.start, us[a].end, prev.split);
            p.stages[si] = Stage::new(g, us[a + 1].start, st.end, st.split.clone());
        } else {
            let next = p.stages[si + 1].clone();
            if !matches!(next.split.kind, SplitKind::Whole | SplitKind::Replicas) {
                continue;
            }
            p.stages[si] = Stage::new(g, st.start, us[b].start, st.split.clone());
            p.stages[si + 1] = Stage::new(g, us[b].start, next.end, next.split);
        }
        out.push(p);
    }
    Some(out)
}
