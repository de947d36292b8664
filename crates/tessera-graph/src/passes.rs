//! Load-time graph rewrites that keep results identical (up to float
//! rounding): BatchNorm folded into the conv/dense before it, activations
//! fused into the conv/dense before them, identities dropped.

use std::sync::Arc;

use crate::error::Result;
use crate::graph::{Graph, NodeId};
use crate::op::{Activation, Op};
use crate::tensor::Tensor;

/// Returns the optimised equivalent of `g`.
pub fn optimize(g: &Graph) -> Result<Graph> {
    let consumers = g.consumers();
    let is_output = |id: NodeId| g.outputs().contains(&id);
    // The only reader of `id`, if it has exactly one and is not a graph output.
    let sole = |id: NodeId| -> Option<NodeId> {
        match consumers[id].as_slice() {
            [c] if !is_output(id) => Some(*c),
            _ => None,
        }
    };

    // absorbed[j] = Some(i): node j's effect is folded into node i.
    let mut absorbed: Vec<Option<NodeId>> = vec![None; g.len()];
    let mut merged: Vec<Option<Op>> = vec![None; g.len()];
    for (i, n) in g.nodes().iter().enumerate() {
        if !matches!(n.op, Op::Conv(_) | Op::Dense(_)) || absorbed[i].is_some() {
            continue;
        }
        let mut op = n.op.clone();
        let mut tail = i;
        if let Some(j) = sole(tail) {
            if let Op::BatchNorm(bn) = &g.node(j).op {
                // BN normalises axis 1: the output-feature axis of a conv, and of a dense only at rank 2.
                let axis_ok = matches!(op, Op::Conv(_)) || n.shape.len() == 2;
                if axis_ok && fused_act(&op) == Activation::Identity && fold_bn(&mut op, bn) {
                    absorbed[j] = Some(i);
                    tail = j;
                }
            }
        }
        if let Some(j) = sole(tail) {
            if let Op::Act(a) = g.node(j).op {
                if fused_act(&op) == Activation::Identity {
                    set_act(&mut op, a);
                    absorbed[j] = Some(i);
                }
            }
        }
        merged[i] = Some(op);
    }

    let mut out = Graph::new(g.name.clone());
    let mut map: Vec<NodeId> = vec![usize::MAX; g.len()];
    for (i, n) in g.nodes().iter().enumerate() {
        if let Some(a) = absorbed[i] {
            map[i] = map[a];
            continue;
        }
        if matches!(n.op, Op::Act(Activation::Identity)) && !is_output(i) {
            map[i] = map[n.inputs[0]];
            continue;
        }
        let inputs: Vec<NodeId> = n.inputs.iter().map(|&x| map[x]).collect();
        map[i] = match &n.op {
            Op::Input => out.input(n.name.clone(), &n.shape)?,
            op => {
                // A fused node keeps the conv/dense's name; absorbed nodes are
                // never graph outputs, so no output name is lost.
                let op = merged[i].take().unwrap_or_else(|| op.clone());
                out.add(n.name.clone(), op, &inputs)?
            }
        };
    }
    let outputs: Vec<NodeId> = g.outputs().iter().map(|&o| map[o]).collect();
    out.set_outputs(&outputs)?;
    Ok(out)
}

fn fused_act(op: &Op) -> Activation {
    match op {
        Op::Conv(c) => c.act,
        Op::Dense(d) => d.act,
        _ => Activation::Identity,
    }
}

fn set_act(op: &mut Op, a: Activation) {
    match op {
        Op::Conv(c) => c.act = a,
        Op::Dense(d) => d.act = a,
        _ => {}
    }
}

/// Folds `bn` (over the output channels) into a conv or dense op.
fn fold_bn(op: &mut Op, bn: &crate::op::BatchNorm) -> bool {
    let (mul, add) = bn.affine();
    let (weight, bias) = match op {
        Op::Conv(c) => (&mut c.weight, &mut c.bias),
        // Dense output is [.., out]; BN normalises axis 1, the same axis only for rank 2.
        Op::Dense(d) => (&mut d.weight, &mut d.bias),
        _ => return false,
    };
    let oc = weight.shape()[0];
    if oc != mul.len() {
        return false;
    }
    let per = weight.numel() / oc;
    let mut w = (**weight).clone();
    for (o, chunk) in w.data_mut().chunks_mut(per).enumerate() {
        chunk.iter_mut().for_each(|v| *v *= mul[o]);
    }
    let old_b: Vec<f32> = bias.as_ref().map_or(vec![0.0; oc], |b| b.data().to_vec());
    let b: Vec<f32> = (0..oc).map(|o| old_b[o] * mul[o] + add[o]).collect();
    *weight = Arc::new(w);
    *bias = Some(Arc::new(Tensor::new(vec![oc], b).expect("bias length is oc")));
    true
}
