//! Pooling: max / average windows (padding, dilation, ceil mode,
//! `count_include_pad`, all as onnxruntime computes them) and the global
//! reductions. Each (image, channel) plane is independent, so planes are
//! spread over threads.

use tessera_graph::Pool;

use super::par::{split_range, Par, SendPtr};
use super::simd::{multiversion, Isa};

/// Taps of one window along one axis: valid taps `lo..hi` (inside the
/// input) and `padded` taps (inside input + padding), the divisor of
/// `count_include_pad`.
#[derive(Clone, Copy, Debug)]
struct Taps {
    lo: usize,
    hi: usize,
    padded: usize,
}

/// Window taps for every output index along one axis.
fn taps(out: usize, input: usize, k: usize, s: usize, d: usize, pad_begin: usize, pad_end: usize) -> Vec<Taps> {
    (0..out)
        .map(|o| {
            // Input index of tap t: o·s − pad_begin + t·d.
            let start = o * s;
            let lo = if start >= pad_begin { 0 } else { (pad_begin - start).div_ceil(d) }.min(k);
            let limit = |bound: usize| if bound + pad_begin > start { (bound + pad_begin - start).div_ceil(d).min(k) } else { 0 };
            let hi = limit(input).max(lo);
            Taps { lo, hi, padded: limit(input + pad_end) }
        })
        .collect()
}

/// `[n, c, h, w]` → `[n, c, oh, ow]` max or average pooling.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pool(isa: Isa, par: &Par, p: &Pool, max: bool, x_shape: &[usize], y_shape: &[usize], x: &[f32], y: &mut [f32]) {
    let (planes, h, w) = (x_shape[0] * x_shape[1], x_shape[2], x_shape[3]);
    let (oh, ow) = (y_shape[2], y_shape[3]);
    let ty = taps(oh, h, p.kernel[0], p.stride[0], p.dilation[0], p.pads[0], p.pads[2]);
    let tx = taps(ow, w, p.kernel[1], p.stride[1], p.dilation[1], p.pads[1], p.pads[3]);
    let parts = if par.threads() > 1 && planes * oh * ow * p.kernel[0] * p.kernel[1] > 1 << 15 { par.threads() * 4 } else { 1 };
    let ranges = split_range(planes, parts, 1);
    let yp = SendPtr(y.as_mut_ptr());
    // Outputs whose window lies wholly inside the input along x: the same
    // taps for all, so they run as vector loops over `ox`.
    let kw = p.kernel[1];
    let full: Vec<usize> = (0..ow).filter(|&ox| tx[ox].lo == 0 && tx[ox].hi == kw).collect();
    let (ilo, ihi) = match (full.first(), full.last()) {
        (Some(&a), Some(&b)) if b + 1 - a == full.len() => (a, b + 1),
        _ => (0, 0),
    };
    let win = Window { p, max, ty: &ty, tx: &tx, ilo, ihi, w, ow };
    par.for_each(ranges.len(), &|t| {
        let (p0, p1) = ranges[t];
        for pl in p0..p1 {
            // SAFETY: plane pl of y belongs to this task alone.
            let yout = unsafe { std::slice::from_raw_parts_mut(yp.get().add(pl * oh * ow), oh * ow) };
            pool_plane(isa, &win, &x[pl * h * w..(pl + 1) * h * w], yout);
        }
    });
}

/// One pooling's window geometry, shared by all planes.
struct Window<'a> {
    p: &'a Pool,
    max: bool,
    ty: &'a [Taps],
    tx: &'a [Taps],
    /// Output columns `ilo..ihi` have every tap inside the input.
    ilo: usize,
    ihi: usize,
    w: usize,
    ow: usize,
}

multiversion! {
    /// Pools one `h × w` plane into `oh × ow`.
    fn pool_plane(win: &Window, xin: &[f32], yout: &mut [f32]) {
        let &Window { p, max, ty, tx, ilo, ihi, w, ow } = win;
        let (dh, dw, kw) = (p.dilation[0], p.dilation[1], p.kernel[1]);
        for (oy, a) in ty.iter().enumerate() {
            let iy0 = (oy * p.stride[0]) as isize - p.pads[0] as isize;
            let orow = &mut yout[oy * ow..(oy + 1) * ow];
            let rows = (a.lo..a.hi).map(|ky| &xin[(iy0 + (ky * dh) as isize) as usize * w..][..w]);
            // Interior columns.
            if ihi > ilo {
                let dst = &mut orow[ilo..ihi];
                dst.fill(if max { f32::MIN } else { 0.0 });
                let x0 = (ilo * p.stride[1]) as isize - p.pads[1] as isize;
                for row in rows.clone() {
                    for kx in 0..kw {
                        let start = (x0 + (kx * dw) as isize) as usize;
                        match p.stride[1] {
                            1 => window_row::<1>(dst, &row[start..], max),
                            2 => window_row::<2>(dst, &row[start..], max),
                            s => window_row_dyn(dst, &row[start..], s, max),
                        }
                    }
                }
                if !max {
                    let count = if p.count_include_pad { a.padded * kw } else { (a.hi - a.lo) * kw };
                    dst.iter_mut().for_each(|v| *v /= count as f32);
                }
            }
            // Edge columns, one window at a time.
            for (ox, b) in tx.iter().enumerate() {
                if ox >= ilo && ox < ihi {
                    continue;
                }
                let ix0 = (ox * p.stride[1]) as isize - p.pads[1] as isize;
                let mut acc = if max { f32::MIN } else { 0.0 };
                for row in rows.clone() {
                    for kx in b.lo..b.hi {
                        let v = row[(ix0 + (kx * dw) as isize) as usize];
                        if max {
                            if v > acc {
                                acc = v;
                            }
                        } else {
                            acc += v;
                        }
                    }
                }
                if !max {
                    let count = if p.count_include_pad { a.padded * b.padded } else { (a.hi - a.lo) * (b.hi - b.lo) };
                    acc /= count as f32;
                }
                orow[ox] = acc;
            }
        }
    }
}

/// `dst[i] = dst[i] ∘ src[i·S]` (max or sum), stride known at compile time.
#[inline(always)]
fn window_row<const S: usize>(dst: &mut [f32], src: &[f32], max: bool) {
    let src = &src[..(dst.len() - 1) * S + 1];
    if max {
        for (i, d) in dst.iter_mut().enumerate() {
            let v = src[i * S];
            *d = if v > *d { v } else { *d };
        }
    } else {
        for (i, d) in dst.iter_mut().enumerate() {
            *d += src[i * S];
        }
    }
}

fn window_row_dyn(dst: &mut [f32], src: &[f32], s: usize, max: bool) {
    for (i, d) in dst.iter_mut().enumerate() {
        let v = src[i * s];
        if max {
            *d = if v > *d { v } else { *d };
        } else {
            *d += v;
        }
    }
}

multiversion! {
    /// Global max / average over every axis from 2 on: `planes` runs of `len`.
    pub(crate) fn global_pool(max: bool, planes: usize, len: usize, x: &[f32], y: &mut [f32]) {
        for (p, out) in y.iter_mut().enumerate().take(planes) {
            let v = &x[p * len..(p + 1) * len];
            *out = if max {
                v.iter().fold(f32::MIN, |m, &a| if a > m { a } else { m })
            } else {
                // Eight partial sums: vectorisable and a little more accurate.
                let mut s = [0.0f32; 8];
                let chunks = v.chunks_exact(8);
                let rest: f32 = chunks.remainder().iter().sum();
                for c in chunks {
                    for i in 0..8 {
                        s[i] += c[i];
                    }
                }
                (s.iter().sum::<f32>() + rest) / len as f32
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_clip_to_input_and_padding() {
        // k=3, s=2, pad 1/1 on 5: windows start at -1, 1, 3.
        let t = taps(3, 5, 3, 2, 1, 1, 1);
        assert_eq!((t[0].lo, t[0].hi, t[0].padded), (1, 3, 3));
        assert_eq!((t[2].lo, t[2].hi, t[2].padded), (0, 2, 3));
        // ceil-mode window hanging past the end pad: counted only up to the pad.
        let t = taps(3, 5, 2, 2, 1, 0, 0);
        assert_eq!((t[2].lo, t[2].hi, t[2].padded), (0, 1, 1));
    }
}
