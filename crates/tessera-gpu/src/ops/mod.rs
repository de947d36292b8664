//! Op planners: each turns one graph node (with static shapes) into the
//! dispatches that compute it — kernel variant, parameter block, buffers
//! read, workgroup grid — and uploads what it needs once (weights, tables).
//! Planners return `Err(message)` for configurations the GPU cannot run;
//! compile turns that into `KernelError::Unsupported` so callers fall back.

pub(crate) mod conv;
pub(crate) mod dense;
pub(crate) mod elementwise;
pub(crate) mod layout;
pub(crate) mod norm;
pub(crate) mod pooling;
pub(crate) mod winograd;

use std::sync::Arc;

use tessera_graph::{Activation, Tensor};

use crate::device::GpuContext;
use crate::pipelines::Shader;
use crate::weights::{upload_f32, upload_i32, Elem};

/// Workgroups per grid axis that every WebGPU device accepts.
const MAX_GROUPS: u64 = 65535;

/// A 64-word parameter block (floats and signed values stored as bits).
#[derive(Clone, Debug)]
pub(crate) struct Params(pub [u32; 64]);

impl Params {
    /// All zeros.
    pub fn new() -> Params {
        Params([0; 64])
    }

    /// Sets word `i` to an unsigned value (checked to fit).
    pub fn u(&mut self, i: usize, v: usize) -> Result<&mut Params, String> {
        self.0[i] = u32::try_from(v).map_err(|_| format!("{v} does not fit the GPU's 32-bit indices"))?;
        Ok(self)
    }

    /// Sets word `i` to a signed value.
    pub fn i(&mut self, i: usize, v: i64) -> Result<&mut Params, String> {
        self.0[i] = i32::try_from(v).map_err(|_| format!("{v} does not fit the GPU's 32-bit indices"))? as u32;
        Ok(self)
    }

    /// Sets word `i` to a float.
    pub fn f(&mut self, i: usize, v: f32) -> &mut Params {
        self.0[i] = v.to_bits();
        self
    }

    /// Sets words `i..i+3` to an activation (code, a, b).
    pub fn act(&mut self, i: usize, a: Activation) -> &mut Params {
        let (code, x, y) = act_code(a);
        self.0[i] = code;
        self.f(i + 1, x).f(i + 2, y)
    }

    /// Little-endian bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

/// An activation as the shaders number it (prelude.wgsl `act`).
pub(crate) fn act_code(a: Activation) -> (u32, f32, f32) {
    match a {
        Activation::Identity => (0, 0.0, 0.0),
        Activation::Relu => (1, 0.0, 0.0),
        Activation::LeakyRelu { alpha } => (2, alpha, 0.0),
        Activation::Sigmoid => (3, 0.0, 0.0),
        Activation::Tanh => (4, 0.0, 0.0),
        Activation::Clip { min, max } => (5, min, max),
        Activation::HardSigmoid { alpha, beta } => (6, alpha, beta),
        Activation::HardSwish => (7, 0.0, 0.0),
    }
}

/// A buffer a dispatch reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Src {
    /// The step's k-th input value.
    Input(usize),
    /// The k-th constant buffer of the executable (weights, tables).
    Const(usize),
    /// A 16-byte zero buffer, for bindings a variant does not use.
    Dummy,
    /// The step's k-th scratch buffer (split-K partial sums, Winograd
    /// transforms), written by an earlier dispatch of the same step.
    Scratch(usize),
}

/// The buffer a dispatch writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dst {
    /// The step's output value.
    Output,
    /// The step's k-th scratch buffer, of at least `bytes`: a pool slot
    /// held only while the step runs.
    Scratch { k: usize, bytes: u64 },
}

/// One compute dispatch of a step.
#[derive(Clone, Debug)]
pub(crate) struct Dispatch {
    /// What it writes (binding `reads + 1`).
    pub out: Dst,
    /// The GEMM kernel's tile, for reports.
    pub tile: Option<crate::tune::GemmTile>,
    pub shader: Shader,
    pub params: Params,
    /// Bindings `1..=reads`, in order.
    pub reads: Vec<Src>,
    pub groups: [u32; 3],
}

impl Dispatch {
    /// A short label for reports: the kernel, and for the GEMM its mode
    /// and tile ("gemm im2col 8x4k2", "gemm matrix 4x8w").
    pub fn label(&self) -> String {
        match (self.shader, self.tile) {
            (Shader::ConvGemm { b, .. }, Some(t)) => format!("gemm {} {t}", format!("{b:?}").to_lowercase()),
            (shader, _) => shader.label(),
        }
    }
}

/// A 1-D grid of `n` workgroups, folded into 2-D past the per-axis limit.
pub(crate) fn grid(n: usize) -> Result<[u32; 3], String> {
    let n = n as u64;
    if n == 0 {
        return Ok([0, 1, 1]);
    }
    let x = n.min(MAX_GROUPS);
    let y = n.div_ceil(x);
    if y > MAX_GROUPS {
        return Err(format!("{n} workgroups exceed the grid limit"));
    }
    Ok([x as u32, y as u32, 1])
}

/// Workgroups of `wg` invocations covering `elems` elements.
pub(crate) fn grid_for(elems: usize, wg: usize) -> Result<[u32; 3], String> {
    grid(elems.div_ceil(wg))
}

/// The bytes of each scratch buffer a step's dispatches write (empty: none).
pub(crate) fn scratch_sizes(dispatches: &[Dispatch]) -> Vec<u64> {
    let mut sizes = Vec::new();
    for d in dispatches {
        if let Dst::Scratch { k, bytes } = d.out {
            if sizes.len() <= k {
                sizes.resize(k + 1, 0);
            }
            sizes[k] = sizes[k].max(bytes);
        }
    }
    sizes
}

/// The compile context handed to op planners: the device and the constant
/// buffers of the executable being built.
pub(crate) struct Cx<'a> {
    pub ctx: &'a GpuContext,
    /// Constant buffers (weights, biases, tables, graph constants).
    pub consts: Vec<Arc<wgpu::Buffer>>,
    /// Layers whose tiles are to be measured before the first run (browser).
    pub pending: Vec<crate::tune::Pending>,
}

impl<'a> Cx<'a> {
    /// An empty context on `ctx`.
    pub fn new(ctx: &'a GpuContext) -> Cx<'a> {
        Cx { ctx, consts: Vec::new(), pending: Vec::new() }
    }

    /// Element type of weights on this device.
    pub fn weight_elem(&self) -> Elem {
        if self.ctx.f16 { Elem::F16 } else { Elem::F32 }
    }

    /// Bytes per weight element.
    pub fn weight_bytes(&self) -> usize {
        if self.ctx.f16 { 2 } else { 4 }
    }

    fn check(&self, what: &str, bytes: usize) -> Result<(), String> {
        let max = self.ctx.max_binding();
        if bytes as u64 > max {
            return Err(format!("{what} need a {:.1} MiB buffer, over the device's {:.1} MiB storage binding limit", bytes as f64 / 1048576.0, max as f64 / 1048576.0));
        }
        Ok(())
    }

    fn push(&mut self, b: Arc<wgpu::Buffer>) -> Src {
        self.consts.push(b);
        Src::Const(self.consts.len() - 1)
    }

    /// Weights derived from `source` and laid out by `make` (cached per
    /// device by source tensor and `layout`), stored as f32 or f16.
    pub fn weights(&mut self, source: &Arc<Tensor>, layout: &str, len: usize, make: impl FnOnce() -> Vec<f32>) -> Result<Src, String> {
        self.check("weights", len * self.weight_bytes())?;
        let elem = self.weight_elem();
        let key = format!("{layout}/{elem:?}");
        let device = &self.ctx.device;
        let b = self.ctx.weights.get_or_upload(source, &key, || upload_f32(device, "tessera weights", &make(), elem));
        Ok(self.push(b))
    }

    /// f32 constants derived from `source` (biases, BN affine), cached.
    pub fn f32_from(&mut self, source: &Arc<Tensor>, layout: &str, make: impl FnOnce() -> Vec<f32>) -> Result<Src, String> {
        let device = &self.ctx.device;
        let b = self.ctx.weights.get_or_upload(source, layout, || upload_f32(device, "tessera constants", &make(), Elem::F32));
        self.check("constants", b.size() as usize)?;
        Ok(self.push(b))
    }

    /// f32 constants not tied to a graph tensor.
    pub fn f32s(&mut self, values: &[f32]) -> Result<Src, String> {
        self.check("constants", values.len() * 4)?;
        let b = Arc::new(upload_f32(&self.ctx.device, "tessera constants", values, Elem::F32));
        Ok(self.push(b))
    }

    /// An i32 index table.
    pub fn table(&mut self, values: &[i32]) -> Result<Src, String> {
        self.check("index tables", values.len() * 4)?;
        let b = Arc::new(upload_i32(&self.ctx.device, "tessera table", values));
        Ok(self.push(b))
    }

    /// The bias of a conv / dense layer as `len` f32 (zeros when absent).
    pub fn bias(&mut self, bias: Option<&Arc<Tensor>>, len: usize) -> Result<Src, String> {
        match bias {
            Some(b) => self.f32_from(b, "bias", || b.data().to_vec()),
            None => self.f32s(&vec![0.0; len]),
        }
    }
}

/// Elements of a shape, checked to fit 32-bit GPU indexing.
pub(crate) fn elems(shape: &[usize]) -> Result<usize, String> {
    let n: usize = shape.iter().product();
    if n > i32::MAX as usize / 4 {
        return Err(format!("tensor {shape:?} is too large for 32-bit GPU indexing"));
    }
    Ok(n)
}
