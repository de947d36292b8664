//! The native WebRTC transport end to end, in one process: `tessera serve`
//! in-process on 127.0.0.1, a coordinator and two peers joined through
//! `NativeMesh` (str0m over UDP on 127.0.0.1), frames both ways, a few MB in
//! 64 KiB frames (throughput and RTT printed), one peer closed.
//!
//! Everything binds and talks to 127.0.0.1 only; `./run test` runs it inside
//! a loopback-only network namespace, and it works on plain loopback too.
//! `cargo test --release -p tessera-cli --test native_mesh -- --nocapture`
//! prints the figures.

use std::time::{Duration, Instant};

use tessera_cli::serve::{self, ServeConfig};
use tessera_mesh::Input;
use tessera_mesh::PeerId;
use tessera_mesh::transport::Transport;
use tessera_mesh::transport::native::{NativeConfig, NativeError, NativeMesh};
use tessera_mesh::transport::signal::Role;

fn server() -> serve::ServerHandle {
    serve::start(ServeConfig { port: 0, root: std::env::temp_dir(), ..ServeConfig::default() }).expect("server")
}

/// Waits for the next event, failing after `secs`.
fn next(m: &NativeMesh, secs: u64) -> Input {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no event within {secs} s (member {})", m.id());
        if let Some(i) = m.recv_timeout(left).expect("mesh alive") {
            return i;
        }
    }
}

fn frame(m: &NativeMesh, from: PeerId, secs: u64) -> Vec<u8> {
    match next(m, secs) {
        Input::Frame(p, f) if p == from => f,
        other => panic!("expected a frame from {from}, got {other:?}"),
    }
}

#[test]
fn coordinator_and_two_peers_over_loopback_webrtc() {
    let h = server();
    let t0 = Instant::now();
    let coord = NativeMesh::join(&h.url, NativeConfig::new(Role::Coordinator, "coord")).expect("coordinator joins");
    assert_eq!(coord.udp_addr().ip().to_string(), "127.0.0.1");
    let p1 = NativeMesh::join(&h.url, NativeConfig::new(Role::Peer, "p1")).expect("p1 joins");
    let p2 = NativeMesh::join(&h.ws_url, NativeConfig::new(Role::Peer, "p2")).expect("p2 joins");
    assert_eq!(p1.coordinator_at_join(), Some(coord.id()));

    // Every channel opens: the coordinator sees both peers, each peer the coordinator.
    let mut seen = vec![];
    while seen.len() < 2 {
        match next(&coord, 20) {
            Input::Connected(p) => seen.push(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, vec![p1.id(), p2.id()]);
    assert_eq!(next(&p1, 20), Input::Connected(coord.id()));
    assert_eq!(next(&p2, 20), Input::Connected(coord.id()));
    let ready_ms = t0.elapsed().as_secs_f64() * 1e3;
    assert_eq!(coord.connected(), seen);

    // Frames both ways, in order.
    let mut c = coord.sender();
    for i in 0..10u8 {
        Transport::send(&mut c, p1.id(), vec![i; 100 + i as usize]).unwrap();
        coord.send(p2.id(), vec![i; 10]).unwrap();
    }
    for i in 0..10u8 {
        assert_eq!(frame(&p1, coord.id(), 10), vec![i; 100 + i as usize]);
        assert_eq!(frame(&p2, coord.id(), 10), vec![i; 10]);
    }
    p2.send(coord.id(), b"hello from p2".to_vec()).unwrap();
    assert_eq!(frame(&coord, p2.id(), 10), b"hello from p2");
    // The largest frame the wire layer makes goes through whole.
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    p1.send(coord.id(), big.clone()).unwrap();
    assert_eq!(frame(&coord, p1.id(), 10), big);
    assert!(coord.send(p1.id(), vec![0; 256 * 1024 + 1]).is_err(), "over the limit is refused");
    assert!(coord.send(9999, vec![1]).is_err(), "unknown peer is refused");

    // RTT: 200 ping-pongs of 16 bytes, peer echoing.
    let echo = {
        let p1s = p1.sender();
        let cid = coord.id();
        move |m: &NativeMesh, n: usize| {
            for _ in 0..n {
                let f = frame(m, cid, 10);
                p1s.send(cid, f).unwrap();
            }
        }
    };
    let mut rtts = vec![];
    std::thread::scope(|s| {
        s.spawn(|| echo(&p1, 200));
        for i in 0..200u64 {
            let t = Instant::now();
            coord.send(p1.id(), i.to_le_bytes().repeat(2)).unwrap();
            let back = frame(&coord, p1.id(), 10);
            rtts.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(back, i.to_le_bytes().repeat(2));
        }
    });
    rtts.sort_by(f64::total_cmp);
    let (rtt_med, rtt_p99) = (rtts[rtts.len() / 2], rtts[rtts.len() * 99 / 100]);

    // Throughput: 16 MiB in 64 KiB frames each way, with backpressure on buffered().
    const TOTAL: usize = 16 << 20;
    const CHUNK: usize = 64 << 10;
    let push = |from: &NativeMesh, to: PeerId| {
        let mut sent = 0;
        let mut seq = 0u32;
        while sent < TOTAL {
            while from.buffered(to) > 4 << 20 {
                std::thread::sleep(Duration::from_micros(200));
            }
            let mut f = vec![(seq % 251) as u8; CHUNK];
            f[..4].copy_from_slice(&seq.to_le_bytes());
            from.send(to, f).unwrap();
            sent += CHUNK;
            seq += 1;
        }
    };
    let pull = |at: &NativeMesh, from: PeerId| {
        let mut got = 0;
        let mut seq = 0u32;
        while got < TOTAL {
            let f = frame(at, from, 20);
            assert_eq!(f.len(), CHUNK);
            assert_eq!(u32::from_le_bytes(f[..4].try_into().unwrap()), seq, "in order");
            assert_eq!(f[CHUNK - 1], (seq % 251) as u8);
            got += f.len();
            seq += 1;
        }
    };
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| pull(&p1, coord.id()));
        push(&coord, p1.id());
    });
    let down_mbs = TOTAL as f64 / t.elapsed().as_secs_f64() / 1e6;
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| pull(&coord, p2.id()));
        push(&p2, coord.id());
    });
    let up_mbs = TOTAL as f64 / t.elapsed().as_secs_f64() / 1e6;
    // Drained: nothing left buffered.
    let end = Instant::now() + Duration::from_secs(5);
    while coord.buffered(p1.id()) > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(coord.buffered(p1.id()), 0);

    // A peer leaves: the coordinator sees it disconnect, the other link lives.
    let p2_id = p2.id();
    let t = Instant::now();
    p2.close();
    assert_eq!(next(&coord, 10), Input::Disconnected(p2_id));
    let gone_ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(coord.send(p2_id, vec![1]).is_err());
    coord.send(p1.id(), b"still here".to_vec()).unwrap();
    assert_eq!(frame(&p1, coord.id(), 10), b"still here");

    // The coordinator closes its side of p1: both ends see it.
    coord.close_peer(p1.id());
    assert_eq!(next(&coord, 10), Input::Disconnected(p1.id()));
    assert_eq!(next(&p1, 10), Input::Disconnected(coord.id()));

    eprintln!(
        "native WebRTC over loopback (str0m, 1 coordinator + 2 peers, one process):\n  \
         join-to-ready {ready_ms:.0} ms; RTT 16 B median {rtt_med:.3} ms, p99 {rtt_p99:.3} ms (200 round trips)\n  \
         throughput 16 MiB in 64 KiB frames: coordinator→peer {down_mbs:.1} MB/s, peer→coordinator {up_mbs:.1} MB/s\n  \
         peer close seen by the coordinator after {gone_ms:.1} ms"
    );
    assert!(down_mbs > 1.0 && up_mbs > 1.0, "throughput collapsed: {down_mbs:.1} / {up_mbs:.1} MB/s");
}

#[test]
fn a_peer_joining_later_is_offered_a_connection_and_bad_joins_fail_cleanly() {
    let h = server();
    // A peer first, with no coordinator yet.
    let p = NativeMesh::join(&h.url, NativeConfig::new(Role::Peer, "early")).unwrap();
    assert_eq!(p.coordinator_at_join(), None);
    let c = NativeMesh::join(&h.url, NativeConfig::new(Role::Coordinator, "late coordinator")).unwrap();
    assert_eq!(next(&c, 20), Input::Connected(p.id()));
    assert_eq!(next(&p, 20), Input::Connected(c.id()));

    // Refusals come back as errors, not hangs.
    let second = NativeMesh::join(&h.url, NativeConfig::new(Role::Coordinator, "second"));
    assert!(
        matches!(second, Err(NativeError::Refused { ref code, .. }) if code == "coordinator-exists"),
        "{:?}",
        second.err()
    );
    let wrong = h.url.replace(&h.token, &"0".repeat(32));
    let r = NativeMesh::join(&wrong, NativeConfig::new(Role::Peer, "x"));
    assert!(matches!(r, Err(NativeError::Refused { ref code, .. }) if code == "unauthorized"), "{:?}", r.err());
    let r = NativeMesh::join(&format!("http://{}/", h.addr), NativeConfig::new(Role::Peer, "x"));
    assert!(matches!(r, Err(NativeError::BadUrl(_))));

    // The coordinator goes away: the peer sees it disconnect.
    let cid = c.id();
    drop(c);
    assert_eq!(next(&p, 10), Input::Disconnected(cid));

    // And the server going away closes nothing that is already open, but
    // ends the loop cleanly when the mesh is dropped.
    drop(h);
    drop(p);
}

#[test]
fn garbage_signals_do_not_hurt_a_mesh() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let h = server();
    let c = NativeMesh::join(&h.url, NativeConfig::new(Role::Coordinator, "coord")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // A hostile member: joins as a peer, then sends nonsense to the coordinator.
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(h.ws_url.as_str(), tcp).await.unwrap();
        ws.send(Message::text(r#"{"type":"join","role":"peer","name":"evil"}"#)).await.unwrap();
        let cid = c.id();
        for data in [
            r#"{"type":"offer","sdp":"garbage"}"#,
            r#"{"type":"answer","sdp":"v=0"}"#,
            r#"{"type":"answer","sdp":"also garbage"}"#,
            r#"{"candidate":"candidate:garbage"}"#,
            r#"{"candidate":"candidate:1 1 udp 1 evil.local 9 typ host","sdpMid":"0","sdpMLineIndex":0}"#,
            r#"{"candidate":""}"#,
            r#"{"whatever":[1,2,3]}"#,
            r#"{"type":"offer","sdp":"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}"#,
        ] {
            let m = format!(r#"{{"type":"signal","to":{cid},"data":{data}}}"#);
            ws.send(Message::text(m)).await.unwrap();
        }
        // Read the welcome and the coordinator's offer, leave without answering.
        let _ = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
        let _ = ws.close(None).await;
    });
    // The coordinator still serves a real peer.
    let p = NativeMesh::join(&h.url, NativeConfig::new(Role::Peer, "good")).unwrap();
    assert_eq!(next(&c, 20), Input::Connected(p.id()));
    assert_eq!(next(&p, 20), Input::Connected(c.id()));
    p.send(c.id(), b"ok".to_vec()).unwrap();
    assert_eq!(frame(&c, p.id(), 10), b"ok");
}

/// Run as a child process by `a_killed_peer_process_is_seen_disconnected`:
/// joins the room in `TESSERA_TEST_CHILD_URL` as a peer and echoes frames
/// until killed. A no-op in a normal test run.
#[test]
fn child_peer_process() {
    let Ok(url) = std::env::var("TESSERA_TEST_CHILD_URL") else { return };
    let m = NativeMesh::join(&url, NativeConfig::new(Role::Peer, "child")).unwrap();
    loop {
        if let Ok(Some(Input::Frame(from, f))) = m.recv_timeout(Duration::from_secs(60)) {
            let _ = m.send(from, f);
        }
    }
}

#[test]
fn a_killed_peer_process_is_seen_disconnected() {
    let h = server();
    let c = NativeMesh::join(&h.url, NativeConfig::new(Role::Coordinator, "coord")).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_peer_process", "--nocapture", "--test-threads=1"])
        .env("TESSERA_TEST_CHILD_URL", &h.url)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let p = match next(&c, 30) {
        Input::Connected(p) => p,
        other => panic!("{other:?}"),
    };
    c.send(p, b"ping".to_vec()).unwrap();
    assert_eq!(frame(&c, p, 10), b"ping");
    // SIGKILL: no WebRTC close, no WebSocket close frame.
    let t = Instant::now();
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(next(&c, 30), Input::Disconnected(p));
    eprintln!("killed peer process seen disconnected after {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    assert!(c.send(p, vec![1]).is_err());
}
