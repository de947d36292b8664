//! The device edge: adapter and device initialisation, error capture (error
//! scopes, lost device, uncaptured errors) and the map-read of results.
//! Everything that differs between native wgpu (Vulkan / Metal) and the
//! browser's WebGPU lives here: natively the caller may block on the device
//! (`pollster`, `Device::poll` with a timeout); in the browser every wait is
//! a future resolved by the page's event loop.

use std::sync::{Arc, Mutex};

use tessera_kernels::KernelError;

use crate::pipelines::Pipelines;
use crate::pool::BufferPool;
use crate::tune::{TileChoice, Tuner};
use crate::weights::WeightCache;

/// How to open the GPU.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Store weights as f16 (arithmetic stays f32) where the adapter has
    /// `shader-f16`; ignored otherwise. Off by default: it halves weight
    /// traffic at the cost of ~1e-3 relative error per layer.
    pub f16: bool,
    /// Ask for the adapter's fallback (software) implementation only.
    pub force_fallback_adapter: bool,
    /// How long one run may wait for the GPU before it is reported as hung
    /// (and the device treated as lost), in milliseconds.
    pub timeout_ms: u64,
    /// Use the first adapter whose name contains this (case-insensitive),
    /// instead of the preferred one; none matching is a "no adapter" error.
    pub adapter_name: Option<String>,
    /// Plan as if no storage binding could exceed this many bytes (below
    /// the device's own limit; to exercise the splitting of large weights).
    pub binding_limit: Option<u64>,
    /// How each layer's GEMM tile is chosen: by default measured on a
    /// hardware GPU (each candidate timed, cached per layer shape; natively
    /// at compile time, in the browser on an executable's first run), a
    /// heuristic on software adapters.
    pub tiles: TileChoice,
}

impl Default for GpuOptions {
    fn default() -> GpuOptions {
        GpuOptions { f16: false, force_fallback_adapter: false, timeout_ms: 300_000, adapter_name: None, binding_limit: None, tiles: TileChoice::Auto }
    }
}

impl GpuOptions {
    /// Defaults, with `f16` turned on when the environment variable
    /// `TESSERA_GPU_F16` is `1` (natively; the browser has no environment).
    pub fn from_env() -> GpuOptions {
        #[cfg(not(target_arch = "wasm32"))]
        let f16 = std::env::var("TESSERA_GPU_F16").is_ok_and(|v| v == "1");
        #[cfg(target_arch = "wasm32")]
        let f16 = false;
        GpuOptions { f16, ..GpuOptions::default() }
    }
}

/// A `KernelError::Device` from the GPU backend.
pub(crate) fn device_error(msg: impl Into<String>) -> KernelError {
    KernelError::Device { backend: "gpu".into(), msg: msg.into() }
}

/// One opened GPU and everything cached on it: pipelines, the activation
/// buffer pool and uploaded weights. Shared (`Arc`) by the backend and every
/// executable compiled on it.
pub(crate) struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Weights are stored as f16.
    pub f16: bool,
    /// `GpuOptions::binding_limit`.
    pub binding_cap: Option<u64>,
    /// The device records timestamps (profiled runs time each layer on the GPU).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub timestamps: bool,
    pub pipelines: Pipelines,
    pub pool: BufferPool,
    pub weights: WeightCache,
    /// Each layer's GEMM tile: the rule and the measurements.
    pub tuner: Tuner,
    /// Set by the device-lost callback (or a timed-out wait).
    pub lost: Arc<Mutex<Option<String>>>,
    /// The first error no error scope caught.
    pub uncaptured: Arc<Mutex<Option<String>>>,
    /// Held from writing a run's inputs to submitting its commands, so runs
    /// of executables sharing pool buffers never interleave on the queue.
    pub submit_lock: Mutex<()>,
    /// How long a run may wait for the GPU before the device counts as hung.
    pub timeout: std::time::Duration,
}

impl GpuContext {
    /// Opens the first suitable adapter (the environment may choose:
    /// `WGPU_BACKEND`, `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF`).
    pub async fn open(opts: &GpuOptions) -> Result<GpuContext, KernelError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let power_preference = wgpu::PowerPreference::from_env().unwrap_or(wgpu::PowerPreference::HighPerformance);
        let adapter = match &opts.adapter_name {
            None => instance
                .request_adapter(&wgpu::RequestAdapterOptions { power_preference, force_fallback_adapter: opts.force_fallback_adapter, ..Default::default() })
                .await
                .map_err(|e| device_error(format!("no GPU adapter: {e}")))?,
            Some(want) => {
                let all = instance.enumerate_adapters(wgpu::Backends::all()).await;
                let names: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
                all.into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&want.to_lowercase()))
                    .ok_or_else(|| device_error(format!("no GPU adapter matching '{want}' (found: {})", if names.is_empty() { "none".to_string() } else { names.join(", ") })))?
            }
        };
        let info = adapter.get_info();
        let available = adapter.features();
        let mut features = wgpu::Features::empty();
        let f16 = opts.f16 && available.contains(wgpu::Features::SHADER_F16);
        if f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        // Per-layer device time in profiled runs.
        let timestamps = available.contains(wgpu::Features::TIMESTAMP_QUERY);
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        // Everything the adapter allows: the defaults cap storage bindings at 128 MiB.
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("tessera"),
                required_features: features,
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| device_error(format!("cannot open {} ({:?}): {e}", info.name, info.backend)))?;
        let software = info.device_type == wgpu::DeviceType::Cpu;
        let tuner = Tuner::new(opts.tiles, software).map_err(device_error)?;
        let lost = Arc::new(Mutex::new(None));
        let uncaptured = Arc::new(Mutex::new(None));
        {
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, msg| {
                if let Ok(mut l) = lost.lock() {
                    l.get_or_insert_with(|| format!("device lost ({reason:?}): {msg}"));
                }
            });
            let uncaptured = uncaptured.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut u) = uncaptured.lock() {
                    u.get_or_insert_with(|| e.to_string());
                }
            }));
        }
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            f16,
            binding_cap: opts.binding_limit,
            timestamps,
            pipelines: Pipelines::default(),
            pool: BufferPool::default(),
            weights: WeightCache::default(),
            tuner,
            lost,
            uncaptured,
            submit_lock: Mutex::new(()),
            timeout: std::time::Duration::from_millis(opts.timeout_ms.max(1)),
        })
    }

    /// Fails if the device was lost or an error escaped every scope.
    pub fn check_alive(&self) -> Result<(), KernelError> {
        if let Some(m) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(device_error(m));
        }
        if let Some(m) = self.uncaptured.lock().ok().and_then(|u| u.clone()) {
            return Err(device_error(format!("GPU error: {m}")));
        }
        Ok(())
    }

    /// Marks the device unusable (a hung or failed wait).
    pub fn mark_lost(&self, msg: &str) {
        if let Ok(mut l) = self.lost.lock() {
            l.get_or_insert_with(|| msg.to_string());
        }
    }

    /// The largest buffer one binding may cover, in bytes.
    pub fn max_binding(&self) -> u64 {
        let device = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        self.binding_cap.map_or(device, |c| c.min(device))
    }

    /// Opens error scopes for out-of-memory, validation and internal errors.
    pub fn scopes(&self) -> Scopes {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        Scopes { oom, internal, validation }
    }
}

/// Error scopes opened around a compile or a submission.
pub(crate) struct Scopes {
    oom: wgpu::ErrorScopeGuard,
    internal: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
}

/// A popped scope's pending verdict.
type ScopeFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Option<wgpu::Error>>>>;

/// Errors captured by [`Scopes`], to be awaited.
pub(crate) struct PoppedScopes {
    futures: Vec<(&'static str, ScopeFuture)>,
}

impl Scopes {
    /// Closes the scopes (innermost first); the result is awaited later.
    pub fn pop(self) -> PoppedScopes {
        let v = self.validation.pop();
        let i = self.internal.pop();
        let o = self.oom.pop();
        PoppedScopes { futures: vec![("GPU validation error (a limit or a bug)", Box::pin(v)), ("GPU internal error", Box::pin(i)), ("out of GPU memory", Box::pin(o))] }
    }
}

impl PoppedScopes {
    /// The first captured error, as a `KernelError`.
    pub async fn check(self, what: &str) -> Result<(), KernelError> {
        for (kind, f) in self.futures {
            if let Some(e) = f.await {
                return Err(device_error(format!("{what}: {kind}: {e}")));
            }
        }
        Ok(())
    }

    /// Natively error scopes resolve at once: check without an executor loop.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn check_now(self, what: &str) -> Result<(), KernelError> {
        pollster::block_on(self.check(what))
    }
}

/// Reads `bytes` bytes of a `MAP_READ` buffer as f32, blocking until the
/// submission that filled it is done (bounded by the context's timeout).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_back_blocking(ctx: &GpuContext, staging: &wgpu::Buffer, bytes: u64, submission: wgpu::SubmissionIndex) -> Result<Vec<f32>, KernelError> {
    Ok(read_bytes_blocking(ctx, staging, bytes, submission)?.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Reads `bytes` bytes of a `MAP_READ` buffer, blocking as above.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_bytes_blocking(ctx: &GpuContext, staging: &wgpu::Buffer, bytes: u64, submission: wgpu::SubmissionIndex) -> Result<Vec<u8>, KernelError> {
    if bytes == 0 {
        return Ok(Vec::new());
    }
    let result: Arc<Mutex<Option<Result<(), wgpu::BufferAsyncError>>>> = Arc::new(Mutex::new(None));
    let r2 = result.clone();
    staging.slice(..bytes).map_async(wgpu::MapMode::Read, move |r| {
        if let Ok(mut s) = r2.lock() {
            *s = Some(r);
        }
    });
    wait(ctx, Some(submission))?;
    if result.lock().map(|r| r.is_none()).unwrap_or(true) {
        // The mapping resolves on the poll after its submission completes.
        wait(ctx, None)?;
    }
    let mapped = result.lock().ok().and_then(|mut r| r.take());
    match mapped {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(device_error(format!("cannot read results back: {e}"))),
        None => return Err(device_error("the GPU never signalled the read-back")),
    }
    Ok(copy_bytes(staging, bytes))
}

/// Blocks until `submission` (or all work) is done, within the timeout.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn wait(ctx: &GpuContext, submission: Option<wgpu::SubmissionIndex>) -> Result<(), KernelError> {
    match ctx.device.poll(wgpu::PollType::Wait { submission_index: submission, timeout: Some(ctx.timeout) }) {
        Ok(_) => Ok(()),
        Err(wgpu::PollError::Timeout) => {
            let msg = format!("GPU work did not finish within {} ms (treating the device as hung)", ctx.timeout.as_millis());
            ctx.mark_lost(&msg);
            Err(device_error(msg))
        }
        Err(e) => {
            let msg = format!("waiting for the GPU failed: {e}");
            ctx.mark_lost(&msg);
            Err(device_error(msg))
        }
    }
}

/// Reads `bytes` bytes of a `MAP_READ` buffer as f32 once the browser
/// (or, natively, a blocking poll) has mapped it.
pub(crate) async fn read_back_async(ctx: &GpuContext, staging: &wgpu::Buffer, bytes: u64, submission: wgpu::SubmissionIndex) -> Result<Vec<f32>, KernelError> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        read_back_blocking(ctx, staging, bytes, submission)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (ctx, submission);
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        staging.slice(..bytes).map_async(wgpu::MapMode::Read, move |r| tx.send(r));
        match rx.await {
            Ok(()) => Ok(copy_out(staging, bytes)),
            Err(e) => Err(device_error(format!("cannot read results back: {e}"))),
        }
    }
}

/// Awaits `work` (GPU work: error scopes, a read-back) for at most the
/// context's timeout: a GPU that never answers (a hung driver, a tab
/// throttled to death) fails like a lost device instead of stalling the
/// caller forever. Natively every wait is already bounded (`wait`).
pub(crate) async fn bounded<T>(ctx: &GpuContext, work: impl std::future::Future<Output = Result<T, KernelError>>) -> Result<T, KernelError> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = ctx;
        work.await
    }
    #[cfg(target_arch = "wasm32")]
    {
        use std::future::Future;
        use std::task::Poll;
        let (tx, mut expired) = oneshot::channel::<()>();
        let _timer = timer::Timeout::start(ctx.timeout, move || tx.send(()));
        let mut work = std::pin::pin!(work);
        let done = std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            if std::pin::Pin::new(&mut expired).poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        done.unwrap_or_else(|| {
            let msg = format!("GPU work did not finish within {} ms (treating the device as hung)", ctx.timeout.as_millis());
            ctx.mark_lost(&msg);
            Err(device_error(msg))
        })
    }
}

/// A one-shot browser timer (`setTimeout`, in windows and workers alike),
/// cleared when dropped.
#[cfg(target_arch = "wasm32")]
mod timer {
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;

    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_name = setTimeout)]
        fn set_timeout(f: &js_sys::Function, ms: f64) -> JsValue;
        #[wasm_bindgen(js_name = clearTimeout)]
        fn clear_timeout(handle: &JsValue);
    }

    /// Calls its closure once after the delay unless dropped first.
    pub struct Timeout {
        handle: JsValue,
        _f: Closure<dyn FnMut()>,
    }

    impl Timeout {
        pub fn start(after: std::time::Duration, f: impl FnOnce() + 'static) -> Timeout {
            let mut f = Some(f);
            let f = Closure::<dyn FnMut()>::new(move || {
                if let Some(f) = f.take() {
                    f();
                }
            });
            // setTimeout takes a signed 32-bit delay (longer ones fire at once).
            let ms = after.as_millis().min(i32::MAX as u128) as f64;
            let handle = set_timeout(f.as_ref().unchecked_ref(), ms);
            Timeout { handle, _f: f }
        }
    }

    impl Drop for Timeout {
        fn drop(&mut self) {
            clear_timeout(&self.handle);
        }
    }
}

/// Copies a mapped range out as f32 and unmaps the buffer.
#[cfg(target_arch = "wasm32")]
fn copy_out(staging: &wgpu::Buffer, bytes: u64) -> Vec<f32> {
    copy_bytes(staging, bytes).chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Copies a mapped range out and unmaps the buffer.
fn copy_bytes(staging: &wgpu::Buffer, bytes: u64) -> Vec<u8> {
    let out = match staging.slice(..bytes).get_mapped_range() {
        Ok(view) => view.to_vec(),
        Err(_) => Vec::new(),
    };
    staging.unmap();
    out
}

/// A single-value channel for map callbacks in the browser (the callback
/// runs on the page's event loop; the executable awaits the receiver).
#[cfg(target_arch = "wasm32")]
mod oneshot {
    use std::cell::RefCell;
    use std::future::Future;
    use std::pin::Pin;
    use std::rc::Rc;
    use std::task::{Context, Poll, Waker};

    struct Inner<T> {
        value: Option<T>,
        waker: Option<Waker>,
    }

    /// The sending half.
    pub struct Sender<T>(Rc<RefCell<Inner<T>>>);
    /// The receiving half: a future of the value.
    pub struct Receiver<T>(Rc<RefCell<Inner<T>>>);

    /// A connected pair.
    pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
        let inner = Rc::new(RefCell::new(Inner { value: None, waker: None }));
        (Sender(inner.clone()), Receiver(inner))
    }

    impl<T> Sender<T> {
        /// Delivers the value and wakes the receiver.
        pub fn send(self, v: T) {
            let waker = {
                let mut i = self.0.borrow_mut();
                i.value = Some(v);
                i.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    impl<T> Future for Receiver<T> {
        type Output = T;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
            let mut i = self.0.borrow_mut();
            match i.value.take() {
                Some(v) => Poll::Ready(v),
                None => {
                    i.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }
}

/// Little-endian bytes of f32 values (what GPU buffers hold).
pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
