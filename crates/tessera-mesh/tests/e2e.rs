//! The whole mesh in-process: coordinator + 3 peers over the in-memory
//! transport, real kernels, outputs compared with a local run; weight
//! slices and bytes on the wire measured against the plan.

mod common;

use common::*;
use tessera_mesh::Coordinator;
use tessera_mesh::transport::memory::{LinkSim, MemoryMesh, MeshOptions, PeerSpec};

#[test]
fn lenet_three_peers_matches_local() {
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 12);
    let want = reference(&g, &xs);
    for planner in ["tessera", "dpm", "hyps", "deeperthings", "modnn", "deepthings"] {
        // Chunks of concurrent messages interleaved at random on half the runs.
        let opts = MeshOptions { interleave: (planner.len() % 2 == 0).then_some(7), ..Default::default() };
        let mut m = mesh(&g, config("lenet", planner), 3, opts);
        let got = m.run_frames(xs.clone(), 60_000.0).unwrap();
        check(&got, &want, planner);
        let st = m.coordinator.status();
        assert_eq!(st.frames.lost, 0);
        assert_eq!(st.frames.done, 12);
        // Real MNIST digits: the distributed LeNet classifies them as the local one does.
        let digits = tessera_graph::zoo::test_digits().unwrap();
        let correct = got.iter().zip(&digits).filter(|((_, o), d)| o[0].argmax() == d.label as usize).count();
        assert!(correct >= 11, "{planner}: {correct}/12 digits right");
    }
}

#[test]
fn mobilenetv2_three_peers_matches_local() {
    let g = model("mobilenetv2");
    let xs = inputs(&g, "mobilenetv2", 3);
    let want = reference(&g, &xs);
    for planner in ["tessera", "deepthings", "hyps"] {
        let mut m = mesh(&g, config("mobilenetv2", planner), 3, MeshOptions { interleave: Some(3), ..Default::default() });
        let got = m.run_frames(xs.clone(), 120_000.0).unwrap();
        check(&got, &want, planner);
        assert_eq!(m.coordinator.status().frames.lost, 0);
    }
}

/// HyPS's model-secret property: with a plan that splits the model, every
/// peer receives (and holds) only its slice's weights.
#[test]
fn each_peer_receives_only_its_weight_slice() {
    for (name, planner) in [("lenet", "hyps"), ("lenet", "deeperthings"), ("mobilenetv2", "hyps"), ("mobilenetv2", "dpm")] {
        let g = model(name);
        let m = mesh(&g, config(name, planner), 3, MeshOptions::default());
        let st = m.coordinator.status();
        let plan = st.plan.as_ref().unwrap();
        let total = st.model_weight_bytes;
        let mut sum = 0;
        for id in m.peer_ids() {
            let info = st.peers.iter().find(|p| p.id == id).unwrap();
            let held = m.peer(id).unwrap().status().weight_bytes;
            assert_eq!(held, info.weight_bytes, "{name}/{planner}: peer {id} holds what was shipped");
            assert!(held < total, "{name}/{planner}: peer {id} holds {held} of {total} weight bytes");
            // The LoadPlan on the wire is the slice plus a small envelope.
            assert!(info.plan_wire_bytes < total, "{name}/{planner}: peer {id} was sent {} bytes", info.plan_wire_bytes);
            sum += held;
        }
        println!(
            "{name}/{planner}: per-peer weight bytes {:?} of {total} (sum {sum} = {:.3}x the model)\n{}",
            plan.weight_bytes,
            sum as f64 / total as f64,
            plan.render
        );
        assert!(sum >= total, "the slices cover the model");
    }
}

/// With `model_secret`, the default planner's replicas (each peer the whole
/// model) are replaced by a plan that splits the weights.
#[test]
fn model_secret_overrides_replicas() {
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 6);
    let want = reference(&g, &xs);
    let mut cfg = config("lenet", "tessera");
    let plain = mesh(&g, cfg.clone(), 3, MeshOptions::default());
    let total = plain.coordinator.model_weight_bytes();
    assert!(plain.coordinator.status().plan.unwrap().weight_bytes.contains(&total), "expected replicas of the whole model");
    cfg.model_secret = true;
    let mut m = mesh(&g, cfg, 3, MeshOptions::default());
    let p = m.coordinator.status().plan.unwrap();
    assert!(p.weight_bytes.iter().all(|&w| w < total), "{:?} of {total}", p.weight_bytes);
    check(&m.run_frames(xs, 60_000.0).unwrap(), &want, "model secret");
}

/// Bytes on the wire per frame vs the plan's prediction (task tensors,
/// from the same fetch plans `tessera_plan::estimate::bound` charges).
#[test]
fn wire_bytes_match_the_plan() {
    for (name, planner, frames) in [("lenet", "modnn", 12), ("lenet", "deeperthings", 12), ("mobilenetv2", "deepthings", 2)] {
        let g = model(name);
        let xs = inputs(&g, name, frames);
        let mut m = mesh(&g, config(name, planner), 3, MeshOptions::default());
        m.run_frames(xs, 120_000.0).unwrap();
        let p = m.coordinator.status().plan.unwrap();
        let tensor_ratio = p.tensor_bytes_per_frame / p.predicted_bytes_per_frame;
        let wire_ratio = p.wire_bytes_per_frame / p.predicted_bytes_per_frame;
        println!(
            "{name}/{planner}: predicted {:.0} B/frame, tensors {:.0} ({tensor_ratio:.4}x), wire incl. headers {:.0} ({wire_ratio:.4}x)",
            p.predicted_bytes_per_frame, p.tensor_bytes_per_frame, p.wire_bytes_per_frame
        );
        assert!((tensor_ratio - 1.0).abs() < 1e-9, "tensor bytes differ from the plan");
        // Headers and per-message fields: ~14 % on LeNet's tiny tiles, ~0 on real feature maps.
        assert!((1.0..1.2).contains(&wire_ratio), "framing overhead {wire_ratio}");
    }
}

/// Link measurements: RTT from pings and throughput from the probe reach
/// the planner's cluster.
#[test]
fn probes_measure_the_links() {
    let g = model("lenet");
    let c = Coordinator::new(g.clone(), config("lenet", "tessera")).unwrap();
    let mut m = MemoryMesh::new(c, MeshOptions::default());
    let fast = m.add_peer(PeerSpec { link: LinkSim { latency_ms: 1.0, mbps: 400.0 }, ..PeerSpec::new("fast") });
    let slow = m.add_peer(PeerSpec { link: LinkSim { latency_ms: 5.0, mbps: 20.0 }, ..PeerSpec::new("slow") });
    assert!(m.wait_ready(60_000.0));
    m.run_for(3000.0); // a few more pings
    let st = m.coordinator.status();
    for (id, rtt, mbps) in [(fast, 2.0, 400.0), (slow, 10.0, 20.0)] {
        let p = st.peers.iter().find(|p| p.id == id).unwrap();
        let (r, b) = (p.rtt_ms.unwrap(), p.mbps.unwrap());
        println!("peer {id}: rtt {r:.3} ms (link {rtt}), {b:.1} Mbit/s (link {mbps})");
        assert!((r - rtt).abs() / rtt < 0.05, "rtt {r} vs {rtt}");
        assert!((b - mbps).abs() / mbps < 0.05, "throughput {b} vs {mbps}");
    }
}

/// The status snapshot serialises for the dashboard.
#[test]
fn status_serialises() {
    let g = model("lenet");
    let mut m = mesh(&g, config("lenet", "deeperthings"), 3, MeshOptions::default());
    m.run_frames(inputs(&g, "lenet", 4), 60_000.0).unwrap();
    let st = m.coordinator.status();
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["frames"]["done"], 4);
    assert_eq!(json["peers"].as_array().unwrap().len(), 3);
    assert!(json["plan"]["render"].as_str().unwrap().contains("fused"));
    let ps = m.peer(m.peer_ids()[0]).unwrap().status();
    assert_eq!(ps.tasks.len(), 3);
    assert!(ps.tasks[0].starts_with("stage 1/3"), "{:?}", ps.tasks);
    assert_eq!(ps.tasks_run, 12);
    serde_json::to_string(&ps).unwrap();
}

/// Sums over peers: (plan wire bytes, weight bytes sent, weight bytes reused).
fn plan_bytes(m: &MemoryMesh) -> (u64, u64, u64) {
    let st = m.coordinator.status();
    st.peers.iter().fold((0, 0, 0), |a, p| (a.0 + p.plan_wire_bytes, a.1 + p.weight_bytes_total, a.2 + p.weight_bytes_reused))
}

/// Runs until a plan newer than `epoch` runs.
fn wait_new_plan(m: &mut MemoryMesh, epoch: u32) {
    assert!(m.run_until(|m| m.coordinator.current_plan().is_some_and(|e| e > epoch) && !m.coordinator.is_loading(), 60_000.0), "no new plan");
}

/// A re-plan ships each peer only the weights it does not hold yet: the
/// same plan again costs next to nothing on the wire, a different split
/// reuses what overlaps; the outputs stay equal to the local run.
#[test]
fn replans_send_only_new_weights() {
    for (name, first, second) in [("lenet", "modnn", "modnn"), ("lenet", "modnn", "deeperthings"), ("mobilenetv2", "deepthings", "deepthings")] {
        let g = model(name);
        let xs = inputs(&g, name, 3);
        let want = reference(&g, &xs);
        let mut m = mesh(&g, config(name, first), 3, MeshOptions::default());
        let (wire0, sent0, reused0) = plan_bytes(&m);
        assert_eq!(reused0, 0);
        let epoch = m.coordinator.current_plan().unwrap();
        if second == first {
            m.replan();
        } else {
            m.coordinator.set_planner(second, vec![]).unwrap();
        }
        wait_new_plan(&mut m, epoch);
        let (wire1, sent1, reused1) = plan_bytes(&m);
        let (wire, sent, reused) = (wire1 - wire0, sent1 - sent0, reused1 - reused0);
        println!("{name} {first} -> {second}: first plan {wire0} wire bytes ({sent0} of weights); re-plan {wire} wire bytes, {sent} of weights sent, {reused} reused");
        assert!(reused > 0, "{name}: nothing reused");
        if second == first {
            assert!(sent * 20 < sent0, "{name}: the same plan sent {sent} weight bytes again");
            assert!(wire * 5 < wire0, "{name}: the same plan cost {wire} wire bytes (first {wire0})");
        }
        let got = m.run_frames(xs, 120_000.0).unwrap();
        check(&got, &want, &format!("{name} after re-plan"));
    }
}

/// A peer that no longer holds weights a plan refers to says so; the
/// coordinator sends them in full and the peer serves on.
#[test]
fn missing_weights_are_sent_again() {
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 6);
    let want = reference(&g, &xs);
    let mut m = mesh(&g, config("lenet", "modnn"), 3, MeshOptions::default());
    for id in m.peer_ids() {
        m.peer_mut(id).unwrap().forget_weights();
    }
    let epoch = m.coordinator.current_plan().unwrap();
    m.replan();
    wait_new_plan(&mut m, epoch);
    let st = m.coordinator.status();
    assert!(st.events.iter().any(|e| e.contains("lacked weights")), "{:#?}", st.events);
    assert!(st.peers.iter().all(|p| p.state != "dead"), "{:#?}", st.peers.iter().map(|p| (&p.name, &p.dead_reason)).collect::<Vec<_>>());
    let got = m.run_frames(xs, 60_000.0).unwrap();
    check(&got, &want, "after a resend");
}

/// A re-plan while the previous one is still loading does not refer to the
/// weights of the plan it supersedes (which it unloads first): no peer is
/// left missing weights, nothing is sent twice.
#[test]
fn a_replan_during_loading_refers_only_to_kept_plans() {
    let g = model("lenet");
    let xs = inputs(&g, "lenet", 4);
    let want = reference(&g, &xs);
    let mut m = mesh(&g, config("lenet", "modnn"), 3, MeshOptions::default());
    m.coordinator.set_planner("deeperthings", vec![]).unwrap();
    m.replan(); // urgent: ships at once, superseding the plan still loading
    let epoch = m.coordinator.current_plan().unwrap();
    wait_new_plan(&mut m, epoch);
    let st = m.coordinator.status();
    assert!(!st.events.iter().any(|e| e.contains("lacked weights")), "{:#?}", st.events);
    assert!(st.last_error.is_none(), "{:?}", st.last_error);
    let got = m.run_frames(xs, 60_000.0).unwrap();
    check(&got, &want, "re-plan during loading");
}
