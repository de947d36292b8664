//! WebAssembly `simd128` micro-kernel: a 4 × 8 tile in eight v128
//! accumulators (wasm has no FMA: multiply then add). Browsers map v128 to
//! SSE/NEON registers, of which there are 16, so the tile stays small.

use std::arch::wasm32::*;

use super::{Geometry, Micro, Tile, VecAct};

/// The wasm `simd128` kernel family.
pub(crate) struct Simd128;

const MR: usize = 4;

impl Micro for Simd128 {
    const GEO: Geometry = Geometry { mr: MR, nr: 8, v: 4, kc: 256, mc: 128, nc: 512 };

    unsafe fn tile(t: &Tile) {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            match t.bw {
                8 => tile_n::<2>(t),
                _ => tile_n::<1>(t),
            }
        }
    }
}

#[inline(always)]
unsafe fn tile_n<const NV: usize>(t: &Tile) {
    unsafe {
        let mut acc = [[f32x4_splat(0.0); NV]; MR];
        let mut a = t.a;
        let mut b = t.b;
        let direct = !t.offs.is_null();
        for kk in 0..t.k {
            if direct {
                b = t.b.add(*t.offs.add(kk));
            }
            let mut bv = [f32x4_splat(0.0); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = v128_load(b.add(4 * v) as *const v128);
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let ar = f32x4_splat(*a.add(r));
                for v in 0..NV {
                    row[v] = f32x4_add(row[v], f32x4_mul(ar, bv[v]));
                }
            }
            a = a.add(MR);
            if !direct {
                b = b.add(4 * NV);
            }
        }
        let zero = f32x4_splat(0.0);
        for (r, row) in acc.iter().enumerate() {
            if r >= t.rows {
                break;
            }
            let crow = t.c.add(r * t.ldc);
            for (v, &x0) in row.iter().enumerate() {
                let rem = t.cols as isize - 4 * v as isize;
                if rem <= 0 {
                    break;
                }
                let p = crow.add(4 * v);
                let mut x = x0;
                if rem >= 4 {
                    if t.accumulate {
                        x = f32x4_add(x, v128_load(p as *const v128));
                    }
                } else if t.accumulate {
                    let mut old = [0.0f32; 4];
                    std::ptr::copy_nonoverlapping(p, old.as_mut_ptr(), rem as usize);
                    x = f32x4_add(x, v128_load(old.as_ptr() as *const v128));
                }
                if !t.bias.is_null() {
                    x = f32x4_add(x, f32x4_splat(*t.bias.add(r)));
                }
                if !t.res.is_null() {
                    let mut rv = [0.0f32; 4];
                    std::ptr::copy_nonoverlapping(t.res.add(r * t.ldc + 4 * v), rv.as_mut_ptr(), (rem as usize).min(4));
                    x = f32x4_add(x, v128_load(rv.as_ptr() as *const v128));
                }
                match t.act {
                    VecAct::None => {}
                    VecAct::Clamp(lo, hi) => {
                        // pmax/pmin: NaN in x passes through.
                        x = f32x4_pmin(f32x4_pmax(x, f32x4_splat(lo)), f32x4_splat(hi));
                    }
                    VecAct::Leaky(alpha) => {
                        let neg = f32x4_lt(x, zero);
                        x = v128_bitselect(f32x4_mul(x, f32x4_splat(alpha)), x, neg);
                    }
                }
                if rem >= 4 {
                    v128_store(p as *mut v128, x);
                } else {
                    let mut out = [0.0f32; 4];
                    v128_store(out.as_mut_ptr() as *mut v128, x);
                    std::ptr::copy_nonoverlapping(out.as_ptr(), p, rem as usize);
                }
            }
        }
    }
}
