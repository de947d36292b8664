//! `tessera demo`: the mesh, end to end, on this machine. It starts the
//! server, joins local native peers (WebRTC over loopback) and a native
//! coordinator to one room, and runs the trained LeNet on a stream of real
//! MNIST digits through the mesh, then a larger zoo model; it prints the
//! plan, a per-peer table, throughput against one device, accuracy, and
//! whether every output equals a local run. Browsers can join the running
//! demo at the printed URL (`--frames` runs headless and exits).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tessera_cli::serve::{self, net, ServeConfig};
use tessera_graph::rng::Rng;
use tessera_graph::{passes, zoo, Graph, Tensor};
use tessera_kernels::{Backend, CpuBackend};
use tessera_mesh::driver::{clock, CoordinatorLoop, PeerThread};
use tessera_mesh::transport::native::{NativeConfig, NativeMesh};
use tessera_mesh::transport::signal::Role;
use tessera_mesh::{Coordinator, CoordinatorConfig, CoordinatorStatus, Peer, PeerConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Local native peers to start.
    #[arg(long, default_value_t = 3)]
    peers: usize,
    /// Digits to stream, then exit (default: all bundled digits, then keep
    /// the room open for browsers until Ctrl-C).
    #[arg(long)]
    frames: Option<usize>,
    /// Print one JSON summary object (implies exiting when done).
    #[arg(long)]
    json: bool,
    /// Planner the coordinator uses.
    #[arg(long, default_value = "tessera")]
    planner: String,
    /// Frames in flight.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// The larger zoo model run after LeNet (`none` to skip).
    #[arg(long, default_value = "mobilenetv2")]
    larger: String,
    /// Frames of the larger model.
    #[arg(long, default_value_t = 4)]
    larger_frames: usize,
    /// Server port (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Bind the LAN address so phones can join.
    #[arg(long)]
    lan: bool,
    /// Kernels the native peers run on: `gpu` shares this machine's GPU
    /// (wgpu) among them, with CPU fallback reported to the coordinator.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "gpu"])]
    backend: String,
}

/// One peer's line of the summary.
#[derive(Serialize)]
struct PeerRow {
    id: u32,
    name: String,
    backend: String,
    state: String,
    latency_ms: f64,
    tasks: u64,
    utilisation: f64,
    weight_bytes: u64,
    rtt_ms: Option<f64>,
    join_to_ready_ms: Option<f64>,
}

/// One model's run through the mesh.
#[derive(Serialize)]
struct ModelRun {
    model: String,
    frames: usize,
    lost: usize,
    match_local: bool,
    max_rel_diff: f64,
    ips: f64,
    single_device_ips: f64,
    plan: String,
    predicted_bytes_per_frame: f64,
    wire_bytes_per_frame: f64,
}

#[derive(Serialize)]
struct Summary {
    frames: usize,
    lost: usize,
    match_local: bool,
    ips: f64,
    single_device_ips: f64,
    accuracy: f64,
    join_to_ready_ms: f64,
    url: String,
    model_weight_bytes: u64,
    peers: Vec<PeerRow>,
    larger: Option<ModelRun>,
    plan: String,
}

fn peer_rows(st: &CoordinatorStatus) -> Vec<PeerRow> {
    st.peers
        .iter()
        .map(|p| PeerRow {
            id: p.id,
            name: p.name.clone(),
            backend: p.backend.clone(),
            state: p.state.to_string(),
            latency_ms: p.compute_avg_ms,
            tasks: p.tasks_done,
            utilisation: p.utilisation,
            weight_bytes: p.weight_bytes,
            rtt_ms: p.rtt_ms,
            join_to_ready_ms: p.join_to_ready_ms,
        })
        .collect()
}

/// Runs `inputs` locally on one device: outputs and images/s.
fn local_run(g: &Graph, inputs: &[Tensor]) -> Result<(Vec<Tensor>, f64)> {
    let mut exe = CpuBackend::new(1).compile(g)?;
    let t = Instant::now();
    let mut outs = Vec::with_capacity(inputs.len());
    for x in inputs {
        outs.push(exe.run(std::slice::from_ref(x))?.remove(0));
    }
    Ok((outs, inputs.len() as f64 / t.elapsed().as_secs_f64().max(1e-9)))
}

/// A coordinator for `g` joined to the room at `url`.
fn coordinator(url: &str, model: &str, g: Arc<Graph>, a: &Args) -> Result<CoordinatorLoop> {
    let mesh = NativeMesh::join(url, NativeConfig::new(Role::Coordinator, "demo coordinator")).map_err(anyhow::Error::msg).context("coordinator cannot join")?;
    let cfg = CoordinatorConfig { model: model.into(), planner: a.planner.clone(), window: a.window, model_secret: true, ..Default::default() };
    let c = Coordinator::new(g, cfg)?;
    Ok(CoordinatorLoop::new(mesh, c))
}

/// Streams `inputs` through the mesh; returns outputs in order and images/s.
fn stream(lp: &mut CoordinatorLoop, inputs: &[Tensor], timeout: Duration) -> Result<(Vec<Tensor>, f64)> {
    let t = Instant::now();
    for x in inputs {
        lp.submit(vec![x.clone()])?;
    }
    let mut outs: Vec<Tensor> = Vec::with_capacity(inputs.len());
    while outs.len() < inputs.len() {
        if t.elapsed() > timeout {
            bail!("only {} of {} frames came back within {:?}", outs.len(), inputs.len(), timeout);
        }
        lp.pump(Duration::from_millis(5)).map_err(anyhow::Error::msg)?;
        for (_, mut r) in lp.coordinator.take_results() {
            outs.push(r.remove(0));
        }
    }
    Ok((outs, inputs.len() as f64 / t.elapsed().as_secs_f64().max(1e-9)))
}

fn max_diff(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x.max_rel_diff(y) as f64).fold(0.0, f64::max)
}

fn print_peers(st: &CoordinatorStatus) {
    println!("{:<4} {:<12} {:<16} {:<8} {:>10} {:>7} {:>6} {:>12} {:>8}", "id", "peer", "backend", "state", "task ms", "tasks", "util", "weights", "rtt ms");
    for p in peer_rows(st) {
        println!(
            "{:<4} {:<12} {:<16} {:<8} {:>10.3} {:>7} {:>5.0}% {:>12} {:>8}",
            p.id,
            p.name,
            p.backend,
            p.state,
            p.latency_ms,
            p.tasks,
            100.0 * p.utilisation,
            p.weight_bytes,
            p.rtt_ms.map_or("-".into(), |r| format!("{r:.2}"))
        );
    }
}

pub fn run(a: Args) -> Result<()> {
    if a.peers == 0 || a.window == 0 {
        bail!("--peers and --window must be at least 1");
    }
    let headless = a.json || a.frames.is_some();
    let digits = zoo::test_digits()?;
    let frames = a.frames.unwrap_or(digits.len());
    if frames == 0 || frames > digits.len() {
        bail!("--frames must be between 1 and {} (bundled digits)", digits.len());
    }
    let bind = if a.lan { net::lan_address().map_err(anyhow::Error::msg).context("--lan")? } else { std::net::Ipv4Addr::LOCALHOST.into() };
    let server = serve::start(ServeConfig { bind, port: a.port, root: serve::default_root(), log: false, ..Default::default() }).map_err(anyhow::Error::msg).context("cannot start the server")?;
    if !a.json {
        println!("Tessera demo: {} native peers + a coordinator in room {} (WebRTC over {})", a.peers, server.room, server.addr.ip());
        println!("join URL: {}", server.url);
        if let Ok(qr) = net::qr_text(&server.url) {
            println!("{qr}");
        }
    }
    // Peers: one thread each, a WebRTC connection each.
    let gpu = (a.backend == "gpu").then(|| super::gpu_or_cpu(1, Some(super::PEER_GPU_TIMEOUT_MS), tessera_gpu::TileChoice::Auto));
    let make_backend = |gpu: Option<tessera_gpu::GpuOrCpu>| -> Box<dyn Backend> {
        match gpu {
            Some(g) => Box::new(g),
            None => Box::new(CpuBackend::new(1)),
        }
    };
    let profile = tessera_runtime::profile::measure(make_backend(gpu.clone()).as_ref(), "native", 4096.0, tessera_runtime::profile::ProfileConfig::quick(), &super::clock_ms)?;
    let peers: Vec<PeerThread> = (0..a.peers)
        .map(|i| {
            let profile = profile.clone();
            let gpu = gpu.clone();
            PeerThread::spawn(
                server.url.clone(),
                format!("native-{i}"),
                Box::new(move || {
                    let mut cfg = PeerConfig::new(format!("native-{i}"));
                    cfg.profile = Some(profile);
                    cfg.caps = vec!["native".into()];
                    Peer::new(cfg, make_backend(gpu), clock()).with_reprofile(super::reprofile(format!("native-{i}")))
                }),
            )
        })
        .collect();

    // LeNet on MNIST.
    let g = Arc::new(passes::optimize(&zoo::build("lenet")?)?);
    let inputs: Vec<Tensor> = digits[..frames].iter().map(|d| d.image.clone()).collect();
    let (local, single_ips) = local_run(&g, &inputs)?;
    let mut lp = coordinator(&server.url, "lenet", g.clone(), &a)?;
    let t = Instant::now();
    if !lp.wait_ready(a.peers, Duration::from_secs(60)).map_err(anyhow::Error::msg)? {
        bail!("the {} peers did not all join and load a plan within 60 s", a.peers);
    }
    let join_to_ready_ms = t.elapsed().as_secs_f64() * 1e3;
    let (outs, ips) = stream(&mut lp, &inputs, Duration::from_secs(300))?;
    let diff = max_diff(&outs, &local);
    let correct = outs.iter().zip(&digits).filter(|(o, d)| o.argmax() == d.label as usize).count();
    let st = lp.coordinator.status();
    let plan = st.plan.as_ref().map_or(String::new(), |p| p.render.clone());
    let lost = frames - outs.len() + st.frames.lost as usize;
    if !a.json {
        println!("\n{plan}");
        print_peers(&st);
        println!(
            "\nLeNet over the mesh: {frames} digits, accuracy {:.2}%, {:.0} images/s (one device: {:.0}), outputs {} the local run (max rel diff {:.1e}), {} lost, ready {:.0} ms after the peers joined",
            100.0 * correct as f64 / frames as f64,
            ips,
            single_ips,
            if diff <= 1e-4 { "equal" } else { "DIFFER FROM" },
            diff,
            lost,
            join_to_ready_ms
        );
    }
    let model_weight_bytes = st.model_weight_bytes;
    let mut summary = Summary {
        frames,
        lost,
        match_local: diff <= 1e-4,
        ips,
        single_device_ips: single_ips,
        accuracy: correct as f64 / frames as f64,
        join_to_ready_ms,
        url: server.url.clone(),
        model_weight_bytes,
        peers: peer_rows(&st),
        larger: None,
        plan,
    };

    // A larger zoo model through the same peers.
    if a.larger != "none" && a.larger != "lenet" {
        lp.close("switching to a larger model");
        let gl = Arc::new(passes::optimize(&zoo::build(&a.larger).with_context(|| format!("--larger {}", a.larger))?)?);
        let mut rng = Rng::new(5);
        let shape = gl.input_shape().to_vec();
        let xs: Vec<Tensor> = (0..a.larger_frames.max(1)).map(|_| Tensor::new(shape.clone(), rng.fill(shape.iter().product(), 1.0))).collect::<Result<_, _>>()?;
        let (local_l, single_l) = local_run(&gl, &xs)?;
        lp = coordinator(&server.url, &a.larger, gl.clone(), &a)?;
        if !lp.wait_ready(a.peers, Duration::from_secs(120)).map_err(anyhow::Error::msg)? {
            bail!("the peers did not load a plan for {} within 120 s", a.larger);
        }
        let (outs_l, ips_l) = stream(&mut lp, &xs, Duration::from_secs(600))?;
        let d = max_diff(&outs_l, &local_l);
        let st = lp.coordinator.status();
        let info = st.plan.as_ref();
        let run = ModelRun {
            model: a.larger.clone(),
            frames: xs.len(),
            lost: xs.len() - outs_l.len() + st.frames.lost as usize,
            match_local: d <= 1e-4,
            max_rel_diff: d,
            ips: ips_l,
            single_device_ips: single_l,
            plan: info.map_or(String::new(), |p| p.render.clone()),
            predicted_bytes_per_frame: info.map_or(0.0, |p| p.predicted_bytes_per_frame),
            wire_bytes_per_frame: info.map_or(0.0, |p| p.wire_bytes_per_frame),
        };
        if !a.json {
            println!("\n{}", run.plan);
            print_peers(&st);
            println!(
                "\n{} over the mesh: {} frames, {:.2} images/s (one device: {:.2}), outputs {} the local run (max rel diff {:.1e}), {} lost",
                run.model,
                run.frames,
                run.ips,
                run.single_device_ips,
                if run.match_local { "equal" } else { "DIFFER FROM" },
                run.max_rel_diff,
                run.lost
            );
        }
        summary.larger = Some(run);
    }

    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    if headless {
        lp.close("demo finished");
        for p in peers {
            let _ = p.stop();
        }
        server.shutdown();
        return Ok(());
    }
    // Keep the room open: stream digits for browsers that join, until Ctrl-C.
    println!("\nThe room stays open: open {} in browsers to add peers (Ctrl-C to stop).", server.url);
    lp.close("back to LeNet");
    let mut lp = coordinator(&server.url, "lenet", g, &a)?;
    let mut next = 0usize;
    let mut last = Instant::now();
    loop {
        if lp.coordinator.pending_frames() < 2 * a.window {
            lp.submit(vec![digits[next % digits.len()].image.clone()])?;
            next += 1;
        }
        lp.pump(Duration::from_millis(5)).map_err(anyhow::Error::msg)?;
        let _ = lp.coordinator.take_results();
        if last.elapsed() > Duration::from_secs(5) {
            last = Instant::now();
            let st = lp.coordinator.status();
            println!("{} frames, {:.0} images/s, {} live peers, plan epoch {:?}", st.frames.delivered, st.ips, lp.coordinator.live_peers().len(), lp.coordinator.current_plan());
        }
    }
}
