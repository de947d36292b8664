//! Layer volumes (seed 004 §III-A): a contiguous range of a graph's nodes in
//! topological order, run as one stage. A volume knows its boundary values
//! and which split laws apply to it.

use tessera_graph::{Graph, NodeId, Op};

use crate::plan::SplitKind;

/// A contiguous node range `[start, end)` and its boundary values.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    pub start: NodeId,
    pub end: NodeId,
    /// Values produced before `start` and read inside (graph inputs and
    /// constants included), in id order.
    pub inputs: Vec<NodeId>,
    /// Values produced inside and read after `end`, or graph outputs.
    pub outputs: Vec<NodeId>,
    /// The channel-mixing layout for channel/filter/fused splits, if any.
    pub mixing: Option<Mixing>,
}

/// The shape of a channel-splittable volume: optional Flatten, a mixing op
/// (conv with one group, or dense), channel-wise followers, and for a fused
/// volume a second mixing op at the end.
#[derive(Clone, Debug, PartialEq)]
pub struct Mixing {
    /// The (first) mixing node.
    pub first: NodeId,
    /// The second mixing node of a LOP→LIP pair (seed 003 §4.2).
    pub second: Option<NodeId>,
    /// Elements per channel of the value a Flatten turned into features
    /// (1 when no Flatten sits on the path).
    pub prefix_hw: usize,
    /// Elements per channel of `first`'s output channels as seen by
    /// `second` (after a follower Flatten), else 1.
    pub follower_hw: usize,
}

impl Volume {
    /// Analyses `[start, end)` of `g`.
    pub fn new(g: &Graph, consumers: &[Vec<NodeId>], start: NodeId, end: NodeId) -> Result<Volume, String> {
        if start >= end || end > g.len() {
            return Err(format!("empty or out-of-range node range {start}..{end}"));
        }
        let mut inputs = Vec::new();
        for n in start..end {
            for &i in &g.node(n).inputs {
                if i < start && !inputs.contains(&i) {
                    inputs.push(i);
                }
            }
        }
        inputs.sort_unstable();
        let outputs: Vec<NodeId> = (start..end)
            .filter(|&n| !is_free(&g.node(n).op))
            .filter(|&n| g.outputs().contains(&n) || consumers[n].iter().any(|&c| c >= end))
            .collect();
        if outputs.is_empty() {
            return Err(format!("nodes {start}..{end} produce nothing used later"));
        }
        let mut v = Volume { start, end, inputs, outputs, mixing: None };
        v.mixing = v.find_mixing(g, consumers);
        Ok(v)
    }

    /// The last compute node: the output of every split stage.
    pub fn last(&self, g: &Graph) -> NodeId {
        (self.start..self.end).rev().find(|&n| !is_free(&g.node(n).op)).unwrap_or(self.end - 1)
    }

    /// Compute nodes of the volume (inputs and constants skipped).
    pub fn compute_nodes<'a>(&self, g: &'a Graph) -> impl Iterator<Item = NodeId> + 'a {
        (self.start..self.end).filter(move |&n| !is_free(&g.node(n).op))
    }

    /// Whether the volume has a single output, its last node.
    fn single_output(&self, g: &Graph) -> bool {
        self.outputs == [self.last(g)]
    }

    /// Whether `kind` applies; `Err` says why not.
    pub fn supports(&self, g: &Graph, kind: SplitKind) -> Result<(), String> {
        match kind {
            SplitKind::Whole | SplitKind::Replicas => Ok(()),
            SplitKind::Rows | SplitKind::Grid => {
                if !self.single_output(g) {
                    return Err("a spatial split needs the volume's last node to be its only output".into());
                }
                for n in self.compute_nodes(g) {
                    spatial_op(g, n)?;
                }
                Ok(())
            }
            SplitKind::OutChannels | SplitKind::InChannels | SplitKind::Fused => {
                if !self.single_output(g) {
                    return Err("a channel split needs the volume's last node to be its only output".into());
                }
                let m = self.mixing.as_ref().ok_or("not a [flatten] conv/dense [channel-wise ops] [conv/dense] chain")?;
                let last = self.last(g);
                match kind {
                    SplitKind::OutChannels if m.second.is_none() => Ok(()),
                    SplitKind::InChannels if m.second.is_none() && m.first == last => Ok(()),
                    SplitKind::Fused if m.second == Some(last) => Ok(()),
                    SplitKind::OutChannels => Err("output-channel split (LOP) needs one mixing op".into()),
                    SplitKind::InChannels => Err("input-channel split (LIP) needs the mixing op to end the volume".into()),
                    _ => Err("a fused LOP→LIP split needs exactly two mixing ops, the second last".into()),
                }
            }
        }
    }

    /// Size of the axis a split of `kind` cuts: output rows, output columns,
    /// mixing channels. `None` for kinds without cuts.
    pub fn extent(&self, g: &Graph, kind: SplitKind) -> Option<usize> {
        let last = g.node(self.last(g));
        match kind {
            SplitKind::Rows => last.shape.get(2).copied(),
            SplitKind::Grid => last.shape.get(3).copied(),
            SplitKind::OutChannels | SplitKind::Fused => {
                let m = self.mixing.as_ref()?;
                Some(mixing_out(&g.node(m.first).op))
            }
            SplitKind::InChannels => {
                let m = self.mixing.as_ref()?;
                Some(mixing_in(&g.node(m.first).op) / m.prefix_hw)
            }
            SplitKind::Whole | SplitKind::Replicas => None,
        }
    }

    fn find_mixing(&self, g: &Graph, consumers: &[Vec<NodeId>]) -> Option<Mixing> {
        let nodes: Vec<NodeId> = self.compute_nodes(g).collect();
        let mut i = 0;
        let mut prefix_hw = 1;
        // Chain check: each node reads the previous one (plus constants).
        let chained = nodes.windows(2).all(|w| {
            let n = g.node(w[1]);
            n.inputs.iter().filter(|&&x| !is_free(&g.node(x).op)).eq([w[0]].iter()) && consumers[w[0]] == [w[1]]
        });
        if !chained {
            return None;
        }
        if let Some(&n) = nodes.first() {
            if let Op::Flatten { axis: 1 } = g.node(n).op {
                let x = &g.node(g.node(n).inputs[0]).shape;
                if x.len() == 4 {
                    prefix_hw = x[2] * x[3];
                    i = 1;
                }
            }
        }
        let first = *nodes.get(i)?;
        if !is_mixing(g, first) {
            return None;
        }
        if prefix_hw > 1 && !matches!(g.node(first).op, Op::Dense(_)) {
            return None;
        }
        let mut follower_hw = 1;
        for (k, &n) in nodes.iter().enumerate().skip(i + 1) {
            if is_mixing(g, n) {
                if k + 1 != nodes.len() {
                    return None;
                }
                if follower_hw > 1 && !matches!(g.node(n).op, Op::Dense(_)) {
                    return None;
                }
                return Some(Mixing { first, second: Some(n), prefix_hw, follower_hw });
            }
            match &g.node(n).op {
                Op::Flatten { axis: 1 } if follower_hw == 1 => {
                    let x = &g.node(g.node(n).inputs[0]).shape;
                    follower_hw = if x.len() == 4 { x[2] * x[3] } else { 1 };
                }
                _ if channel_wise(g, n) => {}
                _ => return None,
            }
        }
        Some(Mixing { first, second: None, prefix_hw, follower_hw })
    }
}

/// Inputs and constants: not computed by any stage.
pub fn is_free(op: &Op) -> bool {
    matches!(op, Op::Input | Op::Const(_))
}

/// Conv with one group over an NCHW input, or dense over a rank-2 input.
fn is_mixing(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    match &node.op {
        Op::Conv(c) => c.groups == 1,
        Op::Dense(_) => node.shape.len() == 2,
        _ => false,
    }
}

/// Output channels / features of a mixing op.
pub fn mixing_out(op: &Op) -> usize {
    match op {
        Op::Conv(c) => c.out_channels(),
        Op::Dense(d) => d.out_features(),
        _ => 0,
    }
}

/// Input channels / features of a mixing op.
pub fn mixing_in(op: &Op) -> usize {
    match op {
        Op::Conv(c) => c.group_in_channels() * c.groups,
        Op::Dense(d) => d.in_features(),
        _ => 0,
    }
}

/// Ops whose output channel `c` depends only on input channel `c`.
pub fn channel_wise(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    match &node.op {
        Op::Act(_) | Op::BatchNorm(_) | Op::MaxPool(_) | Op::AveragePool(_) | Op::GlobalAveragePool | Op::GlobalMaxPool => true,
        Op::Conv(c) => {
            let cin = g.node(node.inputs[0]).shape[1];
            c.groups == cin && c.out_channels() == cin && c.group_in_channels() == 1
        }
        // x (op) constant: the constant is sliced along channels when it has them.
        Op::Binary(_) => node.inputs.iter().filter(|&&i| matches!(g.node(i).op, Op::Const(_))).count() == 1,
        Op::Pad { begin, end, .. } => begin.len() > 1 && begin[1] == 0 && end[1] == 0,
        _ => false,
    }
}

/// Whether node `n` can compute a spatial tile from a tile of its inputs.
pub fn spatial_op(g: &Graph, n: NodeId) -> Result<(), String> {
    let node = g.node(n);
    let bad = |why: &str| Err(format!("node '{}' ({}) {why}", node.name, node.op.name()));
    if node.shape.len() != 4 {
        return bad("is not NCHW, so it cannot be tiled spatially");
    }
    match &node.op {
        Op::Conv(_) | Op::MaxPool(_) | Op::Act(_) | Op::BatchNorm(_) | Op::Lrn(_) | Op::SpaceToDepth { .. } => Ok(()),
        Op::AveragePool(p) if p.ceil_mode && p.count_include_pad => bad("(ceil mode counting pads) cannot be tiled"),
        Op::AveragePool(_) => Ok(()),
        Op::Concat { axis: 1 } => Ok(()),
        Op::Binary(_) => {
            for &i in &node.inputs {
                let s = &g.node(i).shape;
                let r = s.len();
                // A broadcast operand must be full-size or 1 in H and W.
                if r >= 2 && (s[r - 2] != 1 && s[r - 2] != node.shape[2] || s[r - 1] != 1 && s[r - 1] != node.shape[3]) {
                    return bad("broadcasts a partial spatial shape");
                }
            }
            Ok(())
        }
        Op::Pad { mode: tessera_graph::op::PadMode::Constant(_), begin, end } if begin[..2] == [0, 0] && end[..2] == [0, 0] => Ok(()),
        _ => bad("mixes spatial positions"),
    }
}
