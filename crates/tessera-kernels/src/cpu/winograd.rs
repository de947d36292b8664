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

/// Bytes of `V` (or `M`) one block of tiles aims to fit in.
const BLOCK_BYTES: usize = 1 << 20;

/// Fewer 2×2 tiles per image than this (a 7×7 plane has 16) run faster
/// on the direct GEMM (`conv_paths_speed`).
pub(crate) const MIN_TILES: usize = 32;

/// Fewer channels on either side than this leave too little GEMM work to
/// pay for the transforms (16→32 and 32→64 ran slower than the direct
/// GEMM, 64→64 on 56×56 faster: `conv_paths_speed`).
pub(crate) const MIN_CHANNELS: usize = 64;

/// Tiles per block: at least this many (GEMM columns), whatever the
/// width; blocks are whole tile rows.
const MIN_BLOCK_TILES: usize = 64;

/// Blocks cut small enough for the threads keep at least this many tiles.
const MIN_SPLIT_TILES: usize = 32;

/// A convolution prepared as Winograd F(2×2, 3×3).
pub(crate) struct Winograd {
    /// `U[pos]` (`c_out × c_in`), packed, for the 16 positions.
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
    /// Whether `g` can run as Winograd and is likely to gain from it: a
    /// 3×3 stride-1 undilated single-group layer with enough channels on
    /// both sides for the 16 GEMMs to outweigh the transforms.
    pub(crate) fn worthwhile(g: &ConvGeom) -> bool {
        let tiles = g.oh.div_ceil(2) * g.ow.div_ceil(2);
        (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.groups) == (3, 3, 1, 1, 1, 1, 1) && g.c_in >= MIN_CHANNELS && g.c_out >= MIN_CHANNELS && tiles >= MIN_TILES
    }

    /// Transforms and packs the weights (`[c_out][c_in][3][3]`).
    pub(crate) fn new(isa: Isa, g: &ConvGeom, w: &[f32]) -> Winograd {
        let (ic, oc) = (g.c_in, g.c_out);
        let mut u = vec![vec![0.0f32; oc * ic]; 16];
        for o in 0..oc {
            for i in 0..ic {
                let f: &[f32; 9] = w[(o * ic + i) * 9..][..9].try_into().expect("3x3 filter");
                for (pos, v) in transform_filter(f).into_iter().enumerate() {
                    u[pos][o * ic + i] = v;
                }
            }
        }
        let a = u.iter().map(|m| PackedA::pack(isa, oc, ic, m, ic)).collect();
        let (th, tw) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
        let per_tile = 16 * 4 * ic.max(oc);
        let tiles = (BLOCK_BYTES / per_tile).max(MIN_BLOCK_TILES);
        let mut block_rows = tiles.div_ceil(tw).clamp(1, th);
        // At least four blocks where they keep MIN_SPLIT_TILES tiles, so
        // that threads can take whole blocks. The blocks never depend on
        // the thread count: neither do the results, bit for bit.
        let quarter = th.div_ceil(4);
        if quarter * tw >= MIN_SPLIT_TILES {
            block_rows = block_rows.min(quarter);
        }
        Winograd { a, th, tw, block_rows }
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
        let (ic, oc, tw) = (g.c_in, g.c_out, self.tw);
        let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
        let rows = block_rows.min(self.th - ty0);
        let (t0, n) = (ty0 * tw, rows * tw);
        // The output rows these tiles cover.
        let (oy0, oy1) = (2 * ty0, (2 * (ty0 + rows)).min(g.oh));
        let serial = Par::new(1).expect("one thread needs no pool");
        BLOCKS.with(|bufs| {
            let mut bufs = bufs.borrow_mut();
            let (v, m) = &mut *bufs;
            // M rows are LANES longer than a block: the output transform
            // reads whole chunks past a block's last tile (and drops them).
            let ldm = n + LANES;
            if v.len() < 16 * ic * n {
                v.resize(16 * ic * n, 0.0);
            }
            if m.len() < 16 * oc * ldm {
                m.resize(16 * oc * ldm, 0.0);
            }
            // 1. Input transform, channels over the threads.
            let vp = SendPtr(v.as_mut_ptr());
            let chans = split_range(ic, par.threads(), 1);
            par.for_each(chans.len(), &|k| {
                let (c0, c1) = chans[k];
                for c in c0..c1 {
                    // SAFETY: rows c of the 16 position blocks belong to this task; v holds 16·ic·n.
                    let rows: [&mut [f32]; 16] = std::array::from_fn(|p| unsafe { std::slice::from_raw_parts_mut(vp.get().add((p * ic + c) * n), n) });
                    input_tiles(isa, g, tw, &img.x[c * in_plane..(c + 1) * in_plane], t0, rows);
                }
            });
            // 2. One GEMM per position, positions over the threads.
            let (v, mp) = (&v[..16 * ic * n], SendPtr(m.as_mut_ptr()));
            let offs: Vec<usize> = (0..ic).map(|c| c * n).collect();
            par.for_each(16, &|p| {
                let src = OffsetRows::new(&v[p * ic * n..(p + 1) * ic * n], &offs, n);
                // SAFETY: block p of m belongs to this task; m holds 16·oc·ldm.
                let out = unsafe { std::slice::from_raw_parts_mut(mp.get().add(p * oc * ldm), oc * ldm) };
                gemm(isa, &serial, &self.a[p], &src, n, out, ldm, Epilogue { bias: None, residual: None, act: Activation::Identity });
            });
            // 3. Output transform, output channels over the threads.
            let m = &m[..16 * oc * ldm];
            let outs = split_range(oc, par.threads(), 1);
            par.for_each(outs.len(), &|k| {
                let (o0, o1) = outs[k];
                for o in o0..o1 {
                    let at = o * out_plane + oy0 * g.ow;
                    let len = (oy1 - oy0) * g.ow;
                    // SAFETY: rows oy0..oy1 of plane o of this image belong to this task and block.
                    let out = unsafe { std::slice::from_raw_parts_mut(img.y.get().add(at), len) };
                    let res = img.residual.map(|r| &r[at..at + len]);
                    output_tiles(isa, g, tw, t0, n, &m[o * ldm..], oc * ldm, img.bias.map_or(0.0, |b| b[o]), res, img.act, out);
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

multiversion! {
    /// `rows[pos][i] = (Bᵀ d B)[pos]` for tiles `t0 .. t0 + rows[0].len()`
    /// of one channel `plane` (`h × w`), `d` the 4×4 patch at
    /// (2·ty − pad_top, 2·tx − pad_left), zero off the plane. Tile row by
    /// tile row: its four input rows copied once into zero-padded rows
    /// (long enough for a whole chunk past the last tile), then chunks of
    /// LANES tiles.
    fn input_tiles(g: &ConvGeom, tw: usize, plane: &[f32], t0: usize, rows: [&mut [f32]; 16]) {
        let (h, w, pt, pl) = (g.h, g.w, g.pads[0], g.pads[1]);
        // Padded columns 0 .. pw: input column j − pl.
        let pw = 2 * (tw + LANES) + 2;
        let mut rows = rows;
        let n = rows[0].len();
        ROWS.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < 4 * pw {
                buf.resize(4 * pw, 0.0);
            }
            for (ty, a, b, i0) in tile_rows(tw, t0, n) {
                for r in 0..4 {
                    let row = &mut buf[r * pw..(r + 1) * pw];
                    row.fill(0.0);
                    let iy = (2 * ty + r).wrapping_sub(pt);
                    if iy < h {
                        let lo = pl.min(pw);
                        let len = w.min(pw - lo);
                        row[lo..lo + len].copy_from_slice(&plane[iy * w..iy * w + len]);
                    }
                }
                let d: [&[f32]; 4] = [&buf[..pw], &buf[pw..2 * pw], &buf[2 * pw..3 * pw], &buf[3 * pw..4 * pw]];
                for tx in (a..b).step_by(LANES) {
                    let (i, len) = (i0 + tx - a, LANES.min(b - tx));
                    let v = input_chunk(d, 2 * tx);
                    for (row, vals) in rows.iter_mut().zip(&v) {
                        if len == LANES {
                            let dst: &mut [f32; LANES] = (&mut row[i..i + LANES]).try_into().expect("LANES tiles");
                            *dst = *vals;
                        } else {
                            row[i..i + len].copy_from_slice(&vals[..len]);
                        }
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

multiversion! {
    /// Writes the 2×2 outputs `act(Aᵀ m A + bias (+ residual))` of the `n`
    /// tiles `t0 ..` (whole tile rows) into `out`, the output rows from
    /// `2·(t0 / tw)` on (and `residual` the same rows of the residual);
    /// `m[pos · ld + i]` is product `pos` of tile `t0 + i`, readable for a
    /// whole chunk past the last tile. Tile row by tile row: two output
    /// rows computed into a buffer, then their part inside the plane stored.
    fn output_tiles(g: &ConvGeom, tw: usize, t0: usize, n: usize, m: &[f32], ld: usize, bias: f32, residual: Option<&[f32]>, act: Activation, out: &mut [f32]) {
        let (oh, ow) = (g.oh, g.ow);
        let pw = 2 * (tw + LANES);
        let oy0 = 2 * (t0 / tw);
        ROWS.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < 2 * pw {
                buf.resize(2 * pw, 0.0);
            }
            for (ty, a, b, i0) in tile_rows(tw, t0, n) {
                let (o0, o1) = buf.split_at_mut(pw);
                for tx in (a..b).step_by(LANES) {
                    let y = output_chunk(&m[i0 + tx - a..], ld);
                    for (row, y) in [(&mut *o0, &y[0]), (&mut *o1, &y[1])] {
                        let dst: &mut [f32; 2 * LANES] = (&mut row[2 * tx..2 * tx + 2 * LANES]).try_into().expect("row buffer covers a chunk");
                        for k in 0..LANES {
                            dst[2 * k] = y[0][k];
                            dst[2 * k + 1] = y[1][k];
                        }
                    }
                }
                let (x0, x1) = (2 * a, (2 * b).min(ow));
                for (r, src) in [&o0[x0..x1], &o1[x0..x1]].into_iter().enumerate() {
                    let oy = 2 * ty + r;
                    if oy >= oh {
                        break;
                    }
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
}
