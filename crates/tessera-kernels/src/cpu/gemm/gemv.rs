//! The GEMV path: `C = A·B` for `n ≤ 4` columns (a dense layer on one or a
//! few images), where the packed weights are the whole cost and are
//! streamed once, in storage order, with several partial sums per output.

use super::{BSource, Epilogue, PackedA};
use crate::cpu::par::{split_range, Par, SendPtr};
use crate::cpu::simd::{multiversion, Isa};

/// `n ≤ GEMV_MAX_N`: one pass over the packed `A`, all columns at once.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemv(isa: Isa, par: &Par, a: &PackedA, b: &dyn BSource, n: usize, c: &mut [f32], ldc: usize, ep: Epilogue) {
    let (bias, act) = (ep.bias, ep.act);
    let k = a.k;
    // x[kk][j] = B[kk][j], packed densely.
    let mut x = vec![0.0f32; k * n];
    for kk in 0..k {
        b.row(kk, 0, &mut x[kk * n..(kk + 1) * n]);
    }
    let mr = a.mr;
    let panels = a.m_pad / mr;
    // Enough tasks to balance, each a run of whole panels.
    let parts = if par.threads() > 1 && a.m * k >= 1 << 16 { par.threads() * 4 } else { 1 };
    let ranges = split_range(panels, parts, 1);
    let cp = SendPtr(c.as_mut_ptr());
    let x = &x;
    par.for_each(ranges.len(), &|t| {
        let (p0, p1) = ranges[t];
        // k blocks outer, panels inner: the packed A is read strictly in
        // storage order, which the hardware prefetcher streams at full
        // memory bandwidth (A is the whole cost here).
        let mut acc = vec![0.0f32; (p1 - p0) * mr * n];
        let mut pc = 0;
        while pc < k {
            let kcur = a.kc.min(k - pc);
            let xs = &x[pc * n..(pc + kcur) * n];
            for p in p0..p1 {
                gemv_panel_any(isa, mr, n, a.panel(pc, kcur, p), xs, &mut acc[(p - p0) * mr * n..(p - p0 + 1) * mr * n]);
            }
            pc += kcur;
        }
        for p in p0..p1 {
            let acc = &acc[(p - p0) * mr * n..(p - p0 + 1) * mr * n];
            for r in 0..mr {
                let row = p * mr + r;
                if row >= a.m {
                    break;
                }
                let bv = bias.map_or(0.0, |bb| bb[row]);
                for j in 0..n {
                    let res = ep.residual.map_or(0.0, |rr| rr[row * ldc + j]);
                    // SAFETY: rows of distinct panel ranges are disjoint; extent checked by `gemm`.
                    unsafe { *cp.get().add(row * ldc + j) = act.apply(acc[j * mr + r] + bv + res) };
                }
            }
        }
    });
}

multiversion! {
    /// One packed panel's GEMV step for the row and column counts at hand.
    fn gemv_panel_any(mr: usize, n: usize, ap: &[f32], xs: &[f32], acc: &mut [f32]) {
        match (mr, n) {
            (8, 1) => gemv_panel::<8, 1>(ap, xs, acc),
            (8, 2) => gemv_panel::<8, 2>(ap, xs, acc),
            (8, 3) => gemv_panel::<8, 3>(ap, xs, acc),
            (8, 4) => gemv_panel::<8, 4>(ap, xs, acc),
            (6, 1) => gemv_panel::<6, 1>(ap, xs, acc),
            (6, 2) => gemv_panel::<6, 2>(ap, xs, acc),
            (6, 3) => gemv_panel::<6, 3>(ap, xs, acc),
            (6, 4) => gemv_panel::<6, 4>(ap, xs, acc),
            (4, 1) => gemv_panel::<4, 1>(ap, xs, acc),
            (4, 2) => gemv_panel::<4, 2>(ap, xs, acc),
            (4, 3) => gemv_panel::<4, 3>(ap, xs, acc),
            (4, 4) => gemv_panel::<4, 4>(ap, xs, acc),
            _ => gemv_panel_dyn(mr, n, ap, xs, acc),
        }
    }
}

/// `acc[j][r] += Σ_k a[k][r] · x[k][j]` with four independent partial sums
/// per output, so the FMA latency chain does not bound a memory-bound loop.
#[inline(always)]
fn gemv_panel<const MR: usize, const N: usize>(a: &[f32], x: &[f32], acc: &mut [f32]) {
    let k = x.len() / N;
    let mut s = [[[0.0f32; MR]; N]; 4];
    let full = k / 4 * 4;
    let (a4, _) = a.split_at(full * MR);
    for (ka, kx) in a4.chunks_exact(4 * MR).zip(x.chunks_exact(4 * N)) {
        for u in 0..4 {
            for j in 0..N {
                let xv = kx[u * N + j];
                for r in 0..MR {
                    s[u][j][r] += ka[u * MR + r] * xv;
                }
            }
        }
    }
    for kk in full..k {
        for j in 0..N {
            let xv = x[kk * N + j];
            for r in 0..MR {
                s[0][j][r] += a[kk * MR + r] * xv;
            }
        }
    }
    for j in 0..N {
        for r in 0..MR {
            acc[j * MR + r] += (s[0][j][r] + s[1][j][r]) + (s[2][j][r] + s[3][j][r]);
        }
    }
}

fn gemv_panel_dyn(mr: usize, n: usize, a: &[f32], x: &[f32], acc: &mut [f32]) {
    let k = x.len() / n;
    for kk in 0..k {
        for j in 0..n {
            let xv = x[kk * n + j];
            for r in 0..mr {
                acc[j * mr + r] += a[kk * mr + r] * xv;
            }
        }
    }
}
