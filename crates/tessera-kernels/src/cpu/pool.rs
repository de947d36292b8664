//! Pooling: max / average windows (padding, dilation, ceil mode,
//! `count_include_pad`, all as onnxruntime computes them) and the global
//! reductions. Each (image, channel) plane is independent, so planes are
//! spread over threads.

use tessera_graph::Pool;

use super::conv::gather2;
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
///
/// Windows are separable: each output row first reduces its window's input
/// rows at full width (contiguous vector loops), then that one row along x
/// through the column windows, so the work per output is about `kh + kw`
/// vector steps, not `kh·kw` strided ones. For stride 2 the reduced row is
/// split into its even and odd columns first, so every x step is contiguous
/// too.
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
    let cols: Vec<f32> = tx.iter().map(|b| if p.count_include_pad { b.padded } else { b.hi - b.lo } as f32).collect();
    let win = Window { p, max, ty: &ty, tx: &tx, cols: &cols, ilo, ihi, w, ow };
    par.for_each(ranges.len(), &|t| {
        let (p0, p1) = ranges[t];
        ROWS.with(|rows| {
            let mut rows = rows.borrow_mut();
            // One y-reduced row, then its even and odd columns.
            rows.resize(2 * w + 1, 0.0);
            for pl in p0..p1 {
                // SAFETY: plane pl of y belongs to this task alone.
                let yout = unsafe { std::slice::from_raw_parts_mut(yp.get().add(pl * oh * ow), oh * ow) };
                pool_plane(isa, &win, &x[pl * h * w..(pl + 1) * h * w], &mut rows, yout);
            }
        })
    });
}

thread_local! {
    /// A thread's y-reduced row (and that row's even and odd columns).
    static ROWS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One pooling's window geometry, shared by all planes.
struct Window<'a> {
    p: &'a Pool,
    max: bool,
    ty: &'a [Taps],
    tx: &'a [Taps],
    /// Per output column, the taps an average divides by along x.
    cols: &'a [f32],
    /// Output columns `ilo..ihi` have every tap inside the input.
    ilo: usize,
    ihi: usize,
    w: usize,
    ow: usize,
}

multiversion! {
    /// Pools one `h × w` plane into `oh × ow`, through `rows` (`2·w + 1`
    /// floats of scratch).
    fn pool_plane(win: &Window, xin: &[f32], rows: &mut [f32], yout: &mut [f32]) {
        let &Window { p, max, ty, tx, cols, ilo, ihi, w, ow } = win;
        let (dw, kw, sw) = (p.dilation[1], p.kernel[1], p.stride[1]);
        let init = if max { f32::MIN } else { 0.0 };
        let (vrow, split) = rows.split_at_mut(w);
        for (oy, a) in ty.iter().enumerate() {
            // Along y: the window's input rows, at full width (contiguous).
            vrow.fill(init);
            for ky in a.lo..a.hi {
                // Inside the input: `taps` clipped the window to it.
                let iy = oy * p.stride[0] + ky * p.dilation[0] - p.pads[0];
                combine(vrow, &xin[iy * w..(iy + 1) * w], max);
            }
            // Along x: that row through the column windows.
            let orow = &mut yout[oy * ow..(oy + 1) * ow];
            if ihi > ilo {
                let dst = &mut orow[ilo..ihi];
                dst.fill(init);
                let x0 = ilo * sw - p.pads[1];
                if sw == 2 && dst.len() >= 16 {
                    // Even columns, then odd (rows of at least one vector of
                    // outputs): every tap is then a contiguous run.
                    let (ev, od) = split.split_at_mut(w.div_ceil(2));
                    gather2(ev, vrow);
                    gather2(&mut od[..w / 2], &vrow[1.min(w)..]);
                    for kx in 0..kw {
                        let c = x0 + kx * dw;
                        combine(dst, if c % 2 == 0 { &ev[c / 2..] } else { &od[c / 2..] }, max);
                    }
                } else {
                    for kx in 0..kw {
                        let start = x0 + kx * dw;
                        match sw {
                            1 => combine(dst, &vrow[start..], max),
                            // Narrow rows (fewer than one vector of outputs):
                            // splitting the columns would cost more.
                            s => strided(dst, &vrow[start..], s, max),
                        }
                    }
                }
            }
            // Edge columns, one window at a time.
            for ox in (0..ilo).chain(ihi.max(ilo)..ow) {
                let b = tx[ox];
                let ix0 = (ox * sw) as isize - p.pads[1] as isize;
                let mut acc = init;
                for kx in b.lo..b.hi {
                    acc = fold(acc, vrow[(ix0 + (kx * dw) as isize) as usize], max);
                }
                orow[ox] = acc;
            }
            if !max {
                // Window sizes are small integers: the products are exact in f32.
                let rows = if p.count_include_pad { a.padded } else { a.hi - a.lo } as f32;
                for (v, &cols) in orow.iter_mut().zip(cols) {
                    *v /= rows * cols;
                }
            }
        }
    }
}

/// One max or sum step. `max` ignores a NaN `v` (as onnxruntime's
/// comparisons do; `acc` starts at `f32::MIN` so is never NaN) and, unlike
/// a compare-and-select written back to memory, never becomes a conditional
/// store: loops of it vectorise.
#[inline(always)]
fn fold(acc: f32, v: f32, max: bool) -> f32 {
    if max { acc.max(v) } else { acc + v }
}

/// `dst[i] = dst[i] ∘ src[i]` (max or sum): a contiguous vector loop.
#[inline(always)]
fn combine(dst: &mut [f32], src: &[f32], max: bool) {
    let src = &src[..dst.len()];
    dst.iter_mut().zip(src).for_each(|(d, &v)| *d = fold(*d, v, max));
}

/// `dst[i] = dst[i] ∘ src[i·s]` (max or sum).
#[inline(always)]
fn strided(dst: &mut [f32], src: &[f32], s: usize, max: bool) {
    for (i, d) in dst.iter_mut().enumerate() {
        *d = fold(*d, src[i * s], max);
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

/// Max-pooling speed on zoo shapes:
/// `cargo test --release -p tessera-kernels pool_speed -- --ignored --nocapture`
#[cfg(test)]
#[test]
#[ignore]
fn pool_speed() {
    let par = Par::new(1).unwrap();
    let isa = Isa::detect();
    let mut rng = tessera_graph::rng::Rng::new(1);
    // (channels, side, kernel, stride, pad): ResNet, VGG, YOLOv2, AlexNet.
    for &(c, h, k, s, pad) in &[(64usize, 112usize, 3usize, 2usize, 1usize), (64, 224, 2, 2, 0), (16, 416, 2, 2, 0), (96, 55, 3, 2, 0), (256, 26, 2, 2, 0), (512, 13, 2, 1, 0)] {
        let p = Pool { kernel: [k, k], stride: [s, s], pads: [pad; 4], dilation: [1, 1], ceil_mode: false, count_include_pad: false };
        let oh = (h + 2 * pad - k) / s + 1;
        let x = rng.fill(c * h * h, 1.0);
        let mut y = vec![0.0; c * oh * oh];
        for max in [true, false] {
            let mut best = f64::MAX;
            for _ in 0..20 {
                let t = std::time::Instant::now();
                pool(isa, &par, &p, max, &[1, c, h, h], &[1, c, oh, oh], &x, &mut y);
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
            }
            println!("{} {c}x{h}x{h} k{k} s{s} p{pad}: {best:.3} ms", if max { "max" } else { "avg" });
        }
    }
}
