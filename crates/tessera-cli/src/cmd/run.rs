//! `tessera run MODEL --input in.npy --output out.npy
//! [--planner NAME --devices SPEC | --plan plan.json] [--backend cpu|gpu]`: one inference, on
//! one device or split across in-process workers (one thread per device,
//! the mesh's task and merge code).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tessera_kernels::{Backend, CpuBackend};
use tessera_plan::{cluster, Plan};
use tessera_runtime::local::LocalExecutor;

#[derive(clap::Args)]
pub struct Args {
    /// Zoo name or path to an .onnx file.
    model: String,
    /// Input tensor(s) as f32 .npy, once per graph input, in order.
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    /// Where to write the (first) output as .npy.
    #[arg(long)]
    output: PathBuf,
    /// CPU threads per device (default: all cores for a single device, 1
    /// per device when split).
    #[arg(long)]
    threads: Option<usize>,
    /// Split with this planner (see `tessera plan`).
    #[arg(long, conflicts_with = "plan")]
    planner: Option<String>,
    /// Devices for --planner: a count, `PROFILE[*N][@RATE],...`, or a cluster JSON.
    #[arg(long, requires = "planner")]
    devices: Option<String>,
    /// Execute a plan written by `tessera plan --output`.
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Kernels to run on: `gpu` uses the wgpu backend (falling back to the
    /// CPU, with a note on stderr, where it cannot).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "gpu"])]
    backend: String,
}

/// The backend of every device: the CPU kernels with `threads` threads,
/// or the GPU (shared by all devices of a split run) with CPU fallback.
fn backend_factory(kind: &str, threads: usize) -> tessera_runtime::local::BackendFactory {
    if kind == "gpu" {
        let be = super::gpu_or_cpu(threads, None, tessera_gpu::TileChoice::Heuristic);
        Arc::new(move |_| Box::new(be.clone()) as Box<dyn Backend>)
    } else {
        Arc::new(move |_| Box::new(CpuBackend::new(threads)) as Box<dyn Backend>)
    }
}

pub fn run(a: Args) -> Result<()> {
    let g = Arc::new(crate::model::load_optimized(&a.model)?);
    let inputs = a.input.iter().map(|p| crate::files::read_npy(p)).collect::<Result<Vec<_>>>()?;
    g.check_inputs(&inputs).context("input does not fit the model")?;
    if a.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let plan: Option<Plan> = match (&a.planner, &a.plan) {
        (Some(spec), None) => {
            let cl = cluster::parse(a.devices.as_deref().unwrap_or("2"))?;
            let (p, _) = super::plan::make_plan(&g, &a.model, spec, &cl, tessera_plan::sim::SimConfig::default(), 1)?;
            Some(p)
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let p: Plan = serde_json::from_str(&text).with_context(|| format!("{} is not a plan", path.display()))?;
            let names = p.devices.join(",");
            // A plan file names its devices; validate against a cluster of that many.
            let cl = tessera_plan::Cluster {
                devices: p.devices.iter().map(|n| tessera_plan::Device { name: n.clone(), profile: cluster::profile("local").expect("built-in"), link: tessera_plan::Link::new(1000.0, 0.1) }).collect(),
            };
            p.validate(&g, &cl).with_context(|| format!("plan for devices {names}"))?;
            Some(p)
        }
        _ => None,
    };
    let out = match plan {
        None => {
            let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let backend = backend_factory(&a.backend, threads)(0);
            backend.compile(&g)?.run(&inputs)?.remove(0)
        }
        Some(p) => {
            let threads = a.threads.unwrap_or(1);
            let mut ex = LocalExecutor::new(g.clone(), &p, backend_factory(&a.backend, threads))?;
            ex.run(inputs)?.remove(0)
        }
    };
    crate::files::write_npy(&a.output, &out)
}
