//! Which backend a browser peer computes with, chosen once at start-up.
//!
//! With this crate's `gpu` feature (the pages' build turns it on), a
//! browser with `navigator.gpu` opens WebGPU through `tessera-gpu`, which
//! self-tests the adapter against the CPU backend
//! (`tessera_gpu::select_async`). A GPU that passes is wrapped in
//! `tessera_gpu::GpuOrCpu`: if it fails later (device lost, out of memory,
//! a layer over the binding limit) the task re-runs on the wasm SIMD CPU
//! backend and the peer reports the change to its coordinator (a `Backend`
//! message). WebGPU only completes asynchronously, so the peer page drives
//! such a backend through `Peer::next_task` / `Peer::complete`
//! ([`Choice::is_async`]).

use serde::Serialize;
use tessera_kernels::{Backend, CpuBackend};

/// Whether to use WebGPU (the peer page's `gpu=` parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuMode {
    /// Never (`gpu=0`).
    Off,
    /// When the adapter passes the self-test and is a hardware GPU (no
    /// parameter): a software adapter (SwiftShader) is slower than wasm SIMD.
    Auto,
    /// Whenever the adapter passes the self-test, software or not (`gpu=1`).
    Force,
}

impl GpuMode {
    /// Parses the page's parameter: "0", "1", "auto" or nothing.
    pub fn parse(s: &str) -> Result<GpuMode, String> {
        match s {
            "0" | "off" => Ok(GpuMode::Off),
            "" | "auto" => Ok(GpuMode::Auto),
            "1" | "force" => Ok(GpuMode::Force),
            other => Err(format!("gpu={other:?}: expected 0, 1 or auto")),
        }
    }
}

/// The choice, as the page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Choice {
    /// "webgpu" or "cpu".
    pub kind: &'static str,
    /// The backend's own name ("cpu simd128 x1", ...).
    pub name: String,
    /// Why this one.
    pub note: String,
    /// The WebGPU adapter that passed the GPU backend's self-test, if probed.
    pub gpu_adapter: Option<String>,
}

impl Choice {
    /// Whether tasks complete asynchronously (WebGPU).
    pub fn is_async(&self) -> bool {
        self.kind == "webgpu"
    }
}

/// The GPU a peer computes on, kept to break it on purpose (tests).
#[derive(Default)]
pub struct GpuSwitch(#[cfg(feature = "gpu")] Option<tessera_gpu::GpuBackend>);

impl GpuSwitch {
    /// Destroys the device (as a driver reset would); whether there was one.
    pub fn lose(&self) -> bool {
        #[cfg(feature = "gpu")]
        if let Some(g) = &self.0 {
            g.simulate_device_loss();
            return true;
        }
        false
    }
}

/// Picks the backend: WebGPU when `mode` allows and the adapter passes its
/// self-test, else the single-threaded wasm SIMD CPU backend.
pub async fn choose(mode: GpuMode, has_webgpu: bool) -> (Box<dyn Backend>, Choice, GpuSwitch) {
    if !has_webgpu {
        return cpu("no WebGPU in this browser: CPU (wasm SIMD)".into(), None);
    }
    if mode == GpuMode::Off {
        return cpu("WebGPU available but turned off (gpu=0): CPU (wasm SIMD)".into(), None);
    }
    open_gpu(mode).await
}

fn cpu(note: String, gpu_adapter: Option<String>) -> (Box<dyn Backend>, Choice, GpuSwitch) {
    let cpu = CpuBackend::new(1);
    let name = cpu.name();
    (Box::new(cpu), Choice { kind: "cpu", name, note, gpu_adapter }, GpuSwitch::default())
}

/// Opens and self-tests the WebGPU backend (feature `gpu`).
#[cfg(feature = "gpu")]
async fn open_gpu(mode: GpuMode) -> (Box<dyn Backend>, Choice, GpuSwitch) {
    use tessera_gpu::{GpuOptions, GpuOrCpu, Selected, select_async};
    // A task the GPU has not finished in this time counts as a hung GPU:
    // the task runs again on wasm SIMD and the coordinator is told (its
    // own task timeout, 60 s, would otherwise drop the whole peer).
    let opts = GpuOptions { timeout_ms: 20_000, ..GpuOptions::default() };
    match select_async(opts, 1).await {
        Selected::Gpu(g) if g.is_software() && mode != GpuMode::Force => {
            let adapter = g.adapter_name();
            cpu(format!("WebGPU adapter {adapter} is a software renderer, slower than wasm SIMD (gpu=1 uses it anyway): CPU (wasm SIMD)"), Some(adapter))
        }
        Selected::Gpu(g) => {
            let adapter = g.adapter_name();
            let switch = GpuSwitch(Some(g.clone()));
            let be = GpuOrCpu::new(Selected::Gpu(g), 1);
            let name = be.name();
            let note = format!("WebGPU ({adapter}), self-test passed; falls back to the CPU if the GPU fails");
            (Box::new(be), Choice { kind: "webgpu", name, note, gpu_adapter: Some(adapter) }, switch)
        }
        Selected::Cpu { reason, .. } => cpu(format!("WebGPU unusable ({reason}): CPU (wasm SIMD)"), None),
    }
}

#[cfg(not(feature = "gpu"))]
async fn open_gpu(_mode: GpuMode) -> (Box<dyn Backend>, Choice, GpuSwitch) {
    cpu("WebGPU detected; this build has no GPU backend (tessera-web feature `gpu`): CPU (wasm SIMD)".into(), None)
}
