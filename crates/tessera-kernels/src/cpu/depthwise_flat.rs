//! Depthwise convolution with stride 1 and "same" width (`ow == w`: the
//! usual 3×3 / 5×5 layers of MobileNets), on the plane as it lies in memory.
//!
//! With the output's row pitch equal to the input's, output pixel `p`
//! reads tap `(ky, kx)` at `p + off(ky, kx)` of the flattened input plane,
//! the same offset for every pixel. The plane is copied once (one
//! contiguous copy) between zero margins, so taps above and below the plane
//! read zeros, and every tap is one contiguous multiply-add over the whole
//! output plane, written straight to the output: no per-row padding copy
//! and no compaction, which dominated small planes (7×7, 14×14) in the
//! phase-split path (`conv::depthwise`, still used for strided layers).
//! Taps left or right of the plane wrap into the neighbouring row instead
//! of reading padding, so the few output columns that have such taps (the
//! first `pl` and last `pr` of each row) are recomputed from their other
//! taps afterwards (not corrected by subtraction: a large or infinite
//! value in the neighbouring row must not reach them at all).

use tessera_graph::Activation;

use super::conv::{apply_act, taps_for, ConvGeom, TAP_CHUNK};
use super::par::{split_range, Par, SendPtr};
use super::simd::{multiversion, Isa};

/// A stride-1, same-width depthwise convolution, prepared once.
#[derive(Debug)]
pub(crate) struct FlatDepthwise {
    /// Buffer offset from the output index of every tap `ky·kw + kx`.
    offs: Vec<usize>,
    /// Output columns with taps outside the plane's width, and their taps
    /// inside it (weight index, buffer offset from the output index).
    edges: Vec<(usize, Vec<(usize, usize)>)>,
    /// Zeros before the plane in the buffer.
    margin: usize,
    /// Buffer length (plane, margins, and what the last chunk reads).
    len: usize,
    /// Output pixels per plane.
    n_out: usize,
}

impl FlatDepthwise {
    /// The flat plan, if `g` is a depthwise convolution it applies to.
    pub(crate) fn new(g: &ConvGeom) -> Option<FlatDepthwise> {
        let [pt, pl, _, pr] = g.pads;
        if g.icg() != 1 || g.ocg() != 1 || g.sh != 1 || g.sw != 1 || g.ow != g.w || pl + pr != g.dw * (g.kw - 1) || g.oh == 0 || g.w == 0 {
            return None;
        }
        let w = g.w as isize;
        let off = |ky: usize, kx: usize| (ky * g.dh) as isize * w - pt as isize * w + (kx * g.dw) as isize - pl as isize;
        let min_off = (0..g.kh).flat_map(|ky| (0..g.kw).map(move |kx| (ky, kx))).map(|(ky, kx)| off(ky, kx)).min()?;
        let max_off = (0..g.kh).flat_map(|ky| (0..g.kw).map(move |kx| (ky, kx))).map(|(ky, kx)| off(ky, kx)).max()?;
        let margin = (-min_off).max(0) as usize;
        let n_out = g.oh * g.ow;
        let n_taps = n_out.next_multiple_of(TAP_CHUNK);
        let len = (margin + g.h * g.w).max((margin as isize + n_taps as isize + max_off.max(0)) as usize);
        let offs: Vec<usize> = (0..g.kh).flat_map(|ky| (0..g.kw).map(move |kx| (ky, kx))).map(|(ky, kx)| (margin as isize + off(ky, kx)) as usize).collect();
        let outside = |ox: usize, kx: usize| !(0..w).contains(&(ox as isize + (kx * g.dw) as isize - pl as isize));
        let edges = (0..g.w)
            .filter(|&ox| ox < pl || ox + pr >= g.w)
            .map(|ox| (ox, (0..g.kh).flat_map(|ky| (0..g.kw).map(move |kx| (ky, kx))).filter(|&(_, kx)| !outside(ox, kx)).map(|(ky, kx)| (ky * g.kw + kx, offs[ky * g.kw + kx])).collect()))
            .collect();
        Some(FlatDepthwise { offs, edges, margin, len, n_out })
    }

    /// `y = act(depthwise(x) + bias + residual)` over every plane of `x`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(&self, isa: Isa, par: &Par, g: &ConvGeom, w: &[f32], bias: Option<&[f32]>, residual: Option<&[f32]>, act: Activation, x: &[f32], y: &mut [f32]) {
        let planes = g.batch * g.c_out;
        let work = planes * self.n_out * g.kh * g.kw;
        let parts = if par.threads() > 1 && work > 1 << 16 { par.threads() * 4 } else { 1 };
        let ranges = split_range(planes, parts, 1);
        let yp = SendPtr(y.as_mut_ptr());
        let in_plane = g.h * g.w;
        let taps = g.kh * g.kw;
        par.for_each(ranges.len(), &|t| {
            let (p0, p1) = ranges[t];
            FLAT.with(|cell| {
                let mut cell = cell.borrow_mut();
                let (buf, layout) = &mut *cell;
                // Zeroed whenever the layout changes: every plane of one
                // layout rewrites the same cells, so its margins stay zero.
                let this = (self.margin, in_plane, self.len);
                if *layout != Some(this) {
                    buf.clear();
                    buf.resize(self.len, 0.0);
                    *layout = Some(this);
                }
                for p in p0..p1 {
                    let c = p % g.c_out;
                    buf[self.margin..self.margin + in_plane].copy_from_slice(&x[p * in_plane..(p + 1) * in_plane]);
                    // SAFETY: plane p of y belongs to this task alone.
                    let out = unsafe { std::slice::from_raw_parts_mut(yp.get().add(p * self.n_out), self.n_out) };
                    let b = bias.map_or(0.0, |b| b[c]);
                    let wc = &w[c * taps..(c + 1) * taps];
                    taps_for(isa, buf, &self.offs, wc, b, out);
                    self.fix_edges(g, buf, wc, b, out);
                    finish(isa, out, residual.map(|r| &r[p * self.n_out..(p + 1) * self.n_out]), act);
                }
            })
        });
    }
}

impl FlatDepthwise {
    /// Recomputes the edge columns from their taps inside the plane's
    /// width (taps above or below it read the zero margins).
    fn fix_edges(&self, g: &ConvGeom, buf: &[f32], w: &[f32], bias: f32, out: &mut [f32]) {
        for (ox, taps) in &self.edges {
            for oy in 0..g.oh {
                let p = oy * g.ow + ox;
                let mut s = bias;
                for &(t, off) in taps {
                    s += w[t] * buf[off + p];
                }
                out[p] = s;
            }
        }
    }
}

multiversion! {
    /// Adds the residual and applies the activation over a finished plane.
    fn finish(out: &mut [f32], residual: Option<&[f32]>, act: Activation) {
        if let Some(r) = residual {
            out.iter_mut().zip(r).for_each(|(v, &q)| *v += q);
        }
        apply_act(act, out);
    }
}

thread_local! {
    /// A thread's plane buffer with its zero margins, and the layout
    /// (margin, plane, length) the zeros are laid out for.
    static FLAT: std::cell::RefCell<(Vec<f32>, Option<(usize, usize, usize)>)> = const { std::cell::RefCell::new((Vec::new(), None)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(h: usize, w: usize, k: usize, pads: [usize; 4], d: usize) -> ConvGeom {
        let oh = h + pads[0] + pads[2] - d * (k - 1);
        let ow = w + pads[1] + pads[3] - d * (k - 1);
        ConvGeom { batch: 1, c_in: 2, h, w, c_out: 2, oh, ow, kh: k, kw: k, sh: 1, sw: 1, pads, dh: d, dw: d, groups: 2 }
    }

    #[test]
    fn applies_only_to_stride_one_same_width() {
        assert!(FlatDepthwise::new(&geom(7, 7, 3, [1; 4], 1)).is_some());
        assert!(FlatDepthwise::new(&geom(9, 5, 5, [0, 2, 1, 2], 1)).is_some());
        assert!(FlatDepthwise::new(&geom(9, 9, 3, [2; 4], 2)).is_some());
        assert!(FlatDepthwise::new(&geom(7, 7, 3, [0; 4], 1)).is_none(), "valid padding narrows the plane");
        let mut strided = geom(8, 8, 3, [1; 4], 1);
        strided.sh = 2;
        assert!(FlatDepthwise::new(&strided).is_none());
    }

    /// Two layouts of the same buffer length but different margins, run
    /// alternately on one thread (tiles of one layer with and without the
    /// top padding): each run equals a fresh one.
    #[test]
    fn layouts_sharing_a_buffer_length_do_not_leak_into_each_other() {
        let a = geom(16, 4, 3, [1; 4], 1);
        let b = geom(18, 4, 3, [0, 1, 0, 1], 1);
        let (fa, fb) = (FlatDepthwise::new(&a).unwrap(), FlatDepthwise::new(&b).unwrap());
        assert_eq!(fa.len, fb.len, "the test needs equal lengths");
        assert_ne!(fa.margin, fb.margin);
        let par = Par::new(1).unwrap();
        let mut rng = tessera_graph::rng::Rng::new(5);
        let w = rng.fill(2 * 9, 1.0);
        let run = |f: &FlatDepthwise, g: &ConvGeom, x: &[f32]| {
            let mut y = vec![0.0; g.batch * g.c_out * g.oh * g.ow];
            f.run(Isa::detect(), &par, g, &w, None, None, Activation::Identity, x, &mut y);
            y
        };
        let (xa, xb) = (rng.fill(2 * 16 * 4, 1.0), rng.fill(2 * 18 * 4, 1.0));
        let first = run(&fa, &a, &xa);
        run(&fb, &b, &xb);
        assert_eq!(run(&fa, &a, &xa), first);
    }

    /// Values next to the plane's edge in the neighbouring row (huge, or
    /// infinite) never reach an edge output: it equals a direct sum.
    #[test]
    fn wrapped_neighbours_never_reach_the_edges() {
        let g = geom(4, 4, 3, [1; 4], 1);
        let f = FlatDepthwise::new(&g).unwrap();
        let par = Par::new(1).unwrap();
        let w: Vec<f32> = [0.3, -0.7, 0.9, 1.1, 0.6, -0.2, 0.4, 0.8, -0.5].repeat(2);
        for big in [1e5f32, f32::INFINITY] {
            let mut x = vec![0.1f32; 2 * 16];
            for r in 0..4 {
                x[r * 4 + 3] = big;
            }
            for isa in Isa::all_available() {
                let mut y = vec![0.0; 2 * 16];
                f.run(isa, &par, &g, &w, None, None, Activation::Identity, &x, &mut y);
                // Output (1, 0): rows 0..3, columns 0..2 (column 2 is 0.1).
                let want: f32 = (0..3).map(|ky| (1..3).map(|kx| w[ky * 3 + kx] * 0.1).sum::<f32>()).sum();
                assert!((y[4] - want).abs() <= 1e-6, "{isa:?} big {big}: {} vs {want}", y[4]);
            }
        }
    }

    #[test]
    fn edge_columns_are_those_with_a_tap_outside_the_width() {
        let cols = |f: FlatDepthwise| f.edges.iter().map(|e| e.0).collect::<Vec<_>>();
        assert_eq!(cols(FlatDepthwise::new(&geom(3, 6, 3, [1; 4], 1)).unwrap()), vec![0, 5]);
        assert_eq!(cols(FlatDepthwise::new(&geom(3, 6, 5, [2, 1, 2, 3], 1)).unwrap()), vec![0, 3, 4, 5]);
        assert_eq!(cols(FlatDepthwise::new(&geom(3, 2, 3, [1; 4], 1)).unwrap()), vec![0, 1]);
        // 3x3: column 0 keeps its kx = 1, 2 taps, the last its kx = 0, 1 taps.
        let f = FlatDepthwise::new(&geom(4, 6, 3, [1; 4], 1)).unwrap();
        let taps = |e: &(usize, Vec<(usize, usize)>)| e.1.iter().map(|t| t.0).collect::<Vec<_>>();
        assert_eq!((f.edges[0].0, taps(&f.edges[0])), (0, vec![1, 2, 4, 5, 7, 8]));
        assert_eq!((f.edges[1].0, taps(&f.edges[1])), (5, vec![0, 1, 3, 4, 6, 7]));
    }
}
