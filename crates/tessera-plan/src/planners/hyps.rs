//! `hyps` — seed 002 (HyPS, hybrid partitioning):
//! Algorithm 1 marks *mandatory* split points around every layer whose
//! parameters exceed what a device supports; such a layer becomes its own
//! V-partition and is split horizontally into the fewest H-partitions that
//! fit (fc6 of VGG16 needs >= 4 on a 1 GB Raspberry Pi). Pooling layers are
//! *optional* split points (smallest feature maps to transmit). V-partitions
//! run one after another, each on one device; only the H-partitions of a
//! mandatory layer run in parallel.

use super::common::{new_plan, proportional_cuts, unit_infos, unit_ms, unit_stage};
use super::{Planner, Request};
use crate::error::{PlanError, Result};
use crate::plan::{Plan, Split, SplitKind};
use crate::units::units;
use crate::volume::Volume;

pub struct Hyps;

/// Parameters a device supports: its usable memory holds each weight twice
/// (received buffer + packed copy), 4 bytes each.
pub fn param_threshold(req: &Request) -> f64 {
    req.cluster.devices.iter().map(|d| d.profile.usable_bytes() / 8.0).fold(f64::INFINITY, f64::min)
}

impl Planner for Hyps {
    fn name(&self) -> &'static str {
        "hyps"
    }
    fn about(&self) -> &'static str {
        "seed 002: mandatory split points by parameter threshold (H-partitioned), optional ones at pooling layers"
    }
    fn plan(&self, req: &Request) -> Result<Plan> {
        let g = req.graph;
        let us = units(g);
        let info = unit_infos(g, &us);
        let consumers = g.consumers();
        let threshold = param_threshold(req);
        // Algorithm 1: mandatory split points.
        let mandatory: Vec<usize> = (0..us.len()).filter(|&i| info[i].params > threshold).collect();
        // V-partitions: cut around mandatory layers and after pooling layers.
        let mut vparts: Vec<(usize, usize, bool)> = Vec::new(); // units [a, b), mandatory
        let mut a = 0;
        for i in 0..us.len() {
            if mandatory.contains(&i) {
                if a < i {
                    vparts.push((a, i, false));
                }
                vparts.push((i, i + 1, true));
                a = i + 1;
            } else if info[i].pools || i + 1 == us.len() {
                vparts.push((a, i + 1, false));
                a = i + 1;
            }
        }
        if a < us.len() {
            vparts.push((a, us.len(), false));
        }
        // More V-partitions than devices: merge neighbours (never a mandatory
        // one) where the merged partition stays lightest.
        let nd = req.cluster.len();
        let ref_profile = &req.cluster.devices[0].profile;
        let ms = |a: usize, b: usize| -> f64 { (a..b).map(|u| unit_ms(g, &us[u], ref_profile)).sum() };
        let plain = |v: &[(usize, usize, bool)]| v.iter().filter(|p| !p.2).count();
        while plain(&vparts) > nd {
            let best = (0..vparts.len() - 1)
                .filter(|&k| !vparts[k].2 && !vparts[k + 1].2)
                .min_by(|&x, &y| ms(vparts[x].0, vparts[x + 1].1).total_cmp(&ms(vparts[y].0, vparts[y + 1].1)));
            let Some(k) = best else { break };
            vparts[k].1 = vparts[k + 1].1;
            vparts.remove(k + 1);
        }
        // One device per V-partition in turn; then each mandatory layer's
        // H-partitions go to the devices with the most memory left, in the
        // fewest parts (at least params / threshold) that fit beside what
        // those devices already hold.
        let mut held = vec![0.0f64; nd];
        let mut stages: Vec<Option<crate::plan::Stage>> = Vec::new();
        let mut next_dev = 0;
        for &(a, b, mandatory) in &vparts {
            if mandatory {
                stages.push(None);
            } else {
                let d = next_dev % nd;
                held[d] += (a..b).map(|u| 2.0 * info[u].weight_bytes + info[u].peak_bytes).sum::<f64>();
                stages.push(Some(unit_stage(g, &us, a, b, Split::whole(d))));
                next_dev += 1;
            }
        }
        for (i, &(a, b, mandatory)) in vparts.iter().enumerate() {
            if !mandatory {
                continue;
            }
            let vol = Volume::new(g, &consumers, us[a].start, us[b - 1].end).map_err(PlanError::Invalid)?;
            if vol.supports(g, SplitKind::OutChannels).is_err() {
                return Err(PlanError::Infeasible(format!("layer at node '{}' exceeds device memory and cannot be H-partitioned", g.node(us[a].start).name)));
            }
            let ext = vol.extent(g, SplitKind::OutChannels).unwrap_or(1);
            let need = 2.0 * info[a].weight_bytes;
            let mut parts = (info[a].params / threshold).ceil().max(1.0) as usize;
            let placed = loop {
                if parts > ext {
                    return Err(PlanError::Infeasible("a layer needs more H-partitions than it has outputs".into()));
                }
                let mut free: Vec<(f64, usize)> = (0..nd).map(|d| (req.cluster.devices[d].profile.usable_bytes() - held[d] - info[a].peak_bytes, d)).collect();
                let mut devices = Vec::with_capacity(parts);
                let part = need / parts as f64;
                let mut ok = true;
                for _ in 0..parts {
                    free.sort_by(|x, y| y.0.total_cmp(&x.0));
                    if free[0].0 < part {
                        ok = false;
                        break;
                    }
                    free[0].0 -= part;
                    devices.push(free[0].1);
                }
                if ok {
                    break devices;
                }
                parts += 1;
            };
            for &d in &placed {
                held[d] += need / parts as f64;
            }
            stages[i] = Some(unit_stage(g, &us, a, b, Split::cut(SplitKind::OutChannels, proportional_cuts(ext, &vec![1.0; parts]), placed)));
        }
        let stages = stages.into_iter().map(|s| s.expect("every V-partition planned")).collect();
        Ok(new_plan(g, req.cluster, "hyps", stages))
    }
}
