//! Data movement. One table-driven gather (`gather.wgsl`) covers slice,
//! pad (constant / reflect / edge), transpose, nearest resize,
//! space-to-depth and depth-to-space: the output is viewed as up to 8 axes
//! and every axis maps its index to an input offset (or "outside", which
//! reads the fill value). The tables follow the CPU backend's rules
//! exactly. Concat and plain copies are strided copies (`concat.wgsl`).

use tessera_graph::op::{PadMode, Resize};
use tessera_graph::tensor::strides;

use super::{elems, grid_for, Cx, Dispatch, Dst, Params, Src};
use crate::pipelines::Shader;

/// Axes a gather can index.
const MAX_AXES: usize = 8;

/// A gather of `maps[d][o_d]` (input offsets, -1 = fill) over `out` axes.
fn gather(cx: &mut Cx, out: &[usize], maps: Vec<Vec<i64>>, fill: f32) -> Result<Vec<Dispatch>, String> {
    if out.len() > MAX_AXES {
        return Err(format!("{} axes (at most {MAX_AXES})", out.len()));
    }
    let total = elems(out)?;
    let mut table = Vec::new();
    let mut p = Params::new();
    p.u(0, total)?.u(1, out.len())?.f(2, fill);
    for (d, m) in maps.iter().enumerate() {
        p.u(8 + d, out[d])?.u(16 + d, table.len())?;
        for &v in m {
            table.push(i32::try_from(v).map_err(|_| format!("offset {v} too large for 32-bit GPU indexing"))?);
        }
    }
    if table.is_empty() {
        table.push(0);
    }
    let tab = cx.table(&table)?;
    Ok(vec![Dispatch { out: Dst::Output, tile: None, shader: Shader::Gather, params: p, reads: vec![Src::Input(0), tab], groups: grid_for(total, 256)? }])
}

/// `Slice { starts, ends }` of `x`.
pub(crate) fn slice(cx: &mut Cx, x: &[usize], starts: &[usize], ends: &[usize]) -> Result<Vec<Dispatch>, String> {
    let st = strides(x);
    let maps = (0..x.len()).map(|d| (starts[d]..ends[d]).map(|i| (i * st[d]) as i64).collect()).collect();
    let out: Vec<usize> = (0..x.len()).map(|d| ends[d] - starts[d]).collect();
    gather(cx, &out, maps, 0.0)
}

/// `Transpose { perm }`: output axis d is input axis `perm[d]`.
pub(crate) fn transpose(cx: &mut Cx, x: &[usize], perm: &[usize]) -> Result<Vec<Dispatch>, String> {
    let st = strides(x);
    let maps = perm.iter().map(|&p| (0..x[p]).map(|i| (i * st[p]) as i64).collect()).collect();
    let out: Vec<usize> = perm.iter().map(|&p| x[p]).collect();
    gather(cx, &out, maps, 0.0)
}

/// `Pad { begin, end, mode }` (reflect excludes the edge, as in ONNX).
pub(crate) fn pad(cx: &mut Cx, x: &[usize], begin: &[usize], end: &[usize], mode: PadMode) -> Result<Vec<Dispatch>, String> {
    let st = strides(x);
    let maps = (0..x.len())
        .map(|d| {
            let n = x[d] as i64;
            (0..x[d] + begin[d] + end[d])
                .map(|o| {
                    let i = o as i64 - begin[d] as i64;
                    let src = if (0..n).contains(&i) {
                        Some(i)
                    } else {
                        match mode {
                            PadMode::Constant(_) => None,
                            PadMode::Edge => Some(i.clamp(0, (n - 1).max(0))),
                            PadMode::Reflect => {
                                let mut j = i;
                                while !(0..n).contains(&j) && n > 1 {
                                    j = if j < 0 { -j } else { 2 * (n - 1) - j };
                                }
                                Some(j.clamp(0, (n - 1).max(0)))
                            }
                        }
                    };
                    src.filter(|_| n > 0).map_or(-1, |s| s * st[d] as i64)
                })
                .collect()
        })
        .collect();
    let fill = if let PadMode::Constant(v) = mode { v } else { 0.0 };
    let out: Vec<usize> = (0..x.len()).map(|d| x[d] + begin[d] + end[d]).collect();
    gather(cx, &out, maps, fill)
}

/// Nearest-neighbour `Resize` through `Resize::source_index`.
pub(crate) fn resize(cx: &mut Cx, x: &[usize], r: &Resize) -> Result<Vec<Dispatch>, String> {
    let st = strides(x);
    let maps = (0..x.len()).map(|d| (0..r.out_shape[d]).map(|o| (r.source_index(d, o, x[d]) * st[d]) as i64).collect()).collect();
    gather(cx, &r.out_shape, maps, 0.0)
}

/// ONNX SpaceToDepth, viewing the output as `[n, by, bx, c, oy, ox]`.
pub(crate) fn space_to_depth(cx: &mut Cx, x: &[usize], b: usize) -> Result<Vec<Dispatch>, String> {
    let &[n, c, h, w] = x else { return Err(format!("expected NCHW, got {x:?}")) };
    let (oh, ow) = (h / b, w / b);
    let axis = |len: usize, step: usize| -> Vec<i64> { (0..len).map(|i| (i * step) as i64).collect() };
    let maps = vec![axis(n, c * h * w), axis(b, w), axis(b, 1), axis(c, h * w), axis(oh, b * w), axis(ow, b)];
    gather(cx, &[n, b, b, c, oh, ow], maps, 0.0)
}

/// ONNX DepthToSpace (DCR or CRD), viewing the output as `[n, c', h, by, w, bx]`.
pub(crate) fn depth_to_space(cx: &mut Cx, x: &[usize], b: usize, crd: bool) -> Result<Vec<Dispatch>, String> {
    let &[n, c, h, w] = x else { return Err(format!("expected NCHW, got {x:?}")) };
    let oc = c / (b * b);
    let plane = h * w;
    let axis = |len: usize, step: usize| -> Vec<i64> { (0..len).map(|i| (i * step) as i64).collect() };
    let (sc, sby, sbx) = if crd { (b * b * plane, b * plane, plane) } else { (plane, b * oc * plane, oc * plane) };
    let maps = vec![axis(n, c * plane), axis(oc, sc), axis(h, w), axis(b, sby), axis(w, 1), axis(b, sbx)];
    gather(cx, &[n, oc, h, b, w, b], maps, 0.0)
}

/// Concatenation of the step's inputs (shapes `xs`) along `axis`.
pub(crate) fn concat(xs: &[Vec<usize>], axis: usize) -> Result<Vec<Dispatch>, String> {
    let inner: usize = xs[0][axis + 1..].iter().product();
    let total_axis: usize = xs.iter().map(|s| s[axis]).sum();
    let mut out = Vec::new();
    let mut off = 0;
    for (j, s) in xs.iter().enumerate() {
        let n = elems(s)?;
        if n > 0 {
            out.push(copy_into(j, n, s[axis] * inner, total_axis * inner, off * inner)?);
        }
        off += s[axis];
    }
    Ok(out)
}

/// A plain copy of the step's first input (reshape that cannot alias).
pub(crate) fn copy(x: &[usize]) -> Result<Vec<Dispatch>, String> {
    let n = elems(x)?;
    Ok(if n == 0 { vec![] } else { vec![copy_into(0, n, n, n, 0)?] })
}

fn copy_into(input: usize, total: usize, run: usize, pitch: usize, offset: usize) -> Result<Dispatch, String> {
    let mut p = Params::new();
    p.u(0, total)?.u(1, run.max(1))?.u(2, pitch)?.u(3, offset)?;
    Ok(Dispatch { out: Dst::Output, tile: None, shader: Shader::Concat, params: p, reads: vec![Src::Input(input)], groups: grid_for(total, 256)? })
}
