//! Which backend a browser peer computes with, chosen once at start-up.
//!
//! ## GPU SEAM
//! `tessera-gpu` (wgpu, `webgpu` feature in the browser) opens WebGPU with
//! `tessera_gpu::select_async(opts, threads).await`, which self-tests the
//! adapter against the CPU backend and returns `Selected::Gpu(GpuBackend)`
//! or `Selected::Cpu { reason }`. With this crate's `gpu` feature, [`choose`]
//! calls it on browsers that have `navigator.gpu`.
//!
//! What is still missing is on the peer's side, not the GPU's: in the
//! browser WebGPU can only run asynchronously (`GpuExecutable::run_async`;
//! the sync `Executable::run` is an error there), while
//! `tessera_mesh::Peer` runs a task synchronously inside `run_next()`
//! (`tessera_runtime::Runner::run`). Once the mesh offers an async task
//! path (e.g. `Peer::next_task() -> Option<PendingTask>` and
//! `Peer::complete(task, outputs)`, with the runner's slicing/merging split
//! from the kernel call), [`choose`] returns the GPU backend when the
//! probe succeeds, the peer page drives `run_async` in `work()`, and the
//! Hello carries `backend = "gpu ..."` and cap `webgpu`. Until then a GPU
//! that passes the probe is reported ("WebGPU ok, not used yet") and the
//! peer computes on the wasm SIMD CPU backend.

use serde::Serialize;
use tessera_kernels::{Backend, CpuBackend};

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

/// Picks the backend: the single-threaded wasm SIMD CPU backend, after
/// probing WebGPU when the browser has it and `prefer_gpu` is set (see the
/// module docs for when the GPU will be used).
pub async fn choose(prefer_gpu: bool, has_webgpu: bool) -> (Box<dyn Backend>, Choice) {
    let cpu = CpuBackend::new(1);
    let name = cpu.name();
    let (note, gpu_adapter) = if !has_webgpu {
        ("no WebGPU in this browser: CPU (wasm SIMD)".to_string(), None)
    } else if !prefer_gpu {
        ("WebGPU available but not requested (gpu=0): CPU (wasm SIMD)".to_string(), None)
    } else {
        probe_gpu().await
    };
    (Box::new(cpu), Choice { kind: "cpu", name, note, gpu_adapter })
}

/// Opens and self-tests the WebGPU backend (feature `gpu`).
#[cfg(feature = "gpu")]
async fn probe_gpu() -> (String, Option<String>) {
    use tessera_gpu::{GpuOptions, Selected, select_async};
    match select_async(GpuOptions::default(), 1).await {
        Selected::Gpu(g) => {
            let adapter = g.name();
            (format!("WebGPU ok ({adapter}, self-test passed) but not used yet: the peer's task path is synchronous; CPU (wasm SIMD)"), Some(adapter))
        }
        Selected::Cpu { reason, .. } => (format!("WebGPU unusable ({reason}): CPU (wasm SIMD)"), None),
    }
}

#[cfg(not(feature = "gpu"))]
async fn probe_gpu() -> (String, Option<String>) {
    ("WebGPU detected; this build has no GPU backend (tessera-web feature `gpu`): CPU (wasm SIMD)".to_string(), None)
}
