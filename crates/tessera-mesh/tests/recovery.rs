//! Re-planning: peers dying (closed channel or silent), joining and
//! drifting mid-stream; local fallback. Every frame completes, in order,
//! equal to the local run.

mod common;

use common::*;
use tessera_mesh::Coordinator;
use tessera_mesh::transport::memory::{MemoryMesh, MeshOptions, PeerSpec};

/// Submits `xs`, runs until `at` results are in, calls `event`, then runs to the end.
fn stream_with_event(
    m: &mut MemoryMesh,
    xs: &[Vec<tessera_graph::Tensor>],
    at: usize,
    event: impl FnOnce(&mut MemoryMesh),
) -> Vec<(u64, Vec<tessera_graph::Tensor>)> {
    for x in xs {
        m.submit(x.clone()).unwrap();
    }
    let mut got = Vec::new();
    assert!(m.run_until(
        |m| {
            got.extend(m.take_results());
            got.len() >= at
        },
        60_000.0
    ));
    event(m);
    assert!(
        m.run_until(
            |m| {
                got.extend(m.take_results());
                got.len() >= xs.len()
            },
            120_000.0
        ),
        "stuck: {:#?}",
        m.coordinator.status()
    );
    got
}

#[test]
fn killed_peer_loses_no_frame() {
    for (model_name, planner) in [("lenet", "hyps"), ("lenet", "deeperthings"), ("lenet", "tessera"), ("mobilenetv2", "dpm")] {
        let g = model(model_name);
        let xs = inputs(&g, model_name, 12);
        let want = reference(&g, &xs);
        let mut m = mesh(&g, config(model_name, planner), 3, MeshOptions::default());
        let victim = m.peer_ids()[1];
        let got = stream_with_event(&mut m, &xs, 3, |m| m.kill(victim));
        check(&got, &want, &format!("{model_name}/{planner} with a killed peer"));
        let st = m.coordinator.status();
        assert_eq!(st.frames.lost, 0);
        assert_eq!(st.frames.done, 12);
        assert!(st.peers.iter().any(|p| p.id == victim && p.state == "dead"));
        let plan = st.plan.as_ref().unwrap();
        assert!(!plan.members.contains(&format!("peer {victim}")), "the dead peer is still planned on");
        println!("{model_name}/{planner}: reruns {}, recovery {:?} ms\n{}", st.frames.reruns, st.last_recovery_ms, plan.render);
    }
}

#[test]
fn peer_leaving_with_bye_is_replaced() {
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 12);
    let want = reference(&g, &xs);
    let mut m = mesh(&g, config("lenet", "modnn"), 3, MeshOptions::default());
    let who = m.peer_ids()[2];
    let got = stream_with_event(&mut m, &xs, 5, |m| m.leave(who, "tab closed"));
    check(&got, &want, "peer left with bye");
    let st = m.coordinator.status();
    let p = st.peers.iter().find(|p| p.id == who).unwrap();
    assert_eq!(p.state, "dead");
    assert!(p.dead_reason.as_deref().unwrap().contains("tab closed"), "{:?}", p.dead_reason);
    assert_eq!(st.frames.lost, 0);
}

#[test]
fn silent_peer_is_found_by_timeout() {
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 12);
    let want = reference(&g, &xs);
    let mut cfg = config("lenet", "hyps");
    cfg.peer_timeout_ms = 3000.0;
    let mut m = mesh(&g, cfg, 3, MeshOptions::default());
    let victim = m.peer_ids()[0];
    let t0 = m.now();
    let got = stream_with_event(&mut m, &xs, 3, |m| m.freeze(victim));
    check(&got, &want, "frozen peer");
    let st = m.coordinator.status();
    assert_eq!(st.frames.lost, 0);
    let p = st.peers.iter().find(|p| p.id == victim).unwrap();
    assert_eq!(p.state, "dead");
    assert!(p.dead_reason.as_deref().unwrap().contains("timed out"), "{:?}", p.dead_reason);
    assert!(m.closed.iter().any(|(id, _)| *id == victim), "the coordinator closes a silent peer");
    assert!(m.now() - t0 >= 3000.0);
}

#[test]
fn all_peers_lost_falls_back_to_local() {
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 8);
    let want = reference(&g, &xs);
    let mut m = mesh(&g, config("lenet", "dpm"), 2, MeshOptions::default());
    let ids = m.peer_ids();
    let got = stream_with_event(&mut m, &xs, 2, |m| ids.iter().for_each(|&id| m.kill(id)));
    check(&got, &want, "every peer killed");
    let st = m.coordinator.status();
    assert_eq!(st.phase, "local");
    assert_eq!(st.frames.lost, 0);
}

#[test]
fn no_peers_runs_locally_or_waits() {
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 4);
    let want = reference(&g, &xs);
    // Local fallback (default): a room with no peers still works.
    let mut m = MemoryMesh::new(Coordinator::new(g.clone(), config("lenet", "tessera")).unwrap(), MeshOptions::default());
    let got = m.run_frames(xs.clone(), 10_000.0).unwrap();
    check(&got, &want, "no peers, local fallback");
    assert_eq!(m.coordinator.status().phase, "local");
    // Without it, frames wait for a peer.
    let mut cfg = config("lenet", "tessera");
    cfg.local_fallback = false;
    let mut m = MemoryMesh::new(Coordinator::new(g.clone(), cfg).unwrap(), MeshOptions::default());
    for x in &xs {
        m.submit(x.clone()).unwrap();
    }
    m.run_for(5000.0);
    assert_eq!(m.results_ready(), 0);
    assert_eq!(m.coordinator.status().phase, "waiting");
    m.add_peer(PeerSpec::new("late"));
    let mut got = Vec::new();
    assert!(m.run_until(
        |m| {
            got.extend(m.take_results());
            got.len() == 4
        },
        60_000.0
    ));
    check(&got, &want, "first peer joins late");
}

#[test]
fn joining_peer_is_planned_in() {
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 48);
    let want = reference(&g, &xs);
    let mut m = mesh(&g, config("lenet", "hyps"), 2, MeshOptions::default());
    let before = m.coordinator.status().plan.unwrap();
    assert_eq!(before.members.len(), 2);
    let mut joined = 0;
    let got = stream_with_event(&mut m, &xs, 4, |m| joined = m.add_peer(PeerSpec::new("newcomer")));
    check(&got, &want, "peer joining mid-stream");
    let st = m.coordinator.status();
    let plan = st.plan.as_ref().unwrap();
    assert!(plan.epoch > before.epoch);
    assert!(plan.members.contains(&format!("peer {joined}")), "{plan:#?}");
    let p = st.peers.iter().find(|p| p.id == joined).unwrap();
    assert_eq!(p.state, "ready");
    assert!(p.tasks_done > 0, "the newcomer ran tasks");
    assert!(p.join_to_ready_ms.is_some());
    assert_eq!(st.frames.lost, 0);
    assert_eq!(st.frames.reruns, 0, "a graceful re-plan re-runs nothing");
    println!("join → ready {:?} ms\n{}", p.join_to_ready_ms, plan.render);
}

#[test]
fn drift_triggers_a_replan() {
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 40);
    let want = reference(&g, &xs);
    let mut cfg = config("lenet", "tessera");
    cfg.drift_tasks = 4;
    let mut m = mesh(&g, cfg, 3, MeshOptions::default());
    let slow = m.peer_ids()[0];
    let epoch = m.coordinator.current_plan().unwrap();
    let got = stream_with_event(&mut m, &xs, 4, |m| m.set_compute_ms(slow, 80.0));
    check(&got, &want, "drifting peer");
    let st = m.coordinator.status();
    assert!(st.plan.as_ref().unwrap().epoch > epoch, "no re-plan after drift");
    assert!(st.events.iter().any(|e| e.contains("drifted")), "{:#?}", st.events);
    let p = st.peers.iter().find(|p| p.id == slow).unwrap();
    assert!(p.speed_factor > 5.0, "the slow peer's profile was not rescaled: {}", p.speed_factor);
    assert_eq!(st.frames.lost, 0);
    let plan = st.plan.as_ref().unwrap();
    assert!(p.tasks.is_empty() && p.state == "idle", "the 80x slower peer is still planned on:\n{}", plan.render);
    println!("after drift: {}", plan.render);
}

/// Chaos: peers join, die, freeze, stall, leave and slow down at random while a
/// stream runs (some peers queue their tasks, as browser peers do, some
/// run them asynchronously, as WebGPU peers do); every
/// frame still completes, in order, equal to the local run.
#[test]
fn chaos_keeps_every_frame() {
    use tessera_graph::rng::Rng;
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 60);
    let want = reference(&g, &xs);
    // TESSERA_CHAOS_SEEDS=N runs N seeds (default 4, one per planner).
    let n: u64 = std::env::var("TESSERA_CHAOS_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let planners = ["tessera", "deeperthings", "modnn", "hyps", "dpm", "deepthings"];
    for seed in 1..=n {
        let planner = planners[(seed as usize - 1) % if n <= 4 { 4 } else { planners.len() }];
        let mut rng = Rng::new(seed);
        let mut cfg = config("lenet", planner);
        cfg.peer_timeout_ms = 2000.0;
        cfg.task_timeout_ms = 3000.0;
        cfg.drift_tasks = 3;
        let c = Coordinator::new(g.clone(), cfg).unwrap();
        let mut m = MemoryMesh::new(c, MeshOptions { interleave: Some(seed), ..Default::default() });
        // Peers run tasks inline, queued (browser CPU) or async (WebGPU).
        let spec = |rng: &mut Rng, i: usize| {
            let mode = rng.range(0, 2);
            PeerSpec { defer_runs: mode == 1, async_tasks: mode == 2, compute_ms: 0.5 + rng.f32() as f64 * 3.0, ..PeerSpec::new(format!("c{i}")) }
        };
        for i in 0..3 {
            let s = spec(&mut rng, i);
            m.add_peer(s);
        }
        assert!(m.wait_ready(60_000.0));
        for x in &xs {
            m.submit(x.clone()).unwrap();
        }
        let mut got = Vec::new();
        let mut joined = 3;
        for _ in 0..25 {
            m.run_for(rng.f32() as f64 * 20.0);
            got.extend(m.take_results());
            let ids = m.peer_ids();
            match rng.range(0, 7) {
                0 | 1 => {
                    joined += 1;
                    let s = spec(&mut rng, joined);
                    m.add_peer(s);
                }
                2 if ids.len() > 1 => m.kill(ids[rng.range(0, ids.len() - 1)]),
                3 if ids.len() > 1 => m.freeze(ids[rng.range(0, ids.len() - 1)]),
                4 if !ids.is_empty() => m.leave(ids[rng.range(0, ids.len() - 1)], "bye"),
                5 if !ids.is_empty() => m.set_compute_ms(ids[rng.range(0, ids.len() - 1)], 40.0),
                6 if ids.len() > 1 => m.stall(ids[rng.range(0, ids.len() - 1)]),
                _ => m.replan(),
            }
        }
        let ok = m.run_until(
            |m| {
                got.extend(m.take_results());
                got.len() == xs.len()
            },
            600_000.0,
        );
        let st = m.coordinator.status();
        if !ok {
            eprintln!("phase {} plan {:?} members {:?}", st.phase, st.plan.as_ref().map(|p| p.epoch), st.plan.as_ref().map(|p| p.members.clone()));
            for id in m.peer_ids() {
                if let Some(p) = m.peer(id) {
                    let ps = p.status();
                    eprintln!("peer {id}: plans {:?} queue {} in_flight {} tasks_run {} err {:?}", ps.plans_held, ps.queue, ps.in_flight, ps.tasks_run, ps.last_error);
                }
            }
        }
        assert!(ok, "{planner} seed {seed}: {} of {} frames; {:#?}\n{:#?}\n{:#?}", got.len(), xs.len(), st.frames, st.peers.iter().map(|p| (p.id, &p.state, p.in_flight, &p.dead_reason)).collect::<Vec<_>>(), st.events.iter().collect::<Vec<_>>());
        check(&got, &want, &format!("chaos/{planner}"));
        assert_eq!(st.frames.lost, 0);
        println!("chaos/{planner}: {} re-plans, {} re-runs, phase {}, {} live peers", st.replans, st.frames.reruns, st.phase, m.coordinator.live_peers().len());
    }
}

/// WebGPU peers hand tasks out and take them back later
/// (`Peer::next_task` / `Peer::complete`) while they keep answering the
/// coordinator; a re-plan in mid-stream (plans replaced and unloaded with
/// tasks out) loses nothing.
#[test]
fn async_peers_keep_every_frame_through_a_replan() {
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 40);
    let want = reference(&g, &xs);
    let c = Coordinator::new(g.clone(), config("lenet", "tessera")).unwrap();
    let mut m = MemoryMesh::new(c, MeshOptions::default());
    for i in 0..3 {
        m.add_peer(PeerSpec { async_tasks: true, compute_ms: 2.0, ..PeerSpec::new(format!("gpu{i}")) });
    }
    assert!(m.wait_ready(60_000.0));
    let epoch = m.coordinator.current_plan().unwrap();
    let got = stream_with_event(&mut m, &xs, 10, |m| m.replan());
    check(&got, &want, "async peers");
    let st = m.coordinator.status();
    assert!(st.plan.as_ref().unwrap().epoch > epoch, "no re-plan");
    assert_eq!(st.frames.lost, 0);
    for id in m.peer_ids() {
        let p = m.peer(id).unwrap().status();
        assert_eq!(p.in_flight, 0, "{}: a task never came back", p.name);
    }
    assert!(st.peers.iter().map(|p| p.tasks_done).sum::<u64>() > 0, "no peer ran anything");
}

/// A peer whose backend changes under it (a GPU lost, the CPU taking over)
/// keeps serving, and tells the coordinator: the dashboard shows the new
/// backend and why; the stream loses nothing.
#[test]
fn backend_fallback_is_reported_to_the_coordinator() {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use tessera_kernels::{Backend, CpuBackend, Executable, KernelError};

    /// The CPU backend, renamed once `runs` reaches `fail_after`, with one
    /// note then, as `tessera_gpu::GpuOrCpu` does when its device is lost.
    #[derive(Clone)]
    struct Failing {
        cpu: CpuBackend,
        runs: Rc<Cell<u32>>,
        fail_after: u32,
        notes: Rc<RefCell<Vec<String>>>,
    }
    struct Exe(Box<dyn Executable>, Failing);
    impl Executable for Exe {
        fn run(&mut self, x: &[tessera_graph::Tensor]) -> Result<Vec<tessera_graph::Tensor>, KernelError> {
            let f = &self.1;
            f.runs.set(f.runs.get() + 1);
            if f.runs.get() == f.fail_after {
                f.notes.borrow_mut().push("GPU test-gpu lost (device destroyed): computing on the CPU from now on".into());
            }
            self.0.run(x)
        }
        fn run_profiled(&mut self, x: &[tessera_graph::Tensor], c: tessera_kernels::Clock) -> Result<(Vec<tessera_graph::Tensor>, Vec<tessera_kernels::NodeTiming>), KernelError> {
            self.0.run_profiled(x, c)
        }
    }
    impl Backend for Failing {
        fn name(&self) -> String {
            if self.runs.get() >= self.fail_after { format!("{} (GPU lost)", self.cpu.name()) } else { "gpu test-gpu (Vulkan)".into() }
        }
        fn compile(&self, g: &tessera_graph::Graph) -> Result<Box<dyn Executable>, KernelError> {
            Ok(Box::new(Exe(self.cpu.compile(g)?, self.clone())))
        }
        fn take_notes(&self) -> Vec<String> {
            std::mem::take(&mut *self.notes.borrow_mut())
        }
    }

    let g = model("lenet");
    let xs = inputs(&g, "lenet", 30);
    let want = reference(&g, &xs);
    let c = Coordinator::new(g.clone(), config("lenet", "hyps")).unwrap();
    let mut m = MemoryMesh::new(c, MeshOptions::default());
    let failing = Failing { cpu: CpuBackend::new(1), runs: Rc::new(Cell::new(0)), fail_after: 5, notes: Rc::default() };
    let gpu = m.add_peer(PeerSpec { backend: Some(Box::new(failing)), async_tasks: true, ..PeerSpec::new("gpu-peer") });
    m.add_peer(PeerSpec::new("cpu-peer"));
    assert!(m.wait_ready(60_000.0));
    let before = m.coordinator.status().peers.iter().find(|p| p.id == gpu).unwrap().backend.clone();
    assert!(before.starts_with("gpu "), "{before}");
    let got = m.run_frames(xs, 120_000.0).unwrap();
    check(&got, &want, "backend fallback");
    let st = m.coordinator.status();
    let p = st.peers.iter().find(|p| p.id == gpu).unwrap();
    assert!(p.backend.ends_with("(GPU lost)"), "the coordinator still shows {:?}", p.backend);
    assert!(st.events.iter().any(|e| e.contains("gpu-peer") && e.contains("lost")), "{:#?}", st.events);
    assert!(st.events.iter().any(|e| e.contains("now computes on")), "{:#?}", st.events);
    let ps = m.peer(gpu).unwrap().status();
    assert_eq!(ps.backend_notes.len(), 1, "{:?}", ps.backend_notes);
    assert_eq!(st.frames.lost, 0);
}

/// A peer whose GPU never opened (the backend's first note) says so to
/// every coordinator it connects to, right after its Hello.
#[test]
fn a_peer_reports_why_it_has_no_gpu() {
    use std::cell::RefCell;
    use tessera_kernels::{Backend, CpuBackend, Executable, KernelError};

    struct NoGpu(CpuBackend, RefCell<Vec<String>>);
    impl Backend for NoGpu {
        fn name(&self) -> String {
            self.0.name()
        }
        fn compile(&self, g: &tessera_graph::Graph) -> Result<Box<dyn Executable>, KernelError> {
            self.0.compile(g)
        }
        fn take_notes(&self) -> Vec<String> {
            std::mem::take(&mut *self.1.borrow_mut())
        }
    }
    let g = model("lenet");
    let c = Coordinator::new(g.clone(), config("lenet", "hyps")).unwrap();
    let mut m = MemoryMesh::new(c, MeshOptions::default());
    let note = "GPU not used (no GPU adapter): computing on the CPU".to_string();
    m.add_peer(PeerSpec { backend: Some(Box::new(NoGpu(CpuBackend::new(1), RefCell::new(vec![note])))), ..PeerSpec::new("laptop") });
    assert!(m.wait_ready(60_000.0));
    let st = m.coordinator.status();
    assert!(st.events.iter().any(|e| e.contains("laptop") && e.contains("GPU not used")), "{:#?}", st.events);
}

/// A peer whose kernels hang (it still answers pings, its task never
/// comes back) is dropped after the task timeout and its frames re-run:
/// the stream never stalls.
#[test]
fn a_stuck_peer_is_dropped_and_nothing_stalls() {
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 30);
    let want = reference(&g, &xs);
    let mut cfg = config("lenet", "modnn");
    cfg.task_timeout_ms = 5_000.0;
    let c = Coordinator::new(g.clone(), cfg).unwrap();
    let mut m = MemoryMesh::new(c, MeshOptions::default());
    let ids: Vec<_> = (0..3).map(|i| m.add_peer(PeerSpec { async_tasks: true, ..PeerSpec::new(format!("g{i}")) })).collect();
    assert!(m.wait_ready(60_000.0));
    let got = stream_with_event(&mut m, &xs, 5, |m| m.stall(ids[1]));
    check(&got, &want, "stuck peer");
    let st = m.coordinator.status();
    let p = st.peers.iter().find(|p| p.id == ids[1]).unwrap();
    assert_eq!(p.state, "dead");
    assert!(p.dead_reason.as_deref().unwrap_or("").contains("stuck"), "{:?}", p.dead_reason);
    assert_eq!(st.frames.lost, 0);
}
