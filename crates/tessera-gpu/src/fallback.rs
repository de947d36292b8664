//! Choosing the GPU when it works and the CPU backend otherwise. Opening
//! the GPU is followed by a self-test (a small conv / pool / dense /
//! softmax graph checked against the CPU backend), so a peer never computes
//! on a device that gives wrong results. The reason for a fallback is a
//! one-line string for the coordinator.

use std::sync::{Arc, Mutex};

use tessera_graph::rng::Rng;
use tessera_graph::{Activation, Conv, Dense, Graph, Op, Pool, Tensor};
use tessera_kernels::{Backend, CpuBackend, Executable, KernelError, RunFuture};

use crate::{GpuBackend, GpuExecutable, GpuOptions};

/// Relative error the self-test accepts (the f16 path is looser).
fn tolerance(f16: bool) -> f32 {
    if f16 { 2e-2 } else { 1e-3 }
}

/// A small graph touching the main kernel families.
fn self_test_graph() -> Result<(Graph, Tensor), KernelError> {
    let mut rng = Rng::new(5);
    let mut t = |shape: &[usize]| Arc::new(Tensor::new(shape.to_vec(), rng.fill(shape.iter().product(), 0.5)).expect("shape matches"));
    let mut g = Graph::new("gpu-self-test");
    let x = g.input("x", &[1, 3, 12, 12])?;
    let conv = Conv { weight: t(&[16, 3, 3, 3]), bias: Some(t(&[16])), stride: [1, 1], pads: [1, 1, 1, 1], dilation: [1, 1], groups: 1, act: Activation::Relu };
    let c = g.add("conv", Op::Conv(conv), &[x])?;
    let p = g.add("pool", Op::MaxPool(Pool::square(2, 2, 0)), &[c])?;
    let f = g.add("flat", Op::Flatten { axis: 1 }, &[p])?;
    let d = g.add("fc", Op::Dense(Dense { weight: t(&[10, 16 * 36]), bias: Some(t(&[10])), act: Activation::Identity }), &[f])?;
    let s = g.add("prob", Op::Softmax { axis: 1, flatten: false }, &[d])?;
    g.set_outputs(&[s, d])?;
    let input = Tensor::new(vec![1, 3, 12, 12], Rng::new(9).fill(432, 1.0))?;
    Ok((g, input))
}

/// Compares GPU outputs with the CPU backend's.
fn compare(got: &[Tensor], want: &[Tensor], f16: bool) -> Result<(), String> {
    for (a, b) in got.iter().zip(want) {
        let d = a.max_rel_diff(b);
        if d > tolerance(f16) {
            return Err(format!("self-test mismatch: relative error {d:.2e} against the CPU backend"));
        }
    }
    if got.len() != want.len() {
        return Err("self-test returned the wrong number of outputs".into());
    }
    Ok(())
}

/// The backend a peer computes on.
#[derive(Clone, Debug)]
pub enum Selected {
    /// A GPU that passed the self-test.
    Gpu(GpuBackend),
    /// The CPU backend, and why the GPU is not used.
    Cpu {
        /// The CPU backend.
        cpu: CpuBackend,
        /// One line for the coordinator ("no GPU adapter: ...").
        reason: String,
    },
}

impl Selected {
    /// Why the GPU is not used, if it is not.
    pub fn fallback_reason(&self) -> Option<&str> {
        match self {
            Selected::Gpu(_) => None,
            Selected::Cpu { reason, .. } => Some(reason),
        }
    }

    /// The backend's name.
    pub fn name(&self) -> String {
        match self {
            Selected::Gpu(g) => g.name(),
            Selected::Cpu { cpu, .. } => cpu.name(),
        }
    }

    /// Compiles for the selected backend (async: GPU device errors are
    /// awaited in the browser); run it with `Executable::run_async`.
    pub async fn compile_async(&self, graph: &Graph) -> Result<Box<dyn Executable>, KernelError> {
        match self {
            Selected::Gpu(g) => Ok(Box::new(g.compile_async(graph).await?)),
            Selected::Cpu { cpu, .. } => cpu.compile(graph),
        }
    }
}

/// Opens the GPU and self-tests it; on any failure, the CPU backend with
/// `cpu_threads` threads and the reason.
pub async fn select_async(opts: GpuOptions, cpu_threads: usize) -> Selected {
    let cpu = CpuBackend::new(cpu_threads);
    match try_gpu(opts, &cpu).await {
        Ok(g) => Selected::Gpu(g),
        Err(reason) => Selected::Cpu { cpu, reason },
    }
}

async fn try_gpu(opts: GpuOptions, cpu: &CpuBackend) -> Result<GpuBackend, String> {
    let gpu = GpuBackend::new_async(opts).await.map_err(|e| e.to_string())?;
    let (g, x) = self_test_graph().map_err(|e| e.to_string())?;
    let want = cpu.compile(&g).and_then(|mut e| e.run(std::slice::from_ref(&x))).map_err(|e| format!("CPU reference failed: {e}"))?;
    let mut exe = gpu.compile_async(&g).await.map_err(|e| format!("GPU self-test: {e}"))?;
    let got = exe.run_async(std::slice::from_ref(&x)).await.map_err(|e| format!("GPU self-test: {e}"))?;
    compare(&got, &want, gpu.f16()).map_err(|e| format!("{} ({}): {e}", gpu.adapter_name(), gpu.api()))?;
    Ok(gpu)
}

/// The GPU backend if it opens and passes the self-test, else the CPU
/// backend; either way wrapped so that later failures (an op the GPU cannot
/// run, a lost device) fall back to the CPU per graph. The second value is
/// why the GPU is not used at all, for the coordinator.
#[cfg(not(target_arch = "wasm32"))]
pub fn backend_or_cpu(opts: GpuOptions, cpu_threads: usize) -> (GpuOrCpu, Option<String>) {
    let sel = pollster::block_on(select_async(opts, cpu_threads));
    let reason = sel.fallback_reason().map(str::to_string);
    (GpuOrCpu::new(sel, cpu_threads), reason)
}

/// A backend that compiles on the GPU when it can and on the CPU otherwise,
/// and moves a compiled graph to the CPU if the GPU fails while running it
/// (the failed run is repeated there, so the caller sees no error). Once
/// the device is lost every later graph compiles for the CPU. Each fallback
/// is a note for the coordinator ([`Backend::take_notes`]). A clone shares
/// the device but keeps its own notes (starting from a copy): each peer
/// built on a clone reports what its own graphs ran into.
pub struct GpuOrCpu {
    gpu: Option<GpuBackend>,
    cpu: CpuBackend,
    notes: Arc<Mutex<Notes>>,
}

/// Fallbacks not yet taken, and whether the device's loss was noted.
#[derive(Clone, Default)]
struct Notes {
    pending: Vec<String>,
    all: Vec<String>,
    lost_noted: bool,
}

impl GpuOrCpu {
    /// Wraps a [`select_async`] result; `cpu_threads` for the CPU side.
    /// A CPU selection starts with one note: why the GPU is not used.
    pub fn new(sel: Selected, cpu_threads: usize) -> GpuOrCpu {
        let notes: Arc<Mutex<Notes>> = Default::default();
        let (gpu, cpu) = match sel {
            Selected::Gpu(g) => (Some(g), CpuBackend::new(cpu_threads)),
            Selected::Cpu { cpu, reason } => {
                note(&notes, format!("GPU not used ({reason}): computing on the CPU"));
                (None, cpu)
            }
        };
        GpuOrCpu { gpu, cpu, notes }
    }

    /// The GPU in use: none if there never was one or it was lost.
    pub fn gpu(&self) -> Option<&GpuBackend> {
        self.gpu.as_ref().filter(|g| g.lost_reason().is_none())
    }

    /// Every fallback so far, one line each ("graph 'x': gpu backend: ...").
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().map(|n| n.all.clone()).unwrap_or_default()
    }
}

/// Notes kept for [`GpuOrCpu::notes`] (and pending at most): a graph that
/// fails on every re-plan must not grow them without bound.
const MAX_NOTES: usize = 64;

fn note(notes: &Mutex<Notes>, msg: String) {
    if let Ok(mut guard) = notes.lock() {
        let n = &mut *guard;
        for list in [&mut n.pending, &mut n.all] {
            if list.len() == MAX_NOTES {
                list.remove(0);
            }
        }
        n.pending.push(msg.clone());
        n.all.push(msg);
    }
}

/// Notes the loss of `device` once; whether it is lost.
fn note_if_lost(notes: &Mutex<Notes>, device: &GpuBackend) -> bool {
    let Some(why) = device.lost_reason() else { return false };
    let first = notes.lock().map(|mut n| !std::mem::replace(&mut n.lost_noted, true)).unwrap_or(false);
    if first {
        note(notes, format!("GPU {} lost ({why}): computing on the CPU from now on", device.adapter_name()));
    }
    true
}

impl Clone for GpuOrCpu {
    fn clone(&self) -> GpuOrCpu {
        let notes = self.notes.lock().map(|n| n.clone()).unwrap_or_default();
        GpuOrCpu { gpu: self.gpu.clone(), cpu: self.cpu.clone(), notes: Arc::new(Mutex::new(notes)) }
    }
}

impl Backend for GpuOrCpu {
    fn name(&self) -> String {
        match (&self.gpu, self.gpu()) {
            (_, Some(g)) => g.name(),
            (Some(_), None) => format!("{} (GPU lost)", self.cpu.name()),
            (None, None) => self.cpu.name(),
        }
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>, KernelError> {
        if let Some(gpu) = self.gpu() {
            match gpu.compile_gpu(graph) {
                Ok(exe) => {
                    return Ok(Box::new(Fallback { gpu: Some(exe), cpu_exe: None, graph: graph.clone(), cpu: self.cpu.clone(), notes: self.notes.clone(), device: gpu.clone() }));
                }
                Err(e) => note(&self.notes, format!("graph '{}': {e}; running it on the CPU", graph.name)),
            }
        }
        self.cpu.compile(graph)
    }

    fn take_notes(&self) -> Vec<String> {
        // The browser reports a loss through a callback, possibly after the
        // run that failed: a loss learnt since is noted here.
        if let Some(g) = &self.gpu {
            note_if_lost(&self.notes, g);
        }
        self.notes.lock().map(|mut n| std::mem::take(&mut n.pending)).unwrap_or_default()
    }
}

/// A GPU executable that switches to the CPU when the GPU fails.
struct Fallback {
    gpu: Option<GpuExecutable>,
    cpu_exe: Option<Box<dyn Executable>>,
    graph: Graph,
    cpu: CpuBackend,
    notes: Arc<Mutex<Notes>>,
    device: GpuBackend,
}

impl Fallback {
    fn cpu_exe(&mut self) -> Result<&mut Box<dyn Executable>, KernelError> {
        if self.cpu_exe.is_none() {
            self.cpu_exe = Some(self.cpu.compile(&self.graph)?);
        }
        Ok(self.cpu_exe.as_mut().expect("just set"))
    }

    /// Drops the GPU executable after a device failure; false when the
    /// input itself was bad (the CPU would refuse it too).
    fn give_up(&mut self, e: &KernelError) -> bool {
        if matches!(e, KernelError::Graph(_)) {
            return false;
        }
        self.gpu = None;
        if !note_if_lost(&self.notes, &self.device) {
            note(&self.notes, format!("graph '{}': {e}; running it on the CPU from now on", self.graph.name));
        }
        true
    }
}

impl Executable for Fallback {
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, KernelError> {
        if let Some(g) = &mut self.gpu {
            let r = g.run(inputs);
            match r {
                Err(e) if self.give_up(&e) => {}
                r => return r,
            }
        }
        self.cpu_exe()?.run(inputs)
    }

    fn run_profiled(&mut self, inputs: &[Tensor], clock: tessera_kernels::Clock) -> Result<(Vec<Tensor>, Vec<tessera_kernels::NodeTiming>), KernelError> {
        if let Some(g) = &mut self.gpu {
            let r = g.run_profiled(inputs, clock);
            match r {
                Err(e) if self.give_up(&e) => {}
                r => return r,
            }
        }
        self.cpu_exe()?.run_profiled(inputs, clock)
    }

    fn run_async<'a>(&'a mut self, inputs: &'a [Tensor]) -> RunFuture<'a> {
        Box::pin(async move {
            if let Some(g) = &mut self.gpu {
                let r = g.run_async(inputs).await;
                match r {
                    Err(e) if self.give_up(&e) => {}
                    r => return r,
                }
            }
            self.cpu_exe()?.run(inputs)
        })
    }
}
