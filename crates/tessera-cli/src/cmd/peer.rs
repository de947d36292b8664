//! `tessera peer URL`: join a room as a native peer (a Raspberry Pi, a
//! Jetson, a laptop without a browser) over WebRTC, run the tasks the
//! coordinator assigns on this machine's backend, until killed.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use tessera_kernels::{Backend, CpuBackend};
use tessera_mesh::driver::{clock, run_peer_shaped};
use tessera_mesh::transport::LinkSim;
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
    /// Emulate a slower device: every task takes F times as long (F ≥ 1;
    /// the self-profile sees it too), to stand in for a Pi or an old phone.
    #[arg(long, value_name = "F")]
    slowdown: Option<f64>,
    /// Emulate a network link in front of this peer, `MBPS,LATENCY_MS`
    /// (e.g. `20mbit,15ms`): what it sends and receives is held back as
    /// such a link would; the coordinator measures and plans for it.
    #[arg(long, value_name = "MBPS,MS", value_parser = parse_link)]
    link: Option<LinkSim>,
}

fn parse_link(s: &str) -> Result<LinkSim, String> {
    LinkSim::parse(s)
}

pub fn run(a: Args) -> Result<()> {
    anyhow::ensure!(a.threads != Some(0), "--threads must be at least 1");
    let threads = a.threads.unwrap_or_else(|| CpuBackend::default().threads());
    let mut backend: Box<dyn Backend> = if a.backend == "gpu" { Box::new(super::gpu_or_cpu(threads, Some(super::PEER_GPU_TIMEOUT_MS), tessera_gpu::TileChoice::Auto)) } else { Box::new(CpuBackend::new(threads)) };
    if let Some(f) = a.slowdown {
        anyhow::ensure!(f.is_finite() && f >= 1.0, "--slowdown must be a number >= 1 (got {f})");
        backend = Box::new(tessera_runtime::slowed::Slowed::new(backend, f));
    }
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
    run_peer_shaped(&mesh, &mut peer, &stop, &AtomicBool::new(false), &*clk, a.link).map_err(anyhow::Error::msg)
}
