//! Single-precision GEMM `C[m×n] = act(A[m×k] · B[k×n] + bias[m] + R[m×n])`,
//! the engine under every convolution and dense layer.
//!
//! Structure (BLIS/GotoBLAS): `A` (the weights) is packed once at compile
//! time into `MR`-row panels per `kc`-deep block ([`PackedA`]); `B` (the
//! activations, read through a [`BSource`] such as an implicit im2col) is
//! either read in place by the micro-kernel through per-`k` row offsets
//! ([`OffsetRows`]: 1×1 convs, padded inputs) or packed per `kc × nc` block
//! into `NR`-column panels. A register-blocked micro-kernel computes one
//! `MR × NR` tile of `C` per call, with bias, residual and activation fused
//! into its store of the last `k` block; tails of a few columns take a
//! kernel vectorised along `M` instead. Work is split over threads along
//! `N` (or `M` when `N` is small); very small `N` (a dense layer on one
//! image) takes a GEMV path that streams `A` once, in storage order.

use tessera_graph::Activation;

use super::par::{split_range, Par, SendPtr};
use super::simd::{aligned, Isa};

pub(crate) use pack::{BSource, OffsetRows, PackedA, Transposed};
#[cfg(test)]
pub(crate) use pack::Matrix;
use gemv::gemv;
use pack::pack_b;

#[cfg(target_arch = "x86_64")]
mod avx2;
mod gemv;
mod pack;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;

/// Blocking of one micro-kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Rows of `C` per micro-tile (the broadcast operand, from `A`).
    pub mr: usize,
    /// Columns of `C` per micro-tile (the vector operand, from `B`).
    pub nr: usize,
    /// Vector width: panel widths are padded to a multiple of it.
    pub v: usize,
    /// Preferred depth of one `k` block.
    pub kc: usize,
    /// Rows of `A` per L2 block (a multiple of `mr`).
    pub mc: usize,
    /// Columns of `B` packed at once (a multiple of `nr`).
    pub nc: usize,
}

/// What the micro-kernel applies to a tile it stores for the last time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum VecAct {
    None,
    /// `min(max(x, lo), hi)`: ReLU, ReLU6, Clip.
    Clamp(f32, f32),
    /// `x < 0 ? alpha x : x`.
    Leaky(f32),
}

/// Splits an activation into the part the micro-kernel applies in
/// registers and the part (transcendental or rarer) applied afterwards.
pub(crate) fn split_act(act: Activation) -> (VecAct, Option<Activation>) {
    match act {
        Activation::Identity => (VecAct::None, None),
        Activation::Relu => (VecAct::Clamp(0.0, f32::INFINITY), None),
        Activation::Clip { min, max } => (VecAct::Clamp(min, max), None),
        Activation::LeakyRelu { alpha } => (VecAct::Leaky(alpha), None),
        a => (VecAct::None, Some(a)),
    }
}

/// Arguments of one micro-kernel call.
pub(crate) struct Tile {
    /// Depth of this `k` block.
    pub k: usize,
    /// `MR`-row panel of `A`, `k`-major (`k × MR`).
    pub a: *const f32,
    /// Panel of `B`, `k`-major (`k × bw`); with `offs`, the address of
    /// column 0 of a row at offset 0 instead.
    pub b: *const f32,
    /// Per-`k` row offsets of an in-place `B` (null: packed panel).
    pub offs: *const usize,
    /// Packed panel width: a multiple of `v`, at most `nr`.
    pub bw: usize,
    pub c: *mut f32,
    pub ldc: usize,
    /// Valid rows (≤ MR) and columns (≤ bw) of the tile.
    pub rows: usize,
    pub cols: usize,
    /// Add the tile to what `C` holds (every `k` block but the first).
    pub accumulate: bool,
    /// Per-row bias (`rows` values), or null.
    pub bias: *const f32,
    /// Residual added before the activation, laid out like `c`, or null.
    pub res: *const f32,
    pub act: VecAct,
}

/// One ISA's micro-kernel.
pub(crate) trait Micro {
    const GEO: Geometry;
    /// Widest tail (in columns) that `narrow` computes better than `tile`.
    const NARROW: usize = 0;
    /// Computes one tile, from a packed or an in-place (`t.offs`) `B`.
    ///
    /// # Safety
    /// The pointers in `t` must cover the extents it names, and the ISA must
    /// be available.
    unsafe fn tile(t: &Tile);
    /// Computes a tile of at most `NARROW` columns with vectors along the
    /// rows instead (a 1-column tail of a 49-pixel map costs 1/16 of a tile).
    ///
    /// # Safety
    /// As `tile`.
    unsafe fn narrow(t: &Tile) {
        // SAFETY: the same contract.
        unsafe { Self::tile(t) }
    }
}

/// `narrow` for `MR`-row panels and `NC ≤ 8` columns, written plainly for
/// the caller's `#[target_feature]` context to vectorise along the rows.
/// Two interleaved partial sums per output halve the FMA latency chain.
///
/// # Safety
/// As `Micro::tile`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn narrow_generic<const MR: usize>(t: &Tile) {
    // SAFETY: per the caller's contract.
    unsafe {
        match t.cols {
            1 => narrow_n::<MR, 1>(t),
            2 => narrow_n::<MR, 2>(t),
            3 => narrow_n::<MR, 3>(t),
            4 => narrow_n::<MR, 4>(t),
            5 => narrow_n::<MR, 5>(t),
            6 => narrow_n::<MR, 6>(t),
            7 => narrow_n::<MR, 7>(t),
            _ => narrow_n::<MR, 8>(t),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn narrow_n<const MR: usize, const NC: usize>(t: &Tile) {
    unsafe {
        let (mut s0, mut s1) = ([[0.0f32; MR]; NC], [[0.0f32; MR]; NC]);
        let row = |kk: usize| if t.offs.is_null() { t.b.add(kk * t.bw) } else { t.b.add(*t.offs.add(kk)) };
        #[inline(always)]
        unsafe fn step<const MR: usize, const NC: usize>(s: &mut [[f32; MR]; NC], a: *const f32, b: *const f32) {
            unsafe {
                for (j, sj) in s.iter_mut().enumerate() {
                    let bv = *b.add(j);
                    for (r, v) in sj.iter_mut().enumerate() {
                        *v = (*a.add(r)).mul_add(bv, *v);
                    }
                }
            }
        }
        let mut kk = 0;
        while kk + 1 < t.k {
            step(&mut s0, t.a.add(kk * MR), row(kk));
            step(&mut s1, t.a.add((kk + 1) * MR), row(kk + 1));
            kk += 2;
        }
        if kk < t.k {
            step(&mut s0, t.a.add(kk * MR), row(kk));
        }
        let acc = [s0, s1];
        for r in 0..t.rows {
            let c = t.c.add(r * t.ldc);
            let bias = if t.bias.is_null() { 0.0 } else { *t.bias.add(r) };
            for (j, (a0, a1)) in acc[0].iter().zip(&acc[1]).enumerate() {
                let mut x = a0[r] + a1[r];
                if t.accumulate {
                    x += *c.add(j);
                }
                x += bias;
                if !t.res.is_null() {
                    x += *t.res.add(r * t.ldc + j);
                }
                *c.add(j) = scalar::apply(t.act, x);
            }
        }
    }
}

/// Geometry of `isa`'s micro-kernel (packing depends on it).
pub(crate) fn geometry(isa: Isa) -> Geometry {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::Avx512::GEO,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::Avx2::GEO,
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => wasm::Simd128::GEO,
        _ => scalar::Scalar::GEO,
    }
}

/// What computing `n` columns costs, in columns of full-panel work: whole
/// `nr` panels, then the tail as a narrow tile (at least half a vector's
/// worth) or a tile padded to the vector width.
pub(crate) fn cost_columns(isa: Isa, n: usize) -> usize {
    let g = geometry(isa);
    let narrow = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::Avx512::NARROW,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::Avx2::NARROW,
        _ => 0,
    };
    let tail = n % g.nr;
    n / g.nr * g.nr
        + match tail {
            0 => 0,
            t if t <= narrow => t.max(g.v / 4),
            t => t.div_ceil(g.v) * g.v,
        }
}

/// What the GEMM applies to each finished value of `C`, in this order:
/// `+ bias[row]`, `+ residual[row][col]` (a skip connection, laid out like
/// `C`), then the activation.
#[derive(Clone, Copy, Default)]
pub(crate) struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
    pub act: Activation,
}

/// Largest `n` handled by the GEMV path.
const GEMV_MAX_N: usize = 4;

/// `C = A·B` then the epilogue, where `c` is row-major with stride `ldc`.
/// `a` must have been packed for `isa`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(isa: Isa, par: &Par, a: &PackedA, b: &dyn BSource, n: usize, c: &mut [f32], ldc: usize, ep: Epilogue) {
    let m = a.m;
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "gemm: C too small");
    assert!(ep.bias.is_none_or(|b| b.len() >= m), "gemm: bias too short");
    assert!(ep.residual.is_none_or(|r| r.len() >= (m - 1) * ldc + n), "gemm: residual too small");
    let (bias, act) = (ep.bias, ep.act);
    assert_eq!(a.mr, geometry(isa).mr, "gemm: A packed for another ISA");
    if a.k == 0 {
        for i in 0..m {
            for j in 0..n {
                c[i * ldc + j] = act.apply(bias.map_or(0.0, |b| b[i]) + ep.residual.map_or(0.0, |r| r[i * ldc + j]));
            }
        }
        return;
    }
    if n <= GEMV_MAX_N {
        return gemv(isa, par, a, b, n, c, ldc, ep);
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => gemm_impl::<avx512::Avx512>(par, a, b, n, c, ldc, ep),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => gemm_impl::<avx2::Avx2>(par, a, b, n, c, ldc, ep),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => gemm_impl::<wasm::Simd128>(par, a, b, n, c, ldc, ep),
        _ => gemm_impl::<scalar::Scalar>(par, a, b, n, c, ldc, ep),
    }
}

thread_local! {
    /// Per-thread packing buffers (packed `B` block, one gathered row).
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's scratch buffers (fresh ones if re-entered).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>, &mut Vec<f32>) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => {
            let (a, b) = &mut *s;
            f(a, b)
        }
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}

#[allow(clippy::too_many_arguments)]
fn gemm_impl<K: Micro>(par: &Par, a: &PackedA, b: &dyn BSource, n: usize, c: &mut [f32], ldc: usize, ep: Epilogue) {
    let g = K::GEO;
    let m = a.m;
    // Below ~0.25 M multiply-adds a thread hand-off costs more than it saves.
    let threads = if m.saturating_mul(n).saturating_mul(a.k) < 1 << 18 { 1 } else { par.threads() };
    // Split N when every thread gets a few panels, else M, else both.
    let (mt, nt) = if threads == 1 {
        (1, 1)
    } else if n >= threads * g.nr * 2 {
        (1, threads)
    } else if m >= threads * g.mr * 2 {
        (threads, 1)
    } else {
        (1, threads.min(n.div_ceil(g.nr)))
    };
    let mranges = split_range(m, mt, g.mr);
    let nranges = split_range(n, nt, g.nr);
    let cp = SendPtr(c.as_mut_ptr());
    let tasks = mranges.len() * nranges.len();
    par.for_each(tasks, &|t| {
        let (m0, m1) = mranges[t / nranges.len()];
        let (n0, n1) = nranges[t % nranges.len()];
        // SAFETY: tasks write disjoint [m0,m1)×[n0,n1) blocks of C, whose
        // extent was checked by `gemm`.
        unsafe { block::<K>(a, b, m0, m1, n0, n1, cp.get(), ldc, ep) };
    });
}

/// Computes `C[m0..m1, n0..n1]` on the calling thread.
///
/// # Safety
/// `c` must hold rows `m0..m1` of stride `ldc` covering columns `n0..n1`,
/// no other thread may touch that block, and `K`'s ISA must be available.
#[allow(clippy::too_many_arguments)]
unsafe fn block<K: Micro>(a: &PackedA, b: &dyn BSource, m0: usize, m1: usize, n0: usize, n1: usize, c: *mut f32, ldc: usize, ep: Epilogue) {
    let g = K::GEO;
    let (vact, post) = split_act(ep.act);
    let bias = ep.bias;
    let k = a.k;
    let kc = a.kc;
    let direct = b.direct();
    // SAFETY: see the function contract.
    with_scratch(|pbuf, rowbuf| unsafe {
        let ncap = g.nc.min((n1 - n0).div_ceil(g.nr) * g.nr);
        let packed = aligned(pbuf, kc * ncap);
        if rowbuf.len() < ncap {
            rowbuf.resize(ncap, 0.0);
        }
        let mut jc = n0;
        while jc < n1 {
            let ncur = g.nc.min(n1 - jc);
            let mut pc = 0;
            while pc < k {
                let kcur = kc.min(k - pc);
                match direct {
                    None => pack_b(b, pc, kcur, jc, ncur, g.nr, g.v, packed, rowbuf),
                    Some(d) => {
                        // Only panels that would read past `limit` are packed.
                        let mut jr = 0;
                        while jr < ncur {
                            let cols = g.nr.min(ncur - jr);
                            let bw = if cols == g.nr { g.nr } else { cols.div_ceil(g.v) * g.v };
                            if jc + jr + bw > d.limit {
                                pack_b(b, pc, kcur, jc + jr, cols, g.nr, g.v, &mut packed[jr * kcur..], rowbuf);
                            }
                            jr += g.nr;
                        }
                    }
                }
                let first = pc == 0;
                let last = pc + kcur == k;
                let mut ic = m0;
                while ic < m1 {
                    let mcur = g.mc.min(m1 - ic);
                    let mut jr = 0;
                    while jr < ncur {
                        let cols = g.nr.min(ncur - jr);
                        let bw = if cols == g.nr { g.nr } else { cols.div_ceil(g.v) * g.v };
                        let (bp, offs) = match direct {
                            Some(d) if jc + jr + bw <= d.limit => (d.data.as_ptr().add(jc + jr), d.offs.as_ptr().add(pc)),
                            _ => (packed.as_ptr().add(jr * kcur), std::ptr::null()),
                        };
                        let mut ir = ic;
                        while ir < ic + mcur {
                            let rows = g.mr.min(ic + mcur - ir);
                            let ap = a.panel(pc, kcur, ir / g.mr).as_ptr();
                            let t = Tile {
                                k: kcur,
                                a: ap,
                                b: bp,
                                offs,
                                bw,
                                c: c.add(ir * ldc + jc + jr),
                                ldc,
                                rows,
                                cols,
                                accumulate: !first,
                                bias: match (last, bias) {
                                    (true, Some(bb)) => bb.as_ptr().add(ir),
                                    _ => std::ptr::null(),
                                },
                                res: match (last, ep.residual) {
                                    (true, Some(rr)) => rr.as_ptr().add(ir * ldc + jc + jr),
                                    _ => std::ptr::null(),
                                },
                                act: if last { vact } else { VecAct::None },
                            };
                            if cols <= K::NARROW {
                                K::narrow(&t);
                            } else {
                                K::tile(&t);
                            }
                            ir += g.mr;
                        }
                        jr += g.nr;
                    }
                    if let (true, Some(p)) = (last, post) {
                        for r in ic..ic + mcur {
                            let row = std::slice::from_raw_parts_mut(c.add(r * ldc + jc), ncur);
                            row.iter_mut().for_each(|x| *x = p.apply(*x));
                        }
                    }
                    ic += mcur;
                }
                pc += kcur;
            }
            jc += ncur;
        }
    });
}

#[cfg(test)]
mod tests;
