//! Tessera's GPU backend: WGSL compute kernels run through wgpu — Vulkan
//! (Metal on Apple targets) natively, WebGPU in the browser — behind the
//! same [`Backend`] / [`Executable`] traits as the CPU kernels.
//!
//! `compile` uploads weights once (cached per device, so tiles of one layer
//! share them), plans activation slots by lifetime over a device-wide
//! buffer pool, and records every dispatch's parameters and bind groups;
//! a run is then one queue submission for the whole graph, with one
//! read-back at the end. Pipelines are compiled once per device. Each conv
//! layer's GEMM tile shape is, on a hardware GPU, the fastest of the
//! candidates timed on that GPU ([`TileChoice`]), measured once per layer
//! shape: natively while compiling, in the browser (where compiling cannot
//! wait for the GPU) on the executable's first run, which then recompiles
//! itself with the measured tiles.
//!
//! Natively:
//! ```no_run
//! # #[cfg(not(target_arch = "wasm32"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tessera_kernels::Backend;
//! let gpu = tessera_gpu::GpuBackend::new(tessera_gpu::GpuOptions::default())?;
//! let g = tessera_graph::zoo::build("lenet")?;
//! let x = tessera_graph::Tensor::zeros(g.input_shape());
//! let y = gpu.compile(&g)?.run(&[x])?;
//! # Ok(())
//! # }
//! # #[cfg(target_arch = "wasm32")]
//! # fn main() {}
//! ```
//! or, with automatic fallback to the CPU backend (the reason is what a
//! peer reports to the coordinator): [`backend_or_cpu`].
//!
//! In the browser nothing may block, so the entry points are async and the
//! sync [`Executable::run`] returns an error there:
//! ```ignore
//! let gpu = tessera_gpu::GpuBackend::new_async(GpuOptions::default()).await?;
//! let mut exe = gpu.compile_async(&graph).await?;   // GpuExecutable
//! let outputs = exe.run_async(&inputs).await?;
//! ```
//! or [`select_async`], which returns a [`Selected`] backend (GPU, or CPU
//! with the reason), and [`GpuOrCpu::new`] over it: a `Backend` whose
//! executables fall back to the CPU when the GPU fails, with one
//! `Executable::run_async` for both targets.

#![warn(missing_docs)]
// wgpu's handles are Send + Sync natively (where the Arcs are shared across
// threads) and not in the browser (one thread): one code path for both.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

mod compile;
mod device;
mod exec;
mod fallback;
mod ops;
mod pipelines;
mod pool;
mod tune;
mod weights;

use std::sync::Arc;

use tessera_graph::Graph;
use tessera_kernels::{Backend, Executable, KernelError};

pub use device::GpuOptions;
pub use exec::GpuExecutable;
pub use tune::{GemmTile, TileChoice, TileMeasurement};
#[cfg(not(target_arch = "wasm32"))]
pub use fallback::backend_or_cpu;
pub use fallback::{select_async, GpuOrCpu, Selected};

use device::GpuContext;

/// The GPU backend: one opened device with its pipeline, weight and buffer
/// caches. Cheap to clone; clones share the device.
#[derive(Clone)]
pub struct GpuBackend {
    ctx: Arc<GpuContext>,
}

impl GpuBackend {
    /// Opens the GPU (async: the browser's only way).
    pub async fn new_async(opts: GpuOptions) -> Result<GpuBackend, KernelError> {
        Ok(GpuBackend { ctx: Arc::new(GpuContext::open(&opts).await?) })
    }

    /// Opens the GPU, blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(opts: GpuOptions) -> Result<GpuBackend, KernelError> {
        pollster::block_on(GpuBackend::new_async(opts))
    }

    /// The adapter's name ("NVIDIA H100 80GB HBM3", "llvmpipe (LLVM 15.0.6,
    /// 256 bits)", ...; browsers often hide it: then "WebGPU adapter").
    pub fn adapter_name(&self) -> String {
        match self.ctx.info.name.as_str() {
            "" if self.is_software() => "WebGPU fallback adapter".into(),
            "" => "WebGPU adapter".into(),
            n => n.into(),
        }
    }

    /// The graphics API in use ("Vulkan", "Metal", "BrowserWebGpu").
    pub fn api(&self) -> String {
        format!("{:?}", self.ctx.info.backend)
    }

    /// Whether the adapter is a software rasteriser (lavapipe, SwiftShader):
    /// correct but slow, so a planner should not count it as a GPU.
    pub fn is_software(&self) -> bool {
        self.ctx.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether weights are stored as f16 on this device.
    pub fn f16(&self) -> bool {
        self.ctx.f16
    }

    /// The largest storage buffer one binding may cover, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.ctx.max_binding()
    }

    /// How this device picks GEMM tiles.
    pub fn tile_choice(&self) -> TileChoice {
        self.ctx.tuner.choice
    }

    /// The GEMM tiles measured so far (with [`TileChoice::Measured`]), one
    /// entry per layer shape, in the order they were measured.
    pub fn tile_measurements(&self) -> Vec<TileMeasurement> {
        self.ctx.tuner.report()
    }

    /// Bytes held by the device's activation buffer pool.
    pub fn pool_bytes(&self) -> u64 {
        self.ctx.pool.bytes()
    }

    /// Compiles `graph`; errors raised by the device while doing so are
    /// checked natively at once, in the browser by [`Self::compile_async`].
    pub fn compile_gpu(&self, graph: &Graph) -> Result<GpuExecutable, KernelError> {
        let scopes = self.ctx.scopes();
        let exe = compile::compile(&self.ctx, graph);
        let popped = scopes.pop();
        #[cfg(not(target_arch = "wasm32"))]
        popped.check_now(&format!("compiling '{}'", graph.name))?;
        #[cfg(target_arch = "wasm32")]
        drop(popped);
        exe
    }

    /// Compiles `graph` and awaits the device's verdict on it.
    pub async fn compile_async(&self, graph: &Graph) -> Result<GpuExecutable, KernelError> {
        let scopes = self.ctx.scopes();
        let exe = compile::compile(&self.ctx, graph);
        device::bounded(&self.ctx, scopes.pop().check(&format!("compiling '{}'", graph.name))).await?;
        exe
    }

    /// Why the device can no longer be used (lost, hung, an uncaptured
    /// error), or `None` while it works.
    pub fn lost_reason(&self) -> Option<String> {
        self.ctx.check_alive().err().map(|e| match e {
            KernelError::Device { msg, .. } => msg,
            other => other.to_string(),
        })
    }

    /// Destroys the device, as a driver reset would: later runs fail with
    /// a device-lost error (for fallback tests).
    #[doc(hidden)]
    pub fn simulate_device_loss(&self) {
        self.ctx.device.destroy();
    }

    /// Compiles every kernel variant (a device check; pipelines are cached).
    pub async fn compile_all_kernels(&self) -> Result<usize, KernelError> {
        let scopes = self.ctx.scopes();
        let all = pipelines::Shader::all();
        for s in &all {
            self.ctx.pipelines.get(&self.ctx.device, *s, self.ctx.f16);
        }
        scopes.pop().check("compiling kernels").await?;
        Ok(all.len())
    }
}

impl std::fmt::Debug for GpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        format!("gpu {} ({}{})", self.adapter_name(), self.api(), if self.ctx.f16 { ", f16 weights" } else { "" })
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>, KernelError> {
        Ok(Box::new(self.compile_gpu(graph)?))
    }
}

/// Whether GPU tests must fail rather than skip when no adapter exists
/// (`TESSERA_REQUIRE_GPU=1`, natively read at run time; in the browser
/// fixed when the test was compiled).
pub fn gpu_required() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    let v = std::env::var("TESSERA_REQUIRE_GPU").ok();
    #[cfg(target_arch = "wasm32")]
    let v = option_env!("TESSERA_REQUIRE_GPU").map(str::to_string);
    v.is_some_and(|v| v == "1")
}
