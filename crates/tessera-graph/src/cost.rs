//! Per-node cost model: MACs, other arithmetic, parameters, bytes in and out,
//! and peak working memory. Planners, the simulator and `tessera cost` all
//! read costs from here and nowhere else.

use serde::Serialize;

use crate::graph::{Graph, NodeId};
use crate::op::Op;
use crate::tensor::numel;

/// What running one node costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cost {
    /// Multiply-accumulates (conv, dense).
    pub macs: u64,
    /// Other arithmetic: comparisons, adds, exps (pooling, activations, ...).
    pub ops: u64,
    /// Learned parameters.
    pub params: u64,
    /// Constant bytes the node must hold.
    pub weight_bytes: u64,
    pub input_elems: u64,
    pub output_elems: u64,
    /// Peak bytes live while the node runs: inputs, output, weights and
    /// kernel scratch (the im2col buffer of a conv).
    pub working_bytes: u64,
}

impl Cost {
    /// Floating-point operations (2 per MAC).
    pub fn flops(&self) -> u64 {
        2 * self.macs + self.ops
    }
    pub fn input_bytes(&self) -> u64 {
        4 * self.input_elems
    }
    pub fn output_bytes(&self) -> u64 {
        4 * self.output_elems
    }
    /// Adds another cost (for layer ranges).
    pub fn add(&mut self, o: &Cost) {
        self.macs += o.macs;
        self.ops += o.ops;
        self.params += o.params;
        self.weight_bytes += o.weight_bytes;
        self.input_elems += o.input_elems;
        self.output_elems += o.output_elems;
        self.working_bytes = self.working_bytes.max(o.working_bytes);
    }
}

/// Cost of node `id` of `g`.
pub fn node_cost(g: &Graph, id: NodeId) -> Cost {
    let n = g.node(id);
    let out = numel(&n.shape) as u64;
    let input_elems: u64 = n.inputs.iter().map(|&i| g.node(i).out_elems() as u64).sum();
    let mut scratch = 0u64;
    let (macs, ops) = match &n.op {
        Op::Input | Op::Const(_) => (0, 0),
        Op::Conv(c) => {
            let [kh, kw] = c.kernel();
            let k = (c.group_in_channels() * kh * kw) as u64;
            let pointwise = kh == 1 && kw == 1 && c.stride == [1, 1] && c.pads == [0; 4];
            if !pointwise && c.group_in_channels() > 1 {
                scratch = 4 * k * (n.shape[2] * n.shape[3]) as u64;
            }
            (out * k, out * u64::from(c.bias.is_some()) + act_ops(c.act, out))
        }
        Op::Dense(d) => (out * d.in_features() as u64, out * u64::from(d.bias.is_some()) + act_ops(d.act, out)),
        Op::MaxPool(p) | Op::AveragePool(p) => (0, out * (p.kernel[0] * p.kernel[1]) as u64),
        Op::GlobalAveragePool | Op::GlobalMaxPool => (0, input_elems),
        Op::Act(a) => (0, act_ops(*a, out)),
        Op::Binary(_) => (0, out),
        Op::BatchNorm(_) => (0, 2 * out),
        Op::Softmax { .. } => (0, 3 * out),
        Op::Lrn(l) => (0, out * (l.size as u64 + 3)),
        Op::Concat { .. }
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Pad { .. }
        | Op::Slice { .. }
        | Op::Resize(_)
        | Op::SpaceToDepth { .. }
        | Op::DepthToSpace { .. } => (0, 0),
    };
    let weight_bytes = n.op.weight_bytes() as u64;
    Cost {
        macs,
        ops,
        params: n.op.params() as u64,
        weight_bytes,
        input_elems,
        output_elems: out,
        working_bytes: 4 * (input_elems + out) + weight_bytes + scratch,
    }
}

fn act_ops(a: crate::op::Activation, n: u64) -> u64 {
    match a {
        crate::op::Activation::Identity => 0,
        _ => n,
    }
}

/// One row of `tessera cost`.
#[derive(Clone, Debug, Serialize)]
pub struct CostRow {
    pub name: String,
    pub op: String,
    pub output_shape: Vec<usize>,
    #[serde(flatten)]
    pub cost: Cost,
    pub output_bytes: u64,
}

/// The whole-model cost: rows for every computing node, and totals.
#[derive(Clone, Debug, Serialize)]
pub struct CostTable {
    pub model: String,
    pub rows: Vec<CostRow>,
    pub total: Cost,
}

/// Cost table of a graph (inputs and constants omitted from the rows).
pub fn cost_table(g: &Graph) -> CostTable {
    let mut rows = Vec::new();
    let mut total = Cost::default();
    for (id, n) in g.nodes().iter().enumerate() {
        if matches!(n.op, Op::Input | Op::Const(_)) {
            continue;
        }
        let cost = node_cost(g, id);
        total.add(&cost);
        rows.push(CostRow { name: n.name.clone(), op: op_label(&n.op), output_shape: n.shape.clone(), cost, output_bytes: cost.output_bytes() });
    }
    CostTable { model: g.name.clone(), rows, total }
}

/// Op name with its fused activation, e.g. `Conv+Relu`.
pub fn op_label(op: &Op) -> String {
    let act = match op {
        Op::Conv(c) => c.act,
        Op::Dense(d) => d.act,
        _ => crate::op::Activation::Identity,
    };
    match act {
        crate::op::Activation::Identity => op.name().to_string(),
        a => format!("{}+{}", op.name(), a.name()),
    }
}

impl CostTable {
    /// Fixed-width text table for terminals.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "{:<28} {:<22} {:>18} {:>14} {:>12} {:>12} {:>12}", "layer", "op", "output", "MACs", "params", "out elems", "out bytes");
        for r in &self.rows {
            let shape = format!("{:?}", r.output_shape);
            let _ = writeln!(
                s,
                "{:<28} {:<22} {:>18} {:>14} {:>12} {:>12} {:>12}",
                truncate(&r.name, 28),
                truncate(&r.op, 22),
                shape,
                r.cost.macs,
                r.cost.params,
                r.cost.output_elems,
                r.output_bytes
            );
        }
        let t = &self.total;
        let _ = writeln!(
            s,
            "total: {} layers, {} MACs ({:.3} G), {} params ({:.2} M), {:.1} MB weights, peak working set {:.1} MB",
            self.rows.len(),
            t.macs,
            t.macs as f64 / 1e9,
            t.params,
            t.params as f64 / 1e6,
            t.weight_bytes as f64 / 1e6,
            t.working_bytes as f64 / 1e6
        );
        s
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let tail: String = s.chars().rev().take(n - 1).collect::<Vec<_>>().into_iter().rev().collect();
        format!("…{tail}")
    }
}
