//! Max / average pooling (`pool.wgsl`) and global pooling
//! (`global_pool.wgsl`).

use tessera_graph::Pool;

use super::{elems, grid, grid_for, Dispatch, Dst, Params, Src};
use crate::pipelines::Shader;

/// A windowed pooling of NCHW `x` into `y`.
pub(crate) fn window(p: &Pool, max: bool, x: &[usize], y: &[usize]) -> Result<Vec<Dispatch>, String> {
    let (&[_, _, h, w], &[_, _, oh, ow]) = (x, y) else {
        return Err(format!("expected NCHW tensors, got {x:?} -> {y:?}"));
    };
    elems(x)?;
    let total = elems(y)?;
    let mut q = Params::new();
    q.u(0, total)?.u(1, h)?.u(2, w)?.u(3, oh)?.u(4, ow)?.u(5, p.kernel[0])?.u(6, p.kernel[1])?;
    q.u(7, p.stride[0])?.u(8, p.stride[1])?.u(9, p.dilation[0])?.u(10, p.dilation[1])?;
    q.i(11, p.pads[0] as i64)?.i(12, p.pads[1] as i64)?.i(13, p.pads[2] as i64)?.i(14, p.pads[3] as i64)?;
    q.u(15, max as usize)?.u(16, p.count_include_pad as usize)?;
    Ok(vec![Dispatch { out: Dst::Output, tile: None, shader: Shader::Pool, params: q, reads: vec![Src::Input(0)], groups: grid_for(total, 64)? }])
}

/// Global max / average over every axis from 2 on.
pub(crate) fn global(max: bool, x: &[usize]) -> Result<Vec<Dispatch>, String> {
    if x.len() < 3 {
        return Err(format!("input {x:?} has no spatial axes"));
    }
    elems(x)?;
    let planes = x[0] * x[1];
    let len: usize = x[2..].iter().product();
    let mut q = Params::new();
    q.u(0, planes)?.u(1, len)?.u(2, max as usize)?;
    Ok(vec![Dispatch { out: Dst::Output, tile: None, shader: Shader::GlobalPool, params: q, reads: vec![Src::Input(0)], groups: grid(planes)? }])
}
