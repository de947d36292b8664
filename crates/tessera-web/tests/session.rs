//! The coordinator page's session driven natively with three in-process
//! peers (the same `Peer` state machine the peer page runs): distributed
//! results equal the local run, a peer lost mid-stream loses no frame, and
//! nobody receives the whole model.

#![cfg(not(target_arch = "wasm32"))]

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use tessera_kernels::CpuBackend;
use tessera_mesh::{Input, Output, Peer, PeerConfig, PeerId};
use tessera_web::session::{ModelSource, Session, SessionConfig, load_model};

const COORD: PeerId = 0;

struct World {
    session: Session,
    peers: BTreeMap<PeerId, Peer>,
    to_coord: VecDeque<(PeerId, Vec<u8>)>,
    to_peer: VecDeque<(PeerId, Vec<u8>)>,
    now: Rc<Cell<f64>>,
}

impl World {
    fn new(n: usize) -> World {
        let (g, info) = load_model(ModelSource::Zoo("lenet")).unwrap();
        let now = Rc::new(Cell::new(0.0));
        let clock_now = Arc::new(std::sync::Mutex::new(0.0f64));
        let c = clock_now.clone();
        let mut cfg = SessionConfig::default();
        cfg.coordinator.settle_ms = 0.0;
        let session = Session::new(g, info, &cfg, Arc::new(move || *c.lock().unwrap())).unwrap();
        let mut w = World { session, peers: BTreeMap::new(), to_coord: VecDeque::new(), to_peer: VecDeque::new(), now };
        for i in 1..=n as PeerId {
            let mut pc = PeerConfig::new(format!("p{i}"));
            pc.defer_runs = false;
            w.peers.insert(i, Peer::new(pc, Box::new(CpuBackend::new(1)), Box::new(|| 0.0)));
            let outs = w.session.handle(Input::Connected(i));
            w.route_c(outs);
            let outs = w.peers.get_mut(&i).unwrap().handle(Input::Connected(COORD));
            w.route_p(i, outs);
        }
        w
    }
    fn route_c(&mut self, outs: Vec<Output>) {
        for o in outs {
            if let Output::Send(to, f) = o {
                self.to_peer.push_back((to, f));
            }
        }
    }
    fn route_p(&mut self, from: PeerId, outs: Vec<Output>) {
        for o in outs {
            if let Output::Send(_, f) = o {
                self.to_coord.push_back((from, f));
            }
        }
    }
    fn step(&mut self) {
        let t = self.now.get() + 1.0;
        self.now.set(t);
        let outs = self.session.handle(Input::Tick { now_ms: t });
        self.route_c(outs);
        let outs = self.session.take_outputs();
        self.route_c(outs);
        while let Some((to, f)) = self.to_peer.pop_front() {
            if let Some(p) = self.peers.get_mut(&to) {
                let outs = p.handle(Input::Frame(COORD, f));
                self.route_p(to, outs);
            }
        }
        while let Some((from, f)) = self.to_coord.pop_front() {
            if self.peers.contains_key(&from) {
                let outs = self.session.handle(Input::Frame(from, f));
                self.route_c(outs);
            }
        }
    }
    fn kill(&mut self, id: PeerId) {
        self.peers.remove(&id);
        let outs = self.session.handle(Input::Disconnected(id));
        self.route_c(outs);
    }
}

#[test]
fn mnist_through_three_peers_matches_the_local_run_and_survives_a_loss() {
    let mut w = World::new(3);
    for _ in 0..200 {
        w.step();
    }
    let st = w.session.status();
    assert_eq!(st.coordinator.phase, "running", "{:?}", st.coordinator.events);
    w.session.submit_mnist(30).unwrap();
    let mut killed = false;
    for _ in 0..5000 {
        w.step();
        if !killed && w.session.totals().results >= 10 {
            w.kill(2);
            killed = true;
        }
        if w.session.totals().results == 30 {
            break;
        }
    }
    let t = w.session.totals().clone();
    assert!(killed);
    assert_eq!(t.results, 30, "every frame completes");
    assert_eq!((t.out_of_order, t.skipped), (0, 0));
    assert_eq!(t.compared, 30);
    assert_eq!(t.matched, 30, "worst diff {}", t.worst_rel_diff);
    assert!(t.worst_rel_diff <= 1e-4);
    assert!(t.correct >= 28, "LeNet reads the digits: {} of 30", t.correct);
    let rows = w.session.rows_from(0);
    assert!(rows.windows(2).all(|r| r[1].frame == r[0].frame + 1), "in order");
    assert_eq!(rows[0].logits.as_ref().map(Vec::len), Some(10));
    let st = w.session.status();
    let whole = st.model.weight_bytes;
    for p in &st.coordinator.peers {
        assert!(p.weight_bytes < whole, "peer {} holds {} of {} weight bytes", p.id, p.weight_bytes, whole);
    }
    assert!(st.plan_view.is_some());
    let json = serde_json::to_string(&st).unwrap();
    assert!(json.contains("\"plan_view\""));
}

#[test]
fn images_and_models_from_files() {
    // An ONNX export of the zoo LeNet loads like a dropped file.
    let g = tessera_graph::zoo::build("lenet").unwrap();
    let bytes = tessera_onnx::export(&g);
    let (g2, info) = load_model(ModelSource::Onnx { name: "lenet.onnx", bytes: &bytes }).unwrap();
    assert_eq!(info.name, "lenet");
    assert_eq!(info.source, "onnx");
    assert!(info.digits && info.image_input);
    let mut s = Session::new(g2, info, &SessionConfig::default(), Arc::new(|| 0.0)).unwrap();
    // Local fallback: no peers, frames run on the coordinator.
    let rgba = tessera_web::input::synthetic_rgba(1, 64, 48);
    s.submit_rgba(&rgba, 64, 48, "file x.png".into(), None).unwrap();
    s.submit_synthetic(2).unwrap();
    for i in 0..50 {
        let _ = s.handle(Input::Tick { now_ms: i as f64 * 100.0 });
    }
    assert_eq!(s.totals().results, 3);
    assert_eq!(s.totals().matched, 3);
    assert!(s.thumb(0).is_some());
    assert!(load_model(ModelSource::Onnx { name: "junk.onnx", bytes: b"not a model" }).is_err());
    assert!(load_model(ModelSource::Zoo("nope")).is_err());
}
