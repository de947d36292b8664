//! One module per subcommand.

pub mod bench;
pub mod cost;
pub mod demo;
pub mod export;
pub mod peer;
pub mod plan;
pub mod profile;
pub mod run;
pub mod serve;
pub mod simulate;

/// Milliseconds since an arbitrary start: the native clock handed to
/// backends' profiled runs.
pub fn clock_ms() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

/// How long a mesh peer's GPU may take for one task before it counts as
/// hung and the CPU takes over: well under the coordinator's 15 s silence
/// limit, so a hung GPU costs the peer its GPU, not its place in the mesh.
pub const PEER_GPU_TIMEOUT_MS: u64 = 8_000;

/// The GPU backend with CPU fallback (`--backend gpu` of `run`, `peer` and
/// `demo`): wgpu when an adapter opens and passes its self-test, else the
/// CPU with `threads` threads; says which on stderr. `timeout_ms`: how long
/// one run may wait for the GPU (`None`: the wgpu backend's default).
/// `tiles`: `Auto` for long-lived peers (tiles measured on a hardware GPU,
/// once per layer shape), `Heuristic` for a one-off run, where measuring
/// would cost more than it saves.
pub fn gpu_or_cpu(threads: usize, timeout_ms: Option<u64>, tiles: tessera_gpu::TileChoice) -> tessera_gpu::GpuOrCpu {
    let mut opts = tessera_gpu::GpuOptions { tiles, ..tessera_gpu::GpuOptions::from_env() };
    if let Some(t) = timeout_ms {
        opts.timeout_ms = t;
    }
    let (be, reason) = tessera_gpu::backend_or_cpu(opts, threads);
    match reason {
        Some(r) => eprintln!("note: GPU not used ({r}); running on the CPU"),
        None => eprintln!("backend: {}", tessera_kernels::Backend::name(&be)),
    }
    be
}

/// How a native peer re-measures itself when its backend changes (a GPU
/// lost): a quick profile of the new backend.
pub fn reprofile(name: String) -> tessera_mesh::peer::Reprofile {
    Box::new(move |b| {
        let p = tessera_runtime::profile::measure(b, &name, 4096.0, tessera_runtime::profile::ProfileConfig::quick(), &clock_ms);
        if let Err(e) = &p {
            eprintln!("note: cannot re-profile on {}: {e}", b.name());
        }
        p.ok()
    })
}

/// Median of a non-empty list.
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 { xs[n / 2] } else { 0.5 * (xs[n / 2 - 1] + xs[n / 2]) }
}
