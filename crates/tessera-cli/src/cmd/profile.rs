//! `tessera profile [--output local.json] [--quick] [--threads N]`: measure
//! this machine's per-op latency into a device profile, usable anywhere a
//! profile name is (`--devices ./local.json@1gbit,nano@100mbit`).

use std::path::PathBuf;

use anyhow::Result;
use tessera_kernels::{Backend, CpuBackend};
use tessera_runtime::profile::{measure, ProfileConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the profile JSON (default: print it).
    #[arg(long)]
    output: Option<PathBuf>,
    /// A quick, coarser profile (~1 s).
    #[arg(long)]
    quick: bool,
    /// CPU threads the backend uses.
    #[arg(long)]
    threads: Option<usize>,
    /// Name for the profile.
    #[arg(long, default_value = "local")]
    name: String,
}

/// Physical memory of this machine in MB (Linux), or 4096 if unknown.
fn memory_mb() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(4096.0, |kb| kb / 1024.0)
}

pub fn run(a: Args) -> Result<()> {
    anyhow::ensure!(a.threads != Some(0), "--threads must be at least 1");
    let backend = a.threads.map_or_else(CpuBackend::default, CpuBackend::new);
    let cfg = if a.quick { ProfileConfig::quick() } else { ProfileConfig::full() };
    eprintln!("profiling {} ...", backend.name());
    let p = measure(&backend, &a.name, memory_mb(), cfg, &super::clock_ms)?;
    let json = serde_json::to_string_pretty(&p)?;
    match &a.output {
        Some(path) => {
            crate::files::write_atomic(path, json.as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
        None => println!("{json}"),
    }
    for (class, t) in &p.ops {
        let (f, ms) = t.points.last().copied().unwrap_or((0.0, 1.0));
        eprintln!("  {class:?}: {} points, largest {:.2} GFLOP in {:.2} ms = {:.1} GFLOP/s", t.points.len(), f / 1e9, ms, f / ms / 1e6);
    }
    Ok(())
}
