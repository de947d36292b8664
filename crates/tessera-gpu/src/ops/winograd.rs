//! Winograd F(2×2, 3×3) and F(4×4, 3×3) convolution (Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", CVPR 2016, section 4): a 3×3 stride-1
//! layer as 16 GEMMs over transformed 4×4 input tiles, 2.25× fewer
//! multiplications than the direct GEMM and 16× the workgroups (which
//! also fills a large GPU on small late-stage planes). Three dispatches:
//!
//! 1. `winograd_input.wgsl`: V[pos][c][t] = (Bᵀ d B)[pos] per input
//!    channel and 2×2 output tile (scratch 0; rows padded to a multiple
//!    of 4 tiles, read as vec4);
//! 2. the conv GEMM (`GemmB::Matrix`, raw products): M[pos] = U[pos] · V[pos]
//!    with U = G g Gᵀ, the weights transformed once at compile time
//!    (scratch 1; K split into slices like the direct GEMM);
//! 3. `winograd_output.wgsl`: Y = Aᵀ (Σ slices M) A per tile, with bias,
//!    residual and activation.
//!
//! Which layers use it is measured like the GEMM tiles (`crate::tune`):
//! its tiles are candidates of every layer it applies to. The heuristic
//! (software adapters, the browser's first run) uses it wherever it
//! applies and its scratch fits: on lavapipe it ran VGG-16 2.2–2.4×
//! faster than the direct GEMM.

use tessera_graph::op::Conv;

use super::{elems, grid_for, Cx, Dispatch, Dst, Params, Src};
use crate::pipelines::{GemmB, Shader};
use tessera_kernels::cpu::winograd::{transform_filter, transform_filter4};

use crate::tune::GemmTile;

/// GEMM tile depth (fixed by the shader).
const BK: usize = 16;

/// Whether `c` can run as Winograd F(2×2, 3×3): a 3×3 kernel, stride 1,
/// no dilation, one group.
pub(crate) fn applies(c: &Conv) -> bool {
    c.kernel() == [3, 3] && c.stride == [1, 1] && c.dilation == [1, 1] && c.groups == 1
}

/// `m × m` output tiles of a `[n, _, oh, ow]` output: (rows, columns, total).
pub(crate) fn tiles(n: usize, oh: usize, ow: usize, m: usize) -> (usize, usize, usize) {
    let (th, tw) = (oh.div_ceil(m), ow.div_ceil(m));
    (th, tw, n * th * tw)
}

/// Transformed positions per tile of F(m×m, 3×3): (m + 2)².
fn positions(m: usize) -> usize {
    (m + 2) * (m + 2)
}

/// Elements of the two scratch buffers of `x -> y` with `tile`: the
/// transformed input tiles (rows padded to a multiple of 4 tiles, for
/// vec4 loads) and the (per K slice) products.
fn scratch_elems(x: &[usize], y: &[usize], tile: GemmTile) -> (usize, usize) {
    let m = tile.winograd as usize;
    let (t, npos) = (tiles(x[0], y[2], y[3], m).2, positions(m));
    let slices = tile.slices(x[1]).1;
    (npos * x[1] * t.next_multiple_of(4), slices * npos * y[1] * t)
}

/// Whether `x -> y` with `tile` keeps both scratch buffers within the
/// device's storage binding limit and 32-bit indexing.
pub(crate) fn fits(cx: &Cx, x: &[usize], y: &[usize], tile: GemmTile) -> bool {
    let (v, m) = scratch_elems(x, y, tile);
    [v, m].iter().all(|&e| elems(&[e]).is_ok() && 4 * e as u64 <= cx.ctx.max_binding())
}

/// U[pos][ic][oc] = (G g Gᵀ)[pos] of F(m×m, 3×3) for every filter g
/// (the CPU backend's `transform_filter` / `transform_filter4`), as the
/// GEMM's A: `[npos][kp][mp]`, zero-padded.
fn transform_weights(c: &Conv, m: usize, ic: usize, oc: usize, kp: usize, mp: usize) -> Vec<f32> {
    let w = c.weight.data();
    let npos = positions(m);
    let mut u = vec![0.0f32; npos * kp * mp];
    for o in 0..oc {
        for i in 0..ic {
            let f: &[f32; 9] = w[(o * ic + i) * 9..][..9].try_into().expect("3x3 filter");
            let t: Vec<f32> = if m == 4 { transform_filter4(f).to_vec() } else { transform_filter(f).to_vec() };
            for (pos, v) in t.into_iter().enumerate() {
                u[(pos * kp + i) * mp + o] = v;
            }
        }
    }
    u
}

/// The three dispatches of `c` (input `x`, output `y`) with GEMM tile
/// `tile` (its `splits` cut the input channels into K slices).
pub(crate) fn plan(cx: &mut Cx, c: &Conv, x: &[usize], y: &[usize], residual: bool, tile: GemmTile) -> Result<Vec<Dispatch>, String> {
    let (n, ic, h, w) = (x[0], x[1], x[2], x[3]);
    let (oc, oh, ow) = (y[1], y[2], y[3]);
    let m = tile.winograd as usize;
    let npos = positions(m);
    let (th, tw, t) = tiles(n, oh, ow, m);
    let (bm, bn) = (tile.bm(), tile.bn());
    let (kp, mp) = (ic.div_ceil(BK) * BK, oc.div_ceil(bm) * bm);
    let (kc, slices) = tile.slices(ic);
    let (v_len, m_len) = scratch_elems(x, y, tile);
    if !fits(cx, x, y, tile) {
        return Err(format!("Winograd scratch of {:.1} MiB is over the storage binding limit", 4.0 * v_len.max(m_len) as f64 / 1048576.0));
    }
    let weights = cx.weights(&c.weight, &format!("winograd{m}/{mp}"), npos * kp * mp, || transform_weights(c, m, ic, oc, kp, mp))?;
    let bias = cx.bias(c.bias.as_ref(), oc)?;

    let mut pin = Params::new();
    let ldv = t.next_multiple_of(4);
    pin.u(0, ic * t)?.u(1, ic)?.u(2, h)?.u(3, w)?.u(4, th)?.u(5, tw)?.i(6, c.pads[0] as i64)?.i(7, c.pads[1] as i64)?.u(8, t)?.u(9, ldv)?;

    let mut pg = Params::new();
    pg.u(0, oc)?.u(1, t)?.u(2, ic)?.u(3, mp / 4)?.u(4, kp)?.u(15, npos * oc)?.u(23, slices)?.u(24, kc)?.u(25, ldv / 4)?;
    let groups = [t.div_ceil(bn), mp / bm, npos * slices];
    if groups.iter().any(|&v| v > 65535) {
        return Err(format!("grid {groups:?} exceeds the per-axis workgroup limit"));
    }

    let mut pout = Params::new();
    pout.u(0, oc * t)?.u(1, oc)?.u(2, oh)?.u(3, ow)?.u(4, th)?.u(5, tw)?.u(6, t)?.u(7, slices)?.u(8, residual as usize)?.act(9, c.act);
    let res = if residual { Src::Input(1) } else { Src::Dummy };
    let m = m as u32;
    Ok(vec![
        Dispatch { out: Dst::Scratch { k: 0, bytes: 4 * v_len as u64 }, tile: None, shader: Shader::WinogradInput { m }, params: pin, reads: vec![Src::Input(0)], groups: grid_for(ic * t, 256)? },
        Dispatch {
            out: Dst::Scratch { k: 1, bytes: 4 * m_len as u64 },
            tile: Some(tile),
            shader: Shader::ConvGemm { b: GemmB::Matrix, tm: tile.tm, tn: tile.tn, split: true },
            params: pg,
            reads: vec![Src::Scratch(0), weights, Src::Dummy, Src::Dummy, Src::Dummy],
            groups: [groups[0] as u32, groups[1] as u32, groups[2] as u32],
        },
        Dispatch { out: Dst::Output, tile: None, shader: Shader::WinogradOutput { m }, params: pout, reads: vec![Src::Scratch(1), bias, res], groups: grid_for(oc * t, 256)? },
    ])
}
