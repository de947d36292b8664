//! Browser tests (`wasm-pack test --headless --chrome crates/tessera-web`,
//! run by `./run test` inside a loopback-only network namespace):
//!
//! - the web transport (`tessera_mesh::transport::web`): a coordinator mesh
//!   and a peer mesh wired to each other inside one page (signals passed
//!   directly, no server) open a real WebRTC data channel; frames arrive
//!   whole and in order both ways, 4 MiB in 64 KiB frames flow with
//!   backpressure, oversize frames are refused, a close is seen by the
//!   other side; the round-trip time is printed;
//! - the apps' engine: the coordinator session and two `Peer` state
//!   machines over those channels run LeNet on MNIST digits and match the
//!   local run;
//! - the page-facing helpers (capabilities, planners, zoo, QR).
//!
//! `webdriver.json` beside Cargo.toml gives Chrome the flags it needs to
//! gather loopback ICE candidates (and fake media devices so the test can
//! obtain the media permission that exposes host candidates).

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use tessera_mesh::transport::signal::{Role, ServerMsg};
use tessera_mesh::transport::web::{MAX_FRAME, WebConfig, WebMesh};
use tessera_mesh::{Input, Output, Peer, PeerConfig, PeerId};
use tessera_web::session::{ModelSource, Session, SessionConfig, load_model};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn now() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or_else(js_sys::Date::now, |p| p.now())
}

async fn sleep(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window().unwrap().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms).unwrap();
    });
    JsFuture::from(p).await.unwrap();
}

/// Media permission makes Chrome expose host candidates (loopback in the
/// test namespace) instead of mDNS names; the fake device flags answer.
async fn media_permission() {
    let Some(md) = web_sys::window().and_then(|w| w.navigator().media_devices().ok()) else { return };
    let c = web_sys::MediaStreamConstraints::new();
    c.set_audio(&JsValue::TRUE);
    if let Ok(p) = md.get_user_media_with_constraints(&c)
        && let Ok(stream) = JsFuture::from(p).await
    {
        let stream: web_sys::MediaStream = stream.unchecked_into();
        for t in stream.get_tracks().iter() {
            t.unchecked_into::<web_sys::MediaStreamTrack>().stop();
        }
    }
}

const C: PeerId = 1;

/// A coordinator mesh (member 1) and `n` peer meshes (members 2..) wired
/// to each other directly.
fn pair(n: usize) -> (WebMesh, Vec<WebMesh>) {
    type Slot = Rc<RefCell<Option<WebMesh>>>;
    let coord_slot: Slot = Rc::default();
    let peer_slots: Vec<(PeerId, Slot)> = (0..n).map(|i| (2 + i as PeerId, Slot::default())).collect();
    let slots = peer_slots.clone();
    let coord = WebMesh::manual(
        C,
        WebConfig::new(Role::Coordinator, "c"),
        Rc::new(move |to, data| {
            let target = slots.iter().find(|(id, _)| *id == to).and_then(|(_, s)| s.borrow().clone());
            // Deliver on the next turn, as a server would.
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(m) = target {
                    m.deliver(ServerMsg::Signal { from: C, data });
                }
            });
        }),
    );
    *coord_slot.borrow_mut() = Some(coord.clone());
    let mut peers = Vec::new();
    for (id, slot) in &peer_slots {
        let cs = coord_slot.clone();
        let me = *id;
        let m = WebMesh::manual(
            me,
            WebConfig::new(Role::Peer, format!("p{me}")),
            Rc::new(move |_to, data| {
                let target = cs.borrow().clone();
                wasm_bindgen_futures::spawn_local(async move {
                    if let Some(m) = target {
                        m.deliver(ServerMsg::Signal { from: me, data });
                    }
                });
            }),
        );
        *slot.borrow_mut() = Some(m.clone());
        peers.push(m);
    }
    for (id, _) in &peer_slots {
        coord.deliver(ServerMsg::PeerJoined { id: *id, name: format!("p{id}"), role: Role::Peer });
    }
    (coord, peers)
}

/// Polls `m` until `f` says stop (events are handed to it), failing after `secs`.
async fn drive(m: &WebMesh, secs: f64, mut f: impl FnMut(Input) -> bool) {
    let end = now() + secs * 1000.0;
    loop {
        m.tick();
        for ev in m.poll() {
            if f(ev) {
                return;
            }
        }
        assert!(now() < end, "timed out after {secs} s; mesh: {:?}", m.info());
        sleep(1).await;
    }
}

#[wasm_bindgen_test]
async fn data_channels_open_carry_frames_in_order_and_close() {
    media_permission().await;
    let (coord, peers) = pair(1);
    let peer = &peers[0];
    let t0 = now();
    drive(&coord, 20.0, |ev| ev == Input::Connected(2)).await;
    drive(peer, 20.0, |ev| ev == Input::Connected(C)).await;
    console_log!("web transport: channel open after {:.1} ms", now() - t0);
    assert_eq!(coord.connected(), vec![2]);
    assert_eq!(peer.connected(), vec![C]);
    let info = coord.info();
    assert_eq!(info.links.len(), 1);
    assert_eq!(info.links[0].state, "open");

    // Frames both ways, whole and in order; the largest frame goes through.
    for i in 0..20u8 {
        coord.send(2, vec![i; 1 + i as usize * 1000]).unwrap();
    }
    let big: Vec<u8> = (0..MAX_FRAME).map(|i| (i * 7 % 251) as u8).collect();
    peer.send(C, big.clone()).unwrap();
    let mut got = Vec::new();
    drive(peer, 10.0, |ev| {
        if let Input::Frame(C, f) = ev {
            got.push(f);
        }
        got.len() == 20
    })
    .await;
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f, &vec![i as u8; 1 + i * 1000]);
    }
    let mut back = None;
    drive(&coord, 10.0, |ev| {
        if let Input::Frame(2, f) = ev {
            back = Some(f);
        }
        back.is_some()
    })
    .await;
    assert_eq!(back.unwrap(), big);
    assert!(coord.send(2, vec![0; MAX_FRAME + 1]).is_err(), "over the limit is refused");
    assert!(coord.send(99, vec![1]).is_err(), "no channel, no send");

    // Round trips of small frames (the peer echoes).
    let mut rtts = Vec::new();
    for i in 0..100u32 {
        let t = now();
        coord.send(2, i.to_le_bytes().to_vec()).unwrap();
        let mut echo = None;
        drive(peer, 5.0, |ev| {
            if let Input::Frame(C, f) = ev {
                echo = Some(f);
            }
            echo.is_some()
        })
        .await;
        peer.send(C, echo.unwrap()).unwrap();
        let mut b = None;
        drive(&coord, 5.0, |ev| {
            if let Input::Frame(2, f) = ev {
                b = Some(f);
            }
            b.is_some()
        })
        .await;
        assert_eq!(b.unwrap(), i.to_le_bytes().to_vec());
        rtts.push(now() - t);
    }
    rtts.sort_by(f64::total_cmp);
    console_log!("web transport: round trip median {:.2} ms, p90 {:.2} ms (1 ms polling)", rtts[50], rtts[90]);

    // 4 MiB in 64 KiB frames: the mesh queues what the channel cannot take
    // yet (backpressure) and everything arrives in order.
    const N: usize = 64;
    let t = now();
    let mut max_buffered = 0;
    for i in 0..N {
        let mut f = vec![(i % 251) as u8; 64 << 10];
        f[..4].copy_from_slice(&(i as u32).to_le_bytes());
        coord.send(2, f).unwrap();
        max_buffered = max_buffered.max(coord.buffered(2));
    }
    assert!(max_buffered > 1 << 20, "the queue holds what the channel cannot take: {max_buffered}");
    let mut seq = 0u32;
    drive(peer, 30.0, |ev| {
        if let Input::Frame(C, f) = ev {
            assert_eq!(u32::from_le_bytes(f[..4].try_into().unwrap()), seq, "in order");
            assert_eq!(f.len(), 64 << 10);
            seq += 1;
        }
        seq as usize == N
    })
    .await;
    let mbs = (N * (64 << 10)) as f64 / (now() - t) / 1e3;
    console_log!("web transport: 4 MiB in 64 KiB frames at {mbs:.1} MB/s");
    settle(&coord, 200).await;
    assert_eq!(coord.buffered(2), 0, "drained");

    // A close on one side is a Disconnected on the other.
    peer.close_peer(C);
    drive(peer, 5.0, |ev| ev == Input::Disconnected(C)).await;
    drive(&coord, 20.0, |ev| ev == Input::Disconnected(2)).await;
    assert!(coord.connected().is_empty());
}

/// Lets `m` run for `ms`, dropping its events.
async fn settle(m: &WebMesh, ms: i32) {
    let end = now() + ms as f64;
    while now() < end {
        m.tick();
        let _ = m.poll();
        sleep(5).await;
    }
}

#[wasm_bindgen_test]
async fn lenet_runs_over_two_browser_peers_and_matches_the_local_run() {
    lenet_over_two_browser_peers(None).await;
}

/// The same with the first peer computing on WebGPU (SwiftShader here),
/// driven as the peer page drives it: `next_task`, await the kernels,
/// `complete`.
#[cfg(feature = "gpu")]
#[wasm_bindgen_test]
async fn lenet_with_a_webgpu_peer_matches_the_local_run() {
    use tessera_gpu::{GpuOptions, GpuOrCpu, Selected, select_async};
    let sel = select_async(GpuOptions::default(), 1).await;
    if let Selected::Cpu { reason, .. } = &sel {
        assert!(!tessera_gpu::gpu_required(), "no usable WebGPU: {reason}");
        console_log!("skipped: no usable WebGPU ({reason})");
        return;
    }
    let be = GpuOrCpu::new(sel, 1);
    let name = tessera_kernels::Backend::name(&be);
    let tasks = lenet_over_two_browser_peers(Some(Box::new(be))).await;
    assert!(tasks > 0, "the WebGPU peer ran no task");
    console_log!("WebGPU peer ({name}) ran {tasks} tasks");
}

/// Two browser peers over real data channels run 20 digits; `gpu`, if
/// given, is the first peer's (asynchronous) backend. Returns how many
/// tasks the first peer ran.
async fn lenet_over_two_browser_peers(gpu: Option<Box<dyn tessera_kernels::Backend>>) -> u64 {
    media_permission().await;
    let is_async = gpu.is_some();
    let mut gpu = gpu;
    let (coord_mesh, peer_meshes) = pair(2);
    let (g, info) = load_model(ModelSource::Zoo("lenet")).unwrap();
    let mut cfg = SessionConfig::default();
    cfg.coordinator.settle_ms = 300.0;
    let mut session = Session::new(g, info, &cfg, Arc::new(now)).unwrap();
    let mut peers: Vec<Peer> = (0..2)
        .map(|i| {
            let mut pc = PeerConfig::new(format!("p{}", i + 2));
            pc.defer_runs = true;
            let backend = match gpu.take() {
                Some(b) if i == 0 => b,
                _ => Box::new(tessera_kernels::CpuBackend::new(1)),
            };
            Peer::new(pc, backend, Box::new(now))
        })
        .collect();
    let send = |m: &WebMesh, outs: Vec<Output>| {
        for o in outs {
            match o {
                Output::Send(to, f) => {
                    let _ = m.send(to, f);
                }
                Output::Close(to, _) => m.close_peer(to),
            }
        }
    };
    let mut submitted = false;
    let end = now() + 60_000.0;
    loop {
        let t = now();
        coord_mesh.tick();
        send(&coord_mesh, session.handle(Input::Tick { now_ms: t }));
        for ev in coord_mesh.poll() {
            send(&coord_mesh, session.handle(ev));
        }
        for (i, (p, m)) in peers.iter_mut().zip(&peer_meshes).enumerate() {
            m.tick();
            send(m, p.handle(Input::Tick { now_ms: t }));
            for ev in m.poll() {
                send(m, p.handle(ev));
            }
            if is_async && i == 0 {
                let (task, outs) = p.next_task();
                send(m, outs);
                if let Some(mut task) = task {
                    let t0 = now();
                    let res = task.execute().await;
                    send(m, p.complete(task, res, now() - t0));
                }
                continue;
            }
            while p.queued() > 0 {
                send(m, p.run_next());
            }
        }
        let st = session.status();
        if !submitted && st.coordinator.phase == "running" && st.coordinator.plan.as_ref().is_some_and(|p| p.members.len() == 2) {
            drop(st);
            session.submit_mnist(20).unwrap();
            send(&coord_mesh, session.take_outputs());
            submitted = true;
        } else if submitted && st.totals.results == 20 {
            break;
        }
        assert!(now() < end, "timed out: {:?}", session.status().coordinator.events);
        sleep(1).await;
    }
    let t = session.totals();
    assert_eq!((t.compared, t.matched, t.skipped, t.out_of_order), (20, 20, 0, 0), "worst {}", t.worst_rel_diff);
    assert!(t.correct >= 19);
    let st = session.status();
    for p in &st.coordinator.peers {
        assert!(p.weight_bytes < st.model.weight_bytes, "model secret: {} < {}", p.weight_bytes, st.model.weight_bytes);
    }
    peers[0].status().tasks_run
}

#[wasm_bindgen_test]
fn page_helpers_answer() {
    let planners: Vec<String> = serde_json::from_str(&tessera_web::planners()).unwrap();
    assert!(planners.iter().any(|p| p == "tessera") && planners.len() >= 10);
    let zoo: serde_json::Value = serde_json::from_str(&tessera_web::zoo()).unwrap();
    assert!(zoo.as_array().unwrap().iter().any(|m| m["name"] == "lenet"));
    let caps: serde_json::Value = serde_json::from_str(&tessera_web::capabilities()).unwrap();
    assert_eq!(caps["simd128"], true);
    assert!(tessera_web::qr_svg("http://127.0.0.1:1/?room=a&token=b").unwrap().starts_with("<svg"));
    assert_eq!(tessera_web::ws_url("http://127.0.0.1:1/peer.html?room=a&token=b").unwrap(), "ws://127.0.0.1:1/ws?room=a&token=b");
    assert!(tessera_web::ws_url("http://127.0.0.1:1/").is_err());
}
