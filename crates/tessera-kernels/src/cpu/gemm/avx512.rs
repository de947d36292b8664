//! AVX-512F micro-kernel: an 8 × 48 tile of `C` in 24 zmm accumulators,
//! per `k` step three 16-wide loads of `B` and eight broadcasts of `A`
//! (folded into the FMAs as embedded broadcasts). Zen 4 runs one 512-bit FMA
//! per cycle, so 24 independent accumulators cover its latency with room.

use std::arch::x86_64::*;

use super::{Geometry, Micro, Tile, VecAct};

/// The AVX-512F kernel family.
pub(crate) struct Avx512;

const MR: usize = 8;

impl Micro for Avx512 {
    const GEO: Geometry = Geometry { mr: MR, nr: 48, v: 16, kc: 256, mc: 128, nc: 240 };

    const NARROW: usize = 8;

    unsafe fn narrow(t: &Tile) {
        // SAFETY: forwarded from the caller's contract.
        unsafe { narrow_impl(t) }
    }

    unsafe fn tile(t: &Tile) {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            match (t.bw, !t.offs.is_null()) {
                (48, false) => tile_n::<3, false>(t),
                (48, true) => tile_n::<3, true>(t),
                (32, false) => tile_n::<2, false>(t),
                (32, true) => tile_n::<2, true>(t),
                (_, false) => tile_n::<1, false>(t),
                (_, true) => tile_n::<1, true>(t),
            }
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn tile_n<const NV: usize, const DIRECT: bool>(t: &Tile) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let mut a = t.a;
        let mut b = t.b;
        for kk in 0..t.k {
            if DIRECT {
                b = t.b.add(*t.offs.add(kk));
            }
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(b.add(16 * v));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let ar = _mm512_set1_ps(*a.add(r));
                for v in 0..NV {
                    row[v] = _mm512_fmadd_ps(ar, bv[v], row[v]);
                }
            }
            a = a.add(MR);
            if !DIRECT {
                b = b.add(16 * NV);
            }
        }
        // One row at a time with literal indices: indexed by a loop
        // variable, LLVM keeps the accumulators in memory and stores all of
        // them on every k step (2.3x slower).
        macro_rules! rows {
            ($($r:literal)*) => { $( if $r < t.rows { store_row::<NV>(t, $r, acc[$r]); } )* };
        }
        rows!(0 1 2 3 4 5 6 7);
    }
}

/// Row `r` of `tile_n`'s epilogue: accumulate, bias, residual, activation, store.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_row<const NV: usize>(t: &Tile, r: usize, row: [__m512; NV]) {
    unsafe {
        let zero = _mm512_setzero_ps();
        {
            let crow = t.c.add(r * t.ldc);
            for (v, &x0) in row.iter().enumerate() {
                let rem = t.cols as isize - 16 * v as isize;
                if rem <= 0 {
                    break;
                }
                let mask: __mmask16 = if rem >= 16 { 0xffff } else { (1u16 << rem) - 1 };
                let p = crow.add(16 * v);
                let mut x = x0;
                if t.accumulate {
                    x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, p));
                }
                if !t.bias.is_null() {
                    x = _mm512_add_ps(x, _mm512_set1_ps(*t.bias.add(r)));
                }
                if !t.res.is_null() {
                    x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, t.res.add(r * t.ldc + 16 * v)));
                }
                match t.act {
                    VecAct::None => {}
                    // max(lo, x) then min(hi, ·): a NaN in x passes through.
                    VecAct::Clamp(lo, hi) => x = _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), x)),
                    VecAct::Leaky(alpha) => {
                        let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, zero);
                        x = _mm512_mask_mul_ps(x, neg, x, _mm512_set1_ps(alpha));
                    }
                }
                _mm512_mask_storeu_ps(p, mask, x);
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn narrow_impl(t: &Tile) {
    // SAFETY: forwarded from the caller's contract.
    unsafe { super::narrow_generic::<MR>(t) }
}
