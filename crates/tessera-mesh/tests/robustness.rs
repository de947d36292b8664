//! Hostile input: garbage, truncated, mutated, oversized, unknown and
//! wrong-version frames at the wire layer, the coordinator and the peer.
//! Every one is answered with an Error frame or a close; nothing panics.

mod common;

use common::*;
use tessera_graph::rng::Rng;
use tessera_mesh::msg::{Hello, Msg};
use tessera_mesh::transport::memory::{LinkSim, MemoryMesh, MeshOptions, PeerSpec};
use tessera_mesh::wire::{self, HEADER_LEN, Kind, Limits, MAX_FRAME_BYTES, Reassembler};
use tessera_mesh::{Coordinator, ErrorCode, Input, Output, Peer, PeerConfig};

/// Error messages among raw frames.
fn errors(frames: &[Vec<u8>]) -> Vec<(ErrorCode, String)> {
    let mut r = Reassembler::new(Limits::peer());
    frames
        .iter()
        .filter_map(|f| r.push(f, 0.0).ok().flatten())
        .filter_map(|m| match Msg::decode(m.kind, &m.payload) {
            Ok(Msg::Error(e)) => Some((e.code, e.text)),
            _ => None,
        })
        .collect()
}

/// A sample of valid frames of every kind, for mutation.
fn corpus() -> Vec<Vec<u8>> {
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 2);
    let mut m = mesh(&g, config("lenet", "deeperthings"), 2, MeshOptions::default());
    // Capture real traffic by re-encoding messages the state machines send.
    let mut out = Vec::new();
    let hello = Msg::Hello(Hello {
        name: "x".into(),
        backend: "cpu".into(),
        agent: "t".into(),
        caps: vec!["simd128".into()],
        profile: Some(tessera_plan::cluster::profile("nano").unwrap()),
    });
    out.extend(hello.to_frames(1, 4096).unwrap());
    for msg in [
        Msg::Ping { seq: 1, sent_ms: 2.0 },
        Msg::Pong { seq: 1, sent_ms: 2.0, peer_ms: 3.0 },
        Msg::Probe { seq: 2, filler: vec![0; 5000] },
        Msg::ProbeAck { seq: 2, bytes: 5000 },
        Msg::Forget { frame: 9 },
        Msg::Unload { plan: 3 },
        Msg::Bye { reason: "done".into() },
        Msg::error(ErrorCode::BAD_FRAME, 4, "x"),
        Msg::Backend(tessera_mesh::msg::BackendNote { backend: "cpu".into(), notes: vec!["GPU lost".into()], profile: Some(tessera_plan::cluster::profile("pi4").unwrap()) }),
    ] {
        out.extend(msg.to_frames(7, 1000).unwrap());
    }
    m.run_frames(xs, 10_000.0).unwrap();
    // A LoadPlan and Run/Done from a fresh plan on a raw peer's inbox.
    let raw = m.add_raw_peer(LinkSim::default());
    m.run_for(100.0);
    out.extend(m.inbox(raw).iter().cloned());
    out
}

#[test]
fn fuzz_reassembler_and_decoder_never_panic() {
    let corpus = corpus();
    let mut rng = Rng::new(42);
    let lim = Limits { max_message_bytes: 1 << 20, max_partial: 4, max_buffered_bytes: 2 << 20, partial_timeout_ms: 100.0 };
    let mut r = Reassembler::new(lim);
    let mut decoded = 0;
    for i in 0..40_000 {
        let base = &corpus[rng.range(0, corpus.len() - 1)];
        let mut f = base.clone();
        match rng.range(0, 6) {
            0 => f.truncate(rng.range(0, f.len())),
            1 => {
                for _ in 0..rng.range(1, 8) {
                    let k = rng.range(0, f.len().saturating_sub(1));
                    if !f.is_empty() {
                        f[k] ^= 1 << rng.range(0, 7);
                    }
                }
            }
            2 => {
                // Mutate the header only (lengths, ids, chunk fields).
                let k = rng.range(4, HEADER_LEN.min(f.len()) - 1);
                f[k] = rng.next_u64() as u8;
            }
            3 => f = (0..rng.range(0, 300)).map(|_| rng.next_u64() as u8).collect(),
            4 => {
                // Random payload behind a valid header.
                let kind = Kind::ALL[rng.range(0, Kind::ALL.len() - 1)];
                let p: Vec<u8> = (0..rng.range(0, 200)).map(|_| rng.next_u64() as u8).collect();
                f = wire::frames(kind, rng.next_u64() as u32, &p, 64).unwrap().remove(0);
            }
            5 => f.extend((0..rng.range(1, 50)).map(|_| rng.next_u64() as u8)),
            _ => {}
        }
        if let Ok(Some(m)) = r.push(&f, i as f64)
            && Msg::decode(m.kind, &m.payload).is_ok()
        {
            decoded += 1;
        }
        if i % 1000 == 0 {
            r.gc(i as f64);
        }
        assert!(r.partial_messages() <= 4 && r.buffered_bytes() <= 2 << 20);
    }
    println!("{decoded} mutated frames still decoded");
    // Decoding every truncation of every message never panics.
    let mut r = Reassembler::new(Limits::peer());
    for f in &corpus {
        if let Ok(Some(m)) = r.push(f, 0.0) {
            for cut in 0..m.payload.len() {
                assert!(Msg::decode(m.kind, &m.payload[..cut]).is_err() || cut == m.payload.len());
            }
        }
    }
}

#[test]
fn coordinator_answers_garbage_and_closes_repeat_offenders() {
    let g = model("lenet");
    let mut m = MemoryMesh::new(Coordinator::new(g, config("lenet", "tessera")).unwrap(), MeshOptions::default());
    let honest = m.add_peer(PeerSpec::new("honest"));
    let raw = m.add_raw_peer(LinkSim::default());
    m.inject(raw, b"GET / HTTP/1.1\r\n\r\n".to_vec());
    m.run_for(10.0);
    let e = errors(m.inbox(raw));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, ErrorCode::BAD_FRAME);
    assert!(m.is_open(raw), "one bad frame is answered, not fatal");
    // Unknown kind: answered, not counted against the sender (forward compatibility).
    let mut unk = wire::frames(Kind::Ping, 5, &[0; 12], 64).unwrap().remove(0);
    unk[5] = 200;
    m.inject(raw, unk);
    // Oversized frame.
    m.inject(raw, vec![0u8; MAX_FRAME_BYTES + 1]);
    // Valid framing, garbage payload.
    m.inject(raw, wire::frames(Kind::Hello, 6, &[1, 2, 3], 64).unwrap().remove(0));
    m.run_for(10.0);
    let codes: Vec<ErrorCode> = errors(m.inbox(raw)).iter().map(|e| e.0).collect();
    assert_eq!(codes, [ErrorCode::BAD_FRAME, ErrorCode::UNKNOWN_KIND, ErrorCode::TOO_LARGE, ErrorCode::BAD_MESSAGE]);
    // The third counted fault in a row closed the channel.
    assert!(!m.is_open(raw), "repeat offender still connected");
    assert!(m.closed.iter().any(|(id, why)| *id == raw && why.contains("faulty frames")), "{:?}", m.closed);
    // The honest peer is unaffected and the room still works.
    assert!(m.wait_ready(10_000.0));
    assert!(m.is_open(honest));
    let xs = inputs(m.coordinator.graph(), "lenet", 2);
    m.run_frames(xs, 10_000.0).unwrap();
}

#[test]
fn version_mismatch_is_refused_clearly() {
    let g = model("lenet");
    let mut m = MemoryMesh::new(Coordinator::new(g, config("lenet", "tessera")).unwrap(), MeshOptions::default());
    let raw = m.add_raw_peer(LinkSim::default());
    let mut hello = Msg::Hello(Hello { name: "future".into(), backend: "npu".into(), agent: "tessera 9".into(), caps: vec![], profile: None })
        .to_frames(1, 4096)
        .unwrap()
        .remove(0);
    hello[4] = 2;
    m.inject(raw, hello);
    m.run_for(10.0);
    let e = errors(m.inbox(raw));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, ErrorCode::VERSION);
    assert!(e[0].1.contains("version 2") && e[0].1.contains("version 1"), "{}", e[0].1);
    assert!(!m.is_open(raw));
    assert!(m.closed[0].1.contains("version"), "{:?}", m.closed);
    // The error frame itself stays readable by any version: magic + version + kind first.
    let f = &m.inbox(raw)[0];
    assert_eq!((&f[..4], f[4], f[5]), (&b"TSRA"[..], 1, Kind::Error as u8));
}

#[test]
fn peer_answers_garbage_and_unexpected_messages() {
    let mut p = Peer::new(PeerConfig::new("p"), Box::new(tessera_kernels::CpuBackend::new(1)), Box::new(|| 0.0));
    let out = p.handle(Input::Connected(0));
    assert!(matches!(&out[..], [Output::Send(0, _)]), "hello on connect");
    let sent = |out: Vec<Output>| -> Vec<Vec<u8>> { out.into_iter().filter_map(|o| if let Output::Send(_, f) = o { Some(f) } else { None }).collect() };
    // Garbage.
    let e = errors(&sent(p.handle(Input::Frame(0, vec![1, 2, 3]))));
    assert_eq!(e[0].0, ErrorCode::BAD_FRAME);
    // A message only peers send.
    let done = Msg::ProbeAck { seq: 1, bytes: 2 }.to_frames(3, 4096).unwrap().remove(0);
    let e = errors(&sent(p.handle(Input::Frame(0, done))));
    assert_eq!(e[0].0, ErrorCode::UNEXPECTED);
    // A run for a plan it does not hold.
    let run = Msg::Run { plan: 9, task: tessera_runtime::RunTask { frame: 0, stage: 0, task: 0, remote: vec![] } }.to_frames(4, 4096).unwrap().remove(0);
    let e = errors(&sent(p.handle(Input::Frame(0, run))));
    assert_eq!(e[0].0, ErrorCode::TASK_FAILED);
    assert!(e[0].1.contains("plan 9"));
    // A LoadPlan whose ONNX is garbage.
    let lp = tessera_mesh::msg::LoadPlan {
        plan: 1,
        device: 0,
        summary: String::new(),
        tasks: vec![tessera_mesh::msg::WireTask {
            stage: 0,
            task: 0,
            meta: tessera_mesh::msg::TaskMeta { label: "x".into(), inputs: vec![], outputs: vec![], fetch: vec![], local_regions: vec![], weight_bytes: 0 },
            onnx: vec![0xde, 0xad, 0xbe, 0xef],
        }],
    };
    let e = errors(&sent(p.handle(Input::Frame(0, Msg::LoadPlan(lp).to_frames(5, 4096).unwrap().remove(0)))));
    assert_eq!(e[0].0, ErrorCode::LOAD_FAILED);
    // Frames from anyone but its coordinator are ignored; a second coordinator is refused.
    assert!(p.handle(Input::Frame(7, vec![0; 50])).is_empty());
    assert!(matches!(&p.handle(Input::Connected(7))[..], [Output::Close(7, _)]));
    // A wrong version closes.
    let mut ping = Msg::Ping { seq: 1, sent_ms: 0.0 }.to_frames(6, 64).unwrap().remove(0);
    ping[4] = 0;
    let out = p.handle(Input::Frame(0, ping));
    assert!(out.iter().any(|o| matches!(o, Output::Close(0, r) if r.contains("version"))));
}

#[test]
fn a_peer_that_fails_its_tasks_is_replaced() {
    // A peer whose backend cannot compile anything: its LoadPlan fails, the
    // coordinator evicts it and plans on the others.
    struct Broken;
    impl tessera_kernels::Backend for Broken {
        fn name(&self) -> String {
            "broken".into()
        }
        fn compile(&self, _: &tessera_graph::Graph) -> Result<Box<dyn tessera_kernels::Executable>, tessera_kernels::KernelError> {
            Err(tessera_kernels::KernelError::Device { backend: "broken".into(), msg: "no device".into() })
        }
    }
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 6);
    let want = reference(&g, &xs);
    let mut m = MemoryMesh::new(Coordinator::new(g.clone(), config("lenet", "hyps")).unwrap(), MeshOptions::default());
    m.add_peer(PeerSpec::new("ok-1"));
    let bad = m.add_peer(PeerSpec { backend: Some(Box::new(Broken)), ..PeerSpec::new("broken") });
    m.add_peer(PeerSpec::new("ok-2"));
    assert!(m.wait_ready(60_000.0));
    let got = m.run_frames(xs, 60_000.0).unwrap();
    check(&got, &want, "broken peer");
    let st = m.coordinator.status();
    let p = st.peers.iter().find(|p| p.id == bad).unwrap();
    assert_eq!(p.state, "dead");
    assert!(p.dead_reason.as_ref().unwrap().contains("load-failed"), "{:?}", p.dead_reason);
}

/// Well-framed but hostile messages from a member peer (forged Done for
/// random plans, frames and tasks, with random shapes; stray acks and
/// pongs): never a panic, and every frame still completes, in order.
#[test]
fn forged_messages_from_a_member_never_break_the_stream() {
    use tessera_graph::Tensor;
    use tessera_runtime::TaskDone;
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 12);
    let mut m = mesh(&g, config("lenet", "deeperthings"), 3, MeshOptions { interleave: Some(9), ..Default::default() });
    for x in &xs {
        m.submit(x.clone()).unwrap();
    }
    let mut rng = Rng::new(77);
    let mut got = Vec::new();
    for i in 0..400u64 {
        let ids = m.peer_ids();
        if ids.is_empty() {
            break;
        }
        let from = ids[rng.range(0, ids.len() - 1)];
        let epoch = m.coordinator.current_plan().unwrap_or(1) + rng.range(0, 1) as u32;
        let shape: Vec<usize> = (0..rng.range(0, 4)).map(|_| rng.range(0, 6)).collect();
        let n = shape.iter().product();
        let msg = match rng.range(0, 4) {
            0 | 1 => Msg::Done {
                plan: epoch,
                done: TaskDone {
                    device: 0,
                    frame: rng.range(0, 14) as u64,
                    stage: rng.range(0, 3),
                    task: rng.range(0, 3),
                    outputs: (0..rng.range(0, 2)).map(|_| Tensor::new(shape.clone(), rng.fill(n, 1.0)).unwrap()).collect(),
                    compute_ms: rng.f32() as f64,
                },
            },
            2 => Msg::LoadAck(tessera_mesh::msg::LoadAck { plan: epoch, tasks: 1, weight_bytes: 5, bytes_received: 5, load_ms: 0.0 }),
            3 => Msg::Pong { seq: rng.range(0, 5) as u32, sent_ms: 0.0, peer_ms: 0.0 },
            _ => Msg::Hello(Hello { name: "again".into(), backend: String::new(), agent: String::new(), caps: vec![], profile: None }),
        };
        m.inject(from, msg.to_frames(1_000_000 + i as u32, 64).unwrap().remove(0));
        m.run_for(0.5);
        got.extend(m.take_results());
    }
    assert!(
        m.run_until(
            |m| {
                got.extend(m.take_results());
                got.len() == 12
            },
            120_000.0
        ),
        "{:#?}",
        m.coordinator.status().frames
    );
    assert!(got.iter().enumerate().all(|(i, (f, _))| *f == i as u64));
    let st = m.coordinator.status();
    assert_eq!(st.frames.lost, 0);
    println!("{} peers evicted for forged outputs; phase {}", st.peers.iter().filter(|p| p.state == "dead").count(), st.phase);
}

/// A loaded peer fed mutated LoadPlan and Run messages never panics.
#[test]
fn peer_survives_mutated_plans_and_runs() {
    use std::sync::Arc;
    use tessera_mesh::msg::{LoadPlan, WireTask};
    use tessera_runtime::{Hub, PeerTask, Program};
    let g = model("lenet");
    let cluster = tessera_plan::cluster::parse("2").unwrap();
    let req = tessera_plan::planners::Request { model: "lenet", graph: &g, cluster: &cluster, sim: Default::default(), seed: 1, options: &[] };
    let plan = tessera_plan::planners::by_name("deeperthings").unwrap().plan(&req).unwrap();
    let program = Arc::new(Program::new(g.clone(), &plan).unwrap());
    let tasks: Vec<WireTask> = PeerTask::for_device(&program, 0).iter().map(|t| WireTask::from_peer_task(t, String::new())).collect();
    let load = Msg::LoadPlan(LoadPlan { plan: 1, device: 0, summary: String::new(), tasks }).encode();
    // Plan 2: the same tasks with every weight by reference (held from plan 1).
    let by_ref: Vec<WireTask> = PeerTask::for_device(&program, 0)
        .iter()
        .map(|t| WireTask::from_peer_task_with(t, String::new(), &mut |w| (w.bytes() >= tessera_mesh::weights::MIN_BYTES).then(|| tessera_mesh::weights::location(w.content_hash()))))
        .collect();
    let load_ref = Msg::LoadPlan(LoadPlan { plan: 2, device: 0, summary: String::new(), tasks: by_ref }).encode();
    assert!(load_ref.len() * 4 < load.len());
    let mut hub = Hub::new(program.clone());
    let runs: Vec<Vec<u8>> = hub
        .admit(0, inputs(&g, "lenet", 1).remove(0))
        .unwrap()
        .into_iter()
        .filter(|d| d.device == 0)
        .map(|d| Msg::Run { plan: 1, task: d.task }.encode())
        .collect();
    assert!(!runs.is_empty());
    let mut p = Peer::new(PeerConfig::new("p"), Box::new(tessera_kernels::CpuBackend::new(1)), Box::new(|| 0.0));
    p.handle(Input::Connected(0));
    for f in wire::frames(Kind::LoadPlan, 1, &load, 60_000).unwrap() {
        let _ = p.handle(Input::Frame(0, f));
    }
    assert_eq!(p.status().plan, Some(1));
    for f in wire::frames(Kind::LoadPlan, 2, &load_ref, 60_000).unwrap() {
        let _ = p.handle(Input::Frame(0, f));
    }
    assert_eq!(p.status().plan, Some(2), "{:?}", p.status().last_error);
    let mut rng = Rng::new(3);
    let mut id = 10;
    for i in 0..600 {
        let (kind, base) = match i % 10 {
            0 => (Kind::LoadPlan, &load),
            5 => (Kind::LoadPlan, &load_ref),
            _ => (Kind::Run, &runs[rng.range(0, runs.len() - 1)]),
        };
        let mut b = base.clone();
        for _ in 0..rng.range(1, 4) {
            let k = rng.range(0, b.len() - 1);
            b[k] = rng.next_u64() as u8;
        }
        if rng.range(0, 3) == 0 {
            b.truncate(rng.range(0, b.len()));
        }
        id += 1;
        for f in wire::frames(kind, id, &b, 60_000).unwrap() {
            let _ = p.handle(Input::Frame(0, f));
        }
    }
    // Repeated faults may have closed the channel: reconnect, reload, run.
    p.handle(Input::Connected(0));
    for f in wire::frames(Kind::LoadPlan, 1, &load, 60_000).unwrap() {
        let _ = p.handle(Input::Frame(0, f));
    }
    let out = p.handle(Input::Frame(0, wire::frames(Kind::Run, 9999, &runs[0], 60_000).unwrap().remove(0)));
    let frames: Vec<Vec<u8>> = out.into_iter().filter_map(|o| if let Output::Send(_, f) = o { Some(f) } else { None }).collect();
    let mut r = Reassembler::new(Limits::coordinator());
    let msgs: Vec<Msg> = frames.iter().filter_map(|f| r.push(f, 0.0).unwrap()).map(|m| Msg::decode(m.kind, &m.payload).unwrap()).collect();
    assert!(msgs.iter().any(|m| matches!(m, Msg::Done { .. })), "{msgs:?}");
}

/// A task still out on an async backend when the coordinator is replaced
/// (a reload: the new one numbers its plans from 1 again) is not handed
/// back into the new plan: no stale Done, and the new plan's executables
/// (other weights) are the ones that run.
#[test]
fn a_task_in_flight_across_a_reconnect_is_dropped() {
    use std::sync::Arc;
    use tessera_mesh::msg::{LoadPlan, WireTask};
    use tessera_runtime::{Hub, PeerTask, Program};

    let g1 = model("lenet");
    // The "new" model: the same graph with every weight halved.
    let mut g2 = tessera_graph::Graph::new("lenet-halved");
    for n in g1.nodes() {
        let mut op = n.op.clone();
        if let tessera_graph::Op::Input = op {
            g2.input(n.name.clone(), &n.shape).unwrap();
            continue;
        }
        if let tessera_graph::Op::Conv(c) = &mut op {
            c.weight = Arc::new(tessera_graph::Tensor::new(c.weight.shape().to_vec(), c.weight.data().iter().map(|v| v * 0.5).collect()).unwrap());
        }
        g2.add(n.name.clone(), op, &n.inputs).unwrap();
    }
    g2.set_outputs(g1.outputs()).unwrap();
    let g2 = Arc::new(g2);
    let cluster = tessera_plan::cluster::parse("1").unwrap();
    let load_and_runs = |g: &Arc<tessera_graph::Graph>| {
        let req = tessera_plan::planners::Request { model: "lenet", graph: g, cluster: &cluster, sim: Default::default(), seed: 1, options: &[] };
        let plan = tessera_plan::planners::by_name("single").unwrap().plan(&req).unwrap();
        let program = Arc::new(Program::new(g.clone(), &plan).unwrap());
        let tasks: Vec<WireTask> = PeerTask::for_device(&program, 0).iter().map(|t| WireTask::from_peer_task(t, String::new())).collect();
        let load = Msg::LoadPlan(LoadPlan { plan: 1, device: 0, summary: String::new(), tasks }).encode();
        let mut hub = Hub::new(program.clone());
        let runs: Vec<Vec<u8>> = hub.admit(0, inputs(g, "lenet", 1).remove(0)).unwrap().into_iter().map(|d| Msg::Run { plan: 1, task: d.task }.encode()).collect();
        (load, runs)
    };
    let (load1, runs1) = load_and_runs(&g1);
    let (load2, runs2) = load_and_runs(&g2);
    let want2 = reference(&g2, &inputs(&g2, "lenet", 1));

    let mut cfg = PeerConfig::new("p");
    cfg.defer_runs = true;
    let mut p = Peer::new(cfg, Box::new(tessera_kernels::CpuBackend::new(1)), Box::new(|| 0.0));
    let feed = |p: &mut Peer, kind: Kind, id: u32, bytes: &[u8]| -> Vec<Output> {
        let mut out = Vec::new();
        for f in wire::frames(kind, id, bytes, 60_000).unwrap() {
            out.extend(p.handle(Input::Frame(0, f)));
        }
        out
    };
    let done_msgs = |outs: Vec<Output>| -> Vec<Msg> {
        let mut r = Reassembler::new(Limits::coordinator());
        outs.into_iter()
            .filter_map(|o| if let Output::Send(_, f) = o { Some(f) } else { None })
            .filter_map(|f| r.push(&f, 0.0).unwrap())
            .map(|m| Msg::decode(m.kind, &m.payload).unwrap())
            .filter(|m| matches!(m, Msg::Done { .. }))
            .collect()
    };
    p.handle(Input::Connected(0));
    feed(&mut p, Kind::LoadPlan, 1, &load1);
    feed(&mut p, Kind::Run, 2, &runs1[0]);
    let (old, _) = p.next_task();
    let mut old = old.expect("a task to take");
    let old_out = tessera_kernels::ready_now(old.execute()).unwrap();
    // The coordinator is replaced while the task is out.
    p.handle(Input::Disconnected(0));
    p.handle(Input::Connected(0));
    feed(&mut p, Kind::LoadPlan, 1, &load2);
    let stale = p.complete(old, old_out, 1.0);
    assert!(done_msgs(stale).is_empty(), "a task of the old coordinator's plan was reported to the new one");
    feed(&mut p, Kind::Run, 3, &runs2[0]);
    let (task, _) = p.next_task();
    let mut task = task.expect("the new plan's task");
    let out = tessera_kernels::ready_now(task.execute()).unwrap();
    let done = done_msgs(p.complete(task, out, 1.0));
    let Some(Msg::Done { done, .. }) = done.first() else { panic!("no Done for the new plan") };
    let d = done.outputs[0].max_rel_diff(&want2[0][0]);
    assert!(d <= 1e-5, "the new plan ran with other weights: rel diff {d}");
}
