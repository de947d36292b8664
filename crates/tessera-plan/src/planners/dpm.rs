//! `dpm` — seed 000, Algorithm 1 (Dynamic Partitioning Methodology):
//! divide the layers into one pipeline stage per worker with about the same
//! number of MACs each (lines 7-9), then, where a stage's output is more
//! than its link can carry per pipeline period, move the division to a
//! later layer with a smaller output (lines 10-13); distribute the parts to
//! the workers in order (line 14).

use super::common::{new_plan, unit_infos, unit_ms, unit_stage};
use super::{Planner, Request};
use crate::error::Result;
use crate::plan::{Plan, Split};
use crate::units::units;

pub struct Dpm;

impl Planner for Dpm {
    fn name(&self) -> &'static str {
        "dpm"
    }
    fn about(&self) -> &'static str {
        "seed 000 Alg. 1: equal-MAC pipeline stages, cut moved when the link cannot carry the output"
    }
    fn plan(&self, req: &Request) -> Result<Plan> {
        let g = req.graph;
        let us = units(g);
        let info = unit_infos(g, &us);
        let workers = req.cluster.len().min(us.len()).max(1);
        // Lines 7-9: equal MACs per worker.
        let total: f64 = info.iter().map(|i| i.macs).sum();
        let target = total / workers as f64;
        let mut ends = Vec::new(); // exclusive unit index ending each part
        let mut acc = 0.0;
        for (i, u) in info.iter().enumerate() {
            let k = ends.len() + 1;
            if k == workers {
                break;
            }
            let before = acc;
            acc += u.macs;
            if acc >= target * k as f64 {
                // Cut before or after this unit, whichever is nearer the target.
                let cut = if (target * k as f64 - before).abs() < (acc - target * k as f64).abs() && i > ends.last().copied().unwrap_or(0) { i } else { i + 1 };
                if cut < us.len() && ends.last().is_none_or(|&e| cut > e) {
                    ends.push(cut);
                }
            }
        }
        ends.push(us.len());
        // Lines 10-13: the link check, per cut.
        let starts = |ends: &[usize]| -> Vec<usize> { std::iter::once(0).chain(ends[..ends.len() - 1].iter().copied()).collect() };
        let stage_ms = |a: usize, b: usize, d: usize| -> f64 { (a..b).map(|u| unit_ms(g, &us[u], &req.cluster.devices[d].profile)).sum() };
        for k in 0..ends.len() - 1 {
            let st = starts(&ends);
            let period = (0..ends.len()).map(|j| stage_ms(st[j], ends[j], j)).fold(0.0, f64::max);
            let link = &req.cluster.devices[k].link;
            let can_carry = |cut: usize| link.transfer_ms(info[cut - 1].out_bytes, 0.0) <= period;
            let mut cut = ends[k];
            while !can_carry(cut) && cut + 1 < ends[k + 1] && info[cut].out_bytes < info[cut - 1].out_bytes {
                cut += 1;
            }
            ends[k] = cut;
        }
        // Line 14: parts to workers in order.
        let st = starts(&ends);
        let stages = (0..ends.len()).map(|j| unit_stage(g, &us, st[j], ends[j], Split::whole(j))).collect();
        Ok(new_plan(g, req.cluster, "dpm", stages))
    }
}
