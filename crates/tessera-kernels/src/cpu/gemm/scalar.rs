//! Portable micro-kernel: a 4 × 8 tile in plain arrays, which LLVM turns
//! into whatever vectors the target has (SSE2 on baseline x86-64, NEON on
//! aarch64). The fallback for every target without a hand-written kernel.

use super::{Geometry, Micro, Tile, VecAct};

/// The portable kernel family.
pub(crate) struct Scalar;

const MR: usize = 4;
const NR: usize = 8;

impl Micro for Scalar {
    const GEO: Geometry = Geometry { mr: MR, nr: NR, v: NR, kc: 256, mc: 128, nc: 512 };

    unsafe fn tile(t: &Tile) {
        let mut acc = [[0.0f32; NR]; MR];
        // SAFETY: the caller guarantees `a` holds k×MR values and `b` k rows
        // of NR values (packed, or at `offs`).
        let a = unsafe { std::slice::from_raw_parts(t.a, t.k * MR) };
        for (kk, ak) in a.chunks_exact(MR).enumerate() {
            let bk = unsafe {
                let row = if t.offs.is_null() { t.b.add(kk * NR) } else { t.b.add(*t.offs.add(kk)) };
                &*(row as *const [f32; NR])
            };
            for r in 0..MR {
                for j in 0..NR {
                    acc[r][j] += ak[r] * bk[j];
                }
            }
        }
        for (r, row) in acc.iter().enumerate().take(t.rows) {
            // SAFETY: the caller guarantees row r of C holds `cols` values.
            let c = unsafe { std::slice::from_raw_parts_mut(t.c.add(r * t.ldc), t.cols) };
            let bias = if t.bias.is_null() { 0.0 } else { unsafe { *t.bias.add(r) } };
            for (j, o) in c.iter_mut().enumerate() {
                let mut x = row[j];
                if t.accumulate {
                    x += *o;
                }
                x += bias;
                if !t.res.is_null() {
                    x += unsafe { *t.res.add(r * t.ldc + j) };
                }
                *o = apply(t.act, x);
            }
        }
    }
}

/// The in-register activation, one value.
#[inline(always)]
pub(crate) fn apply(act: VecAct, x: f32) -> f32 {
    match act {
        VecAct::None => x,
        VecAct::Clamp(lo, hi) => {
            if x.is_nan() {
                x
            } else {
                x.max(lo).min(hi)
            }
        }
        VecAct::Leaky(alpha) => {
            if x < 0.0 {
                alpha * x
            } else {
                x
            }
        }
    }
}
