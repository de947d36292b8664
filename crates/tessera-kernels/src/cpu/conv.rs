//! 2-D convolution, NCHW. Five strategies, chosen once at compile time,
//! all GEMMs but the depthwise one, most a GEMM per group with the packed weights as `A`
//! (`M` = output channels, `N` = output pixels, `K` = `icg·kh·kw`):
//! - pointwise (1×1, stride 1, no padding): the micro-kernel reads the
//!   input feature map in place as `B` (`[ic, h·w]`);
//! - padded (most others): the input is copied once into a zero-padded
//!   buffer, split by stride phase (phase `(ry, rx)` holds padded rows
//!   `ry, ry+sh, …` and columns `rx, rx+sw, …`) with row pitch `wq`. Output
//!   pixel `n = oy·wq + ox` then reads tap `k` at `n + offs[k]` for every
//!   stride and dilation, so the micro-kernel walks an implicit im2col in
//!   place, without packing `B`. The `wq − ow` columns per row that fall
//!   off the right edge are computed and dropped when the result is
//!   compacted into the output;
//! - im2col (where those extra columns would cost more than packing, e.g.
//!   small maps with wide padding): `B` gathered row segment by row
//!   segment while packing (no im2col buffer is ever materialised);
//! - Winograd F(2×2, 3×3) / F(4×4, 3×3) for 3×3 stride-1 layers with enough
//!   channels (`cpu::winograd`): 16 / 36 GEMMs over transformed tiles;
//! - depthwise (one input and one output channel per group): a direct
//!   kernel over a padded copy of each plane split by column stride, in
//!   register blocks of output rows × columns (`cpu::depthwise`).
//!
//! Bias, a residual (skip connection) and the activation are applied in
//! the GEMM epilogue, or while compacting / finishing a plane.

use tessera_graph::op::Conv;
use tessera_graph::Activation;

use super::gemm::{cost_columns, gemm, BSource, Epilogue, OffsetRows, PackedA};
use super::depthwise::Depthwise;
use super::winograd::Winograd;
use super::par::{split_range, Par, SendPtr};
use super::simd::{multiversion, Isa};

/// Shape of one convolution, resolved from the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    /// top, left, bottom, right.
    pub pads: [usize; 4],
    pub dh: usize,
    pub dw: usize,
    pub groups: usize,
}

impl ConvGeom {
    /// Input channels per group.
    pub fn icg(&self) -> usize {
        self.c_in / self.groups
    }
    /// Output channels per group.
    pub fn ocg(&self) -> usize {
        self.c_out / self.groups
    }
    /// GEMM depth per group: `icg · kh · kw`.
    pub fn k(&self) -> usize {
        self.icg() * self.kh * self.kw
    }
}

/// How a GEMM convolution sees its input as `B`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    Pointwise,
    /// Through a zero-padded, stride-phase-split copy of the input.
    Padded(Phased),
    Im2col,
}

/// Layout of the padded mode's input copy, per channel: one `hq × wq`
/// plane per stride phase the taps touch.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Phased {
    hq: usize,
    wq: usize,
    /// Phases materialised, as `(ry, rx)`.
    phases: Vec<(usize, usize)>,
}

impl Phased {
    fn new(g: &ConvGeom) -> Phased {
        let (hp, wp) = (g.h + g.pads[0] + g.pads[2], g.w + g.pads[1] + g.pads[3]);
        let mut phases = Vec::new();
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let p = ((ky * g.dh) % g.sh, (kx * g.dw) % g.sw);
                if !phases.contains(&p) {
                    phases.push(p);
                }
            }
        }
        Phased { hq: hp.div_ceil(g.sh), wq: wp.div_ceil(g.sw), phases }
    }

    fn channel_len(&self) -> usize {
        self.phases.len() * self.hq * self.wq
    }

    /// `B` row offset of every tap `k = (c·kh + ky)·kw + kx`.
    fn offsets(&self, g: &ConvGeom) -> Vec<usize> {
        let mut offs = Vec::with_capacity(g.k());
        for c in 0..g.icg() {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let (ty, tx) = (ky * g.dh, kx * g.dw);
                    let pi = self.phases.iter().position(|&p| p == (ty % g.sh, tx % g.sw)).expect("phase listed");
                    offs.push(c * self.channel_len() + pi * self.hq * self.wq + ty / g.sh * self.wq + tx / g.sw);
                }
            }
        }
        offs
    }

    /// GEMM columns: `n = oy·wq + ox` up to the last output pixel.
    fn n_wide(&self, g: &ConvGeom) -> usize {
        (g.oh - 1) * self.wq + g.ow
    }

    /// Copies `chans` channels of input `x` (`chans × h × w`) into `buf`
    /// (`chans` channel layouts), zero-padded.
    fn fill(&self, isa: Isa, g: &ConvGeom, chans: usize, x: &[f32], buf: &mut [f32]) {
        phase_fill(isa, self, g, chans, x, buf)
    }

    /// `fill` for one group's `icg` channels, spread over the threads.
    fn fill_par(&self, isa: Isa, par: &Par, g: &ConvGeom, x: &[f32], buf: &mut [f32]) {
        let (chans, cl, hw) = (g.icg(), self.channel_len(), g.h * g.w);
        let parts = if par.threads() > 1 && chans * cl >= 1 << 16 { par.threads() } else { 1 };
        let ranges = split_range(chans, parts, 1);
        let bp = SendPtr(buf.as_mut_ptr());
        assert!(buf.len() >= chans * cl);
        par.for_each(ranges.len(), &|t| {
            let (c0, c1) = ranges[t];
            // SAFETY: channels c0..c1 own a disjoint part of buf (checked above).
            let b = unsafe { std::slice::from_raw_parts_mut(bp.get().add(c0 * cl), (c1 - c0) * cl) };
            self.fill(isa, g, c1 - c0, &x[c0 * hw..c1 * hw], b);
        });
    }
}

multiversion! {
    /// `Phased::fill`, compiled per ISA (the stride-2 gathers vectorise).
    fn phase_fill(ph: &Phased, g: &ConvGeom, chans: usize, x: &[f32], buf: &mut [f32]) {
        ph.fill_impl(g, chans, x, buf)
    }
}

impl Phased {
    #[inline(always)]
    fn fill_impl(&self, g: &ConvGeom, chans: usize, x: &[f32], buf: &mut [f32]) {
        let (pt, pl) = (g.pads[0], g.pads[1]);
        for c in 0..chans {
            for (pi, &(ry, rx)) in self.phases.iter().enumerate() {
                let base = c * self.channel_len() + pi * self.hq * self.wq;
                // Columns qx whose padded column qx·sw + rx is inside the input.
                let q0 = if pl > rx { (pl - rx).div_ceil(g.sw) } else { 0 };
                let q1 = (g.w + pl).saturating_sub(rx).div_ceil(g.sw).min(self.wq);
                for qy in 0..self.hq {
                    let py = qy * g.sh + ry;
                    if py < pt || py - pt >= g.h || q1 <= q0 {
                        continue;
                    }
                    let row = &x[(c * g.h + py - pt) * g.w..(c * g.h + py - pt + 1) * g.w];
                    let dst = &mut buf[base + qy * self.wq + q0..base + qy * self.wq + q1];
                    let first = q0 * g.sw + rx - pl;
                    match g.sw {
                        1 => dst.copy_from_slice(&row[first..first + dst.len()]),
                        2 => gather2(dst, &row[first..]),
                        s => dst.iter_mut().enumerate().for_each(|(i, d)| *d = row[first + i * s]),
                    }
                }
            }
        }
    }
}

/// `dst[i] = src[2i]`: fixed-size chunks of 16, so the strided loads
/// become whole-register shuffles (one two-source permute on AVX-512) with
/// no bounds checks in the loop.
#[inline(always)]
pub(crate) fn gather2(dst: &mut [f32], src: &[f32]) {
    const C: usize = 16;
    let n = dst.len();
    let mut i = 0;
    // Whole chunks while the source holds all 2·C values (the last chunk
    // may only have the 2·C − 1 it needs: src ends at 2·(n − 1)).
    while i + C <= n && 2 * (i + C) <= src.len() {
        let s: &[f32; 2 * C] = src[2 * i..2 * (i + C)].try_into().expect("2C long");
        let d: &mut [f32; C] = (&mut dst[i..i + C]).try_into().expect("C long");
        for j in 0..C {
            d[j] = s[2 * j];
        }
        i += C;
    }
    for (j, d) in dst[i..].iter_mut().enumerate() {
        *d = src[2 * (i + j)];
    }
}

/// A thread's padded-input buffer, zeroed only when the geometry it is laid
/// out for changes: every fill rewrites exactly the same interior cells, so
/// the zero borders of the last fill are still in place.
#[derive(Default)]
pub(crate) struct PadBuf {
    data: Vec<f32>,
    layout: Option<(ConvGeom, usize)>,
}

impl PadBuf {
    /// `len` cells laid out for `g`, zero outside what fills write.
    pub(crate) fn for_geom(&mut self, g: &ConvGeom, len: usize) -> &mut [f32] {
        if self.layout != Some((*g, len)) {
            self.data.clear();
            self.data.resize(len, 0.0);
            self.layout = Some((*g, len));
        }
        &mut self.data[..len]
    }
}

/// Which path a GEMM convolution takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConvPath {
    /// The fastest by the rules below.
    Auto,
    /// Never Winograd (pointwise, padded or im2col by the rules).
    #[cfg_attr(not(test), allow(dead_code))]
    Direct,
    /// im2col for every GEMM convolution.
    Im2col,
}

enum Strategy {
    /// One packed weight matrix per group; `offs` are the `B` row offsets
    /// of the pointwise and padded modes.
    Gemm { a: Vec<PackedA>, mode: Mode, offs: Vec<usize> },
    /// One input and one output channel per group (`cpu::depthwise`).
    Depthwise(Depthwise),
    /// 3×3 stride-1 layers as Winograd F(2×2, 3×3) (`cpu::winograd`).
    Winograd(Winograd),
}

/// A convolution prepared for repeated runs (weights packed once).
pub(crate) struct ConvPlan {
    pub geom: ConvGeom,
    strategy: Strategy,
    bias: Option<Vec<f32>>,
    act: Activation,
}

impl ConvPlan {
    /// Plans `conv` for an input of shape `x` (NCHW) and output `y`.
    pub(crate) fn new(isa: Isa, conv: &Conv, x: &[usize], y: &[usize]) -> Result<ConvPlan, String> {
        ConvPlan::with_path(isa, conv, x, y, ConvPath::Auto)
    }

    /// Like `new`, on a forced path (benchmarks and tests compare them).
    pub(crate) fn with_path(isa: Isa, conv: &Conv, x: &[usize], y: &[usize], path: ConvPath) -> Result<ConvPlan, String> {
        let force_im2col = path == ConvPath::Im2col;
        let ([n, c_in, h, w], [_, c_out, oh, ow]) = match (x, y) {
            ([a, b, c, d], [e, f, g, h2]) => ([*a, *b, *c, *d], [*e, *f, *g, *h2]),
            _ => return Err(format!("expected NCHW shapes, got {x:?} -> {y:?}")),
        };
        let [kh, kw] = conv.kernel();
        let geom = ConvGeom {
            batch: n,
            c_in,
            h,
            w,
            c_out,
            oh,
            ow,
            kh,
            kw,
            sh: conv.stride[0],
            sw: conv.stride[1],
            pads: conv.pads,
            dh: conv.dilation[0],
            dw: conv.dilation[1],
            groups: conv.groups,
        };
        if geom.groups == 0 || c_in % geom.groups != 0 || c_out % geom.groups != 0 || geom.sh == 0 || geom.sw == 0 || geom.dh == 0 || geom.dw == 0 {
            return Err("invalid groups, stride or dilation".into());
        }
        let wdata = conv.weight.data();
        let k = geom.k();
        if wdata.len() != c_out * k {
            return Err(format!("weight holds {} values, expected {}", wdata.len(), c_out * k));
        }
        let strategy = if geom.icg() == 1 && geom.ocg() == 1 {
            Strategy::Depthwise(Depthwise::new(&geom, wdata))
        } else if let (ConvPath::Auto, Some(form)) = (path, Winograd::form(&geom)) {
            Strategy::Winograd(Winograd::new(isa, &geom, wdata, form))
        } else {
            let ocg = geom.ocg();
            let a = (0..geom.groups).map(|g| PackedA::pack(isa, ocg, k, &wdata[g * ocg * k..], k)).collect();
            let icg = geom.icg();
            let (mode, offs) = if force_im2col {
                (Mode::Im2col, Vec::new())
            } else if kh == 1 && kw == 1 && geom.sh == 1 && geom.sw == 1 && geom.pads == [0; 4] {
                (Mode::Pointwise, (0..icg).map(|c| c * h * w).collect())
            } else {
                // Padded unless its off-edge columns cost more than packing
                // an im2col (which grows with the stride's gathers), or, at
                // stride 1, compacting its wide output (a pass over
                // `ocg × n`, ~1.5× the cost per value of packing `k × n`
                // in `conv_paths_speed` on stem layers: 3→16 / 24 / 32 / 64,
                // 8→32, 16→32) costs more than that packing.
                let ph = Phased::new(&geom);
                let extra = cost_columns(isa, ph.n_wide(&geom)) as f64 / cost_columns(isa, oh * ow) as f64;
                let stride1 = geom.sh == 1 && geom.sw == 1;
                let limit = if stride1 { 1.05 } else { 1.15 };
                let compaction_costs_more = stride1 && ph.wq != ow && 3 * geom.ocg() > 2 * k;
                if extra <= limit && !compaction_costs_more {
                    let offs = ph.offsets(&geom);
                    (Mode::Padded(ph), offs)
                } else {
                    (Mode::Im2col, Vec::new())
                }
            };
            Strategy::Gemm { a, mode, offs }
        };
        let bias = conv.bias.as_ref().map(|b| b.data().to_vec());
        if bias.as_ref().is_some_and(|b| b.len() != c_out) {
            return Err("bias length differs from output channels".into());
        }
        Ok(ConvPlan { geom, strategy, bias, act: conv.act })
    }

    /// Which strategy runs (tests check that each is exercised).
    #[cfg(test)]
    pub(crate) fn strategy_name(&self) -> &'static str {
        match &self.strategy {
            Strategy::Gemm { mode: Mode::Pointwise, .. } => "gemm-1x1",
            Strategy::Gemm { mode: Mode::Padded { .. }, .. } => "gemm-padded",
            Strategy::Gemm { .. } => "gemm-im2col",
            Strategy::Depthwise(d) => d.name(),
            Strategy::Winograd(w) => w.name(),
        }
    }

    /// The same convolution with another activation (the executor fuses a
    /// residual `Add` and the activation after it into the conv).
    pub(crate) fn with_act(mut self, act: Activation) -> ConvPlan {
        self.act = act;
        self
    }

    /// Runs on `x` (`[n, c_in, h, w]`) into `y` (`[n, c_out, oh, ow]`):
    /// `y = act(conv(x) + bias + residual)`, `residual` shaped like `y`.
    pub(crate) fn run(&self, isa: Isa, par: &Par, x: &[f32], residual: Option<&[f32]>, y: &mut [f32]) {
        let g = &self.geom;
        let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
        match &self.strategy {
            Strategy::Gemm { a, mode, offs } => {
                let (icg, ocg) = (g.icg(), g.ocg());
                for b in 0..g.batch {
                    for (gi, pa) in a.iter().enumerate() {
                        let xg = &x[(b * g.c_in + gi * icg) * in_plane..(b * g.c_in + (gi + 1) * icg) * in_plane];
                        let yg = &mut y[(b * g.c_out + gi * ocg) * out_plane..(b * g.c_out + (gi + 1) * ocg) * out_plane];
                        let bias = self.bias.as_ref().map(|v| &v[gi * ocg..(gi + 1) * ocg]);
                        let res = residual.map(|r| &r[(b * g.c_out + gi * ocg) * out_plane..(b * g.c_out + (gi + 1) * ocg) * out_plane]);
                        let ep = Epilogue { bias, residual: res, act: self.act };
                        match mode {
                            Mode::Pointwise => {
                                let src = OffsetRows::new(xg, offs, in_plane);
                                gemm(isa, par, pa, &src, out_plane, yg, out_plane, ep);
                            }
                            Mode::Padded(ph) => self.run_padded(isa, par, pa, offs, ph, xg, yg, ep),
                            Mode::Im2col => gemm(isa, par, pa, &Im2col { x: xg, g }, out_plane, yg, out_plane, ep),
                        }
                    }
                }
            }
            Strategy::Depthwise(d) => d.run(isa, par, g, self.bias.as_deref(), residual, self.act, x, y),
            Strategy::Winograd(wino) => wino.run(isa, par, g, x, self.bias.as_deref(), residual, self.act, y),
        }
    }
}

impl ConvPlan {
    /// One group through a zero-padded, phase-split copy of its input.
    #[allow(clippy::too_many_arguments)]
    fn run_padded(&self, isa: Isa, par: &Par, pa: &PackedA, offs: &[usize], ph: &Phased, x: &[f32], y: &mut [f32], ep: Epilogue) {
        let g = &self.geom;
        let wp = ph.wq;
        let n_wide = ph.n_wide(g);
        let max_off = offs.iter().copied().max().unwrap_or(0);
        // Slack so that whole micro-panels past the end stay in bounds.
        let len = (max_off + n_wide + 64).max(g.icg() * ph.channel_len());
        PADDED.with(|buf| {
            let mut buf = buf.borrow_mut();
            let buf = buf.for_geom(g, len);
            ph.fill_par(isa, par, g, x, buf);
            let src = OffsetRows::new(buf, offs, n_wide + 64);
            if wp == g.ow {
                // No column falls off the edge: the wide output is the output.
                gemm(isa, par, pa, &src, n_wide, y, n_wide, ep);
                return;
            }
            WIDE.with(|wide| {
                let mut wide = wide.borrow_mut();
                let ocg = g.ocg();
                if wide.len() < ocg * n_wide {
                    wide.resize(ocg * n_wide, 0.0);
                }
                // The residual has the output's layout, not the wide one: it and
                // the activation are applied while compacting.
                let gemm_ep = if ep.residual.is_some() { Epilogue { act: Activation::Identity, residual: None, ..ep } } else { ep };
                gemm(isa, par, pa, &src, n_wide, &mut wide, n_wide, gemm_ep);
                let act = if ep.residual.is_some() { ep.act } else { Activation::Identity };
                let plane = g.oh * g.ow;
                let parts = if par.threads() > 1 && ocg * plane >= 1 << 16 { par.threads() } else { 1 };
                let ranges = split_range(ocg, parts, 1);
                let yp = SendPtr(y.as_mut_ptr());
                let wide = &wide[..ocg * n_wide];
                assert!(y.len() >= ocg * plane);
                par.for_each(ranges.len(), &|t| {
                    let (o0, o1) = ranges[t];
                    // SAFETY: planes o0..o1 of y belong to this task alone (checked above).
                    let out = unsafe { std::slice::from_raw_parts_mut(yp.get().add(o0 * plane), (o1 - o0) * plane) };
                    let res = ep.residual.map(|r| &r[o0 * plane..o1 * plane]);
                    compact(isa, &wide[o0 * n_wide..o1 * n_wide], n_wide, wp, g.oh, g.ow, res, act, out);
                });
            });
        });
    }
}

thread_local! {
    /// The zero-padded input of the padded mode (on the calling thread).
    static PADDED: std::cell::RefCell<PadBuf> = std::cell::RefCell::new(PadBuf::default());
    /// Its wide output, before the off-edge columns are dropped.
    static WIDE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Implicit im2col of one group's input: `B[k][n]` with
/// `k = (ci·kh + ky)·kw + kx` and `n = oy·ow + ox`.
struct Im2col<'a> {
    x: &'a [f32],
    g: &'a ConvGeom,
}

impl BSource for Im2col<'_> {
    fn row(&self, k: usize, n0: usize, out: &mut [f32]) {
        let g = self.g;
        let khw = g.kh * g.kw;
        let (ci, r) = (k / khw, k % khw);
        let (ky, kx) = (r / g.kw, r % g.kw);
        let plane = &self.x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        // Valid output columns: 0 <= ox·sw + off < w.
        let off = (kx * g.dw) as isize - g.pads[1] as isize;
        let lo = if off >= 0 { 0 } else { ((-off) as usize).div_ceil(g.sw) };
        let hi = if (g.w as isize) <= off { 0 } else { ((g.w as isize - off) as usize).div_ceil(g.sw) };
        let (mut oy, mut ox) = (n0 / g.ow, n0 % g.ow);
        let mut o = 0;
        while o < out.len() {
            let len = (g.ow - ox).min(out.len() - o);
            let seg = &mut out[o..o + len];
            let iy = (oy * g.sh + ky * g.dh) as isize - g.pads[0] as isize;
            if iy < 0 || iy >= g.h as isize {
                seg.fill(0.0);
            } else {
                let row = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                let a = lo.clamp(ox, ox + len);
                let b = hi.clamp(a, ox + len);
                seg[..a - ox].fill(0.0);
                seg[b - ox..].fill(0.0);
                let dst = &mut seg[a - ox..b - ox];
                if !dst.is_empty() {
                    let start = (a as isize * g.sw as isize + off) as usize;
                    if g.sw == 1 {
                        dst.copy_from_slice(&row[start..start + dst.len()]);
                    } else {
                        for (i, d) in dst.iter_mut().enumerate() {
                            *d = row[start + i * g.sw];
                        }
                    }
                }
            }
            o += len;
            oy += 1;
            ox = 0;
        }
    }
}

multiversion! {
    /// Drops the off-edge columns of wide planes (`n_wide` apart, rows `wq`
    /// apart) into `y` (`oh × ow` planes), adding `residual` (laid out like
    /// `y`) and applying `act` on the way.
    fn compact(wide: &[f32], n_wide: usize, wq: usize, oh: usize, ow: usize, residual: Option<&[f32]>, act: Activation, y: &mut [f32]) {
        for (o, plane) in y.chunks_exact_mut((oh * ow).max(1)).enumerate() {
            for (oy, out) in plane.chunks_exact_mut(ow.max(1)).enumerate() {
                let from = o * n_wide + oy * wq;
                out.copy_from_slice(&wide[from..from + ow]);
                if let Some(r) = residual {
                    let at = (o * oh + oy) * ow;
                    out.iter_mut().zip(&r[at..at + ow]).for_each(|(v, &q)| *v += q);
                }
                apply_act(act, out);
            }
        }
    }
}

/// Applies `act` to a run of values (vectorised for the cheap ones).
#[inline(always)]
pub(crate) fn apply_act(act: Activation, v: &mut [f32]) {
    match act {
        Activation::Identity => {}
        Activation::Relu => v.iter_mut().for_each(|x| *x = if *x < 0.0 { 0.0 } else { *x }),
        Activation::Clip { min, max } => v.iter_mut().for_each(|x| {
            let y = if *x < min { min } else { *x };
            *x = if y > max { max } else { y }
        }),
        Activation::LeakyRelu { alpha } => v.iter_mut().for_each(|x| *x = if *x < 0.0 { alpha * *x } else { *x }),
        a => v.iter_mut().for_each(|x| *x = a.apply(*x)),
    }
}
