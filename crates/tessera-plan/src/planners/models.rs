//! Fast per-volume cost models for planners' inner loops.
//!
//! A [`BandModel`] prices an output band of `L` rows of a spatial volume on
//! a device in O(layers): every layer's row count follows the
//! Vertical-Splitting Law (seed 004 Eq. 1-2), `h_in = (h_out - 1) S + F`,
//! which is affine in `L`, capped at the layer's height. A
//! [`ChannelModel`] does the same for channel splits (work and traffic
//! linear in the channels). The chosen plan is always re-priced exactly by
//! `estimate` and the simulator.

use tessera_graph::{Graph, NodeId, Op};

use crate::device::{Device, OpClass};
use crate::plan::SplitKind;
use crate::volume::{is_free, Volume};

/// Affine rows `a L + b` of one node for `L` output rows, capped at `h`.
#[derive(Clone, Copy, Debug)]
struct Rows {
    a: f64,
    b: f64,
    h: f64,
}

impl Rows {
    fn at(self, l: f64) -> f64 {
        if l <= 0.0 {
            0.0
        } else {
            (self.a * l + self.b).clamp(1.0, self.h)
        }
    }
}

/// Row-band pricing of one spatial volume.
#[derive(Clone, Debug)]
pub struct BandModel {
    /// Output height of the volume.
    pub height: usize,
    nodes: Vec<(OpClass, f64, Rows)>, // class, flops per row, rows
    inputs: Vec<(f64, Rows)>,         // bytes per row, rows
    out_row_bytes: f64,
    pub weight_bytes: f64,
}

impl BandModel {
    /// The model of a volume that supports `Rows`.
    pub fn new(g: &Graph, vol: &Volume) -> BandModel {
        let last = vol.last(g);
        let mut rows: std::collections::HashMap<NodeId, Rows> = std::collections::HashMap::new();
        let h_last = g.node(last).shape[2] as f64;
        rows.insert(last, Rows { a: 1.0, b: 0.0, h: h_last });
        for n in (vol.start..vol.end).rev() {
            let node = g.node(n);
            if is_free(&node.op) {
                continue;
            }
            let Some(r) = rows.get(&n).copied() else { continue };
            for &i in &node.inputs {
                let hin = g.node(i).shape.get(2).copied().unwrap_or(1) as f64;
                let need = match &node.op {
                    Op::Conv(c) => {
                        let eff = ((c.kernel()[0] - 1) * c.dilation[0] + 1) as f64;
                        let s = c.stride[0] as f64;
                        Rows { a: r.a * s, b: (r.b - 1.0) * s + eff, h: hin }
                    }
                    Op::MaxPool(p) | Op::AveragePool(p) => {
                        let eff = ((p.kernel[0] - 1) * p.dilation[0] + 1) as f64;
                        let s = p.stride[0] as f64;
                        Rows { a: r.a * s, b: (r.b - 1.0) * s + eff, h: hin }
                    }
                    Op::SpaceToDepth { block } => Rows { a: r.a * *block as f64, b: r.b * *block as f64, h: hin },
                    _ if hin <= 1.0 => Rows { a: 0.0, b: 1.0, h: 1.0 },
                    _ => Rows { h: hin, ..r },
                };
                let merged = match rows.get(&i) {
                    Some(o) => Rows { a: o.a.max(need.a), b: o.b.max(need.b), h: hin },
                    None => need,
                };
                rows.insert(i, merged);
            }
        }
        let mut nodes = Vec::new();
        let mut weight_bytes = 0.0;
        for n in vol.compute_nodes(g) {
            let c = tessera_graph::node_cost(g, n);
            let h = g.node(n).shape[2].max(1) as f64;
            weight_bytes += c.weight_bytes as f64;
            if let Some(r) = rows.get(&n) {
                nodes.push((OpClass::of(&g.node(n).op), c.flops() as f64 / h, *r));
            }
        }
        let inputs = vol
            .inputs
            .iter()
            .filter(|&&v| !matches!(g.node(v).op, Op::Const(_)))
            .filter_map(|&v| {
                let s = &g.node(v).shape;
                let h = s.get(2).copied().unwrap_or(1).max(1) as f64;
                rows.get(&v).map(|r| (4.0 * g.node(v).out_elems() as f64 / h, *r))
            })
            .collect();
        let out_row_bytes = 4.0 * g.node(last).out_elems() as f64 / h_last;
        BandModel { height: h_last as usize, nodes, inputs, out_row_bytes, weight_bytes }
    }

    /// Compute ms of `l` output rows on a device.
    pub fn compute_ms(&self, d: &Device, l: f64) -> f64 {
        if l <= 0.0 {
            return 0.0;
        }
        d.profile.task_overhead_ms + self.nodes.iter().map(|(c, fpr, r)| d.profile.op_ms(*c, fpr * r.at(l))).sum::<f64>()
    }
    /// Input bytes for `l` output rows.
    pub fn in_bytes(&self, l: f64) -> f64 {
        self.inputs.iter().map(|(bpr, r)| bpr * r.at(l)).sum()
    }
    /// Output bytes of `l` rows.
    pub fn out_bytes(&self, l: f64) -> f64 {
        self.out_row_bytes * l.max(0.0)
    }
    /// FLOPs of `l` output rows (halo included).
    pub fn flops(&self, l: f64) -> f64 {
        self.nodes.iter().map(|(_, fpr, r)| fpr * r.at(l)).sum()
    }
    /// Fetch + compute + send-back ms of `l` rows on a device.
    pub fn part_ms(&self, d: &Device, l: f64) -> f64 {
        if l <= 0.0 {
            return 0.0;
        }
        d.link.transfer_ms(self.in_bytes(l), 0.0) + self.compute_ms(d, l) + d.link.transfer_ms(self.out_bytes(l), 0.0)
    }
}

/// Channel-split pricing of a mixing volume.
#[derive(Clone, Debug)]
pub struct ChannelModel {
    pub kind: SplitKind,
    /// Channels being split.
    pub extent: usize,
    sliced: Vec<(OpClass, f64)>, // flops of the whole layer, scaled by share
    in_bytes_full: f64,
    out_bytes_full: f64,
    pub weight_bytes: f64,
}

impl ChannelModel {
    /// The model of a volume that supports `kind` (a channel kind).
    pub fn new(g: &Graph, vol: &Volume, kind: SplitKind) -> ChannelModel {
        let extent = vol.extent(g, kind).unwrap_or(1);
        let mut sliced = Vec::new();
        let mut weight_bytes = 0.0;
        let mut prefix = 0.0;
        let m = vol.mixing.as_ref();
        for n in vol.compute_nodes(g) {
            let c = tessera_graph::node_cost(g, n);
            weight_bytes += c.weight_bytes as f64;
            if m.is_some_and(|m| n < m.first) && kind != SplitKind::InChannels {
                prefix += c.flops() as f64; // replicated Flatten: negligible
                continue;
            }
            sliced.push((OpClass::of(&g.node(n).op), c.flops() as f64));
        }
        let _ = prefix;
        let in_bytes_full: f64 = vol.inputs.iter().filter(|&&v| !matches!(g.node(v).op, Op::Const(_))).map(|&v| 4.0 * g.node(v).out_elems() as f64).sum();
        let out_bytes_full = 4.0 * g.node(vol.last(g)).out_elems() as f64;
        ChannelModel { kind, extent, sliced, in_bytes_full, out_bytes_full, weight_bytes }
    }

    fn share(&self, c: f64) -> f64 {
        (c / self.extent as f64).clamp(0.0, 1.0)
    }
    /// Compute ms of `c` channels on a device.
    pub fn compute_ms(&self, d: &Device, c: f64) -> f64 {
        if c <= 0.0 {
            return 0.0;
        }
        let s = self.share(c);
        d.profile.task_overhead_ms + self.sliced.iter().map(|(cl, f)| d.profile.op_ms(*cl, f * s)).sum::<f64>()
    }
    pub fn in_bytes(&self, c: f64) -> f64 {
        if c <= 0.0 {
            return 0.0;
        }
        match self.kind {
            SplitKind::InChannels => self.in_bytes_full * self.share(c),
            _ => self.in_bytes_full,
        }
    }
    pub fn out_bytes(&self, c: f64) -> f64 {
        if c <= 0.0 {
            return 0.0;
        }
        match self.kind {
            SplitKind::OutChannels => self.out_bytes_full * self.share(c),
            _ => self.out_bytes_full,
        }
    }
    /// Fetch + compute + send-back ms of `c` channels on a device.
    pub fn part_ms(&self, d: &Device, c: f64) -> f64 {
        if c <= 0.0 {
            return 0.0;
        }
        d.link.transfer_ms(self.in_bytes(c), 0.0) + self.compute_ms(d, c) + d.link.transfer_ms(self.out_bytes(c), 0.0)
    }
}

/// Integer sizes `x_d >= 0` summing to `extent` that minimise
/// `max_d (ready_d + t_d(x_d))` for monotone `t_d` (binary search on the
/// finish time, then per-device binary search on the size). Returns the
/// sizes and the finish time.
pub fn balance(extent: usize, ready: &[f64], t: &dyn Fn(usize, usize) -> f64) -> (Vec<usize>, f64) {
    let n = ready.len();
    let max_fit = |d: usize, limit: f64| -> usize {
        if ready[d] + t(d, 1) > limit {
            return 0;
        }
        let (mut lo, mut hi) = (1usize, extent);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if ready[d] + t(d, mid) <= limit {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    };
    let mut lo = ready.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut hi = (0..n).map(|d| ready[d] + t(d, extent)).fold(f64::INFINITY, f64::min);
    for _ in 0..50 {
        let mid = 0.5 * (lo + hi);
        let total: usize = (0..n).map(|d| max_fit(d, mid)).sum();
        if total >= extent {
            hi = mid;
        } else {
            lo = mid;
        }
        if hi - lo < 1e-4 * hi.max(1e-9) {
            break;
        }
    }
    let mut sizes: Vec<usize> = (0..n).map(|d| max_fit(d, hi)).collect();
    // Trim the excess from the devices that finish last.
    let mut excess = sizes.iter().sum::<usize>().saturating_sub(extent);
    while excess > 0 {
        let d = (0..n).filter(|&d| sizes[d] > 0).max_by(|&a, &b| (ready[a] + t(a, sizes[a])).total_cmp(&(ready[b] + t(b, sizes[b])))).unwrap();
        sizes[d] -= 1;
        excess -= 1;
    }
    // Rounding can leave a shortfall when one device takes everything.
    let short = extent.saturating_sub(sizes.iter().sum::<usize>());
    if short > 0 {
        let d = (0..n).min_by(|&a, &b| (ready[a] + t(a, sizes[a] + short)).total_cmp(&(ready[b] + t(b, sizes[b] + short)))).unwrap();
        sizes[d] += short;
    }
    let finish = (0..n).filter(|&d| sizes[d] > 0).map(|d| ready[d] + t(d, sizes[d])).fold(0.0, f64::max);
    (sizes, finish)
}

/// Cut points from part sizes.
pub fn cuts_of(sizes: &[usize]) -> Vec<usize> {
    let mut c = vec![0];
    for s in sizes {
        c.push(c.last().unwrap() + s);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_equalises_finish_times() {
        // Device 1 is twice as fast; device 2 starts late.
        let rate = [1.0, 2.0, 1.0];
        let ready = [0.0, 0.0, 50.0];
        let t = |d: usize, x: usize| x as f64 / rate[d];
        let (sizes, finish) = balance(100, &ready, &t);
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!((finish - 100.0 / 3.0).abs() < 1.0, "{sizes:?} {finish}");
        assert_eq!(sizes[2], 0);
    }

    #[test]
    fn band_model_matches_exact_geometry_in_the_middle() {
        use crate::plan::PartSpec;
        use crate::region::Span;
        let g = tessera_graph::passes::optimize(&tessera_graph::zoo::build("vgg16").unwrap()).unwrap();
        let consumers = g.consumers();
        // conv1_1 .. pool2 (first 6 compute nodes after the input)
        let vol = Volume::new(&g, &consumers, 1, 7).unwrap();
        let m = BandModel::new(&g, &vol);
        let geo = crate::split::geometry(&g, &vol, PartSpec::Tile { rows: Span::new(20, 30), cols: Span::new(0, usize::MAX) }).unwrap();
        let exact = geo.flops();
        let approx = m.flops(10.0);
        assert!((approx - exact).abs() / exact < 0.02, "{approx} vs {exact}");
        assert!((m.in_bytes(10.0) - geo.in_bytes()).abs() / geo.in_bytes() < 0.02);
    }
}
