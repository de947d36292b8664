//! WGSL sources, bind group layouts and compute pipelines, built once per
//! device and variant and cached.
//!
//! Every kernel has the same binding scheme: binding 0 is the dispatch's
//! 256-byte parameter block (uniform), bindings `1..=reads` are read-only
//! storage buffers, and binding `reads + 1` is the output (read-write
//! storage). A variant is a kernel plus template constants (tile sizes,
//! B-operand mode) and the weight element type; its source is the shared
//! prelude, the constants and the kernel text.

use std::collections::HashMap;
use std::sync::Mutex;

/// How the conv GEMM sees its B operand (the input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum GemmB {
    /// Implicit im2col: any kernel, stride, dilation, padding.
    Im2col,
    /// 1×1, stride 1, no padding, planes a multiple of 4 pixels: vec4 loads.
    Pointwise,
    /// Dense layer over many rows: `B[k, n] = X[n, k]`.
    Rows,
    /// A row-major matrix per group (Winograd's transformed tiles).
    Matrix,
}

/// The kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    /// Tiled implicit GEMM convolution / dense; `tm` rows and `tn`
    /// columns per invocation (`crate::tune::GemmTile`); `split`: one K
    /// slice per workgroup, partial products to scratch.
    ConvGemm { b: GemmB, tm: u32, tn: u32, split: bool },
    /// Second pass of a split-K GEMM: sums the K slices' partial
    /// products, adds bias and residual, applies the activation.
    SplitReduce,
    /// Winograd F(m×m, 3×3) input transform (`ops::winograd`), m = 2 or 4.
    WinogradInput { m: u32 },
    /// Winograd F(m×m, 3×3) output transform, bias, residual, activation.
    WinogradOutput { m: u32 },
    /// One invocation per output: depthwise and few channels per group.
    ConvDirect,
    /// Dense over a few rows, one workgroup per output feature.
    Gemv,
    /// Max / average pooling.
    Pool,
    /// Global max / average pooling.
    GlobalPool,
    /// Activation or per-channel affine.
    Unary,
    /// Broadcast binary op.
    Binary,
    /// Table-driven gather (slice, pad, transpose, resize, shuffles).
    Gather,
    /// Strided copy into a region of the output (concat, copy).
    Concat,
    /// Softmax; `rows` when the axis is innermost.
    Softmax { rows: bool },
    /// Local response normalisation.
    Lrn,
}

const PRELUDE: &str = include_str!("shaders/prelude.wgsl");

impl Shader {
    /// Read-only storage bindings (after the parameter block).
    pub fn reads(self) -> u32 {
        match self {
            Shader::ConvGemm { .. } => 5,
            Shader::ConvDirect => 4,
            Shader::Gemv | Shader::SplitReduce | Shader::WinogradOutput { .. } => 3,
            Shader::Unary | Shader::Binary | Shader::Gather => 2,
            Shader::Pool | Shader::GlobalPool | Shader::Concat | Shader::Softmax { .. } | Shader::Lrn | Shader::WinogradInput { .. } => 1,
        }
    }

    /// A short label for reports: "gemm im2col 8x4 split", "direct", ...
    /// (`ops::Dispatch::label` prints the GEMM's whole tile instead).
    pub fn label(self) -> String {
        match self {
            Shader::ConvGemm { b, tm, tn, split } => format!("gemm {} {tm}x{tn}{}", format!("{b:?}").to_lowercase(), if split { " split" } else { "" }),
            Shader::ConvDirect => "direct".into(),
            Shader::SplitReduce => "splitk".into(),
            Shader::WinogradInput { m: 2 } => "winograd-in".into(),
            Shader::WinogradOutput { m: 2 } => "winograd-out".into(),
            Shader::WinogradInput { m } => format!("winograd{m}-in"),
            Shader::WinogradOutput { m } => format!("winograd{m}-out"),
            Shader::Softmax { .. } => "softmax".into(),
            other => format!("{other:?}").to_lowercase(),
        }
    }

    /// Whether the kernel reads weights (so the f16 variant differs).
    fn has_weights(self) -> bool {
        matches!(self, Shader::ConvGemm { .. } | Shader::ConvDirect | Shader::Gemv)
    }

    /// A short name for labels and cache keys.
    fn key(self, f16: bool) -> String {
        let wt = if f16 && self.has_weights() { "/f16" } else { "" };
        format!("{self:?}{wt}")
    }

    /// The full WGSL text of this variant.
    pub fn source(self, f16: bool) -> String {
        let f16 = f16 && self.has_weights();
        let mut s = String::new();
        if f16 {
            s.push_str("enable f16;\nalias WT = f16;\n");
        } else {
            s.push_str("alias WT = f32;\n");
        }
        match self {
            Shader::ConvGemm { b, tm, tn, split } => {
                s.push_str(&format!("const TM: u32 = {tm}u;\nconst TN: u32 = {tn}u;\nconst SPLIT: bool = {split};\n"));
                s.push_str(PRELUDE);
                s.push_str(match b {
                    GemmB::Im2col => include_str!("shaders/gemm_b_im2col.wgsl"),
                    GemmB::Pointwise => include_str!("shaders/gemm_b_pointwise.wgsl"),
                    GemmB::Rows => include_str!("shaders/gemm_b_rows.wgsl"),
                    GemmB::Matrix => include_str!("shaders/gemm_b_matrix.wgsl"),
                });
                s.push_str(include_str!("shaders/conv_gemm.wgsl"));
            }
            Shader::WinogradInput { m } | Shader::WinogradOutput { m } => {
                s.push_str(&format!("const M: u32 = {m}u;\n"));
                s.push_str(PRELUDE);
                s.push_str(match self {
                    Shader::WinogradInput { .. } => include_str!("shaders/winograd_input.wgsl"),
                    _ => include_str!("shaders/winograd_output.wgsl"),
                });
            }
            Shader::Softmax { rows } => {
                s.push_str(&format!("const ROWS: u32 = {}u;\n", rows as u32));
                s.push_str(PRELUDE);
                s.push_str(include_str!("shaders/softmax.wgsl"));
            }
            other => {
                s.push_str(PRELUDE);
                s.push_str(match other {
                    Shader::ConvDirect => include_str!("shaders/conv_direct.wgsl"),
                    Shader::SplitReduce => include_str!("shaders/splitk_reduce.wgsl"),
                    Shader::Gemv => include_str!("shaders/gemv.wgsl"),
                    Shader::Pool => include_str!("shaders/pool.wgsl"),
                    Shader::GlobalPool => include_str!("shaders/global_pool.wgsl"),
                    Shader::Unary => include_str!("shaders/unary.wgsl"),
                    Shader::Binary => include_str!("shaders/binary.wgsl"),
                    Shader::Gather => include_str!("shaders/gather.wgsl"),
                    Shader::Concat => include_str!("shaders/concat.wgsl"),
                    Shader::Lrn => include_str!("shaders/lrn.wgsl"),
                    Shader::ConvGemm { .. } | Shader::Softmax { .. } | Shader::WinogradInput { .. } | Shader::WinogradOutput { .. } => unreachable!(),
                });
            }
        }
        s
    }

    /// Every variant the backend may use (for compile-all tests).
    pub fn all() -> Vec<Shader> {
        let mut v = Vec::new();
        for b in [GemmB::Im2col, GemmB::Pointwise, GemmB::Rows, GemmB::Matrix] {
            for t in crate::tune::GemmTile::ALL {
                for split in [false, true] {
                    // Rows never split; Matrix (Winograd) always writes raw products.
                    if (b != GemmB::Rows || !split) && (b != GemmB::Matrix || split) {
                        v.push(Shader::ConvGemm { b, tm: t.tm, tn: t.tn, split });
                    }
                }
            }
        }
        v.extend([
            Shader::ConvDirect,
            Shader::SplitReduce,
            Shader::WinogradInput { m: 2 },
            Shader::WinogradOutput { m: 2 },
            Shader::WinogradInput { m: 4 },
            Shader::WinogradOutput { m: 4 },
            Shader::Gemv,
            Shader::Pool,
            Shader::GlobalPool,
            Shader::Unary,
            Shader::Binary,
            Shader::Gather,
            Shader::Concat,
            Shader::Softmax { rows: true },
            Shader::Softmax { rows: false },
            Shader::Lrn,
        ]);
        v
    }
}

/// The per-device cache of layouts and pipelines.
#[derive(Default)]
pub(crate) struct Pipelines {
    layouts: Mutex<HashMap<u32, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>>,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
}

impl Pipelines {
    /// The bind group layout for kernels with `reads` read-only inputs.
    pub fn layout(&self, device: &wgpu::Device, reads: u32) -> wgpu::BindGroupLayout {
        self.layouts_for(device, reads).0
    }

    fn layouts_for(&self, device: &wgpu::Device, reads: u32) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        let mut map = self.layouts.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(reads)
            .or_insert_with(|| {
                let buffer = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
                    count: None,
                };
                let mut entries = vec![buffer(0, wgpu::BufferBindingType::Uniform)];
                for i in 1..=reads {
                    entries.push(buffer(i, wgpu::BufferBindingType::Storage { read_only: true }));
                }
                entries.push(buffer(reads + 1, wgpu::BufferBindingType::Storage { read_only: false }));
                let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some("tessera"), entries: &entries });
                let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some("tessera"), bind_group_layouts: &[Some(&bgl)], immediate_size: 0 });
                (bgl, pl)
            })
            .clone()
    }

    /// The pipeline of a variant, compiled on first use.
    pub fn get(&self, device: &wgpu::Device, shader: Shader, f16: bool) -> wgpu::ComputePipeline {
        let key = shader.key(f16);
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return p.clone();
        }
        let (_, layout) = self.layouts_for(device, shader.reads());
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(&key), source: wgpu::ShaderSource::Wgsl(shader.source(f16).into()) });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&key),
            layout: Some(&layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).insert(key, pipeline.clone());
        pipeline
    }
}
