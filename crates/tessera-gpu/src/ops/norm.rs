//! Softmax (`softmax.wgsl`) and local response normalisation (`lrn.wgsl`).

use tessera_graph::op::Lrn;

use super::{elems, grid, grid_for, Dispatch, Dst, Params, Src};
use crate::pipelines::Shader;

/// Softmax over `axis` (or every axis from it on, when `flatten`).
pub(crate) fn softmax(x: &[usize], axis: usize, flatten: bool) -> Result<Vec<Dispatch>, String> {
    if axis >= x.len() {
        return Err(format!("axis {axis} out of range for {x:?}"));
    }
    elems(x)?;
    let outer: usize = x[..axis].iter().product();
    let (len, inner) = if flatten { (x[axis..].iter().product(), 1) } else { (x[axis], x[axis + 1..].iter().product()) };
    let mut p = Params::new();
    p.u(0, outer)?.u(1, len)?.u(2, inner)?;
    let rows = inner == 1;
    let groups = if rows { grid(outer)? } else { grid_for(outer * inner, 64)? };
    Ok(vec![Dispatch { out: Dst::Output, tile: None, shader: Shader::Softmax { rows }, params: p, reads: vec![Src::Input(0)], groups }])
}

/// LRN across the channels of an NCHW tensor.
pub(crate) fn lrn(l: &Lrn, x: &[usize]) -> Result<Vec<Dispatch>, String> {
    if x.len() != 4 {
        return Err(format!("expected an NCHW input, got {x:?}"));
    }
    let total = elems(x)?;
    let mut p = Params::new();
    p.u(0, total)?.u(1, x[1])?.u(2, x[2] * x[3])?.u(3, (l.size - 1) / 2)?.u(4, l.size / 2)?;
    p.f(5, l.alpha / l.size as f32).f(6, l.beta).f(7, l.bias);
    Ok(vec![Dispatch { out: Dst::Output, tile: None, shader: Shader::Lrn, params: p, reads: vec![Src::Input(0)], groups: grid_for(total, 256)? }])
}
