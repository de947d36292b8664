//! `tessera bench cpu|gpu`: Tessera's latency per model next to a reference
//! runtime (onnxruntime for CPU, PyTorch on the same GPU for GPU) measured in the same run on the same
//! machine, and their ratio. Speed targets live here, never in tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tessera_graph::{cost_table, rng::Rng, Tensor};
use tessera_kernels::{Backend, CpuBackend};

use super::{clock_ms, median};

#[derive(clap::Args)]
pub struct Args {
    /// Which backend to benchmark.
    #[arg(value_parser = ["cpu", "gpu"])]
    target: String,
    /// Comma-separated zoo names.
    #[arg(long, default_value = "lenet,mobilenetv2,resnet50,vgg16")]
    models: String,
    /// Threads for both Tessera and the reference.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed runs per model (the median is reported).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Print JSON `{model: {tessera_ms, reference_ms, reference, ratio, ...}}`.
    #[arg(long)]
    json: bool,
    /// Also print a per-layer table (Tessera, median over runs).
    #[arg(long)]
    layers: bool,
    /// Skip the reference runtime.
    #[arg(long)]
    no_reference: bool,
    /// GPU only: how each layer's GEMM tile is chosen: `measured` (the
    /// default: every candidate timed on the device at compile time, the
    /// fastest kept), `heuristic`, or one tile `TMxTN[kS][w|w4]` for every
    /// layer (e.g. `8x4`; `4x4k8`: K split into 8 slices; `8x4w` / `8x4w4`:
    /// Winograd F(2x2, 3x3) / F(4x4, 3x3) on 3x3 stride-1 layers).
    #[arg(long)]
    tiles: Option<tessera_gpu::TileChoice>,
}

/// One model's result.
#[derive(Serialize)]
struct Row {
    tessera_ms: f64,
    reference_ms: Option<f64>,
    reference: Option<String>,
    /// tessera_ms / reference_ms (lower is better for Tessera).
    ratio: Option<f64>,
    gflops: f64,
    tessera_gflop_per_s: f64,
    backend: String,
    threads: usize,
    /// Compile time, including tile measurements on the GPU.
    compile_ms: f64,
    /// GPU: how tiles were chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    tiles: Option<String>,
}

pub fn run(a: Args) -> Result<()> {
    if a.threads == 0 || a.runs == 0 {
        bail!("--threads and --runs must be at least 1");
    }
    let gpu = a.target == "gpu";
    if !gpu && a.tiles.is_some() {
        bail!("--tiles applies to bench gpu only");
    }
    let tiles = a.tiles.unwrap_or(tessera_gpu::TileChoice::Measured);
    let gpu_handle = if gpu { Some(gpu_backend(tiles)?) } else { None };
    let backend: Box<dyn Backend> = match &gpu_handle {
        Some(g) => Box::new(g.clone()),
        None => Box::new(CpuBackend::new(a.threads)),
    };
    let mut out = BTreeMap::new();
    for name in a.models.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let g = crate::model::load_optimized(name)?;
        let flops = cost_table(&g).total.flops() as f64;
        let measured_before = gpu_handle.as_ref().map_or(0, |g| g.tile_measurements().len());
        let t = clock_ms();
        // The GPU executable directly, for its per-layer kernel labels.
        let (mut exe, kernels): (Box<dyn tessera_kernels::Executable>, BTreeMap<usize, String>) = match &gpu_handle {
            Some(gh) => {
                let e = gh.compile_gpu(&g)?;
                let k = e.kernels().into_iter().collect();
                (Box::new(e), k)
            }
            None => (backend.compile(&g)?, BTreeMap::new()),
        };
        let compile_ms = clock_ms() - t;
        let mut rng = Rng::new(7);
        let inputs: Vec<Tensor> = g
            .inputs()
            .iter()
            .map(|&i| {
                let shape = g.node(i).shape.clone();
                let n = shape.iter().product();
                Tensor::new(shape, rng.fill(n, 1.0))
            })
            .collect::<Result<_, _>>()?;
        exe.run(&inputs)?; // warm-up: page in weights and buffers
        let mut times = Vec::with_capacity(a.runs);
        let mut per_node: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for _ in 0..a.runs {
            let t = clock_ms();
            if a.layers {
                let (_, timings) = exe.run_profiled(&inputs, &clock_ms)?;
                for nt in timings {
                    per_node.entry(nt.node).or_default().push(nt.ms);
                }
            } else {
                exe.run(&inputs)?;
            }
            times.push(clock_ms() - t);
        }
        let ms = median(&mut times);
        if a.layers {
            println!("{name}: per-layer median ms ({})", backend.name());
            let total: f64 = per_node.values_mut().map(|v| median(v)).sum();
            for (id, v) in per_node.iter_mut() {
                let n = g.node(*id);
                let c = tessera_graph::node_cost(&g, *id);
                let m = median(v);
                let gf = if m > 0.0 { c.flops() as f64 / m / 1e6 } else { 0.0 };
                let kernel = kernels.get(id).map_or(String::new(), |k| format!("  {k}"));
                println!("  {:<28} {:<18} {:>9.3} ms {:>5.1}% {:>8.1} GFLOP/s{kernel}", n.name, tessera_graph::cost::op_label(&n.op), m, 100.0 * m / total, gf);
            }
            if let Some(gh) = &gpu_handle {
                print_tiles(&gh.tile_measurements()[measured_before..]);
            }
        }
        let reference = match (a.no_reference, gpu) {
            (true, _) => None,
            (false, true) => Some(torch_reference_ms(name, a.runs)),
            (false, false) => Some(reference_ms(name, a.threads, a.runs)),
        };
        let (reference_ms, reference) = match reference {
            Some(Ok((ms, who))) => (Some(ms), Some(who)),
            Some(Err(e)) => {
                eprintln!("note: no reference for {name}: {e:#}");
                (None, None)
            }
            None => (None, None),
        };
        let row = Row {
            tessera_ms: ms,
            ratio: reference_ms.map(|r| ms / r),
            reference_ms,
            reference,
            gflops: flops / 1e9,
            tessera_gflop_per_s: flops / ms / 1e6,
            backend: backend.name(),
            threads: a.threads,
            compile_ms,
            tiles: gpu.then(|| tiles.to_string()),
        };
        if !a.json {
            println!(
                "{name:<14} tessera {:>9.2} ms {:>7.1} GFLOP/s (compiled in {:.0} ms) | {} {} | ratio {}",
                row.tessera_ms,
                row.tessera_gflop_per_s,
                row.compile_ms,
                row.reference.as_deref().unwrap_or("reference"),
                row.reference_ms.map_or("n/a".into(), |r| format!("{r:.2} ms")),
                row.ratio.map_or("n/a".into(), |r| format!("{r:.2}x")),
            );
        }
        out.insert(name.to_string(), row);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

/// The Python interpreter with onnxruntime: `TESSERA_PYTHON`, the venv
/// `./run` makes, or `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TESSERA_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(".tools/venv/bin/python");
    if venv.exists() { venv } else { PathBuf::from("python3") }
}

/// Median latency of zoo model `name` in onnxruntime, via its ONNX export.
fn reference_ms(name: &str, threads: usize, runs: usize) -> Result<(f64, String)> {
    {
        let g = crate::model::load(name)?;
        let dir = std::env::temp_dir().join(format!("tessera-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let model = dir.join(format!("{name}.onnx"));
        let script = dir.join("ort_bench.py");
        std::fs::write(&model, tessera_onnx::export(&g))?;
        std::fs::write(&script, include_str!("../../../../tools/ort_bench.py"))?;
        let out = Command::new(python())
            .arg(&script)
            .arg(&model)
            .arg(threads.to_string())
            .arg(runs.to_string())
            .output()
            .context("cannot start python")?;
        let _ = std::fs::remove_dir_all(&dir);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!("{}", err.lines().last().unwrap_or("onnxruntime failed"));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("bad reference output")?;
        Ok((v["ms"].as_f64().context("no ms")?, v["reference"].as_str().unwrap_or("onnxruntime").to_string()))
    }
}

/// The GEMM tiles measured while compiling one model: per layer shape, the
/// time of every candidate and the one kept (the data to tune against).
fn print_tiles(measured: &[tessera_gpu::TileMeasurement]) {
    if measured.is_empty() {
        return;
    }
    println!("  GEMM tiles measured (ms per dispatch; * kept):");
    for m in measured {
        let times: Vec<String> = m.times.iter().map(|(t, ms)| format!("{t}{} {ms:.3}", if *t == m.chosen { "*" } else { "" })).collect();
        println!("    {:<70} {}", m.layer, times.join("  "));
    }
}

/// The GPU backend for `bench gpu` (no CPU fallback: a benchmark of the
/// GPU must not quietly measure something else). `TESSERA_GPU_F16=1`
/// benchmarks f16 weights; `WGPU_ADAPTER_NAME` picks the adapter.
fn gpu_backend(tiles: tessera_gpu::TileChoice) -> Result<tessera_gpu::GpuBackend> {
    let opts = tessera_gpu::GpuOptions { tiles, ..tessera_gpu::GpuOptions::from_env() };
    let gpu = tessera_gpu::GpuBackend::new(opts).context("tessera bench gpu needs a GPU adapter")?;
    eprintln!("GPU: {} ({}{})", gpu.adapter_name(), gpu.api(), if gpu.f16() { ", f16 weights" } else { "" });
    if gpu.is_software() {
        eprintln!("note: {} is a software rasteriser: these figures show the path works, they are not GPU speed", gpu.adapter_name());
    }
    Ok(gpu)
}

/// Median latency of zoo model `name` in PyTorch on this machine's GPU
/// (CUDA if available), via its ONNX export and `tools/torch_bench.py`.
/// The interpreter is `TESSERA_TORCH_PYTHON`, else `python3`.
fn torch_reference_ms(name: &str, runs: usize) -> Result<(f64, String)> {
    let g = crate::model::load(name)?;
    let dir = std::env::temp_dir().join(format!("tessera-bench-gpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let model = dir.join(format!("{name}.onnx"));
    let script = dir.join("torch_bench.py");
    std::fs::write(&model, tessera_onnx::export(&g))?;
    std::fs::write(&script, include_str!("../../../../tools/torch_bench.py"))?;
    let py = std::env::var_os("TESSERA_TORCH_PYTHON").map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let out = Command::new(&py).arg(&script).arg(&model).arg(runs.to_string()).output().with_context(|| format!("cannot start {}", py.display()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named 'torch'") {
            bail!("PyTorch is not importable by {} (set TESSERA_TORCH_PYTHON): Tessera's figures only", py.display());
        }
        bail!("{}", err.lines().last().unwrap_or("pytorch failed"));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("bad reference output")?;
    Ok((v["ms"].as_f64().context("no ms")?, v["reference"].as_str().unwrap_or("pytorch").to_string()))
}
