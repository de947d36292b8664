//! The op set of the graph IR, each op's attributes and its static shape
//! inference. Weights live inside the op that owns them (`Arc`, so sub-graphs
//! and tiles share them without copies).

use std::sync::Arc;

use crate::tensor::{numel, Tensor};

/// Pointwise activation; also fused into `Conv`/`Dense` by the optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    #[default]
    Identity,
    Relu,
    LeakyRelu { alpha: f32 },
    Sigmoid,
    Tanh,
    /// ReLU6 is `Clip { min: 0, max: 6 }`.
    Clip { min: f32, max: f32 },
    HardSigmoid { alpha: f32, beta: f32 },
    HardSwish,
}

impl Activation {
    /// Applies the activation to one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu { alpha } => {
                if x < 0.0 {
                    alpha * x
                } else {
                    x
                }
            }
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::Clip { min, max } => x.max(min).min(max),
            Activation::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Activation::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        }
    }

    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "Identity",
            Activation::Relu => "Relu",
            Activation::LeakyRelu { .. } => "LeakyRelu",
            Activation::Sigmoid => "Sigmoid",
            Activation::Tanh => "Tanh",
            Activation::Clip { .. } => "Clip",
            Activation::HardSigmoid { .. } => "HardSigmoid",
            Activation::HardSwish => "HardSwish",
        }
    }
}

/// 2-D convolution, NCHW, weight `[oc, ic/groups, kh, kw]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub weight: Arc<Tensor>,
    /// `[oc]`, or none.
    pub bias: Option<Arc<Tensor>>,
    pub stride: [usize; 2],
    /// top, left, bottom, right.
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
    /// Fused activation applied after bias.
    pub act: Activation,
}

impl Conv {
    pub fn out_channels(&self) -> usize {
        self.weight.shape()[0]
    }
    /// Input channels per group.
    pub fn group_in_channels(&self) -> usize {
        self.weight.shape()[1]
    }
    /// `[kh, kw]`.
    pub fn kernel(&self) -> [usize; 2] {
        [self.weight.shape()[2], self.weight.shape()[3]]
    }
}

/// Fully-connected layer: `y[.., o] = sum_i x[.., i] * weight[o, i] + bias[o]`
/// (ONNX Gemm with transB=1 / MatMul with a constant right operand).
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// `[out, in]`.
    pub weight: Arc<Tensor>,
    /// `[out]`, or none.
    pub bias: Option<Arc<Tensor>>,
    pub act: Activation,
}

impl Dense {
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }
}

/// Max / average pooling window geometry.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// top, left, bottom, right.
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
    /// Average pooling only: divide by the full window including padding.
    pub count_include_pad: bool,
}

impl Pool {
    /// A plain `k`×`k` window with stride `s` and symmetric padding `p`.
    pub fn square(k: usize, s: usize, p: usize) -> Pool {
        Pool { kernel: [k, k], stride: [s, s], pads: [p, p, p, p], dilation: [1, 1], ceil_mode: false, count_include_pad: false }
    }
}

/// Inference batch normalisation over axis 1: `(x - mean) / sqrt(var + eps) * scale + bias`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub scale: Arc<Tensor>,
    pub bias: Arc<Tensor>,
    pub mean: Arc<Tensor>,
    pub var: Arc<Tensor>,
    pub eps: f32,
}

impl BatchNorm {
    /// The equivalent per-channel affine `(mul, add)`.
    pub fn affine(&self) -> (Vec<f32>, Vec<f32>) {
        let c = self.scale.numel();
        let mut mul = Vec::with_capacity(c);
        let mut add = Vec::with_capacity(c);
        for i in 0..c {
            let m = self.scale.data()[i] / (self.var.data()[i] + self.eps).sqrt();
            mul.push(m);
            add.push(self.bias.data()[i] - self.mean.data()[i] * m);
        }
        (mul, add)
    }
}

/// Element-wise binary op with NumPy (multidirectional) broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    /// `x < 0 ? slope * x : x` with `slope` broadcast (ONNX PRelu).
    PRelu,
}

impl BinaryOp {
    #[inline(always)]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Max => a.max(b),
            BinaryOp::Min => a.min(b),
            BinaryOp::PRelu => {
                if a < 0.0 {
                    a * b
                } else {
                    a
                }
            }
        }
    }
}

/// Padding mode of `Pad`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    Constant(f32),
    Reflect,
    Edge,
}

/// How `Resize` maps an output coordinate back to the input (ONNX
/// `coordinate_transformation_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordMode {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNearest,
}

/// Rounding of the nearest neighbour (ONNX `nearest_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Nearest-neighbour resize / upsample to a fixed output shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Resize {
    /// Full output shape (same rank as the input).
    pub out_shape: Vec<usize>,
    /// Per-axis scale used for the coordinate mapping.
    pub scales: Vec<f32>,
    pub coord: CoordMode,
    pub nearest: NearestMode,
}

impl Resize {
    /// Integer-factor nearest upsampling of H and W (YOLO, FPN style).
    pub fn upsample(in_shape: &[usize], factor: usize) -> Resize {
        let mut out_shape = in_shape.to_vec();
        let mut scales = vec![1.0; in_shape.len()];
        for d in in_shape.len() - 2..in_shape.len() {
            out_shape[d] *= factor;
            scales[d] = factor as f32;
        }
        Resize { out_shape, scales, coord: CoordMode::Asymmetric, nearest: NearestMode::Floor }
    }

    /// Input index along `axis` that output index `o` reads.
    pub fn source_index(&self, axis: usize, o: usize, in_len: usize) -> usize {
        let out_len = self.out_shape[axis];
        let scale = self.scales[axis];
        let x = match self.coord {
            CoordMode::HalfPixel => (o as f32 + 0.5) / scale - 0.5,
            CoordMode::PytorchHalfPixel => {
                if out_len > 1 {
                    (o as f32 + 0.5) / scale - 0.5
                } else {
                    0.0
                }
            }
            CoordMode::AlignCorners => {
                if out_len > 1 {
                    o as f32 * (in_len as f32 - 1.0) / (out_len as f32 - 1.0)
                } else {
                    0.0
                }
            }
            CoordMode::Asymmetric => o as f32 / scale,
            CoordMode::TfHalfPixelForNearest => (o as f32 + 0.5) / scale,
        };
        let r = match self.nearest {
            NearestMode::RoundPreferFloor => {
                if x.fract() == 0.5 {
                    x.floor()
                } else {
                    x.round()
                }
            }
            NearestMode::RoundPreferCeil => {
                if x.fract() == 0.5 {
                    x.ceil()
                } else {
                    x.round()
                }
            }
            NearestMode::Floor => x.floor(),
            NearestMode::Ceil => x.ceil(),
        };
        (r.max(0.0) as usize).min(in_len - 1)
    }
}

/// Local response normalisation across channels (AlexNet).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lrn {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

/// One node's operation. Every op has exactly one output.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A graph input; its shape is the node's shape.
    Input,
    /// A constant tensor.
    Const(Arc<Tensor>),
    Conv(Conv),
    Dense(Dense),
    MaxPool(Pool),
    AveragePool(Pool),
    GlobalAveragePool,
    GlobalMaxPool,
    Act(Activation),
    Binary(BinaryOp),
    BatchNorm(BatchNorm),
    Concat { axis: usize },
    /// `[prod(d<axis), prod(d>=axis)]`.
    Flatten { axis: usize },
    /// Resolved target shape (no 0 / -1).
    Reshape { shape: Vec<usize> },
    Transpose { perm: Vec<usize> },
    /// Softmax over `axis` alone, or over all axes from `axis` on when
    /// `flatten` (ONNX opset < 13 semantics).
    Softmax { axis: usize, flatten: bool },
    /// `begin`/`end` padding per axis.
    Pad { begin: Vec<usize>, end: Vec<usize>, mode: PadMode },
    /// Crop `starts..ends` per axis (step 1): tiles and ONNX Slice.
    Slice { starts: Vec<usize>, ends: Vec<usize> },
    Resize(Resize),
    Lrn(Lrn),
    /// Moves `block`×`block` spatial patches into channels (YOLOv2 reorg).
    SpaceToDepth { block: usize },
    /// Inverse of SpaceToDepth; `crd` selects the CRD channel order.
    DepthToSpace { block: usize, crd: bool },
}

impl Op {
    /// ONNX-style op name, for tables and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::Const(_) => "Const",
            Op::Conv(_) => "Conv",
            Op::Dense(_) => "Dense",
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool(_) => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::Act(a) => a.name(),
            Op::Binary(b) => match b {
                BinaryOp::Add => "Add",
                BinaryOp::Sub => "Sub",
                BinaryOp::Mul => "Mul",
                BinaryOp::Div => "Div",
                BinaryOp::Max => "Max",
                BinaryOp::Min => "Min",
                BinaryOp::PRelu => "PRelu",
            },
            Op::BatchNorm(_) => "BatchNormalization",
            Op::Concat { .. } => "Concat",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Softmax { .. } => "Softmax",
            Op::Pad { .. } => "Pad",
            Op::Slice { .. } => "Slice",
            Op::Resize(_) => "Resize",
            Op::Lrn(_) => "LRN",
            Op::SpaceToDepth { .. } => "SpaceToDepth",
            Op::DepthToSpace { .. } => "DepthToSpace",
        }
    }

    /// Number of inputs this op takes (`None` = one or more).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Op::Input | Op::Const(_) => Some(0),
            Op::Binary(_) => Some(2),
            Op::Concat { .. } => None,
            _ => Some(1),
        }
    }

    /// The constant tensors this op holds (weights, biases, BN statistics,
    /// constants), for whoever stores or ships them by identity.
    pub fn tensors(&self) -> Vec<&Arc<Tensor>> {
        match self {
            Op::Const(t) => vec![t],
            Op::Conv(c) => std::iter::once(&c.weight).chain(&c.bias).collect(),
            Op::Dense(d) => std::iter::once(&d.weight).chain(&d.bias).collect(),
            Op::BatchNorm(b) => vec![&b.scale, &b.bias, &b.mean, &b.var],
            _ => Vec::new(),
        }
    }

    /// Learned parameters held by this op (weights, biases, BN scale and
    /// shift; BN running statistics are buffers, not parameters, as in
    /// PyTorch's count).
    pub fn params(&self) -> usize {
        match self {
            Op::Conv(c) => c.weight.numel() + c.bias.as_ref().map_or(0, |b| b.numel()),
            Op::Dense(d) => d.weight.numel() + d.bias.as_ref().map_or(0, |b| b.numel()),
            Op::BatchNorm(b) => b.scale.numel() + b.bias.numel(),
            _ => 0,
        }
    }

    /// Bytes of constant data this op must hold to run (all of BN's
    /// tensors, constants included).
    pub fn weight_bytes(&self) -> usize {
        match self {
            Op::BatchNorm(b) => 4 * (b.scale.numel() * 4),
            Op::Const(t) => t.bytes(),
            _ => 4 * self.params(),
        }
    }

    /// Output shape from input shapes; `Err` holds a message for the user.
    pub fn infer(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        if let Some(n) = self.arity() {
            if inputs.len() != n {
                return Err(format!("expected {n} input(s), got {}", inputs.len()));
            }
        } else if inputs.is_empty() {
            return Err("expected at least one input".into());
        }
        match self {
            Op::Input => Err("Input has no inferred shape".into()),
            Op::Const(t) => Ok(t.shape().to_vec()),
            Op::Conv(c) => infer_conv(c, inputs[0]),
            Op::Dense(d) => {
                let x = inputs[0];
                if x.is_empty() || x[x.len() - 1] != d.in_features() {
                    return Err(format!("input {x:?} does not end in {} features", d.in_features()));
                }
                if d.weight.shape().len() != 2 {
                    return Err("weight must be [out, in]".into());
                }
                check_bias(&d.bias, d.out_features())?;
                let mut y = x.to_vec();
                *y.last_mut().unwrap() = d.out_features();
                Ok(y)
            }
            Op::MaxPool(p) | Op::AveragePool(p) => {
                let x = nchw(inputs[0])?;
                let (oh, ow) = pool_out(x[2], x[3], p)?;
                Ok(vec![x[0], x[1], oh, ow])
            }
            Op::GlobalAveragePool | Op::GlobalMaxPool => {
                let x = inputs[0];
                if x.len() < 3 {
                    return Err(format!("input {x:?} has no spatial axes"));
                }
                let mut y = x.to_vec();
                y[2..].iter_mut().for_each(|d| *d = 1);
                Ok(y)
            }
            Op::Act(_) => Ok(inputs[0].to_vec()),
            Op::Binary(_) => broadcast(inputs[0], inputs[1]),
            Op::BatchNorm(b) => {
                let x = inputs[0];
                if x.len() < 2 || x[1] != b.scale.numel() {
                    return Err(format!("input {x:?} does not have {} channels", b.scale.numel()));
                }
                let c = b.scale.numel();
                if b.bias.numel() != c || b.mean.numel() != c || b.var.numel() != c {
                    return Err("scale, bias, mean and var must have one value per channel".into());
                }
                Ok(x.to_vec())
            }
            Op::Concat { axis } => {
                let first = inputs[0];
                if *axis >= first.len() {
                    return Err(format!("axis {axis} out of range for rank {}", first.len()));
                }
                let mut y = first.to_vec();
                for s in &inputs[1..] {
                    if s.len() != first.len() || (0..first.len()).any(|d| d != *axis && s[d] != first[d]) {
                        return Err(format!("input {s:?} does not match {first:?} off axis {axis}"));
                    }
                    y[*axis] += s[*axis];
                }
                Ok(y)
            }
            Op::Flatten { axis } => {
                let x = inputs[0];
                if *axis > x.len() {
                    return Err(format!("axis {axis} out of range for rank {}", x.len()));
                }
                Ok(vec![numel(&x[..*axis]), numel(&x[*axis..])])
            }
            Op::Reshape { shape } => {
                if numel(shape) != numel(inputs[0]) {
                    return Err(format!("cannot reshape {:?} to {shape:?}", inputs[0]));
                }
                Ok(shape.clone())
            }
            Op::Transpose { perm } => {
                let x = inputs[0];
                let mut seen = vec![false; x.len()];
                if perm.len() != x.len() || perm.iter().any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true)) {
                    return Err(format!("perm {perm:?} is not a permutation of rank {}", x.len()));
                }
                Ok(perm.iter().map(|&p| x[p]).collect())
            }
            Op::Softmax { axis, .. } => {
                if *axis >= inputs[0].len() {
                    return Err(format!("axis {axis} out of range for rank {}", inputs[0].len()));
                }
                Ok(inputs[0].to_vec())
            }
            Op::Pad { begin, end, mode } => {
                let x = inputs[0];
                if begin.len() != x.len() || end.len() != x.len() {
                    return Err(format!("pads for rank {} given for rank {}", begin.len(), x.len()));
                }
                if *mode != PadMode::Constant(0.0) && !matches!(mode, PadMode::Constant(_)) {
                    for d in 0..x.len() {
                        let limit = if *mode == PadMode::Reflect { x[d].saturating_sub(1) } else if x[d] == 0 { 0 } else { usize::MAX };
                        if begin[d] > limit || end[d] > limit {
                            return Err(format!("pad {}/{} too large for axis {d} of size {}", begin[d], end[d], x[d]));
                        }
                    }
                }
                Ok((0..x.len()).map(|d| x[d] + begin[d] + end[d]).collect())
            }
            Op::Slice { starts, ends } => {
                let x = inputs[0];
                if starts.len() != x.len() || ends.len() != x.len() {
                    return Err(format!("slice bounds for rank {} given for rank {}", starts.len(), x.len()));
                }
                (0..x.len())
                    .map(|d| {
                        if starts[d] <= ends[d] && ends[d] <= x[d] {
                            Ok(ends[d] - starts[d])
                        } else {
                            Err(format!("slice {}..{} outside axis {d} of size {}", starts[d], ends[d], x[d]))
                        }
                    })
                    .collect()
            }
            Op::Resize(r) => {
                let x = inputs[0];
                if r.out_shape.len() != x.len() || r.scales.len() != x.len() {
                    return Err(format!("resize rank {} does not match input rank {}", r.out_shape.len(), x.len()));
                }
                if x.iter().zip(&r.out_shape).any(|(i, o)| *i == 0 && *o != 0) {
                    return Err("cannot resize an empty axis".into());
                }
                Ok(r.out_shape.clone())
            }
            Op::Lrn(l) => {
                nchw(inputs[0])?;
                if l.size == 0 {
                    return Err("size must be positive".into());
                }
                Ok(inputs[0].to_vec())
            }
            Op::SpaceToDepth { block } => {
                let x = nchw(inputs[0])?;
                if *block == 0 || x[2] % block != 0 || x[3] % block != 0 {
                    return Err(format!("spatial {}x{} not divisible by block {block}", x[2], x[3]));
                }
                Ok(vec![x[0], x[1] * block * block, x[2] / block, x[3] / block])
            }
            Op::DepthToSpace { block, .. } => {
                let x = nchw(inputs[0])?;
                if *block == 0 || x[1] % (block * block) != 0 {
                    return Err(format!("{} channels not divisible by block² = {}", x[1], block * block));
                }
                Ok(vec![x[0], x[1] / (block * block), x[2] * block, x[3] * block])
            }
        }
    }
}

fn nchw(x: &[usize]) -> Result<[usize; 4], String> {
    match x {
        [n, c, h, w] => Ok([*n, *c, *h, *w]),
        _ => Err(format!("expected an NCHW input, got shape {x:?}")),
    }
}

fn check_bias(bias: &Option<Arc<Tensor>>, n: usize) -> Result<(), String> {
    match bias {
        Some(b) if b.numel() != n => Err(format!("bias has {} values, expected {n}", b.numel())),
        _ => Ok(()),
    }
}

/// Output length of a sliding window: `floor((in + pads - eff) / s) + 1`, or
/// ceil in ceil-mode where the last window must still start inside the input
/// or the leading pad (the rule onnxruntime and PyTorch share).
pub fn window_out(input: usize, pad_begin: usize, pad_end: usize, kernel: usize, stride: usize, dilation: usize, ceil_mode: bool) -> Option<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let eff = (kernel - 1) * dilation + 1;
    let span = input + pad_begin + pad_end;
    if span < eff {
        return None;
    }
    let mut out = (span - eff) / stride + 1;
    if ceil_mode && (span - eff) % stride != 0 {
        out += 1;
        if (out - 1) * stride >= input + pad_begin {
            out -= 1;
        }
    }
    Some(out)
}

/// Output height and width of a pooling window.
pub fn pool_out(h: usize, w: usize, p: &Pool) -> Result<(usize, usize), String> {
    let oh = window_out(h, p.pads[0], p.pads[2], p.kernel[0], p.stride[0], p.dilation[0], p.ceil_mode);
    let ow = window_out(w, p.pads[1], p.pads[3], p.kernel[1], p.stride[1], p.dilation[1], p.ceil_mode);
    match (oh, ow) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(format!("window {:?} stride {:?} does not fit input {h}x{w}", p.kernel, p.stride)),
    }
}

fn infer_conv(c: &Conv, x: &[usize]) -> Result<Vec<usize>, String> {
    let [n, ci, h, w] = nchw(x)?;
    if c.weight.shape().len() != 4 {
        return Err(format!("weight shape {:?} is not [oc, ic/g, kh, kw]", c.weight.shape()));
    }
    let oc = c.out_channels();
    if c.groups == 0 || ci % c.groups != 0 || oc % c.groups != 0 || ci / c.groups != c.group_in_channels() {
        return Err(format!("{ci} input channels, weight {:?} and groups {} disagree", c.weight.shape(), c.groups));
    }
    check_bias(&c.bias, oc)?;
    let [kh, kw] = c.kernel();
    let oh = window_out(h, c.pads[0], c.pads[2], kh, c.stride[0], c.dilation[0], false);
    let ow = window_out(w, c.pads[1], c.pads[3], kw, c.stride[1], c.dilation[1], false);
    match (oh, ow) {
        (Some(oh), Some(ow)) => Ok(vec![n, oc, oh, ow]),
        _ => Err(format!("kernel {kh}x{kw} does not fit input {h}x{w} with pads {:?}", c.pads)),
    }
}

/// The loop nest of a broadcast `a ∘ b`: the output shape, and its dims
/// merged where both operands step contiguously, outermost first, as
/// `(extent, stride of a, stride of b)` with stride 0 where an operand is
/// broadcast. Never empty. Every backend's binary kernel walks this.
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Result<(Vec<usize>, Vec<(usize, usize, usize)>), String> {
    let out = broadcast(a, b)?;
    let rank = out.len();
    let pad = |s: &[usize]| -> Vec<usize> { std::iter::repeat_n(1, rank - s.len()).chain(s.iter().copied()).collect() };
    let (pa, pb) = (pad(a), pad(b));
    let (sa, sb) = (crate::tensor::strides(&pa), crate::tensor::strides(&pb));
    let mut dims: Vec<(usize, usize, usize)> = Vec::new();
    for d in 0..rank {
        if out[d] == 1 {
            continue;
        }
        let da = if pa[d] == 1 { 0 } else { sa[d] };
        let db = if pb[d] == 1 { 0 } else { sb[d] };
        if let Some(last) = dims.last_mut() {
            // Merge when both operands step over the new dim contiguously.
            if last.1 == da * out[d] && last.2 == db * out[d] {
                *last = (last.0 * out[d], da, db);
                continue;
            }
        }
        dims.push((out[d], da, db));
    }
    if dims.is_empty() {
        dims.push((1, 0, 0));
    }
    Ok((out, dims))
}

/// NumPy multidirectional broadcast of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_match_onnx_rules() {
        // 28 -> 24 for a 5x5 valid conv, 24 -> 12 for 2x2/2 pooling.
        assert_eq!(window_out(28, 0, 0, 5, 1, 1, false), Some(24));
        assert_eq!(window_out(24, 0, 0, 2, 2, 1, false), Some(12));
        // ceil mode: 5 with k=2 s=2 gives 3, but never a window starting in the end pad.
        assert_eq!(window_out(5, 0, 0, 2, 2, 1, true), Some(3));
        assert_eq!(window_out(4, 0, 1, 2, 2, 1, true), Some(2));
        assert_eq!(window_out(2, 0, 0, 3, 1, 1, false), None);
        assert_eq!(window_out(7, 0, 0, 3, 1, 2, false), Some(3));
    }

    #[test]
    fn broadcast_rules() {
        assert_eq!(broadcast(&[1, 3, 4, 4], &[3, 1, 1]).unwrap(), vec![1, 3, 4, 4]);
        assert_eq!(broadcast(&[2, 1], &[1, 5]).unwrap(), vec![2, 5]);
        assert!(broadcast(&[2, 3], &[4]).is_err());
    }

    #[test]
    fn broadcast_dims_merge_contiguous_axes() {
        // [2,3,4] + [3,1]: b broadcasts over the last axis and the first.
        let (out, dims) = broadcast_dims(&[2, 3, 4], &[3, 1]).unwrap();
        assert_eq!(out, vec![2, 3, 4]);
        assert_eq!(dims, vec![(2, 12, 0), (3, 4, 1), (4, 1, 0)]);
        // Same shapes collapse to one flat dim.
        assert_eq!(broadcast_dims(&[2, 3], &[2, 3]).unwrap().1, vec![(6, 1, 1)]);
        assert_eq!(broadcast_dims(&[], &[]).unwrap().1, vec![(1, 0, 0)]);
    }

    #[test]
    fn resize_asymmetric_floor_is_repeat() {
        let r = Resize::upsample(&[1, 1, 2, 2], 2);
        let idx: Vec<usize> = (0..4).map(|o| r.source_index(2, o, 2)).collect();
        assert_eq!(idx, vec![0, 0, 1, 1]);
    }
}
