//! Equal-split fused-layer baselines.
//! - `deepthings` (DeepThings, seed 004's baseline [68]): the early,
//!   feature-dominated layers fused into one volume and cut into an equal
//!   grid of tiles, one per device (Fused Tile Partitioning); the rest of
//!   the model on the best device (the gateway).
//! - `deeperthings` (seed 003): the same FTP volume, then for every
//!   weight-dominated layer an equal LOP, LIP or fused LOP→LIP split across
//!   all devices, chosen by an exact DP over the ILP of Eq. 9-13 that
//!   minimises the communication C.

use super::common::{capability, grid_shape, new_plan, proportional_cuts, unit_infos, unit_stage, UnitInfo};
use super::{Planner, Request};
use crate::error::Result;
use crate::plan::{Plan, Split, SplitKind, Stage};
use crate::units::{units, Unit};
use crate::volume::Volume;
use tessera_graph::Graph;

/// Number of leading units in the FTP volume: while the fused volume can be
/// tiled and a unit's weights are smaller than its output feature map.
pub fn ftp_depth(g: &Graph, us: &[Unit], info: &[UnitInfo]) -> usize {
    let consumers = g.consumers();
    let mut k = 0;
    while k < us.len() {
        let vol = Volume::new(g, &consumers, us[0].start, us[k].end).expect("unit range");
        if vol.supports(g, SplitKind::Grid).is_err() || info[k].weight_bytes > info[k].out_bytes {
            break;
        }
        k += 1;
    }
    k
}

/// The FTP stage over units `[0, k)`: an equal grid, one tile per device.
fn ftp_stage(g: &Graph, us: &[Unit], k: usize, n: usize) -> Stage {
    let vol = Volume::new(g, &g.consumers(), us[0].start, us[k - 1].end).expect("unit range");
    let (r, c) = grid_shape(n);
    let rows = proportional_cuts(vol.extent(g, SplitKind::Rows).unwrap(), &vec![1.0; r]);
    let cols = proportional_cuts(vol.extent(g, SplitKind::Grid).unwrap(), &vec![1.0; c]);
    unit_stage(g, us, 0, k, Split { kind: SplitKind::Grid, cuts: rows, col_cuts: cols, devices: (0..n).collect() })
}

fn best_device(req: &Request) -> usize {
    (0..req.cluster.len()).max_by(|&a, &b| capability(&req.cluster.devices[a].profile).total_cmp(&capability(&req.cluster.devices[b].profile))).unwrap_or(0)
}

pub struct DeepThings;
impl Planner for DeepThings {
    fn name(&self) -> &'static str {
        "deepthings"
    }
    fn about(&self) -> &'static str {
        "DeepThings: one fused volume of early layers in equal grid tiles, the rest on the best device"
    }
    fn plan(&self, req: &Request) -> Result<Plan> {
        let g = req.graph;
        let us = units(g);
        let info = unit_infos(g, &us);
        let k = ftp_depth(g, &us, &info);
        let mut stages = Vec::new();
        if k > 0 {
            stages.push(ftp_stage(g, &us, k, req.cluster.len()));
        }
        if k < us.len() {
            stages.push(unit_stage(g, &us, k, us.len(), Split::whole(best_device(req))));
        }
        Ok(new_plan(g, req.cluster, "deepthings", stages))
    }
}

/// A per-layer scheme of seed 003 §4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Lop,
    Lip,
    /// First layer of a fused pair (LOP side).
    Fuse1,
    /// Second layer of a fused pair (LIP side).
    Fuse2,
    /// Not a mixing layer: run whole.
    Whole,
}

/// Communication demand (elements) of one layer under a scheme, seed 003
/// Eq. 7-9; `prev_lop` is o_{l-1} (data reuse after a LOP layer). The OCR
/// of Eq. 9 shows FUSE1 as `M (N-1)`, but the paper's own optimum for its
/// running example (Fig. 7, C = 22: LOP, FUSE1, FUSE2, LOP) only adds up
/// when FUSE1, which like LOP needs the whole input on every device, gets
/// the same o_{l-1} reuse: `(M - o M/N)(N-1)`. We use that reading.
pub fn layer_c(s: Scheme, m: f64, k: f64, n: f64, prev_lop: bool) -> f64 {
    let reuse = if prev_lop { m / n } else { 0.0 };
    match s {
        Scheme::Lop => (m - reuse) * (n - 1.0) + k * (n - 1.0) / n,
        Scheme::Lip => m * (n - 1.0) / n + k * (n - 1.0),
        Scheme::Fuse1 => (m - reuse) * (n - 1.0),
        Scheme::Fuse2 => k * (n - 1.0),
        Scheme::Whole => 0.0,
    }
}

/// Exact minimisation of C (Eq. 10) under constraints (11)-(13) by DP over
/// layers; `allowed[l]` lists the schemes layer `l` supports and
/// `fusable[l]` whether layers `l, l+1` may form a fused pair.
/// Returns the schemes and C.
pub fn min_c(mk: &[(f64, f64)], n: f64, allowed: &[Vec<Scheme>], fusable: &[bool]) -> (Vec<Scheme>, f64) {
    let l = mk.len();
    // state: scheme of the previous layer
    let states = [Scheme::Lop, Scheme::Lip, Scheme::Fuse1, Scheme::Fuse2, Scheme::Whole];
    let idx = |s: Scheme| states.iter().position(|&x| x == s).unwrap();
    let mut dp = vec![[f64::INFINITY; 5]; l + 1];
    let mut arg = vec![[0usize; 5]; l + 1];
    dp[0][idx(Scheme::Whole)] = 0.0;
    for i in 0..l {
        for (ps, &prev) in states.iter().enumerate() {
            let base = dp[i][ps];
            if !base.is_finite() {
                continue;
            }
            let choices: Vec<Scheme> = if prev == Scheme::Fuse1 {
                vec![Scheme::Fuse2] // (12): s_{l+1} = f_l
            } else {
                allowed[i].iter().copied().filter(|&s| s != Scheme::Fuse2).filter(|&s| s != Scheme::Fuse1 || (i + 1 < l && fusable[i])).collect()
            };
            for s in choices {
                let c = base + layer_c(s, mk[i].0, mk[i].1, n, prev == Scheme::Lop);
                if c < dp[i + 1][idx(s)] {
                    dp[i + 1][idx(s)] = c;
                    arg[i + 1][idx(s)] = ps;
                }
            }
        }
    }
    // (13): the last layer cannot open a fusion.
    let end = (0..5).filter(|&s| states[s] != Scheme::Fuse1).min_by(|&a, &b| dp[l][a].total_cmp(&dp[l][b])).unwrap();
    let mut out = vec![Scheme::Whole; l];
    let mut s = end;
    for i in (1..=l).rev() {
        out[i - 1] = states[s];
        s = arg[i][s];
    }
    (out, dp[l][end])
}

/// Seed 003's decision for units `[a, n)`: schemes per unit.
pub fn deeperthings_schemes(g: &Graph, us: &[Unit], a: usize, n_dev: usize, allow_fuse: bool) -> (Vec<Scheme>, f64) {
    let consumers = g.consumers();
    let vol = |i: usize, j: usize| Volume::new(g, &consumers, us[i].start, us[j - 1].end).expect("unit range");
    let mut mk = Vec::new();
    let mut allowed = Vec::new();
    let mut fusable = Vec::new();
    for i in a..us.len() {
        let v = vol(i, i + 1);
        let m: f64 = v.inputs.iter().filter(|&&x| !matches!(g.node(x).op, tessera_graph::Op::Const(_))).map(|&x| g.node(x).out_elems() as f64).sum();
        let k = g.node(v.last(g)).out_elems() as f64;
        mk.push((m, k));
        let mut al = Vec::new();
        if v.supports(g, SplitKind::OutChannels).is_ok() {
            al.push(Scheme::Lop);
        }
        if v.supports(g, SplitKind::InChannels).is_ok() {
            al.push(Scheme::Lip);
        }
        if al.is_empty() {
            al.push(Scheme::Whole);
        } else if allow_fuse {
            al.push(Scheme::Fuse1);
        }
        allowed.push(al);
        fusable.push(allow_fuse && i + 2 <= us.len() && vol(i, i + 2).supports(g, SplitKind::Fused).is_ok());
    }
    min_c(&mk, n_dev as f64, &allowed, &fusable)
}

pub struct DeeperThings;
impl Planner for DeeperThings {
    fn name(&self) -> &'static str {
        "deeperthings"
    }
    fn about(&self) -> &'static str {
        "seed 003: FTP tiles for early layers, then LOP/LIP/FUSE per layer by an exact DP minimising communication"
    }
    fn plan(&self, req: &Request) -> Result<Plan> {
        let g = req.graph;
        let us = units(g);
        let info = unit_infos(g, &us);
        let n = req.cluster.len();
        let k = ftp_depth(g, &us, &info);
        let mut stages = Vec::new();
        if k > 0 {
            stages.push(ftp_stage(g, &us, k, n));
        }
        let (schemes, _) = deeperthings_schemes(g, &us, k, n, true);
        let consumers = g.consumers();
        let equal = |kind: SplitKind, i: usize, j: usize| {
            let v = Volume::new(g, &consumers, us[i].start, us[j - 1].end).expect("unit range");
            let ext = v.extent(g, kind).unwrap_or(1);
            let parts = n.min(ext);
            Split::cut(kind, proportional_cuts(ext, &vec![1.0; parts]), (0..parts).collect())
        };
        let mut i = k;
        while i < us.len() {
            let s = schemes[i - k];
            let (split, len) = match s {
                Scheme::Lop => (equal(SplitKind::OutChannels, i, i + 1), 1),
                Scheme::Lip => (equal(SplitKind::InChannels, i, i + 1), 1),
                Scheme::Fuse1 => (equal(SplitKind::Fused, i, i + 2), 2),
                Scheme::Fuse2 | Scheme::Whole => (Split::whole(0), 1),
            };
            stages.push(unit_stage(g, &us, i, i + len, split));
            i += len;
        }
        Ok(new_plan(g, req.cluster, "deeperthings", stages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seed 003's 4-layer example (Fig. 1-7): layer sizes 4→8→16→4→4 on 2 devices.
    #[test]
    fn seed_003_running_example() {
        let mk = [(4.0, 8.0), (8.0, 16.0), (16.0, 4.0), (4.0, 4.0)];
        let all = vec![vec![Scheme::Lop, Scheme::Lip, Scheme::Fuse1]; 4];
        let lop_only: f64 = (0..4).map(|i| layer_c(Scheme::Lop, mk[i].0, mk[i].1, 2.0, i > 0)).sum();
        assert_eq!(lop_only, 34.0); // §4.1: C(LOP) = 34
        let lip_only: f64 = (0..4).map(|i| layer_c(Scheme::Lip, mk[i].0, mk[i].1, 2.0, false)).sum();
        assert_eq!(lip_only, 48.0); // §4.1: C(LIP) = 48
        // Fig. 6: fusing (1,2) and (3,4) gives 4 + 16 + 16 + 4 = 40.
        let f = [Scheme::Fuse1, Scheme::Fuse2, Scheme::Fuse1, Scheme::Fuse2];
        let c6: f64 = (0..4).map(|i| layer_c(f[i], mk[i].0, mk[i].1, 2.0, false)).sum();
        assert_eq!(c6, 40.0);
        let (s, c) = min_c(&mk, 2.0, &all, &[true; 4]);
        // §4.3 / Fig. 7: LOP for layers 1 and 4, layers 2+3 fused, C = 22.
        assert_eq!(c, 22.0);
        assert_eq!(s, vec![Scheme::Lop, Scheme::Fuse1, Scheme::Fuse2, Scheme::Lop]);
    }
}
