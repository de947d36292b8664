//! Winograd F(2×2, 3×3) convolution on the CPU (Lavin & Gray, "Fast
//! Algorithms for Convolutional Neural Networks", CVPR 2016, section 4):
//! a 3×3 stride-1 layer as 16 GEMMs over transformed 4×4 input tiles, 2.25×
//! fewer multiplications than the direct GEMM.
//!
//! The output is cut into 2×2 tiles, processed in blocks of tile rows
//! small enough that a block's transformed input `V` and products `M` stay
//! in cache: whole blocks over the threads where there are enough, else
//! each block in three phases spread over the threads:
//! 1. input transform, over channels: `V[pos][c][t] = (Bᵀ d B)[pos]` for
//!    the 4×4 patch `d` of channel `c` under tile `t` (zeros off the image);
//! 2. 16 GEMMs, over positions: `M[pos] = U[pos] · V[pos]`, `U = G g Gᵀ`
//!    packed once at compile time, `V[pos]` read in place;
//! 3. output transform, over output channels: `Y = Aᵀ M A` per tile, plus
//!    bias and residual, then the activation; edge tiles keep only the
//!    outputs inside the plane.
//!
//! The GPU backend has the same algorithm in WGSL (`tessera-gpu`,
//! `ops/winograd.rs`); the transforms' constants are the paper's.

use tessera_graph::Activation;

use super::conv::{apply_act, ConvGeom};
use super::gemm::{gemm, Epilogue, OffsetRows, PackedA};
use super::par::{split_range, Par, SendPtr};
use super::simd::{multiversion, Isa};

/// G of F(2, 3): the weight transform `U = G g Gᵀ`.
const G: [[f32; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];

/// `U = G g Gᵀ` of one 3×3 filter `g` (row-major), as 16 values by
/// position `4·row + column`: the weight transform of F(2×2, 3×3), shared
/// with the GPU backend.
pub fn transform_filter(g: &[f32; 9]) -> [f32; 16] {
    // G g (4 × 3), then (G g) Gᵀ (4 × 4).
    let mut gg = [[0.0f32; 3]; 4];
    for (p, row) in gg.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| G[p][k] * g[3 * k + j]).sum();
        }
    }
    std::array::from_fn(|pos| (0..3).map(|j| gg[pos / 4][j] * G[pos % 4][j]).sum())
}

/// G of F(4, 3) (points 0, ±1, ±2, ∞): the weight transform of F(4×4, 3×3).
const G4: [[f32; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// `U = G g Gᵀ` of one 3×3 filter for F(4×4, 3×3), 36 values by
/// position `6·row + column`; shared with the GPU backend.
pub fn transform_filter4(g: &[f32; 9]) -> [f32; 36] {
    let mut gg = [[0.0f32; 3]; 6];
    for (p, row) in gg.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| G4[p][k] * g[3 * k + j]).sum();
        }
    }
    std::array::from_fn(|pos| (0..3).map(|j| gg[pos / 6][j] * G4[pos % 6][j]).sum())
}

/// Which Winograd algorithm a layer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// F(2×2, 3×3): 16 products per 2×2 outputs (2.25× fewer than direct).
    F2,
    /// F(4×4, 3×3): 36 products per 4×4 outputs (4× fewer than direct),
    /// larger transforms and rounding.
    F4,
}

impl Form {
    /// Outputs per tile side.
    fn m(self) -> usize {
        match self {
            Form::F2 => 2,
            Form::F4 => 4,
        }
    }
    /// Input patch side (m + 2).
    fn a(self) -> usize {
        self.m() + 2
    }
    /// Transformed positions per tile.
    fn npos(self) -> usize {
        self.a() * self.a()
    }
}

/// Bytes of `V` (or `M`) one block of tiles aims to fit in.
const BLOCK_BYTES: usize = 1 << 20;

/// Fewer 2×2 tiles per image than this (a 7×7 plane has 16) run faster
/// on the direct GEMM (`conv_paths_speed`).
pub(crate) const MIN_TILES: usize = 32;

/// F(4×4, 3×3) needs at least this many 4×4 tiles per image (a 28×28
/// plane has 49); smaller planes use F(2×2, 3×3).
pub(crate) const MIN_TILES_F4: usize = 40;

/// Fewer channels on either side than this leave too little GEMM work to
/// pay for the transforms (16→32 and 32→64 ran slower than the direct
/// GEMM, 64→64 on 56×56 faster: `conv_paths_speed`).
pub(crate) const MIN_CHANNELS: usize = 64;

/// Tiles per block: at least this many (GEMM columns), whatever the
/// width; blocks are whole tile rows.
const MIN_BLOCK_TILES: usize = 64;

/// Blocks cut small enough for the threads keep at least this many tiles.
const MIN_SPLIT_TILES: usize = 32;

/// A convolution prepared as Winograd F(2×2, 3×3) or F(4×4, 3×3).
pub(crate) struct Winograd {
    form: Form,
    /// `U[pos]` (`c_out × c_in`), packed, for every position.
    a: Vec<PackedA>,
    /// Tile rows and columns per image.
    th: usize,
    tw: usize,
    /// Tile rows per block.
    block_rows: usize,
}

thread_local! {
    /// The calling thread's `V` and `M` blocks.
    static BLOCKS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

impl Winograd {
    /// The form `g` should run as, if any: a 3×3 stride-1 undilated
    /// single-group layer with enough channels on both sides for the GEMMs
    /// to outweigh the transforms, and enough tiles.
    pub(crate) fn form(g: &ConvGeom) -> Option<Form> {
        let shape_ok = (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.groups) == (3, 3, 1, 1, 1, 1, 1) && g.c_in >= MIN_CHANNELS && g.c_out >= MIN_CHANNELS;
        let tiles = |m: usize| g.oh.div_ceil(m) * g.ow.div_ceil(m);
        if !shape_ok {
            None
        } else if tiles(4) >= MIN_TILES_F4 {
            Some(Form::F4)
        } else if tiles(2) >= MIN_TILES {
            Some(Form::F2)
        } else {
            None
        }
    }

    /// "winograd-f2" or "winograd-f4" (tests, benchmarks).
    #[cfg(test)]
    pub(crate) fn name(&self) -> &'static str {
        match self.form {
            Form::F2 => "winograd-f2",
            Form::F4 => "winograd-f4",
        }
    }

    /// Transforms and packs the weights (`[c_out][c_in][3][3]`).
    pub(crate) fn new(isa: Isa, g: &ConvGeom, w: &[f32], form: Form) -> Winograd {
        let (ic, oc) = (g.c_in, g.c_out);
        let npos = form.npos();
        let mut u = vec![vec![0.0f32; oc * ic]; npos];
        for o in 0..oc {
            for i in 0..ic {
                let f: &[f32; 9] = w[(o * ic + i) * 9..][..9].try_into().expect("3x3 filter");
                let t: Vec<f32> = match form {
                    Form::F2 => transform_filter(f).to_vec(),
                    Form::F4 => transform_filter4(f).to_vec(),
                };
                for (pos, v) in t.into_iter().enumerate() {
                    u[pos][o * ic + i] = v;
                }
            }
        }
        let a = u.iter().map(|m| PackedA::pack(isa, oc, ic, m, ic)).collect();
        let (th, tw) = (g.oh.div_ceil(form.m()), g.ow.div_ceil(form.m()));
        let per_tile = npos * 4 * ic.max(oc);
        let tiles = (BLOCK_BYTES / per_tile).max(MIN_BLOCK_TILES);
        let mut block_rows = tiles.div_ceil(tw).clamp(1, th);
        // At least four blocks where they keep MIN_SPLIT_TILES tiles, so
        // that threads can take whole blocks. The blocks never depend on
        // the thread count: neither do the results, bit for bit.
        let quarter = th.div_ceil(4);
        if quarter * tw >= MIN_SPLIT_TILES {
            block_rows = block_rows.min(quarter);
        }
        Winograd { form, a, th, tw, block_rows }
    }

    /// `y = act(conv(x) + bias + residual)` for every image of the batch.
    /// Blocks of tile rows go to the threads whole (each through all three
    /// phases in its own cache) when there are enough of them; otherwise
    /// each block's phases are spread over the threads.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(&self, isa: Isa, par: &Par, g: &ConvGeom, x: &[f32], bias: Option<&[f32]>, residual: Option<&[f32]>, act: Activation, y: &mut [f32]) {
        let (ic, oc) = (g.c_in, g.c_out);
        let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
        let threads = par.threads();
        let block_rows = self.block_rows;
        let blocks = self.th.div_ceil(block_rows);
        let whole = threads > 1 && (blocks >= 2 * threads || (blocks >= threads && blocks.is_multiple_of(threads)));
        let serial = Par::new(1).expect("one thread needs no pool");
        for b in 0..g.batch {
            let img = Image {
                x: &x[b * ic * in_plane..(b + 1) * ic * in_plane],
                y: SendPtr(y[b * oc * out_plane..(b + 1) * oc * out_plane].as_mut_ptr()),
                residual: residual.map(|r| &r[b * oc * out_plane..(b + 1) * oc * out_plane]),
                bias,
                act,
            };
            if whole {
                par.for_each(blocks, &|k| self.block(isa, &serial, g, &img, k * block_rows, block_rows));
            } else {
                for k in 0..blocks {
                    self.block(isa, par, g, &img, k * block_rows, block_rows);
                }
            }
        }
    }

    /// Tile rows `ty0 ..` (up to `block_rows` of them) of one image, on
    /// the calling thread's buffers, each phase spread over `par`.
    #[allow(clippy::too_many_arguments)]
    fn block(&self, isa: Isa, par: &Par, g: &ConvGeom, img: &Image, ty0: usize, block_rows: usize) {
        let (ic, oc, tw, form) = (g.c_in, g.c_out, self.tw, self.form);
        let (npos, mt) = (form.npos(), form.m());
        let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
        let rows = block_rows.min(self.th - ty0);
        let (t0, n) = (ty0 * tw, rows * tw);
        // The output rows these tiles cover.
        let (oy0, oy1) = (mt * ty0, (mt * (ty0 + rows)).min(g.oh));
        let serial = Par::new(1).expect("one thread needs no pool");
        BLOCKS.with(|bufs| {
            let mut bufs = bufs.borrow_mut();
            let (v, m) = &mut *bufs;
            // M rows are LANES longer than a block: the output transform
            // reads whole chunks past a block's last tile (and drops them).
            let ldm = n + LANES;
            if v.len() < npos * ic * n {
                v.resize(npos * ic * n, 0.0);
            }
            if m.len() < npos * oc * ldm {
                m.resize(npos * oc * ldm, 0.0);
            }
            // 1. Input transform, channels over the threads.
            let vp = SendPtr(v.as_mut_ptr());
            let chans = split_range(ic, par.threads(), 1);
            par.for_each(chans.len(), &|k| {
                let (c0, c1) = chans[k];
                for c in c0..c1 {
                    // SAFETY: rows c of the position blocks belong to this task; v holds npos·ic·n.
                    let mut rows: Vec<&mut [f32]> = (0..npos).map(|p| unsafe { std::slice::from_raw_parts_mut(vp.get().add((p * ic + c) * n), n) }).collect();
                    input_tiles(isa, g, form, tw, &img.x[c * in_plane..(c + 1) * in_plane], t0, &mut rows);
                }
            });
            // 2. One GEMM per position, positions over the threads.
            let (v, mp) = (&v[..npos * ic * n], SendPtr(m.as_mut_ptr()));
            let offs: Vec<usize> = (0..ic).map(|c| c * n).collect();
            par.for_each(npos, &|p| {
                let src = OffsetRows::new(&v[p * ic * n..(p + 1) * ic * n], &offs, n);
                // SAFETY: block p of m belongs to this task; m holds npos·oc·ldm.
                let out = unsafe { std::slice::from_raw_parts_mut(mp.get().add(p * oc * ldm), oc * ldm) };
                gemm(isa, &serial, &self.a[p], &src, n, out, ldm, Epilogue { bias: None, residual: None, act: Activation::Identity });
            });
            // 3. Output transform, output channels over the threads.
            let m = &m[..npos * oc * ldm];
            let outs = split_range(oc, par.threads(), 1);
            par.for_each(outs.len(), &|k| {
                let (o0, o1) = outs[k];
                for o in o0..o1 {
                    let at = o * out_plane + oy0 * g.ow;
                    let len = (oy1 - oy0) * g.ow;
                    // SAFETY: rows oy0..oy1 of plane o of this image belong to this task and block.
                    let out = unsafe { std::slice::from_raw_parts_mut(img.y.get().add(at), len) };
                    let res = img.residual.map(|r| &r[at..at + len]);
                    output_tiles(isa, g, form, tw, t0, n, &m[o * ldm..], oc * ldm, img.bias.map_or(0.0, |b| b[o]), res, img.act, out);
                }
            });
        });
    }
}

/// One image of a run: its input, output, residual and epilogue.
struct Image<'a> {
    x: &'a [f32],
    y: SendPtr,
    residual: Option<&'a [f32]>,
    bias: Option<&'a [f32]>,
    act: Activation,
}

/// The tile rows a block of tiles `t0 .. t0 + n` covers, as (tile row,
/// first and one-past-last tile column, index of the first in the block).
fn tile_rows(tw: usize, t0: usize, n: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let last = t0 + n;
    (t0 / tw..last.div_ceil(tw)).map(move |ty| {
        let a = t0.max(ty * tw) - ty * tw;
        let b = last.min((ty + 1) * tw) - ty * tw;
        (ty, a, b, ty * tw + a - t0)
    })
}

thread_local! {
    /// A task's zero-padded input rows (input transform) or output rows
    /// (output transform) of one tile row.
    static ROWS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Tiles transformed at once (vector lanes of the transforms).
const LANES: usize = 16;

/// `V = Bᵀ d B` of `LANES` consecutive tiles whose patches start at
/// column `j` of the four zero-padded input rows `d`, as `[pos][tile]`.
/// Fixed sizes, so the loop over tiles vectorises (the stride-2 loads
/// become shuffles).
#[inline(always)]
fn input_chunk(d: [&[f32]; 4], j: usize) -> [[f32; LANES]; 16] {
    let s: [&[f32; 2 * LANES + 2]; 4] = [0, 1, 2, 3].map(|r| d[r][j..j + 2 * LANES + 2].try_into().expect("padded rows cover a chunk"));
    let mut v = [[0.0f32; LANES]; 16];
    for k in 0..LANES {
        // Columns: d_r B, per input row r; then rows: Bᵀ (d B).
        let col = |r: &[f32; 2 * LANES + 2]| {
            let (x0, x1, x2, x3) = (r[2 * k], r[2 * k + 1], r[2 * k + 2], r[2 * k + 3]);
            [x0 - x2, x1 + x2, x2 - x1, x1 - x3]
        };
        let (c0, c1, c2, c3) = (col(s[0]), col(s[1]), col(s[2]), col(s[3]));
        for q in 0..4 {
            v[q][k] = c0[q] - c2[q];
            v[4 + q][k] = c1[q] + c2[q];
            v[8 + q][k] = c2[q] - c1[q];
            v[12 + q][k] = c1[q] - c3[q];
        }
    }
    v
}

/// `V = Bᵀ d B` of F(4×4, 3×3) for `LANES` consecutive tiles whose 6×6
/// patches start at column `j` of the six zero-padded input rows `d`, as
/// `[pos][tile]`, `pos = 6·row + column`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn input_chunk4(d: [&[f32]; 6], j: usize) -> [[f32; LANES]; 36] {
    let s: [&[f32; 4 * LANES + 2]; 6] = [0, 1, 2, 3, 4, 5].map(|r| d[r][j..j + 4 * LANES + 2].try_into().expect("padded rows cover a chunk"));
    // Bᵀ of F(4, 3) applied to six values.
    #[inline(always)]
    fn bt(x: [f32; 6]) -> [f32; 6] {
        [
            4.0 * x[0] - 5.0 * x[2] + x[4],
            -4.0 * x[1] - 4.0 * x[2] + x[3] + x[4],
            4.0 * x[1] - 4.0 * x[2] - x[3] + x[4],
            -2.0 * x[1] - x[2] + 2.0 * x[3] + x[4],
            2.0 * x[1] - x[2] - 2.0 * x[3] + x[4],
            4.0 * x[1] - 5.0 * x[3] + x[5],
        ]
    }
    let mut v = [[0.0f32; LANES]; 36];
    for k in 0..LANES {
        // Columns: d_r B, per input row r; then rows: Bᵀ (d B).
        let c: [[f32; 6]; 6] = std::array::from_fn(|r| bt(std::array::from_fn(|q| s[r][4 * k + q])));
        for q in 0..6 {
            let out = bt(std::array::from_fn(|r| c[r][q]));
            for p in 0..6 {
                v[6 * p + q][k] = out[p];
            }
        }
    }
    v
}

multiversion! {
    /// `rows[pos][i] = (Bᵀ d B)[pos]` for tiles `t0 .. t0 + rows[0].len()`
    /// of one channel `plane` (`h × w`), `d` the `a × a` patch (a = m + 2)
    /// at (m·ty − pad_top, m·tx − pad_left), zero off the plane. Tile row
    /// by tile row: its `a` input rows copied once into zero-padded rows
    /// (long enough for a whole chunk past the last tile), then chunks of
    /// LANES tiles.
    fn input_tiles(g: &ConvGeom, form: Form, tw: usize, plane: &[f32], t0: usize, rows: &mut [&mut [f32]]) {
        let (h, w, pt, pl) = (g.h, g.w, g.pads[0], g.pads[1]);
        let (mt, pa) = (form.m(), form.a());
        // Padded columns 0 .. pw: input column j − pl.
        let pw = mt * (tw + LANES) + pa - mt;
        let n = rows[0].len();
        ROWS.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < pa * pw {
                buf.resize(pa * pw, 0.0);
            }
            for (ty, a, b, i0) in tile_rows(tw, t0, n) {
                for r in 0..pa {
                    let row = &mut buf[r * pw..(r + 1) * pw];
                    row.fill(0.0);
                    let iy = (mt * ty + r).wrapping_sub(pt);
                    if iy < h {
                        let lo = pl.min(pw);
                        let len = w.min(pw - lo);
                        row[lo..lo + len].copy_from_slice(&plane[iy * w..iy * w + len]);
                    }
                }
                let d = |r: usize| &buf[r * pw..(r + 1) * pw];
                for tx in (a..b).step_by(LANES) {
                    let (i, len) = (i0 + tx - a, LANES.min(b - tx));
                    let store = |rows: &mut [&mut [f32]], vals: &[[f32; LANES]]| {
                        for (row, vals) in rows.iter_mut().zip(vals) {
                            if len == LANES {
                                let dst: &mut [f32; LANES] = (&mut row[i..i + LANES]).try_into().expect("LANES tiles");
                                *dst = *vals;
                            } else {
                                row[i..i + len].copy_from_slice(&vals[..len]);
                            }
                        }
                    };
                    match form {
                        Form::F2 => store(rows, &input_chunk([d(0), d(1), d(2), d(3)], 2 * tx)),
                        Form::F4 => store(rows, &input_chunk4([d(0), d(1), d(2), d(3), d(4), d(5)], 4 * tx)),
                    }
                }
            }
        })
    }
}

/// `Y = Aᵀ m A` of `LANES` consecutive tiles whose 16 products start at
/// `m[pos · ld]`, as `[output row][output column][tile]`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn output_chunk(m: &[f32], ld: usize) -> [[[f32; LANES]; 2]; 2] {
    let row = |p: usize| -> &[f32; LANES] { m[p * ld..p * ld + LANES].try_into().expect("products cover a chunk") };
    // Rows: Aᵀ m.
    let mut u = [[[0.0f32; LANES]; 4]; 2];
    for q in 0..4 {
        let (a, b, c, d) = (row(q), row(4 + q), row(8 + q), row(12 + q));
        for k in 0..LANES {
            u[0][q][k] = a[k] + b[k] + c[k];
            u[1][q][k] = b[k] - c[k] - d[k];
        }
    }
    // Columns: (Aᵀ m) A.
    let mut y = [[[0.0f32; LANES]; 2]; 2];
    for r in 0..2 {
        for k in 0..LANES {
            y[r][0][k] = u[r][0][k] + u[r][1][k] + u[r][2][k];
            y[r][1][k] = u[r][1][k] - u[r][2][k] - u[r][3][k];
        }
    }
    y
}

/// `Y = Aᵀ m A` of F(4×4, 3×3) for `LANES` consecutive tiles whose 36
/// products start at `m[pos · ld]`, as `[output row][output column][tile]`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn output_chunk4(m: &[f32], ld: usize) -> [[[f32; LANES]; 4]; 4] {
    // Aᵀ of F(4, 3) applied to six values.
    #[inline(always)]
    fn at(x: [f32; 6]) -> [f32; 4] {
        [x[0] + x[1] + x[2] + x[3] + x[4], x[1] - x[2] + 2.0 * (x[3] - x[4]), x[1] + x[2] + 4.0 * (x[3] + x[4]), x[1] - x[2] + 8.0 * (x[3] - x[4]) + x[5]]
    }
    let row = |p: usize| -> &[f32; LANES] { m[p * ld..p * ld + LANES].try_into().expect("products cover a chunk") };
    let rows: [&[f32; LANES]; 36] = std::array::from_fn(row);
    let mut y = [[[0.0f32; LANES]; 4]; 4];
    for k in 0..LANES {
        // Rows: Aᵀ m (4 × 6), then columns: (Aᵀ m) A (4 × 4).
        let u: [[f32; 4]; 6] = std::array::from_fn(|q| at(std::array::from_fn(|p| rows[6 * p + q][k])));
        for i in 0..4 {
            let out = at(std::array::from_fn(|q| u[q][i]));
            for j in 0..4 {
                y[i][j][k] = out[j];
            }
        }
    }
    y
}

multiversion! {
    /// Writes the m×m outputs `act(Aᵀ M A + bias (+ residual))` of the `n`
    /// tiles `t0 ..` (whole tile rows) into `out`, the output rows from
    /// `m·(t0 / tw)` on (and `residual` the same rows of the residual);
    /// `prods[pos · ld + i]` is product `pos` of tile `t0 + i`, readable
    /// for a whole chunk past the last tile. Tile row by tile row: m output
    /// rows computed into a buffer, then their part inside the plane stored.
    fn output_tiles(g: &ConvGeom, form: Form, tw: usize, t0: usize, n: usize, prods: &[f32], ld: usize, bias: f32, residual: Option<&[f32]>, act: Activation, out: &mut [f32]) {
        let (oh, ow, mt) = (g.oh, g.ow, form.m());
        let pw = mt * (tw + LANES);
        let oy0 = mt * (t0 / tw);
        ROWS.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < mt * pw {
                buf.resize(mt * pw, 0.0);
            }
            for (ty, a, b, i0) in tile_rows(tw, t0, n) {
                for tx in (a..b).step_by(LANES) {
                    let p = &prods[i0 + tx - a..];
                    match form {
                        Form::F2 => interleave::<2>(&mut buf, pw, tx, &output_chunk(p, ld)),
                        Form::F4 => interleave::<4>(&mut buf, pw, tx, &output_chunk4(p, ld)),
                    }
                }
                let (x0, x1) = (mt * a, (mt * b).min(ow));
                for r in 0..mt {
                    let oy = mt * ty + r;
                    if oy >= oh {
                        break;
                    }
                    let src = &buf[r * pw + x0..r * pw + x1];
                    let at = (oy - oy0) * ow;
                    let dst = &mut out[at + x0..at + x1];
                    match residual {
                        Some(res) => {
                            let res = &res[at + x0..at + x1];
                            dst.iter_mut().zip(src).zip(res).for_each(|((o, &v), &q)| *o = v + bias + q);
                        }
                        None => dst.iter_mut().zip(src).for_each(|(o, &v)| *o = v + bias),
                    }
                    apply_act(act, dst);
                }
            }
        })
    }
}

/// Stores a chunk of `M × M` output tiles (`y[row][column][tile]`) from
/// tile column `tx` into `M` row buffers `pw` apart.
#[inline(always)]
fn interleave<const M: usize>(buf: &mut [f32], pw: usize, tx: usize, y: &[[[f32; LANES]; M]; M]) {
    for (r, yr) in y.iter().enumerate() {
        let dst = &mut buf[r * pw + M * tx..r * pw + M * (tx + LANES)];
        for k in 0..LANES {
            for (c, yc) in yr.iter().enumerate() {
                dst[M * k + c] = yc[k];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One tile by the definitions, y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A, with
    /// `transform_filter` and the transforms of `input_chunk` /
    /// `output_chunk`, equals the 2×2 correlation of the 4×4 patch.
    #[test]
    fn one_tile_is_a_correlation() {
        let d: [[f32; 4]; 4] = [[0.3, -1.2, 2.5, 0.7], [1.1, 0.4, -0.6, 2.0], [-0.9, 1.7, 0.2, -1.4], [0.8, -0.3, 1.9, 0.5]];
        let g = [0.9f32, -0.4, 1.6, 0.2, -1.1, 0.7, 1.3, 0.5, -0.8];
        let u = transform_filter(&g);
        // Input rows padded for one chunk; tile 0 reads columns 0..4.
        let rows: Vec<Vec<f32>> = d.iter().map(|r| r.iter().copied().chain(std::iter::repeat(0.0)).take(2 * LANES + 2).collect()).collect();
        let v = input_chunk([&rows[0], &rows[1], &rows[2], &rows[3]], 0);
        let mut m = vec![0.0f32; 16 * LANES];
        for pos in 0..16 {
            m[pos * LANES] = u[pos] * v[pos][0];
        }
        let y = output_chunk(&m, LANES);
        for r in 0..2 {
            for c in 0..2 {
                let want: f32 = (0..3).flat_map(|i| (0..3).map(move |j| (i, j))).map(|(i, j)| d[r + i][c + j] * g[3 * i + j]).sum();
                assert!((y[r][c][0] - want).abs() < 1e-5, "({r}, {c}): {} vs {want}", y[r][c][0]);
            }
        }
    }

    /// The same for F(4×4, 3×3): `transform_filter4`, `input_chunk4`,
    /// `output_chunk4` on one 6×6 patch give its 4×4 correlation.
    #[test]
    fn one_f4_tile_is_a_correlation() {
        let mut rng = tessera_graph::rng::Rng::new(3);
        let d: Vec<Vec<f32>> = (0..6).map(|_| rng.fill(6, 1.0)).collect();
        let g: [f32; 9] = rng.fill(9, 1.0).try_into().unwrap();
        let u = transform_filter4(&g);
        let rows: Vec<Vec<f32>> = d.iter().map(|r| r.iter().copied().chain(std::iter::repeat(0.0)).take(4 * LANES + 2).collect()).collect();
        let v = input_chunk4([&rows[0], &rows[1], &rows[2], &rows[3], &rows[4], &rows[5]], 0);
        let mut m = vec![0.0f32; 36 * LANES];
        for pos in 0..36 {
            m[pos * LANES] = u[pos] * v[pos][0];
        }
        let y = output_chunk4(&m, LANES);
        for r in 0..4 {
            for c in 0..4 {
                let want: f32 = (0..3).flat_map(|i| (0..3).map(move |j| (i, j))).map(|(i, j)| d[r + i][c + j] * g[3 * i + j]).sum();
                assert!((y[r][c][0] - want).abs() < 1e-4 * (1.0 + want.abs()), "({r}, {c}): {} vs {want}", y[r][c][0]);
            }
        }
    }
}
