//! Normalisations across an axis: softmax (ONNX opset ≥ 13 single-axis, or
//! the older flattened form) and local response normalisation.

use tessera_graph::op::Lrn;

use super::par::{split_range, Par, SendPtr};
use super::simd::{multiversion, Isa};

multiversion! {
    /// Softmax of `x` (shape `shape`) over `axis`, or over every axis from
    /// `axis` on when `flatten`.
    pub(crate) fn softmax(shape: &[usize], axis: usize, flatten: bool, x: &[f32], y: &mut [f32]) {
        let outer: usize = shape[..axis].iter().product();
        let (len, inner) = if flatten { (shape[axis..].iter().product(), 1) } else { (shape[axis], shape[axis + 1..].iter().product()) };
        if len == 0 || inner == 0 {
            return;
        }
        for o in 0..outer {
            let xb = &x[o * len * inner..(o + 1) * len * inner];
            let yb = &mut y[o * len * inner..(o + 1) * len * inner];
            // Column-wise over [len][inner] so the loops run along `inner`.
            let mut mx = vec![f32::NEG_INFINITY; inner];
            for r in xb.chunks_exact(inner) {
                mx.iter_mut().zip(r).for_each(|(m, &v)| *m = if v > *m { v } else { *m });
            }
            let mut sum = vec![0.0f32; inner];
            for (yr, xr) in yb.chunks_exact_mut(inner).zip(xb.chunks_exact(inner)) {
                for i in 0..inner {
                    let e = (xr[i] - mx[i]).exp();
                    yr[i] = e;
                    sum[i] += e;
                }
            }
            for yr in yb.chunks_exact_mut(inner) {
                yr.iter_mut().zip(&sum).for_each(|(v, s)| *v /= s);
            }
        }
    }
}

/// ONNX LRN over channels of `[n, c, h, w]`:
/// `y = x / (bias + alpha/size · Σ x²)^beta`, the sum over channels
/// `c − ⌊(size−1)/2⌋ ..= c + ⌈(size−1)/2⌉`.
pub(crate) fn lrn(isa: Isa, par: &Par, l: &Lrn, shape: &[usize], x: &[f32], y: &mut [f32]) {
    let (n, c) = (shape[0], shape[1]);
    let plane: usize = shape[2..].iter().product();
    let planes = n * c;
    let parts = if par.threads() > 1 && planes * plane >= 1 << 15 { par.threads() * 2 } else { 1 };
    let ranges = split_range(planes, parts, 1);
    let yp = SendPtr(y.as_mut_ptr());
    par.for_each(ranges.len(), &|t| {
        let (p0, p1) = ranges[t];
        // SAFETY: planes p0..p1 of y belong to this task alone.
        let out = unsafe { std::slice::from_raw_parts_mut(yp.get().add(p0 * plane), (p1 - p0) * plane) };
        lrn_planes(isa, l, c, plane, p0, x, out);
    });
}

multiversion! {
    /// Planes `p0..` (as many as `out` holds) of an LRN over `[n, c, plane]`.
    fn lrn_planes(l: &Lrn, c: usize, plane: usize, p0: usize, x: &[f32], out: &mut [f32]) {
        let (before, after) = ((l.size - 1) / 2, l.size / 2);
        let scale = l.alpha / l.size as f32;
        let mut sq = vec![0.0f32; plane];
        for (i, out) in out.chunks_exact_mut(plane.max(1)).enumerate() {
            let p = p0 + i;
            let (ni, ci) = (p / c, p % c);
            sq.fill(0.0);
            for cj in ci.saturating_sub(before)..(ci + after + 1).min(c) {
                let xs = &x[(ni * c + cj) * plane..(ni * c + cj + 1) * plane];
                sq.iter_mut().zip(xs).for_each(|(s, &v)| *s += v * v);
            }
            let xs = &x[p * plane..(p + 1) * plane];
            let (bias, beta) = (l.bias, l.beta);
            if beta == 0.75 {
                // b^0.75 = sqrt(b) · sqrt(sqrt(b)): vectorises, unlike powf.
                for i in 0..plane {
                    let b = bias + scale * sq[i];
                    let r = b.sqrt();
                    out[i] = xs[i] / (r * r.sqrt());
                }
            } else if beta == 0.5 {
                for i in 0..plane {
                    out[i] = xs[i] / (bias + scale * sq[i]).sqrt();
                }
            } else {
                for i in 0..plane {
                    out[i] = xs[i] / (bias + scale * sq[i]).powf(beta);
                }
            }
        }
    }
}
