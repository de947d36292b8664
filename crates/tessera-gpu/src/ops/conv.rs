//! Convolution: a tiled implicit GEMM (`conv_gemm.wgsl`) for most layers,
//! with B read as vec4 straight from the feature map for pointwise layers,
//! and a direct kernel (`conv_direct.wgsl`) for depthwise convolutions and
//! others with few channels per group, where GEMM tiles would be mostly
//! padding. Bias, a fused residual and the activation run in the epilogue.
//! The GEMM's tile shape comes from `crate::tune` (heuristic or measured).

use tessera_graph::op::Conv;

use super::{elems, grid_for, winograd, Cx, Dispatch, Dst, Params, Src};
use crate::pipelines::{GemmB, Shader};
use crate::tune::{self, BuildFn, GemmTile, LayerIo};

/// GEMM tile depth (fixed by the shader).
const BK: usize = 16;

/// The heuristic runs F(4×4, 3×3) on planes of at least this many 4×4
/// tiles (the CPU backend's threshold), F(2×2, 3×3) on smaller ones.
const WINOGRAD4_MIN_TILES: usize = 40;

/// Plans a convolution of input `x` into `y`; `residual`: the step's second
/// input is added before the activation.
pub(crate) fn plan(cx: &mut Cx, c: &Conv, x: &[usize], y: &[usize], residual: bool) -> Result<Vec<Dispatch>, String> {
    let (&[n, ci, _, _], &[_, oc, oh, ow]) = (x, y) else {
        return Err(format!("expected NCHW tensors, got {x:?} -> {y:?}"));
    };
    elems(x)?;
    elems(y)?;
    let g = c.groups;
    let (icg, ocg) = (ci / g, oc / g);
    let [kh, kw] = c.kernel();
    let k = icg * kh * kw;
    if ocg < 8 || k < 8 {
        let bias = cx.bias(c.bias.as_ref(), oc)?;
        let res = if residual { Src::Input(1) } else { Src::Dummy };
        return direct(cx, c, x, y, bias, res);
    }
    // The tile (or measured): Winograd where it applies and fits, rows
    // per invocation large for wide layers, smaller when the grid would
    // otherwise be too small to fill a GPU.
    let npix = n * oh * ow;
    let wino = winograd::applies(c);
    let (t2, t4) = (winograd::tiles(n, oh, ow, 2).2, winograd::tiles(n, oh, ow, 4).2);
    // F(4×4) on planes of enough 4×4 tiles (as the CPU backend), else F(2×2).
    let wino_tile = if t4 >= WINOGRAD4_MIN_TILES { GemmTile::new(heuristic_tm(oc, t4, 36), 4).winograd4() } else { GemmTile::new(heuristic_tm(oc, t2, 16), 4).winograd() };
    let heuristic = match wino {
        true if winograd::fits(cx, x, y, wino_tile) => wino_tile,
        _ => GemmTile::new(heuristic_tm(ocg, npix, g), 4),
    };
    let key = format!("conv {x:?} -> {y:?} k{kh}x{kw} s{:?} d{:?} p{:?} g{g} res{}", c.stride, c.dilation, c.pads, residual as u8);
    let io = LayerIo { inputs: [x, y][..1 + residual as usize].iter().map(|s| 4 * s.iter().product::<usize>() as u64).collect(), output: 4 * (oc * npix) as u64 };
    let (conv, xs, ys) = (c.clone(), x.to_vec(), y.to_vec());
    let build: BuildFn = Box::new(move |cx, t| gemm(cx, &conv, &xs, &ys, residual, t));
    let mut candidates = GemmTile::candidates(ocg, npix, k, g);
    if wino {
        candidates.extend(GemmTile::candidates(oc, t2, ci, 16).into_iter().map(GemmTile::winograd).filter(|&tile| winograd::fits(cx, x, y, tile)));
        candidates.extend(GemmTile::candidates(oc, t4, ci, 36).into_iter().map(GemmTile::winograd4).filter(|&tile| winograd::fits(cx, x, y, tile)));
    }
    let tile = tune::choose(cx, &key, heuristic, &candidates, io, build)?;
    gemm(cx, c, x, y, residual, tile)
}

/// Rows per invocation for `m` output channels (per group) over `n`
/// pixels in `groups` groups: 8 for wide layers, fewer while the grid of
/// 16·tm × 64 workgroup tiles would hold under 256 workgroups.
fn heuristic_tm(m: usize, n: usize, groups: usize) -> u32 {
    let cols = n.div_ceil(64);
    let mut tm = 8u32;
    while tm > 1 && (8 * tm as usize >= m || (tm > 2 && m.div_ceil(16 * tm as usize) * cols * groups < 256)) {
        tm /= 2;
    }
    tm
}

/// The GEMM dispatch of a convolution with tile `tile`, and with K split
/// into slices, the dispatch that adds them up; or its Winograd form
/// (where the tile asks for it, the layer allows it and its scratch fits).
fn gemm(cx: &mut Cx, c: &Conv, x: &[usize], y: &[usize], residual: bool, tile: GemmTile) -> Result<Vec<Dispatch>, String> {
    if tile.winograd > 0 && winograd::applies(c) && winograd::fits(cx, x, y, tile) {
        return winograd::plan(cx, c, x, y, residual, tile);
    }
    let (n, ci, h, w) = (x[0], x[1], x[2], x[3]);
    let (oc, oh, ow) = (y[1], y[2], y[3]);
    let g = c.groups;
    let (icg, ocg) = (ci / g, oc / g);
    let [kh, kw] = c.kernel();
    let k = icg * kh * kw;
    let bias = cx.bias(c.bias.as_ref(), oc)?;
    let res = if residual { Src::Input(1) } else { Src::Dummy };
    let (bm, bn) = (tile.bm(), tile.bn());
    let (kp, mp) = (k.div_ceil(BK) * BK, ocg.div_ceil(bm) * bm);
    let weights = cx.weights(&c.weight, &format!("gemm/{g}/{mp}"), g * kp * mp, || {
        // [oc][k] row-major -> [group][Kp][Mp], zero-padded.
        let src = c.weight.data();
        let mut t = vec![0.0f32; g * kp * mp];
        for gi in 0..g {
            for m in 0..ocg {
                let row = &src[(gi * ocg + m) * k..(gi * ocg + m + 1) * k];
                for (kk, v) in row.iter().enumerate() {
                    t[(gi * kp + kk) * mp + m] = *v;
                }
            }
        }
        t
    })?;
    let pointwise = kh == 1 && kw == 1 && c.stride == [1, 1] && c.pads == [0; 4] && (h * w) % 4 == 0;
    let (mode, ktab) = if pointwise {
        (GemmB::Pointwise, Src::Dummy)
    } else {
        let mut tab = Vec::with_capacity(4 * k);
        for kk in 0..k {
            let (cin, r) = (kk / (kh * kw), kk % (kh * kw));
            let (dy, dx) = ((r / kw) * c.dilation[0], (r % kw) * c.dilation[1]);
            tab.extend([(cin * h * w + dy * w + dx) as i32, dy as i32, dx as i32, 0]);
        }
        (GemmB::Im2col, cx.table(&tab)?)
    };
    let mut p = Params::new();
    p.u(0, ocg)?.u(1, n * oh * ow)?.u(2, k)?.u(3, mp / 4)?.u(4, kp)?;
    p.u(5, ci)?.u(6, h)?.u(7, w)?.u(8, oh)?.u(9, ow)?.u(10, c.stride[0])?.u(11, c.stride[1])?;
    p.i(12, c.pads[0] as i64)?.i(13, c.pads[1] as i64)?.u(14, icg)?.u(15, oc)?.u(16, residual as usize)?;
    p.act(17, c.act).u(20, 0)?.u(21, h * w)?.u(22, oh * ow)?;
    let (kc, slices) = tile.slices(k);
    let groups = [(n * oh * ow).div_ceil(bn), mp / bm, g * slices];
    if groups.iter().any(|&v| v > 65535) {
        return Err(format!("grid {groups:?} exceeds the per-axis workgroup limit"));
    }
    let shader = Shader::ConvGemm { b: mode, tm: tile.tm, tn: tile.tn, split: slices > 1 };
    let grid = [groups[0] as u32, groups[1] as u32, groups[2] as u32];
    if slices == 1 {
        return Ok(vec![Dispatch { out: Dst::Output, tile: Some(tile), shader, params: p, reads: vec![Src::Input(0), weights, bias, ktab, res], groups: grid }]);
    }
    // Partial products [slice][oc][n] in the step's scratch buffer.
    let total = elems(y)?;
    let part = slices * total;
    elems(&[part])?;
    let part_bytes = 4 * part as u64;
    if part_bytes > cx.ctx.max_binding() {
        return Err(format!("{slices} K slices need a {:.1} MiB scratch buffer, over the storage binding limit", part_bytes as f64 / 1048576.0));
    }
    p.u(23, slices)?.u(24, kc)?;
    let mut r = Params::new();
    r.u(0, total)?.u(1, oc)?.u(2, oh * ow)?.u(3, n * oh * ow)?.u(4, slices)?.u(5, residual as usize)?.act(6, c.act);
    Ok(vec![
        Dispatch { out: Dst::Scratch { k: 0, bytes: part_bytes }, tile: Some(tile), shader, params: p, reads: vec![Src::Input(0), weights, Src::Dummy, ktab, Src::Dummy], groups: grid },
        Dispatch { out: Dst::Output, tile: None, shader: Shader::SplitReduce, params: r, reads: vec![Src::Scratch(0), bias, res], groups: grid_for(total, 256)? },
    ])
}

/// The direct kernel: one invocation per output element.
fn direct(cx: &mut Cx, c: &Conv, x: &[usize], y: &[usize], bias: Src, res: Src) -> Result<Vec<Dispatch>, String> {
    let (ci, h, w) = (x[1], x[2], x[3]);
    let (oc, oh, ow) = (y[1], y[2], y[3]);
    let [kh, kw] = c.kernel();
    let weights = cx.weights(&c.weight, "direct", c.weight.numel(), || c.weight.data().to_vec())?;
    let total = elems(y)?;
    let mut p = Params::new();
    p.u(0, total)?.u(1, ci)?.u(2, h)?.u(3, w)?.u(4, oc)?.u(5, oh)?.u(6, ow)?.u(7, kh)?.u(8, kw)?;
    p.u(9, c.stride[0])?.u(10, c.stride[1])?.u(11, c.dilation[0])?.u(12, c.dilation[1])?;
    p.i(13, c.pads[0] as i64)?.i(14, c.pads[1] as i64)?.u(15, ci / c.groups)?.u(16, oc / c.groups)?;
    p.u(17, (res != Src::Dummy) as usize)?.act(18, c.act);
    Ok(vec![Dispatch { out: Dst::Output, tile: None, shader: Shader::ConvDirect, params: p, reads: vec![Src::Input(0), weights, bias, res], groups: grid_for(total, 64)? }])
}
