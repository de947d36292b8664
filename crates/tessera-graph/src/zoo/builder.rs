//! A small model-building API for the zoo: conv/pool/dense helpers that name
//! nodes and draw weights from a source (seeded random, or trained values).

use std::sync::Arc;

use crate::error::{GraphError, Result};
use crate::graph::{Graph, NodeId};
use crate::op::{Activation, BatchNorm, BinaryOp, Conv, Dense, Lrn, Op, Pool};
use crate::rng::Rng;
use crate::tensor::{numel, Tensor};

/// Where a model's parameters come from.
pub enum Weights<'a> {
    /// He-uniform weights from a seed: deterministic on every platform.
    Seeded(Rng),
    /// Trained values, consumed in build order (see `assets/README.md`).
    Trained { data: &'a [f32], pos: usize },
    /// All zeros: the architecture alone, cheap to build (the allocator hands
    /// out untouched pages), for costing and planning without weights.
    Shapes,
}

impl Weights<'_> {
    fn take(&mut self, shape: &[usize], fan_in: usize, kind: Param) -> Result<Tensor> {
        let n = numel(shape);
        let data = match self {
            Weights::Seeded(rng) => match kind {
                Param::Weight => rng.fill(n, (6.0 / fan_in.max(1) as f32).sqrt()),
                Param::Bias => rng.fill(n, 0.1),
                Param::Scale => (0..n).map(|_| rng.uniform(0.6, 1.0)).collect(),
                Param::Var => (0..n).map(|_| rng.uniform(0.5, 1.5)).collect(),
            },
            Weights::Shapes => vec![0.0; n],
            Weights::Trained { data, pos } => {
                let end = *pos + n;
                if end > data.len() {
                    return Err(GraphError::Invalid(format!("trained weights end at {} values, model needs more", data.len())));
                }
                let v = data[*pos..end].to_vec();
                *pos = end;
                v
            }
        };
        Tensor::new(shape.to_vec(), data)
    }
}

#[derive(Clone, Copy)]
enum Param {
    Weight,
    Bias,
    Scale,
    Var,
}

/// Convolution hyper-parameters for [`Builder::conv`].
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    pub out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
    pub bias: bool,
}

impl ConvSpec {
    /// `out` filters of `kernel`², stride 1, "same" padding for odd kernels, with bias.
    pub fn new(out: usize, kernel: usize) -> ConvSpec {
        ConvSpec { out, kernel, stride: 1, pad: kernel / 2, groups: 1, bias: true }
    }
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = s;
        self
    }
    pub fn pad(mut self, p: usize) -> Self {
        self.pad = p;
        self
    }
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    /// No bias (a BatchNorm follows).
    pub fn no_bias(mut self) -> Self {
        self.bias = false;
        self
    }
}

/// Builds one zoo model node by node.
pub struct Builder<'a> {
    pub g: Graph,
    weights: Weights<'a>,
}

impl<'a> Builder<'a> {
    /// A builder whose graph has one input `input` of `shape`.
    pub fn new(name: &str, shape: &[usize], weights: Weights<'a>) -> Result<(Builder<'a>, NodeId)> {
        let mut g = Graph::new(name);
        let x = g.input("input", shape)?;
        Ok((Builder { g, weights }, x))
    }

    fn channels(&self, x: NodeId) -> usize {
        self.g.node(x).shape[1]
    }

    /// Conv with the given spec, node named `name`.
    pub fn conv(&mut self, name: &str, x: NodeId, s: ConvSpec) -> Result<NodeId> {
        let ci = self.channels(x);
        if s.groups == 0 || ci % s.groups != 0 {
            return Err(GraphError::Invalid(format!("{name}: {ci} channels not divisible by {} groups", s.groups)));
        }
        let fan_in = ci / s.groups * s.kernel * s.kernel;
        let weight = self.weights.take(&[s.out, ci / s.groups, s.kernel, s.kernel], fan_in, Param::Weight)?;
        let bias = if s.bias { Some(Arc::new(self.weights.take(&[s.out], fan_in, Param::Bias)?)) } else { None };
        let op = Op::Conv(Conv {
            weight: Arc::new(weight),
            bias,
            stride: [s.stride; 2],
            pads: [s.pad; 4],
            dilation: [1, 1],
            groups: s.groups,
            act: Activation::Identity,
        });
        self.g.add(name, op, &[x])
    }

    /// Inference BatchNorm over channels, node named `name`.
    pub fn bn(&mut self, name: &str, x: NodeId) -> Result<NodeId> {
        let c = self.channels(x);
        let scale = Arc::new(self.weights.take(&[c], 1, Param::Scale)?);
        let bias = Arc::new(self.weights.take(&[c], 1, Param::Bias)?);
        let mean = Arc::new(self.weights.take(&[c], 1, Param::Bias)?);
        let var = Arc::new(self.weights.take(&[c], 1, Param::Var)?);
        self.g.add(name, Op::BatchNorm(BatchNorm { scale, bias, mean, var, eps: 1e-5 }), &[x])
    }

    /// Pointwise activation.
    pub fn act(&mut self, name: &str, x: NodeId, a: Activation) -> Result<NodeId> {
        self.g.add(name, Op::Act(a), &[x])
    }

    /// Conv → BatchNorm → activation, the unit of ResNet, MobileNet and YOLO.
    pub fn conv_bn_act(&mut self, name: &str, x: NodeId, s: ConvSpec, a: Activation) -> Result<NodeId> {
        let c = self.conv(name, x, s.no_bias())?;
        let b = self.bn(&format!("{name}_bn"), c)?;
        match a {
            Activation::Identity => Ok(b),
            a => self.act(&format!("{name}_{}", a.name().to_lowercase()), b, a),
        }
    }

    pub fn maxpool(&mut self, name: &str, x: NodeId, p: Pool) -> Result<NodeId> {
        self.g.add(name, Op::MaxPool(p), &[x])
    }

    pub fn global_avgpool(&mut self, name: &str, x: NodeId) -> Result<NodeId> {
        self.g.add(name, Op::GlobalAveragePool, &[x])
    }

    pub fn flatten(&mut self, name: &str, x: NodeId) -> Result<NodeId> {
        self.g.add(name, Op::Flatten { axis: 1 }, &[x])
    }

    /// Fully-connected layer with bias.
    pub fn dense(&mut self, name: &str, x: NodeId, out: usize) -> Result<NodeId> {
        let inp = *self.g.node(x).shape.last().unwrap_or(&0);
        let weight = Arc::new(self.weights.take(&[out, inp], inp, Param::Weight)?);
        let bias = Some(Arc::new(self.weights.take(&[out], inp, Param::Bias)?));
        self.g.add(name, Op::Dense(Dense { weight, bias, act: Activation::Identity }), &[x])
    }

    pub fn add(&mut self, name: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.g.add(name, Op::Binary(BinaryOp::Add), &[a, b])
    }

    pub fn concat(&mut self, name: &str, xs: &[NodeId]) -> Result<NodeId> {
        self.g.add(name, Op::Concat { axis: 1 }, xs)
    }

    pub fn lrn(&mut self, name: &str, x: NodeId, l: Lrn) -> Result<NodeId> {
        self.g.add(name, Op::Lrn(l), &[x])
    }

    /// Finishes the graph with one output; fails if trained weights were
    /// not consumed exactly.
    pub fn finish(mut self, out: NodeId) -> Result<Graph> {
        if let Weights::Trained { data, pos } = &self.weights {
            if *pos != data.len() {
                return Err(GraphError::Invalid(format!("trained weights hold {} values, model used {}", data.len(), pos)));
            }
        }
        self.g.set_outputs(&[out])?;
        Ok(self.g)
    }
}
