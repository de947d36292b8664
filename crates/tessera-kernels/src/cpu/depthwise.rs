//! Depthwise convolution (one input and one output channel per group: the
//! 3×3 / 5×5 layers of MobileNets), NCHW, one plane at a time.
//!
//! Each plane is copied once into a zero-padded buffer split by the column
//! stride: padded row `pr`, phase `q` holds padded columns `q, q + sw,
//! q + 2·sw, …` (`pitch` apart), so tap `t = (ky, kx)` of output pixel
//! `(oy, ox)` is `buf[offs[t] + oy·row_step + ox]` for every stride and
//! dilation, and a run of output columns reads a run of the buffer. Outputs
//! are computed in blocks of [`ROWS`] rows × [`LANES`] columns held in
//! registers across all taps and stored once, straight into the output,
//! with bias, residual and activation: no pass over memory per tap, no
//! wide intermediate plane, no edge fix-up (padding reads zeros).
//!
//! Square 3×3 and 5×5 kernels with stride 1 or 2 and no dilation (every
//! MobileNet / EfficientNet depthwise layer) load each input vector of a
//! block once and feed it to every output row that reads it: for 3×3
//! stride 1, `3·(ROWS + 2)` loads per block instead of `9·ROWS`, which
//! is what bounds this loop. Other shapes load once per tap and row.
//!
//! Every output sums its bias, then its taps in `(ky, kx)` order, on every
//! path: results do not depend on the block, the path or the thread.

use tessera_graph::Activation;

use super::conv::{apply_act, ConvGeom, PadBuf};
use super::gemm::{split_act, VecAct};
use super::par::{split_range, Par, SendPtr};
use super::simd::Isa;

/// Output rows computed together (their accumulators stay in registers;
/// the block loops name each of the four).
const ROWS: usize = 4;
/// Output columns per accumulator (one AVX-512 register, two AVX2, four
/// wasm `v128`).
const LANES: usize = 16;
/// Taps of the largest kernel the shared loops take (5×5).
const MAX_TAPS: usize = 25;

/// A depthwise convolution, prepared once per shape.
#[derive(Debug)]
pub(crate) struct Depthwise {
    /// `[c][kh·kw]` weights.
    w: Vec<f32>,
    /// Floats per phase row of the padded buffer.
    pitch: usize,
    /// Padded rows held: every row the last block reads (rows of its
    /// outputs below the plane are computed and dropped).
    rows: usize,
    /// Buffer distance between consecutive output rows (`sh` padded rows).
    row_step: usize,
    /// Buffer offset of every tap `ky·kw + kx` from `oy·row_step + ox`.
    offs: Vec<usize>,
    /// Per column phase `q`: the cells `j0..j1` whose padded column
    /// `q + j·sw` lies in the input row, and the input column of `j0`.
    phases: Vec<(usize, usize, usize)>,
    /// How the taps are loaded.
    loads: Loads,
}

/// The tap loop of a [`Depthwise`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Loads {
    /// Square `k × k`, stride `s`, no dilation: each padded row of a
    /// block loaded once per column shift (`shared`).
    Shared { k: usize, s: usize },
    /// Any other shape: one load per tap and output row.
    PerTap,
}

impl Depthwise {
    /// The plan of `g` (one input and one output channel per group) with
    /// `[c][kh·kw]` weights `w`.
    pub(crate) fn new(g: &ConvGeom, w: &[f32]) -> Depthwise {
        let (oh_blocks, ow_chunks) = (g.oh.next_multiple_of(ROWS).max(ROWS), g.ow.next_multiple_of(LANES).max(LANES));
        let pitch = ow_chunks + (g.kw - 1) * g.dw / g.sw;
        let rows = (oh_blocks - 1) * g.sh + (g.kh - 1) * g.dh + 1;
        let row_step = g.sh * g.sw * pitch;
        let tap = |ky: usize, kx: usize| ((ky * g.dh) * g.sw + (kx * g.dw) % g.sw) * pitch + (kx * g.dw) / g.sw;
        let offs = (0..g.kh).flat_map(|ky| (0..g.kw).map(move |kx| (ky, kx))).map(|(ky, kx)| tap(ky, kx)).collect();
        let pl = g.pads[1];
        let phases = (0..g.sw)
            .map(|q| {
                let j0 = if pl > q { (pl - q).div_ceil(g.sw) } else { 0 };
                let j1 = (g.w + pl).saturating_sub(q).div_ceil(g.sw).min(pitch).max(j0);
                (j0, j1, (j0 * g.sw + q).saturating_sub(pl))
            })
            .collect();
        let square = g.kh == g.kw && g.sh == g.sw && g.dh == 1 && g.dw == 1;
        let loads = match (g.kh, g.sh) {
            (k @ (3 | 5), s @ (1 | 2)) if square => Loads::Shared { k, s },
            _ => Loads::PerTap,
        };
        Depthwise { w: w.to_vec(), pitch, rows, row_step, offs, phases, loads }
    }

    /// Length of the padded buffer.
    fn len(&self, g: &ConvGeom) -> usize {
        self.rows * g.sw * self.pitch
    }

    /// The tap loop's name (tests check that each is exercised).
    #[cfg(test)]
    pub(crate) fn name(&self) -> &'static str {
        match self.loads {
            Loads::Shared { .. } => "depthwise-shared",
            Loads::PerTap => "depthwise",
        }
    }

    /// `y = act(depthwise(x) + bias + residual)` over every plane of `x`,
    /// `residual` shaped like `y`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(&self, isa: Isa, par: &Par, g: &ConvGeom, bias: Option<&[f32]>, residual: Option<&[f32]>, act: Activation, x: &[f32], y: &mut [f32]) {
        let planes = g.batch * g.c_out;
        let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
        let work = planes * out_plane * g.kh * g.kw;
        let parts = if par.threads() > 1 && work > 1 << 16 { par.threads() * 4 } else { 1 };
        let ranges = split_range(planes, parts, 1);
        assert!(x.len() >= planes * in_plane && y.len() >= planes * out_plane, "depthwise buffers too short");
        let yp = SendPtr(y.as_mut_ptr());
        let taps = g.kh * g.kw;
        par.for_each(ranges.len(), &|t| {
            let (p0, p1) = ranges[t];
            BUF.with(|buf| {
                let mut buf = buf.borrow_mut();
                let buf = buf.for_geom(g, self.len(g));
                for p in p0..p1 {
                    let c = p % g.c_out;
                    // SAFETY: plane p of y belongs to this task alone (lengths checked above).
                    let out = unsafe { std::slice::from_raw_parts_mut(yp.get().add(p * out_plane), out_plane) };
                    let plane = Plane {
                        g,
                        x: &x[p * in_plane..(p + 1) * in_plane],
                        w: &self.w[c * taps..(c + 1) * taps],
                        bias: bias.map_or(0.0, |b| b[c]),
                        residual: residual.map(|r| &r[p * out_plane..(p + 1) * out_plane]),
                        act,
                    };
                    plane_for(isa, self, &plane, buf, out);
                }
            })
        });
    }
}

thread_local! {
    /// A thread's padded plane. Fills rewrite the same cells for every plane
    /// of a shape, so the zero borders stay (zeroed when the shape changes).
    static BUF: std::cell::RefCell<PadBuf> = std::cell::RefCell::new(PadBuf::default());
}

/// One plane's inputs.
struct Plane<'a> {
    g: &'a ConvGeom,
    /// The input plane, `h × w`.
    x: &'a [f32],
    /// This channel's `kh·kw` weights.
    w: &'a [f32],
    bias: f32,
    residual: Option<&'a [f32]>,
    act: Activation,
}

/// `plane` compiled for `isa`: explicit 512- and 256-bit vectors on x86
/// (with fused multiply-adds), portable arrays elsewhere (wasm `simd128`
/// vectorises them at compile time).
fn plane_for(isa: Isa, dw: &Depthwise, p: &Plane, buf: &mut [f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn avx512(dw: &Depthwise, p: &Plane, buf: &mut [f32], out: &mut [f32]) {
        plane::<x86::Zmm>(dw, p, buf, out)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(dw: &Depthwise, p: &Plane, buf: &mut [f32], out: &mut [f32]) {
        plane::<x86::Ymm2>(dw, p, buf, out)
    }
    match isa {
        // SAFETY: a backend only holds an ISA this machine runs.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512(dw, p, buf, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2(dw, p, buf, out) },
        _ => plane::<Portable>(dw, p, buf, out),
    }
}

/// `LANES` floats in registers: what the block loops compute with.
trait Lanes: Copy {
    fn splat(x: f32) -> Self;
    fn load(src: &[f32; LANES]) -> Self;
    /// The even-indexed half of 32 floats (`src[0], src[2], …`).
    fn even(src: &[f32; 2 * LANES]) -> Self;
    /// `self + v · w`.
    fn fma(self, v: Self, w: Self) -> Self;
    fn add(self, v: Self) -> Self;
    /// `min(max(self, lo), hi)`, lane by lane (a NaN stays NaN, as in
    /// `apply_act`).
    fn clamp(self, lo: Self, hi: Self) -> Self;
    fn store(self, dst: &mut [f32; LANES]);
    /// The first `src.len()` (at most `LANES`) lanes from `src`, the rest zero.
    fn load_part(src: &[f32]) -> Self;
    /// Stores the first `dst.len()` (at most `LANES`) lanes.
    fn store_part(self, dst: &mut [f32]);
}

/// Plain arrays (LLVM vectorises them for the compile-time target).
#[derive(Clone, Copy)]
struct Portable([f32; LANES]);

impl Lanes for Portable {
    #[inline(always)]
    fn splat(x: f32) -> Self {
        Portable([x; LANES])
    }
    #[inline(always)]
    fn load(src: &[f32; LANES]) -> Self {
        Portable(*src)
    }
    #[inline(always)]
    fn even(src: &[f32; 2 * LANES]) -> Self {
        Portable(std::array::from_fn(|i| src[2 * i]))
    }
    #[inline(always)]
    fn fma(self, v: Self, w: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i] + v.0[i] * w.0[i]))
    }
    #[inline(always)]
    fn add(self, v: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i] + v.0[i]))
    }
    #[inline(always)]
    fn clamp(self, lo: Self, hi: Self) -> Self {
        Portable(std::array::from_fn(|i| {
            let x = if self.0[i] < lo.0[i] { lo.0[i] } else { self.0[i] };
            if x > hi.0[i] { hi.0[i] } else { x }
        }))
    }
    #[inline(always)]
    fn store(self, dst: &mut [f32; LANES]) {
        *dst = self.0;
    }
    #[inline(always)]
    fn load_part(src: &[f32]) -> Self {
        let mut v = [0.0; LANES];
        v[..src.len()].copy_from_slice(src);
        Portable(v)
    }
    #[inline(always)]
    fn store_part(self, dst: &mut [f32]) {
        let n = dst.len();
        dst.copy_from_slice(&self.0[..n]);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The x86 vectors. Their methods are only reached from the
    //! `#[target_feature]` entry points of `plane_for`, which is what makes
    //! the intrinsics' calls sound.
    use super::{Lanes, LANES};
    use std::arch::x86_64::*;

    /// One AVX-512 register.
    #[derive(Clone, Copy)]
    pub(super) struct Zmm(__m512);

    impl Lanes for Zmm {
        #[inline(always)]
        fn splat(x: f32) -> Self {
            // SAFETY: AVX-512F is enabled by the caller (module doc).
            Zmm(unsafe { _mm512_set1_ps(x) })
        }
        #[inline(always)]
        fn load(src: &[f32; LANES]) -> Self {
            // SAFETY: as above; 16 floats are readable.
            Zmm(unsafe { _mm512_loadu_ps(src.as_ptr()) })
        }
        #[inline(always)]
        fn even(src: &[f32; 2 * LANES]) -> Self {
            // SAFETY: as above; 32 floats are readable.
            unsafe {
                let idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                Zmm(_mm512_permutex2var_ps(_mm512_loadu_ps(src.as_ptr()), idx, _mm512_loadu_ps(src.as_ptr().add(16))))
            }
        }
        #[inline(always)]
        fn fma(self, v: Self, w: Self) -> Self {
            // SAFETY: as above.
            Zmm(unsafe { _mm512_fmadd_ps(v.0, w.0, self.0) })
        }
        #[inline(always)]
        fn add(self, v: Self) -> Self {
            // SAFETY: as above.
            Zmm(unsafe { _mm512_add_ps(self.0, v.0) })
        }
        #[inline(always)]
        fn clamp(self, lo: Self, hi: Self) -> Self {
            // SAFETY: as above. max / min return their second operand when
            // either is NaN: a NaN in self passes through.
            Zmm(unsafe { _mm512_min_ps(hi.0, _mm512_max_ps(lo.0, self.0)) })
        }
        #[inline(always)]
        fn store(self, dst: &mut [f32; LANES]) {
            // SAFETY: as above; 16 floats are writable.
            unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn load_part(src: &[f32]) -> Self {
            assert!(src.len() <= LANES);
            // SAFETY: as above; masked-off lanes are not read.
            Zmm(unsafe { _mm512_maskz_loadu_ps(mask(src.len()), src.as_ptr()) })
        }
        #[inline(always)]
        fn store_part(self, dst: &mut [f32]) {
            assert!(dst.len() <= LANES);
            // SAFETY: as above; masked-off lanes are not written.
            unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), mask(dst.len()), self.0) }
        }
    }

    /// The first `n` of 16 lanes.
    #[inline(always)]
    fn mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    /// Per 8-lane half, the lanes below `n` (sign bit set), as AVX2's masked
    /// loads and stores take them.
    #[inline(always)]
    fn halves(n: usize) -> (__m256i, __m256i) {
        // SAFETY: AVX2 is enabled by the caller (module doc).
        unsafe {
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let n = n as i32;
            (_mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes), _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), lanes))
        }
    }

    /// Two AVX2 registers.
    #[derive(Clone, Copy)]
    pub(super) struct Ymm2(__m256, __m256);

    impl Lanes for Ymm2 {
        #[inline(always)]
        fn splat(x: f32) -> Self {
            // SAFETY: AVX2 and FMA are enabled by the caller (module doc).
            unsafe { Ymm2(_mm256_set1_ps(x), _mm256_set1_ps(x)) }
        }
        #[inline(always)]
        fn load(src: &[f32; LANES]) -> Self {
            // SAFETY: as above; 16 floats are readable.
            unsafe { Ymm2(_mm256_loadu_ps(src.as_ptr()), _mm256_loadu_ps(src.as_ptr().add(8))) }
        }
        #[inline(always)]
        fn even(src: &[f32; 2 * LANES]) -> Self {
            // SAFETY: as above; 32 floats are readable.
            unsafe {
                let half = |at: usize| {
                    let (a, b) = (_mm256_loadu_ps(src.as_ptr().add(at)), _mm256_loadu_ps(src.as_ptr().add(at + 8)));
                    // Evens of each 128-bit lane pair, then the lanes in order.
                    let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)))
                };
                Ymm2(half(0), half(16))
            }
        }
        #[inline(always)]
        fn fma(self, v: Self, w: Self) -> Self {
            // SAFETY: as above.
            unsafe { Ymm2(_mm256_fmadd_ps(v.0, w.0, self.0), _mm256_fmadd_ps(v.1, w.1, self.1)) }
        }
        #[inline(always)]
        fn add(self, v: Self) -> Self {
            // SAFETY: as above.
            unsafe { Ymm2(_mm256_add_ps(self.0, v.0), _mm256_add_ps(self.1, v.1)) }
        }
        #[inline(always)]
        fn clamp(self, lo: Self, hi: Self) -> Self {
            // SAFETY: as above; a NaN in self passes through (see `Zmm`).
            unsafe { Ymm2(_mm256_min_ps(hi.0, _mm256_max_ps(lo.0, self.0)), _mm256_min_ps(hi.1, _mm256_max_ps(lo.1, self.1))) }
        }
        #[inline(always)]
        fn store(self, dst: &mut [f32; LANES]) {
            // SAFETY: as above; 16 floats are writable.
            unsafe {
                _mm256_storeu_ps(dst.as_mut_ptr(), self.0);
                _mm256_storeu_ps(dst.as_mut_ptr().add(8), self.1);
            }
        }
        #[inline(always)]
        fn load_part(src: &[f32]) -> Self {
            assert!(src.len() <= LANES);
            let (lo, hi) = halves(src.len());
            // SAFETY: as above; masked-off lanes are not read.
            unsafe { Ymm2(_mm256_maskload_ps(src.as_ptr(), lo), _mm256_maskload_ps(src.as_ptr().wrapping_add(8), hi)) }
        }
        #[inline(always)]
        fn store_part(self, dst: &mut [f32]) {
            assert!(dst.len() <= LANES);
            let (lo, hi) = halves(dst.len());
            // SAFETY: as above; masked-off lanes are not written.
            unsafe {
                _mm256_maskstore_ps(dst.as_mut_ptr(), lo, self.0);
                _mm256_maskstore_ps(dst.as_mut_ptr().wrapping_add(8), hi, self.1);
            }
        }
    }
}

/// Accumulators of one block: `ROWS` output rows × `LANES` columns.
type Block<L> = [L; ROWS];

/// Fills the padded buffer from the plane, then computes every block
/// into the output; the residual and the activation are applied to each
/// finished row band (still in cache).
#[inline(always)]
fn plane<L: Lanes>(dw: &Depthwise, p: &Plane, buf: &mut [f32], out: &mut [f32]) {
    fill::<L>(dw, p, buf);
    let buf = &*buf;
    // The shared loops' weights, broadcast once per plane.
    let mut wv = [L::splat(0.0); MAX_TAPS];
    if matches!(dw.loads, Loads::Shared { .. }) {
        wv.iter_mut().zip(p.w).for_each(|(v, &w)| *v = L::splat(w));
    }
    // Clamps (ReLU, ReLU6) in registers; other activations over each
    // finished row band.
    let (clamp, rest) = match split_act(p.act) {
        (VecAct::Clamp(lo, hi), None) => (Some((L::splat(lo), L::splat(hi))), None),
        (VecAct::None, None) => (None, None),
        _ => (None, Some(p.act)),
    };
    let (oh, ow) = (p.g.oh, p.g.ow);
    for oy0 in (0..oh).step_by(ROWS) {
        let rows = ROWS.min(oh - oy0);
        for x0 in (0..ow).step_by(LANES) {
            let acc = block::<L>(dw, p, &wv, buf, oy0, x0);
            let n = LANES.min(ow - x0);
            for (r, &a) in acc.iter().enumerate().take(rows) {
                let at = (oy0 + r) * ow + x0;
                let mut v = a;
                if let Some(res) = p.residual {
                    v = v.add(L::load_part(&res[at..at + n]));
                }
                if let Some((lo, hi)) = clamp {
                    v = v.clamp(lo, hi);
                }
                if n == LANES {
                    v.store((&mut out[at..at + LANES]).try_into().expect("LANES long"));
                } else {
                    v.store_part(&mut out[at..at + n]);
                }
            }
        }
        if let Some(act) = rest {
            apply_act(act, &mut out[oy0 * ow..(oy0 + rows) * ow]);
        }
    }
}

/// Copies the plane's rows into the padded buffer, phase by phase (the
/// cells outside stay zero). Vector copies inline, not a library call per
/// row: rows are short.
#[inline(always)]
fn fill<L: Lanes>(dw: &Depthwise, p: &Plane, buf: &mut [f32]) {
    let g = p.g;
    let (pt, sw) = (g.pads[0], g.sw);
    for pr in pt..(pt + g.h).min(dw.rows) {
        // The rest of the plane from this row: stride-2 loads may read
        // into the next row (only this row's lanes are stored).
        let src = &p.x[(pr - pt) * g.w..];
        for (q, &(j0, j1, first)) in dw.phases.iter().enumerate() {
            let at = (pr * sw + q) * dw.pitch;
            let dst = &mut buf[at + j0..at + j1];
            let n = dst.len();
            let mut j = 0;
            while j < n {
                let m = LANES.min(n - j);
                let from = first + j * sw;
                match sw {
                    1 => L::load_part(&src[from..from + m]),
                    2 if from + 2 * LANES <= src.len() => L::even(src[from..from + 2 * LANES].try_into().expect("32 long")),
                    _ => L::load_part(&std::array::from_fn::<f32, LANES, _>(|i| if i < m { src[from + i * sw] } else { 0.0 })[..m]),
                }
                .store_part(&mut dst[j..j + m]);
                j += m;
            }
        }
    }
}

/// The block at output row `oy0`, column `x0`, through the shape's tap
/// loop (a plain match, not a closure: closures would not inherit the
/// caller's target features).
#[inline(always)]
fn block<L: Lanes>(dw: &Depthwise, p: &Plane, wv: &[L; MAX_TAPS], buf: &[f32], oy0: usize, x0: usize) -> Block<L> {
    let base = oy0 * dw.row_step + x0;
    match &dw.loads {
        Loads::Shared { k: 3, s: 1 } => shared::<L, 3, 1>(wv, p.bias, buf, dw.pitch, base),
        Loads::Shared { k: 3, s: 2 } => shared::<L, 3, 2>(wv, p.bias, buf, dw.pitch, base),
        Loads::Shared { k: 5, s: 1 } => shared::<L, 5, 1>(wv, p.bias, buf, dw.pitch, base),
        Loads::Shared { k: 5, s: 2 } => shared::<L, 5, 2>(wv, p.bias, buf, dw.pitch, base),
        _ => per_tap::<L>(p.w, p.bias, buf, &dw.offs, base, dw.row_step),
    }
}

/// `LANES` buffer cells from `at`.
#[inline(always)]
fn load<L: Lanes>(buf: &[f32], at: usize) -> L {
    L::load(buf[at..at + LANES].try_into().expect("the buffer covers every block"))
}

/// One block of a square `K × K`, stride-`S` layer: padded row `pr` of
/// the block and column `kx` loaded once, at `(pr·S + kx mod S)·pitch +
/// kx div S` from `base`, and added to every output row that reads it
/// (`ky = pr − r·S`). Rows in increasing `pr` give each output its taps in
/// `(ky, kx)` order. The four rows' accumulators are separate variables so
/// that they stay in registers; the loops have constant bounds so they
/// unroll, and the block's window is bounds-checked once.
#[inline(always)]
fn shared<L: Lanes, const K: usize, const S: usize>(w: &[L; MAX_TAPS], bias: f32, buf: &[f32], pitch: usize, base: usize) -> Block<L> {
    let [mut a0, mut a1, mut a2, mut a3] = [L::splat(bias); ROWS];
    let rows = (ROWS - 1) * S + K;
    let win = &buf[base..base + (rows * S - 1) * pitch + (K - 1) / S + LANES];
    for pr in 0..rows {
        for kx in 0..K {
            let i = (pr * S + kx % S) * pitch + kx / S;
            debug_assert!(i + LANES <= win.len());
            // SAFETY: i ≤ (rows·S − 1)·pitch + (K − 1) / S, so the LANES
            // floats from i lie inside `win`.
            let v = L::load(unsafe { &*(win.as_ptr().add(i) as *const [f32; LANES]) });
            if pr < K {
                a0 = a0.fma(v, w[pr * K + kx]);
            }
            if pr >= S && pr - S < K {
                a1 = a1.fma(v, w[(pr - S) * K + kx]);
            }
            if pr >= 2 * S && pr - 2 * S < K {
                a2 = a2.fma(v, w[(pr - 2 * S) * K + kx]);
            }
            if pr >= 3 * S && pr - 3 * S < K {
                a3 = a3.fma(v, w[(pr - 3 * S) * K + kx]);
            }
        }
    }
    [a0, a1, a2, a3]
}

/// One block of any shape: each tap loaded once per output row.
#[inline(always)]
fn per_tap<L: Lanes>(w: &[f32], bias: f32, buf: &[f32], offs: &[usize], base: usize, step: usize) -> Block<L> {
    let [mut a0, mut a1, mut a2, mut a3] = [L::splat(bias); ROWS];
    for (&off, &wt) in offs.iter().zip(w) {
        let (at, w) = (off + base, L::splat(wt));
        a0 = a0.fma(load(buf, at), w);
        a1 = a1.fma(load(buf, at + step), w);
        a2 = a2.fma(load(buf, at + 2 * step), w);
        a3 = a3.fma(load(buf, at + 3 * step), w);
    }
    [a0, a1, a2, a3]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(h: usize, w: usize, k: usize, s: usize, pads: [usize; 4]) -> ConvGeom {
        let oh = (h + pads[0] + pads[2] - k) / s + 1;
        let ow = (w + pads[1] + pads[3] - k) / s + 1;
        ConvGeom { batch: 1, c_in: 2, h, w, c_out: 2, oh, ow, kh: k, kw: k, sh: s, sw: s, pads, dh: 1, dw: 1, groups: 2 }
    }

    fn run(g: &ConvGeom, w: &[f32], x: &[f32]) -> Vec<f32> {
        let par = Par::new(1).unwrap();
        let mut y = vec![0.0; g.batch * g.c_out * g.oh * g.ow];
        Depthwise::new(g, w).run(Isa::detect(), &par, g, None, None, Activation::Identity, x, &mut y);
        y
    }

    /// Two shapes of one layer (a tile with and one without the top
    /// padding), run alternately on one thread: each run equals the first
    /// (the zero borders of one never hold the other's data).
    #[test]
    fn shapes_sharing_a_thread_do_not_leak_into_each_other() {
        let (a, b) = (geom(16, 20, 3, 1, [1; 4]), geom(17, 20, 3, 1, [0, 1, 1, 1]));
        let mut rng = tessera_graph::rng::Rng::new(5);
        let w = rng.fill(2 * 9, 1.0);
        let (xa, xb) = (rng.fill(2 * 16 * 20, 1.0), rng.fill(2 * 17 * 20, 1.0));
        let first = run(&a, &w, &xa);
        run(&b, &w, &xb);
        assert_eq!(run(&a, &w, &xa), first);
    }

    /// Huge and infinite inputs just outside an output's window (the next
    /// column, the next row) never reach it, for every stride.
    #[test]
    fn values_outside_the_window_never_reach_an_output() {
        for s in [1, 2] {
            let g = geom(6, 6, 3, s, [1; 4]);
            let w: Vec<f32> = [0.3, -0.7, 0.9, 1.1, 0.6, -0.2, 0.4, 0.8, -0.5].repeat(2);
            for big in [1e30f32, f32::INFINITY] {
                let mut x = vec![0.1f32; 2 * 36];
                // Output (0, 0) reads input rows 0-1, columns 0-1 only.
                for r in 0..6 {
                    for c in 0..6 {
                        if r >= 2 || c >= 2 {
                            x[r * 6 + c] = big;
                        }
                    }
                }
                let want: f32 = (1..3).map(|ky| (1..3).map(|kx| w[ky * 3 + kx] * 0.1).sum::<f32>()).sum();
                for isa in Isa::all_available() {
                    let par = Par::new(1).unwrap();
                    let mut y = vec![0.0; 2 * g.oh * g.ow];
                    Depthwise::new(&g, &w).run(isa, &par, &g, None, None, Activation::Identity, &x, &mut y);
                    assert!((y[0] - want).abs() <= 1e-6, "{isa:?} stride {s} big {big}: {} vs {want}", y[0]);
                }
            }
        }
    }
}
