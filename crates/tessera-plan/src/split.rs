//! The split laws: for one part of a stage, which region of every node it
//! computes, which regions of the stage inputs it reads, what it produces,
//! how much work that is, and the sub-graph (sliced weights, adjusted pads)
//! that computes it.
//!
//! - Spatial tiles back-propagate the output region through every layer of
//!   the volume: input rows `[o0*s - p, (o1-1)*s - p + (k-1)*d + 1)`, the
//!   Vertical-Splitting Law of seed 004 (Eq. 1-2) with padding and dilation,
//!   applied to rows and columns (DeepThings' fused tiles) and to DAGs
//!   (a node computes the hull of what its consumers need).
//! - Output-channel parts slice filters (seed 001 Table 2 "channel", seed 003
//!   LOP), input-channel parts slice filter depth and return partial sums
//!   (seed 001 "filter", seed 003 LIP, Eq. 8), fused parts do both across two
//!   layers (seed 003 §4.2).

use std::collections::HashMap;
use std::sync::Arc;

use tessera_graph::op::{Activation, Conv, Dense, Op, Pool};
use tessera_graph::{Graph, NodeId, Tensor};

use crate::device::OpClass;
use crate::plan::PartSpec;
use crate::region::{extract, Region, Span};
use crate::volume::{is_free, Volume};

/// A region of one graph value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub value: NodeId,
    pub region: Region,
}

/// How a stage's part outputs combine.
#[derive(Clone, Debug, PartialEq)]
pub enum Merge {
    /// Each part writes its region of the output.
    Place,
    /// Parts are partial sums of the whole output; after adding them, apply
    /// the mixing node's bias and activation.
    Sum { bias: Option<Arc<Tensor>>, act: Activation },
}

/// Work of one node inside a part.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeWork {
    pub node: NodeId,
    pub class: OpClass,
    pub flops: f64,
}

/// Everything about one part except its sub-graph.
#[derive(Clone, Debug, PartialEq)]
pub struct PartGeometry {
    pub spec: PartSpec,
    /// Output region every computed node produces, in node order.
    pub regions: Vec<(NodeId, Region)>,
    /// What the part reads from the stage inputs (constants excluded).
    pub inputs: Vec<Piece>,
    /// What the part produces of the stage outputs.
    pub outputs: Vec<Piece>,
    pub merge: Merge,
    /// Work per node.
    pub work: Vec<NodeWork>,
    /// Weight bytes the part's device must hold.
    pub weight_bytes: f64,
}

impl PartGeometry {
    /// Total FLOPs.
    pub fn flops(&self) -> f64 {
        self.work.iter().map(|w| w.flops).sum()
    }
    /// Bytes the part receives.
    pub fn in_bytes(&self) -> f64 {
        self.inputs.iter().map(|p| 4.0 * p.region.numel() as f64).sum()
    }
    /// Bytes the part sends back.
    pub fn out_bytes(&self) -> f64 {
        self.outputs.iter().map(|p| 4.0 * p.region.numel() as f64).sum()
    }
}

/// Axis of the channels (1 for NCHW and for [N, F]).
const C: usize = 1;

/// Window back-propagation along one axis: the input span needed for output
/// span `o`, clipped to the input, and the padding the sub-op needs.
fn window(o: Span, input: usize, kernel: usize, stride: usize, dilation: usize, pad_begin: usize) -> (Span, usize, usize) {
    let eff = (kernel - 1) * dilation + 1;
    let u0 = (o.start * stride) as isize - pad_begin as isize;
    let u1 = ((o.end - 1) * stride + eff) as isize - pad_begin as isize;
    let c0 = u0.max(0) as usize;
    let c1 = (u1.min(input as isize)).max(c0 as isize) as usize;
    let pb = (c0 as isize - u0) as usize;
    let pe = (u1 - c1 as isize).max(0) as usize;
    (Span::new(c0, c1), pb, pe)
}

/// For a spatial part: the region of input `i` that node `n` needs to
/// produce `out`, and the sub-op padding (top, left, bottom, right) for
/// window ops.
fn spatial_need(g: &Graph, n: NodeId, i: usize, out: &Region) -> (Region, Option<[usize; 4]>) {
    let node = g.node(n);
    let x = &g.node(node.inputs[i]).shape;
    let o = &out.0;
    let win = |k: [usize; 2], s: [usize; 2], d: [usize; 2], p: [usize; 4], c: Span| {
        let (h, pt, pb) = window(o[2], x[2], k[0], s[0], d[0], p[0]);
        let (w, pl, pr) = window(o[3], x[3], k[1], s[1], d[1], p[1]);
        (Region(vec![o[0], c, h, w]), Some([pt, pl, pb, pr]))
    };
    match &node.op {
        Op::Conv(c) => win(c.kernel(), c.stride, c.dilation, c.pads, Span::new(0, x[1])),
        Op::MaxPool(p) | Op::AveragePool(p) => win(p.kernel, p.stride, p.dilation, p.pads, o[1]),
        Op::Pad { begin, .. } => {
            let mut spans = Vec::new();
            let mut pads = [0usize; 4];
            for a in 0..4 {
                let (s, pb, pe) = window(o[a], x[a], 1, 1, 1, begin[a]);
                spans.push(s);
                if a >= 2 {
                    pads[a - 2] = pb;
                    pads[a] = pe;
                }
            }
            (Region(spans), Some(pads))
        }
        Op::Concat { .. } | Op::Lrn(_) => (Region(vec![o[0], Span::new(0, x[1]), o[2], o[3]]), None),
        Op::SpaceToDepth { block: b } => {
            (Region(vec![o[0], Span::new(0, x[1]), Span::new(o[2].start * b, o[2].end * b), Span::new(o[3].start * b, o[3].end * b)]), None)
        }
        Op::Binary(_) => {
            // Right-aligned broadcast: size-1 axes stay whole.
            let off = 4 - x.len();
            (Region((0..x.len()).map(|a| if x[a] == 1 { Span::new(0, 1) } else { o[a + off] }).collect()), None)
        }
        _ => (out.clone(), None),
    }
}

/// Computes the geometry of part `spec` of volume `vol`.
pub fn geometry(g: &Graph, vol: &Volume, spec: PartSpec) -> Result<PartGeometry, String> {
    let last = vol.last(g);
    let mut regions: HashMap<NodeId, Region> = HashMap::new();
    let merge;
    match spec {
        PartSpec::Whole => {
            for n in vol.compute_nodes(g) {
                regions.insert(n, Region::full(&g.node(n).shape));
            }
            for &v in &vol.inputs {
                regions.insert(v, Region::full(&g.node(v).shape));
            }
            merge = Merge::Place;
        }
        PartSpec::Tile { rows, cols } => {
            let shape = &g.node(last).shape;
            let cols = Span::new(cols.start, cols.end.min(shape[3]));
            let mut out = Region::full(shape);
            out.0[2] = rows;
            out.0[3] = cols;
            regions.insert(last, out);
            for n in (vol.start..vol.end).rev() {
                if is_free(&g.node(n).op) {
                    continue;
                }
                let Some(r) = regions.get(&n).cloned() else { continue };
                for i in 0..g.node(n).inputs.len() {
                    let (need, _) = spatial_need(g, n, i, &r);
                    let v = g.node(n).inputs[i];
                    let merged = match regions.get(&v) {
                        Some(old) => old.hull(&need),
                        None => need,
                    };
                    regions.insert(v, merged);
                }
            }
            merge = Merge::Place;
        }
        PartSpec::OutChannels(s) | PartSpec::InChannels(s) | PartSpec::Fused(s) => {
            let m = vol.mixing.as_ref().ok_or("volume has no mixing op")?;
            let mut scale = 1;
            let mut done_first = false;
            let lip = matches!(spec, PartSpec::InChannels(_));
            for n in vol.compute_nodes(g) {
                let shape = &g.node(n).shape;
                let r = if n < m.first {
                    // prefix Flatten: full, or (LIP) the features of our channels
                    if lip {
                        Region::along(shape, C, Span::new(s.start * m.prefix_hw, s.end * m.prefix_hw))
                    } else {
                        Region::full(shape)
                    }
                } else if n == m.first && lip || Some(n) == m.second {
                    Region::full(shape)
                } else {
                    if done_first {
                        if let Op::Flatten { .. } = g.node(n).op {
                            scale = m.follower_hw;
                        }
                    }
                    done_first = true;
                    Region::along(shape, C, Span::new(s.start * scale, s.end * scale))
                };
                regions.insert(n, r);
            }
            for &v in &vol.inputs {
                let shape = &g.node(v).shape;
                let r = if lip && !is_free_const(g, v) { Region::along(shape, C, s) } else { Region::full(shape) };
                regions.insert(v, r);
            }
            merge = match spec {
                PartSpec::OutChannels(_) => Merge::Place,
                _ => {
                    let sum_node = if lip { m.first } else { m.second.ok_or("fused split without a second mixing op")? };
                    match &g.node(sum_node).op {
                        Op::Conv(c) => Merge::Sum { bias: c.bias.clone(), act: c.act },
                        Op::Dense(d) => Merge::Sum { bias: d.bias.clone(), act: d.act },
                        _ => return Err("partial sums need a conv or dense".into()),
                    }
                }
            };
        }
    }
    let inputs: Vec<Piece> = vol
        .inputs
        .iter()
        .filter(|&&v| !is_free_const(g, v))
        .filter_map(|&v| regions.get(&v).map(|r| Piece { value: v, region: r.clone() }))
        .collect();
    let outputs: Vec<Piece> = match spec {
        PartSpec::Whole => vol.outputs.iter().map(|&v| Piece { value: v, region: regions[&v].clone() }).collect(),
        _ => vec![Piece { value: last, region: regions[&last].clone() }],
    };
    let mut node_regions: Vec<(NodeId, Region)> = vol.compute_nodes(g).filter_map(|n| regions.get(&n).map(|r| (n, r.clone()))).collect();
    node_regions.retain(|(_, r)| !r.is_empty());
    let (work, weight_bytes) = work_of(g, vol, spec, &node_regions);
    Ok(PartGeometry { spec, regions: node_regions, inputs, outputs, merge, work, weight_bytes })
}

fn is_free_const(g: &Graph, v: NodeId) -> bool {
    matches!(g.node(v).op, Op::Const(_))
}

/// The input-channel span a mixing node reads in this part, if sliced.
fn reduced_in(vol: &Volume, spec: PartSpec, n: NodeId) -> Option<Span> {
    let m = vol.mixing.as_ref()?;
    match spec {
        PartSpec::InChannels(s) if n == m.first => Some(Span::new(s.start * m.prefix_hw, s.end * m.prefix_hw)),
        PartSpec::Fused(s) if Some(n) == m.second => Some(Span::new(s.start * m.follower_hw, s.end * m.follower_hw)),
        _ => None,
    }
}

fn work_of(g: &Graph, vol: &Volume, spec: PartSpec, regions: &[(NodeId, Region)]) -> (Vec<NodeWork>, f64) {
    let mut work = Vec::with_capacity(regions.len());
    let mut wbytes = 0.0;
    for (n, r) in regions {
        let node = g.node(*n);
        let full = node.out_elems().max(1) as f64;
        let frac = r.numel() as f64 / full;
        let cost = tessera_graph::node_cost(g, *n);
        let (macs, wfrac) = match &node.op {
            Op::Conv(c) => {
                let [kh, kw] = c.kernel();
                let cin = match reduced_in(vol, spec, *n) {
                    Some(s) => s.len(),
                    None => c.group_in_channels(),
                };
                let wf = match spec {
                    PartSpec::Tile { .. } | PartSpec::Whole => 1.0,
                    _ => (r.0[C].len() as f64 / c.out_channels() as f64) * (cin as f64 / c.group_in_channels() as f64),
                };
                (r.numel() as f64 * (cin * kh * kw) as f64, wf)
            }
            Op::Dense(d) => {
                let fin = reduced_in(vol, spec, *n).map_or(d.in_features(), |s| s.len());
                let wf = (r.0[C].len() as f64 / d.out_features() as f64) * (fin as f64 / d.in_features() as f64);
                (r.numel() as f64 * fin as f64, wf)
            }
            _ => (0.0, if matches!(spec, PartSpec::Whole | PartSpec::Tile { .. }) { 1.0 } else { frac }),
        };
        wbytes += cost.weight_bytes as f64 * wfrac;
        work.push(NodeWork { node: *n, class: OpClass::of(&node.op), flops: 2.0 * macs + cost.ops as f64 * frac });
    }
    (work, wbytes)
}

/// Slices `t` along `axis` to `s`.
fn slice_axis(t: &Tensor, axis: usize, s: Span) -> Tensor {
    t.slice_axis(axis, s.start, s.end).expect("span inside tensor")
}

/// Builds the sub-graph that computes part `geo` of volume `vol`: one input
/// per piece of `geo.inputs` (in order), one output per piece of
/// `geo.outputs`. Weights are sliced for channel splits and shared (`Arc`)
/// otherwise.
pub fn part_graph(g: &Graph, vol: &Volume, geo: &PartGeometry) -> Result<Graph, String> {
    let mut sub = Graph::new(format!("{}[{}..{}]", g.name, g.node(vol.start).name, g.node(vol.end - 1).name));
    // sub node id and the region of the original value it holds
    let mut held: HashMap<NodeId, (NodeId, Region)> = HashMap::new();
    let e = |x: tessera_graph::GraphError| x.to_string();
    for p in &geo.inputs {
        let id = sub.input(g.node(p.value).name.clone(), &p.region.shape()).map_err(e)?;
        held.insert(p.value, (id, p.region.clone()));
    }
    let regions: HashMap<NodeId, Region> = geo.regions.iter().cloned().collect();
    for n in vol.compute_nodes(g) {
        let Some(out) = regions.get(&n) else { continue };
        let node = g.node(n);
        let mut ins = Vec::with_capacity(node.inputs.len());
        let mut pads = None;
        for (i, &v) in node.inputs.iter().enumerate() {
            let want = match geo.spec {
                PartSpec::Whole => Region::full(&g.node(v).shape),
                PartSpec::Tile { .. } => {
                    let (r, p) = spatial_need(g, n, i, out);
                    if p.is_some() {
                        pads = p;
                    }
                    r
                }
                _ => channel_need(g, vol, geo.spec, n, i, out),
            };
            let id = match &g.node(v).op {
                Op::Const(t) => {
                    // Constants are inlined, cut to the region this node reads.
                    let c = if want == Region::full(t.shape()) { t.clone() } else { Arc::new(extract(t, &want)) };
                    sub.add(format!("{}#const{i}", node.name), Op::Const(c), &[]).map_err(e)?
                }
                _ => {
                    let (id, have) = held.get(&v).cloned().ok_or_else(|| format!("node '{}' reads a value the part does not hold", node.name))?;
                    if have == want {
                        id
                    } else if have.contains(&want) {
                        let rel = want.relative_to(&have);
                        let op = Op::Slice { starts: rel.0.iter().map(|s| s.start).collect(), ends: rel.0.iter().map(|s| s.end).collect() };
                        sub.add(format!("{}#in{i}", node.name), op, &[id]).map_err(e)?
                    } else {
                        return Err(format!("node '{}' needs {:?} of its input but only {:?} is available", node.name, want, have));
                    }
                }
            };
            ins.push(id);
        }
        let op = part_op(g, vol, geo.spec, n, out, pads)?;
        let id = sub.add(node.name.clone(), op, &ins).map_err(e)?;
        if sub.node(id).shape != out.shape() {
            return Err(format!("node '{}': part computes {:?}, expected {:?}", node.name, sub.node(id).shape, out.shape()));
        }
        held.insert(n, (id, out.clone()));
    }
    let outs: Vec<NodeId> = geo.outputs.iter().map(|p| held[&p.value].0).collect();
    sub.set_outputs(&outs).map_err(e)?;
    Ok(sub)
}

/// The input region node `n` reads in a channel part.
fn channel_need(g: &Graph, vol: &Volume, spec: PartSpec, n: NodeId, i: usize, out: &Region) -> Region {
    let node = g.node(n);
    let v = node.inputs[i];
    let x = &g.node(v).shape;
    let m = vol.mixing.as_ref().expect("channel split has mixing");
    if matches!(node.op, Op::Const(_)) {
        return Region::full(x);
    }
    match &node.op {
        _ if n == m.first || Some(n) == m.second => match reduced_in(vol, spec, n) {
            Some(s) => Region::along(x, C, s),
            None => Region::full(x),
        },
        Op::Flatten { .. } => {
            // Features [f0, f1) of a flattened NCHW value are channels [f0/hw, f1/hw).
            let hw: usize = x[2..].iter().product::<usize>().max(1);
            let f = out.0[C];
            Region::along(x, C, Span::new(f.start / hw, f.end / hw))
        }
        Op::Binary(_) if matches!(g.node(v).op, Op::Const(_)) => {
            // Constant operand: its channel axis (right-aligned) follows the part.
            let off = out.0.len() - x.len();
            Region((0..x.len()).map(|a| if a + off == C && x[a] > 1 { out.0[C] } else { Span::new(0, x[a]) }).collect())
        }
        _ => {
            let mut r = out.clone();
            for (a, s) in r.0.iter_mut().enumerate() {
                if a != C {
                    *s = Span::new(0, x[a]);
                }
            }
            r
        }
    }
}

/// The op node `n` runs in a part: pads adjusted for tiles, weights sliced
/// for channel parts.
fn part_op(g: &Graph, vol: &Volume, spec: PartSpec, n: NodeId, out: &Region, pads: Option<[usize; 4]>) -> Result<Op, String> {
    let node = g.node(n);
    let op = node.op.clone();
    Ok(match (spec, op) {
        (PartSpec::Tile { .. }, Op::Conv(mut c)) => {
            c.pads = pads.expect("window pads");
            Op::Conv(c)
        }
        (PartSpec::Tile { .. }, Op::MaxPool(p)) => Op::MaxPool(tile_pool(p, pads)),
        (PartSpec::Tile { .. }, Op::AveragePool(p)) => Op::AveragePool(tile_pool(p, pads)),
        (PartSpec::Tile { .. }, Op::Pad { mode, .. }) => {
            let p = pads.expect("pad pads");
            Op::Pad { begin: vec![0, 0, p[0], p[1]], end: vec![0, 0, p[2], p[3]], mode }
        }
        (PartSpec::Tile { .. } | PartSpec::Whole, op) => op,
        (spec, op) => {
            let m = vol.mixing.as_ref().ok_or("no mixing op")?;
            let oc = out.0[C];
            let input_span = reduced_in(vol, spec, n);
            let sliced_out = !(n == m.first && matches!(spec, PartSpec::InChannels(_))) && Some(n) != m.second && n >= m.first;
            match op {
                Op::Conv(c) if n == m.first || Some(n) == m.second => Op::Conv(slice_conv(c, sliced_out.then_some(oc), input_span)),
                Op::Dense(d) if n == m.first || Some(n) == m.second => Op::Dense(slice_dense(d, sliced_out.then_some(oc), input_span)),
                Op::Conv(mut c) => {
                    // depthwise follower: one filter per channel
                    c.weight = Arc::new(slice_axis(&c.weight, 0, oc));
                    c.bias = c.bias.map(|b| Arc::new(slice_axis(&b, 0, oc)));
                    c.groups = oc.len();
                    Op::Conv(c)
                }
                Op::BatchNorm(mut b) => {
                    for t in [&mut b.scale, &mut b.bias, &mut b.mean, &mut b.var] {
                        *t = Arc::new(slice_axis(t, 0, oc));
                    }
                    Op::BatchNorm(b)
                }
                op => op,
            }
        }
    })
}

fn tile_pool(mut p: Pool, pads: Option<[usize; 4]>) -> Pool {
    p.pads = pads.expect("window pads");
    p.ceil_mode = false;
    p
}

/// Conv restricted to output channels `out` and input channels `input`
/// (an input slice drops bias and activation: they follow the sum).
fn slice_conv(mut c: Conv, out: Option<Span>, input: Option<Span>) -> Conv {
    if let Some(o) = out {
        c.weight = Arc::new(slice_axis(&c.weight, 0, o));
        c.bias = c.bias.map(|b| Arc::new(slice_axis(&b, 0, o)));
    }
    if let Some(i) = input {
        c.weight = Arc::new(slice_axis(&c.weight, 1, i));
        c.bias = None;
        c.act = Activation::Identity;
    }
    c
}

/// Dense restricted to output features `out` and input features `input`.
fn slice_dense(mut d: Dense, out: Option<Span>, input: Option<Span>) -> Dense {
    if let Some(o) = out {
        d.weight = Arc::new(slice_axis(&d.weight, 0, o));
        d.bias = d.bias.map(|b| Arc::new(slice_axis(&b, 0, o)));
    }
    if let Some(i) = input {
        d.weight = Arc::new(slice_axis(&d.weight, 1, i));
        d.bias = None;
        d.act = Activation::Identity;
    }
    d
}
