//! `tessera peer URL`: join a room as a native peer (a Raspberry Pi, a
//! Jetson, a laptop without a browser) over WebRTC, run the tasks the
//! coordinator assigns on this machine's backend, until killed.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use tessera_kernels::{Backend, CpuBackend};
use tessera_mesh::driver::{clock, run_peer};
use tessera_mesh::transport::native::{NativeConfig, NativeMesh};
use tessera_mesh::transport::signal::Role;
use tessera_mesh::{Peer, PeerConfig};

#[derive(clap::Args)]
pub struct Args {
    /// The room's join URL (printed by `tessera serve` / `tessera demo`).
    url: String,
    /// Name shown on the dashboard (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// CPU threads for the kernels (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// A device profile from `tessera profile` to announce (default: a
    /// quick self-profile at start).
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Kernels to run on: `gpu` uses wgpu (Vulkan / Metal) when an adapter
    /// opens and passes its self-test, the CPU otherwise; a GPU that fails
    /// later hands its tasks to the CPU and the coordinator is told.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "gpu"])]
    backend: String,
}

pub fn run(a: Args) -> Result<()> {
    anyhow::ensure!(a.threads != Some(0), "--threads must be at least 1");
    let threads = a.threads.unwrap_or_else(|| CpuBackend::default().threads());
    let backend: Box<dyn Backend> = if a.backend == "gpu" { Box::new(super::gpu_or_cpu(threads, Some(super::PEER_GPU_TIMEOUT_MS))) } else { Box::new(CpuBackend::new(threads)) };
    let name = a.name.clone().unwrap_or_else(|| std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "native".into()));
    let profile = match &a.profile {
        Some(p) => serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?).with_context(|| format!("{} is not a device profile", p.display()))?,
        None => tessera_runtime::profile::measure(backend.as_ref(), &name, 4096.0, tessera_runtime::profile::ProfileConfig::quick(), &super::clock_ms)?,
    };
    let mesh = NativeMesh::join(&a.url, NativeConfig::new(Role::Peer, name.clone())).map_err(anyhow::Error::msg).context("cannot join the room")?;
    eprintln!("joined room {} as peer {} ({}); waiting for work, Ctrl-C to leave", mesh.room(), mesh.id(), backend.name());
    let mut cfg = PeerConfig::new(name.clone());
    cfg.profile = Some(profile);
    cfg.caps = vec!["native".into()];
    let mut peer = Peer::new(cfg, backend, clock()).with_reprofile(super::reprofile(name));
    let stop = AtomicBool::new(false);
    let clk = clock();
    run_peer(&mesh, &mut peer, &stop, &*clk).map_err(anyhow::Error::msg)
}
