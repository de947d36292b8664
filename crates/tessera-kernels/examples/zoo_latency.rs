//! Latency of zoo models on the CPU backend: median ms and GFLOP/s per
//! model, and optionally a per-layer table for one model.
//!
//! ```text
//! cargo run --release -p tessera-kernels --example zoo_latency -- \
//!     [--models vgg16,resnet50] [--threads 1] [--runs 10] [--layers resnet50] [--raw]
//!     [--cpu] [--isa avx512|avx2|scalar]
//! ```
//! `--raw` runs the graph as built (BatchNorm and activations unfused).
//! `--cpu` times with this thread's CPU time (Linux, `--threads 1` only),
//! which leaves out time the OS gave to other processes on a shared box.

use std::time::Instant;

use tessera_graph::{cost_table, passes, zoo, Tensor};
use tessera_kernels::{Backend, CpuBackend, Isa};

thread_local! {
    static START: Instant = Instant::now();
}

/// This thread's CPU time in ms (Linux schedstat), if readable.
fn thread_cpu_ms() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(s.split_whitespace().next()?.parse::<f64>().ok()? / 1e6)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut models = "lenet,mobilenetv2,yolov2-tiny,alexnet,resnet50,vgg16".to_string();
    let mut threads = 1usize;
    let mut runs = 10usize;
    let mut layers: Option<String> = None;
    let mut raw = false;
    let mut cpu = false;
    let mut isa = Isa::detect();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--models" => models = args.next().ok_or("--models needs a value")?,
            "--threads" => threads = args.next().ok_or("--threads needs a value")?.parse()?,
            "--runs" => runs = args.next().ok_or("--runs needs a value")?.parse()?,
            "--layers" => layers = Some(args.next().ok_or("--layers needs a value")?),
            "--raw" => raw = true,
            "--cpu" => cpu = true,
            "--isa" => {
                let v = args.next().ok_or("--isa needs a value")?;
                isa = Isa::all_available().into_iter().find(|i| i.name() == v).ok_or(format!("this machine has no {v} path"))?;
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if cpu && (threads != 1 || thread_cpu_ms().is_none()) {
        return Err("--cpu needs --threads 1 and /proc/thread-self/schedstat".into());
    }
    let now = move || if cpu { thread_cpu_ms().unwrap_or(0.0) } else { START.with(|s| s.elapsed().as_secs_f64() * 1e3) };
    let backend = CpuBackend::with_isa(threads, isa)?;
    println!("backend: {}{}", backend.name(), if cpu { " (thread CPU time)" } else { "" });
    println!("{:<14} {:>10} {:>10} {:>10}", "model", "median ms", "min ms", "GFLOP/s");
    for name in models.split(',') {
        let g = zoo::build(name)?;
        let g = if raw { g } else { passes::optimize(&g)? };
        let flops = 2.0 * cost_table(&g).total.macs as f64;
        let mut exe = backend.compile(&g)?;
        let x = Tensor::full(g.input_shape(), 0.5);
        for _ in 0..2 {
            exe.run(std::slice::from_ref(&x))?;
        }
        let mut times = Vec::new();
        for _ in 0..runs {
            let t = now();
            exe.run(std::slice::from_ref(&x))?;
            times.push(now() - t);
        }
        let min = times.iter().cloned().fold(f64::MAX, f64::min);
        let med = median(times);
        println!("{:<14} {:>10.2} {:>10.2} {:>10.1}", name, med, min, flops / med / 1e6);
    }
    if let Some(name) = layers {
        let g = zoo::build(&name)?;
        let g = if raw { g } else { passes::optimize(&g)? };
        let mut exe = backend.compile(&g)?;
        let x = Tensor::full(g.input_shape(), 0.5);
        // Per-layer times are too short for schedstat's resolution: wall clock,
        // and the minimum over runs, which preemption by other processes cannot inflate.
        let start = Instant::now();
        let clock = || start.elapsed().as_secs_f64() * 1e3;
        let mut per_node: Vec<Vec<f64>> = vec![Vec::new(); g.len()];
        for _ in 0..runs.max(3) {
            let (_, t) = exe.run_profiled(std::slice::from_ref(&x), &clock)?;
            for nt in t {
                per_node[nt.node].push(nt.ms);
            }
        }
        let table = cost_table(&g);
        let min = |v: &Vec<f64>| v.iter().cloned().fold(f64::MAX, f64::min);
        let total: f64 = per_node.iter().filter(|v| !v.is_empty()).map(min).sum();
        println!("\nper-layer ({name}, {}): sum of per-layer minima {total:.2} ms", backend.name());
        println!("{:<28} {:<20} {:>20} {:>9} {:>7} {:>9}", "layer", "op", "output", "min ms", "%", "GFLOP/s");
        for row in &table.rows {
            let id = g.find(&row.name).unwrap();
            if per_node[id].is_empty() {
                continue;
            }
            let ms = min(&per_node[id]);
            let gf = 2.0 * row.cost.macs as f64 / ms / 1e6;
            println!("{:<28} {:<20} {:>20} {:>9.3} {:>7.1} {:>9.1}", row.name, row.op, format!("{:?}", row.output_shape), ms, 100.0 * ms / total, gf);
        }
    }
    Ok(())
}
