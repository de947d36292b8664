//! Element-wise ops: activations and unfused BatchNorm (`unary.wgsl`),
//! broadcast binary ops (`binary.wgsl`, broadcasting planned once: dims
//! padded to a common rank, size-1 dims dropped, neighbours both operands
//! walk contiguously merged, as the CPU backend does).

use tessera_graph::op::{broadcast_dims, BatchNorm};
use tessera_graph::{Activation, BinaryOp};

use super::{elems, grid_for, Cx, Dispatch, Dst, Params, Src};
use crate::pipelines::Shader;

/// Merged dimensions a binary dispatch can index.
const MAX_DIMS: usize = 6;

/// `y = act(x)`.
pub(crate) fn activation(a: Activation, x: &[usize]) -> Result<Vec<Dispatch>, String> {
    let total = elems(x)?;
    let mut p = Params::new();
    p.u(0, total)?.act(4, a);
    Ok(vec![Dispatch { out: Dst::Output, tile: None, shader: Shader::Unary, params: p, reads: vec![Src::Input(0), Src::Dummy], groups: grid_for(total, 256)? }])
}

/// BatchNorm as a per-channel affine map over axis 1.
pub(crate) fn batch_norm(cx: &mut Cx, bn: &BatchNorm, x: &[usize]) -> Result<Vec<Dispatch>, String> {
    let (mul, add) = bn.affine();
    if x.len() < 2 || x[1] != mul.len() {
        return Err(format!("input {x:?} does not have {} channels", mul.len()));
    }
    let total = elems(x)?;
    let ma = cx.f32s(&[mul, add].concat())?;
    let mut p = Params::new();
    p.u(0, total)?.u(1, 1)?.u(2, x[1])?.u(3, x[2..].iter().product::<usize>().max(1))?.act(4, Activation::Identity);
    Ok(vec![Dispatch { out: Dst::Output, tile: None, shader: Shader::Unary, params: p, reads: vec![Src::Input(0), ma], groups: grid_for(total, 256)? }])
}

/// The shader's number of a binary op.
fn binary_code(op: BinaryOp) -> usize {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Max => 4,
        BinaryOp::Min => 5,
        BinaryOp::PRelu => 6,
    }
}

/// Broadcast `a ∘ b`.
pub(crate) fn binary(op: BinaryOp, a: &[usize], b: &[usize]) -> Result<Vec<Dispatch>, String> {
    let (out, dims) = broadcast_dims(a, b)?;
    let total = elems(&out)?;
    if dims.len() > MAX_DIMS {
        return Err(format!("broadcast of {a:?} and {b:?} needs {} dimensions (at most {MAX_DIMS})", dims.len()));
    }
    let mut p = Params::new();
    p.u(0, total)?.u(1, dims.len())?.u(2, binary_code(op))?;
    for (i, (n, da, db)) in dims.iter().enumerate() {
        p.u(8 + i, *n)?.u(16 + i, *da)?.u(24 + i, *db)?;
    }
    Ok(vec![Dispatch { out: Dst::Output, tile: None, shader: Shader::Binary, params: p, reads: vec![Src::Input(0), Src::Input(1)], groups: grid_for(total, 256)? }])
}
