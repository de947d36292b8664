//! The mesh over real WebRTC on loopback: a server, three native peers and
//! a native coordinator in one room. LeNet on MNIST digits through the mesh
//! equals a local run; killing a peer mid-stream loses no frame; every peer
//! holds only its slice of the model. (Runs in a loopback-only namespace
//! under `./run test`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_cli::serve::{self, ServeConfig};
use tessera_graph::{passes, zoo, Tensor};
use tessera_kernels::{Backend, CpuBackend};
use tessera_mesh::driver::{clock, CoordinatorLoop, PeerThread};
use tessera_mesh::transport::native::{NativeConfig, NativeMesh};
use tessera_mesh::transport::signal::Role;
use tessera_mesh::{Coordinator, CoordinatorConfig, Peer, PeerConfig};

/// Submits `inputs` and pumps until every result is in (2 minutes at
/// most), calling `each` with the count so far; returns (frame, output).
fn stream(lp: &mut CoordinatorLoop, inputs: &[Tensor], mut each: impl FnMut(usize)) -> Vec<(u64, Tensor)> {
    for x in inputs {
        lp.submit(vec![x.clone()]).unwrap();
    }
    let mut outs = Vec::new();
    let t = Instant::now();
    while outs.len() < inputs.len() {
        assert!(t.elapsed() < Duration::from_secs(120), "stream stalled at {} frames", outs.len());
        lp.pump(Duration::from_millis(5)).unwrap();
        outs.extend(lp.coordinator.take_results().into_iter().map(|(f, mut o)| (f, o.remove(0))));
        each(outs.len());
    }
    outs
}

/// A server, optimised LeNet, `n` MNIST digits and their local outputs.
fn setup(n: usize) -> (serve::ServerHandle, Arc<tessera_graph::Graph>, Vec<Tensor>, Vec<Tensor>) {
    let server = serve::start(ServeConfig { port: 0, root: serve::default_root(), log: false, ..Default::default() }).unwrap();
    let g = Arc::new(passes::optimize(&zoo::build("lenet").unwrap()).unwrap());
    let inputs: Vec<Tensor> = zoo::test_digits().unwrap()[..n].iter().map(|d| d.image.clone()).collect();
    let mut exe = CpuBackend::new(1).compile(&g).unwrap();
    let local = inputs.iter().map(|x| exe.run(std::slice::from_ref(x)).unwrap().remove(0)).collect();
    (server, g, inputs, local)
}

fn peer(url: &str, i: usize) -> PeerThread {
    PeerThread::spawn(url.to_string(), format!("p{i}"), Box::new(move || Peer::new(PeerConfig::new(format!("p{i}")), Box::new(CpuBackend::new(1)), clock())))
}

#[test]
fn lenet_over_webrtc_survives_a_killed_peer() {
    let (server, g, inputs, local) = setup(120);

    let mut peers: Vec<Option<PeerThread>> = (0..3).map(|i| Some(peer(&server.url, i))).collect();
    let mesh = NativeMesh::join(&server.url, NativeConfig::new(Role::Coordinator, "test")).unwrap();
    // A splitting planner, so the killed peer holds work that must move.
    let cfg = CoordinatorConfig { model: "lenet".into(), planner: "dpm".into(), window: 4, model_secret: true, ..Default::default() };
    let mut lp = CoordinatorLoop::new(mesh, Coordinator::new(g.clone(), cfg).unwrap());
    let t = Instant::now();
    assert!(lp.wait_ready(3, Duration::from_secs(60)).unwrap(), "peers never became ready");
    let ready_ms = t.elapsed().as_secs_f64() * 1e3;

    let outs = stream(&mut lp, &inputs, |n| {
        if n >= 30 && peers[1].is_some() {
            peers[1].take().unwrap().kill();
        }
    });
    let st = lp.coordinator.status();
    for (i, (f, o)) in outs.iter().enumerate() {
        assert_eq!(*f as usize, i, "results out of order");
        assert!(o.max_rel_diff(&local[i]) <= 1e-4, "frame {i} differs from the local run");
    }
    assert_eq!(st.frames.lost, 0);
    let whole = st.model_weight_bytes;
    for p in &st.peers {
        assert!(p.weight_bytes < whole, "peer {} holds {} of {} weight bytes", p.name, p.weight_bytes, whole);
    }
    println!(
        "ready {ready_ms:.0} ms after joining; {} frames, {:.0} images/s, {} re-run, 0 lost; recovery {:?} ms; wire/predicted bytes per frame {:.3}",
        outs.len(),
        st.ips,
        st.frames.reruns,
        st.last_recovery_ms,
        st.plan.as_ref().map_or(0.0, |p| p.wire_bytes_per_frame / p.predicted_bytes_per_frame.max(1.0))
    );
    lp.close("done");
    for p in peers.into_iter().flatten() {
        let _ = p.stop();
    }
}

/// A native peer computing on the GPU (wgpu; Mesa's lavapipe in CI) whose
/// device is lost mid-stream: its tasks move to its CPU, the coordinator is
/// told (`Backend` message) and shows it, and no frame is lost or wrong.
/// Skipped without a GPU adapter unless `TESSERA_REQUIRE_GPU=1`.
#[test]
fn gpu_peer_losing_its_device_keeps_serving() {
    let (gpu, reason) = tessera_gpu::backend_or_cpu(tessera_gpu::GpuOptions::default(), 1);
    let Some(device) = gpu.gpu().cloned() else {
        assert!(!tessera_gpu::gpu_required(), "no usable GPU: {reason:?}");
        eprintln!("skipped: no usable GPU ({reason:?})");
        return;
    };
    let (server, g, inputs, local) = setup(80);

    // Re-measured after the loss (a small profile: this is a test).
    let reprofile = Box::new(|b: &dyn Backend| {
        let cfg = tessera_runtime::profile::ProfileConfig { sizes: 3, repeats: 1, max_flops: 2e7 };
        tessera_runtime::profile::measure(b, "gpu-peer", 4096.0, cfg, &|| std::time::UNIX_EPOCH.elapsed().unwrap().as_secs_f64() * 1e3).ok()
    });
    let gpu_peer = PeerThread::spawn(server.url.clone(), "gpu-peer".into(), Box::new(move || Peer::new(PeerConfig::new("gpu-peer"), Box::new(gpu), clock()).with_reprofile(reprofile)));
    let cpu_peer = peer(&server.url, 1);
    let mesh = NativeMesh::join(&server.url, NativeConfig::new(Role::Coordinator, "test")).unwrap();
    let cfg = CoordinatorConfig { model: "lenet".into(), planner: "modnn".into(), window: 4, ..Default::default() };
    let mut lp = CoordinatorLoop::new(mesh, Coordinator::new(g.clone(), cfg).unwrap());
    assert!(lp.wait_ready(2, Duration::from_secs(60)).unwrap(), "peers never became ready");
    let st = lp.coordinator.status();
    let gp = st.peers.iter().find(|p| p.name == "gpu-peer").expect("the GPU peer joined");
    assert!(gp.backend.starts_with("gpu "), "{}", gp.backend);
    assert!(!gp.tasks.is_empty(), "the GPU peer has no work:\n{}", st.plan.as_ref().map_or("", |p| p.render.as_str()));

    let mut lost = false;
    let outs = stream(&mut lp, &inputs, |n| {
        if n >= 20 && !lost {
            device.simulate_device_loss();
            lost = true;
        }
    });
    // The note travels after the task that noticed the loss; wait for it.
    let t = Instant::now();
    while !lp.coordinator.status().events.iter().any(|e| e.contains("now computes on")) && t.elapsed() < Duration::from_secs(10) {
        lp.pump(Duration::from_millis(5)).unwrap();
    }
    let st = lp.coordinator.status();
    for (i, (f, o)) in outs.iter().enumerate() {
        assert_eq!(*f as usize, i, "results out of order");
        assert!(o.max_rel_diff(&local[i]) <= 1e-4, "frame {i} differs from the local run");
    }
    assert_eq!(st.frames.lost, 0);
    let gp = st.peers.iter().find(|p| p.name == "gpu-peer").unwrap();
    assert_ne!(gp.state, "dead", "the GPU peer was dropped: {:?}", gp.dead_reason);
    assert!(gp.backend.ends_with("(GPU lost)"), "the coordinator still shows {:?}", gp.backend);
    let ev: Vec<&String> = st.events.iter().filter(|e| e.contains("gpu-peer")).collect();
    assert!(ev.iter().any(|e| e.contains("lost")), "{ev:#?}");
    // The fresh CPU profile came along: a re-plan on it, not after drift.
    assert!(ev.iter().any(|e| e.contains("changed backend")), "{ev:#?}");
    println!("GPU peer after the loss: {}; events: {ev:#?}", gp.backend);
    lp.close("done");
    let _ = gpu_peer.stop();
    let _ = cpu_peer.stop();
}

/// A native peer behind an emulated link (20 Mbit/s, 10 ms each way) and
/// one slowed 4x: the coordinator's probes measure the emulated link, and
/// the mesh still computes what the local run does.
#[test]
fn emulated_links_and_devices_are_what_the_coordinator_measures() {
    use tessera_mesh::transport::LinkSim;
    let (server, g, inputs, local) = setup(20);

    let link = LinkSim { latency_ms: 10.0, mbps: 20.0 };
    let far = PeerThread::spawn_behind(server.url.clone(), "far".into(), Some(link), Box::new(|| Peer::new(PeerConfig::new("far"), Box::new(CpuBackend::new(1)), clock())));
    let slow = PeerThread::spawn(
        server.url.clone(),
        "slow".into(),
        Box::new(|| Peer::new(PeerConfig::new("slow"), Box::new(tessera_runtime::slowed::Slowed::new(Box::new(CpuBackend::new(1)), 4.0)), clock())),
    );
    let mesh = NativeMesh::join(&server.url, NativeConfig::new(Role::Coordinator, "test")).unwrap();
    let cfg = CoordinatorConfig { model: "lenet".into(), planner: "modnn".into(), window: 2, ..Default::default() };
    let mut lp = CoordinatorLoop::new(mesh, Coordinator::new(g.clone(), cfg).unwrap());
    let ready = lp.wait_ready(2, Duration::from_secs(30)).unwrap();
    assert!(ready, "peers never became ready: {:?}", lp.coordinator.status().peers.iter().map(|p| (&p.name, &p.state, p.rtt_ms, p.mbps)).collect::<Vec<_>>());
    // A few more pings for the smallest RTT.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(2500) {
        lp.pump(Duration::from_millis(5)).unwrap();
    }
    let st = lp.coordinator.status();
    let p = st.peers.iter().find(|p| p.name == "far").unwrap();
    let (rtt, mbps) = (p.rtt_ms.unwrap(), p.mbps.unwrap());
    println!("emulated 20 Mbit/s, 10 ms each way: measured rtt {rtt:.1} ms, {mbps:.1} Mbit/s");
    assert!((19.0..40.0).contains(&rtt), "rtt {rtt}");
    assert!((10.0..24.0).contains(&mbps), "throughput {mbps}");
    let q = st.peers.iter().find(|p| p.name == "slow").unwrap();
    assert!(q.backend.ends_with("slowed 4.0x"), "{}", q.backend);

    let outs = stream(&mut lp, &inputs, |_| {});
    for (i, (_, o)) in outs.iter().enumerate() {
        assert!(o.max_rel_diff(&local[i]) <= 1e-4, "frame {i} differs from the local run");
    }
    lp.close("done");
    let _ = far.stop();
    let _ = slow.stop();
}
