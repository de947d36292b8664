//! Layers as the seed papers count them: a conv or dense node with the
//! cheap nodes that follow it (activation, pooling, flatten) grouped with
//! their parent (seed 001 §3), cut only where a single value crosses, so
//! every unit boundary is a valid stage boundary for any split law.

use tessera_graph::{Graph, NodeId, Op};

use crate::volume::is_free;

/// A contiguous node range that planners treat as one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    pub start: NodeId,
    pub end: NodeId,
}

/// Positions `p` (node ids of compute nodes) where exactly one value
/// produced before `p` is still needed at or after `p`.
pub fn clean_cuts(g: &Graph) -> Vec<NodeId> {
    let consumers = g.consumers();
    let compute: Vec<NodeId> = (0..g.len()).filter(|&n| !is_free(&g.node(n).op)).collect();
    let mut cuts = Vec::new();
    for (k, &p) in compute.iter().enumerate() {
        if k == 0 {
            continue;
        }
        let live = compute[..k].iter().filter(|&&v| g.outputs().contains(&v) || consumers[v].iter().any(|&c| c >= p)).count();
        if live == 1 {
            cuts.push(p);
        }
    }
    cuts
}

/// Whether a node carries the weight of a layer (conv / dense).
fn heavy(op: &Op) -> bool {
    matches!(op, Op::Conv(_) | Op::Dense(_))
}

/// Reshaping ops that start a classifier head rather than end a conv block.
fn starts_head(g: &Graph, s: &Unit) -> bool {
    (s.start..s.end).any(|n| matches!(g.node(n).op, Op::Flatten { .. } | Op::Reshape { .. }))
}

/// Splits the graph into units at clean cuts; a segment without a conv or
/// dense joins the unit before it, except a Flatten/Reshape segment, which
/// joins the dense layer after it (so conv units stay tileable).
pub fn units(g: &Graph) -> Vec<Unit> {
    let compute: Vec<NodeId> = (0..g.len()).filter(|&n| !is_free(&g.node(n).op)).collect();
    let Some(&first) = compute.first() else { return vec![] };
    let mut bounds = vec![first];
    bounds.extend(clean_cuts(g));
    bounds.push(g.len());
    let mut segs: Vec<Unit> = bounds.windows(2).map(|w| Unit { start: w[0], end: w[1] }).collect();
    let mut out: Vec<Unit> = Vec::new();
    let mut pending: Option<NodeId> = None;
    for s in segs.drain(..) {
        let has_heavy = (s.start..s.end).any(|n| heavy(&g.node(n).op));
        match (has_heavy, out.last_mut()) {
            (false, Some(_)) if starts_head(g, &s) && pending.is_none() => pending = Some(s.start),
            (false, Some(last)) if pending.is_none() => last.end = s.end,
            (false, Some(_)) => {}
            (false, None) => pending = Some(pending.unwrap_or(s.start)),
            (true, _) => out.push(Unit { start: pending.take().unwrap_or(s.start), end: s.end }),
        }
    }
    if let Some(p) = pending {
        out.push(Unit { start: p, end: g.len() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_graph::{passes, zoo};

    fn opt(name: &str) -> Graph {
        passes::optimize(&zoo::build(name).unwrap()).unwrap()
    }

    #[test]
    fn lenet_has_seed_000_layers() {
        // conv1+pool1, conv2+pool2, conv3+flatten, fc1, fc2
        assert_eq!(units(&opt("lenet")).len(), 5);
    }

    #[test]
    fn vgg16_has_16_units_and_resnet_cuts_at_blocks() {
        assert_eq!(units(&opt("vgg16")).len(), 16);
        let r = opt("resnet50");
        // stem + 16 blocks (+ fc); inside a block two values are live.
        let u = units(&r);
        assert!(u.len() >= 17 && u.len() <= 19, "{}", u.len());
        let y = opt("yolov2");
        // the passthrough keeps two values live from conv13 to the route concat
        let uy = units(&y);
        assert!(uy.len() < 23 && uy.len() > 10, "{}", uy.len());
    }
}
