//! AVX2 + FMA micro-kernel: a 6 × 16 tile of `C` in 12 ymm accumulators
//! (15 of the 16 registers: 12 accumulators, 2 `B` vectors, 1 broadcast of
//! `A`; a 4 × 24 tile needs 17 and spills). With two 256-bit FMA pipes this
//! reaches the same peak as AVX-512 on Zen 4.

use std::arch::x86_64::*;

use super::{Geometry, Micro, Tile, VecAct};

/// The AVX2 + FMA kernel family.
pub(crate) struct Avx2;

const MR: usize = 6;

impl Micro for Avx2 {
    const GEO: Geometry = Geometry { mr: MR, nr: 16, v: 8, kc: 256, mc: 120, nc: 240 };

    const NARROW: usize = 4;

    unsafe fn narrow(t: &Tile) {
        // SAFETY: forwarded from the caller's contract.
        unsafe { narrow_impl(t) }
    }

    unsafe fn tile(t: &Tile) {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            match (t.bw, !t.offs.is_null()) {
                (16, false) => tile_n::<2, false>(t),
                (16, true) => tile_n::<2, true>(t),
                (_, false) => tile_n::<1, false>(t),
                (_, true) => tile_n::<1, true>(t),
            }
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn tile_n<const NV: usize, const DIRECT: bool>(t: &Tile) {
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        let mut a = t.a;
        let mut b = t.b;
        for kk in 0..t.k {
            if DIRECT {
                b = t.b.add(*t.offs.add(kk));
            }
            let mut bv = [_mm256_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(b.add(8 * v));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let ar = _mm256_broadcast_ss(&*a.add(r));
                for v in 0..NV {
                    row[v] = _mm256_fmadd_ps(ar, bv[v], row[v]);
                }
            }
            a = a.add(MR);
            if !DIRECT {
                b = b.add(8 * NV);
            }
        }
        // One row at a time with literal indices: indexed by a loop
        // variable, LLVM keeps the accumulators in memory and stores all of
        // them on every k step.
        macro_rules! rows {
            ($($r:literal)*) => { $( if $r < t.rows { store_row::<NV>(t, $r, acc[$r]); } )* };
        }
        rows!(0 1 2 3 4 5);
    }
}

/// Row `r` of `tile_n`'s epilogue: accumulate, bias, residual, activation, store.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store_row<const NV: usize>(t: &Tile, r: usize, row: [__m256; NV]) {
    unsafe {
        let zero = _mm256_setzero_ps();
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        {
            let crow = t.c.add(r * t.ldc);
            for (v, &x0) in row.iter().enumerate() {
                let rem = t.cols as isize - 8 * v as isize;
                if rem <= 0 {
                    break;
                }
                let p = crow.add(8 * v);
                let full = rem >= 8;
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem.min(8) as i32), lanes);
                let mut x = x0;
                if t.accumulate {
                    let old = if full { _mm256_loadu_ps(p) } else { _mm256_maskload_ps(p, mask) };
                    x = _mm256_add_ps(x, old);
                }
                if !t.bias.is_null() {
                    x = _mm256_add_ps(x, _mm256_set1_ps(*t.bias.add(r)));
                }
                if !t.res.is_null() {
                    let rp = t.res.add(r * t.ldc + 8 * v);
                    x = _mm256_add_ps(x, if full { _mm256_loadu_ps(rp) } else { _mm256_maskload_ps(rp, mask) });
                }
                match t.act {
                    VecAct::None => {}
                    VecAct::Clamp(lo, hi) => x = _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), x)),
                    VecAct::Leaky(alpha) => {
                        let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(x, zero);
                        x = _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(alpha)), neg);
                    }
                }
                if full {
                    _mm256_storeu_ps(p, x);
                } else {
                    _mm256_maskstore_ps(p, mask, x);
                }
            }
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn narrow_impl(t: &Tile) {
    // SAFETY: forwarded from the caller's contract.
    unsafe { super::narrow_generic::<MR>(t) }
}
