//! Native ↔ Chromium WebRTC through `tessera serve`, on 127.0.0.1 only.
//!
//! Starts the server in-process (serving `echo.html` from a temporary root),
//! joins it with `NativeMesh`, and has headless Chromium (driven by
//! `drive.mjs` with playwright-core) join the same room and echo every
//! data-channel message. Checks frames up to 256 KiB come back intact, then
//! prints RTT and echo throughput.
//!
//! ```text
//! npm install --prefix /tmp/pw playwright-core
//! unshare --net -- sh -c 'ip link set lo up && exec "$@"' sh \
//!   cargo run --release -p tessera-cli --example webrtc_echo -- --node-modules /tmp/pw --browser-as peer
//! ```
//! `--browser-as coordinator` makes Chromium the offerer and the native side the peer.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tessera_cli::serve::{self, ServeConfig};
use tessera_mesh::Input;
use tessera_mesh::transport::native::{NativeConfig, NativeMesh};
use tessera_mesh::transport::signal::Role;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).cloned();
    let browser_as = arg("--browser-as").unwrap_or_else(|| "peer".into());
    let mib: usize = arg("--mib").and_then(|s| s.parse().ok()).unwrap_or(16);
    let node_modules = PathBuf::from(arg("--node-modules").expect("--node-modules DIR (with playwright-core)"));

    let root = std::env::temp_dir().join(format!("tessera-webrtc-echo-{}", std::process::id()));
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::write(root.join("www/echo.html"), include_str!("echo.html")).unwrap();
    std::fs::write(node_modules.join("drive.mjs"), include_str!("drive.mjs")).unwrap();
    let server = serve::start(ServeConfig { port: 0, root: root.clone(), ..ServeConfig::default() }).unwrap();
    println!("server {}", server.url);

    let native_role = if browser_as == "peer" { Role::Coordinator } else { Role::Peer };
    let t0 = Instant::now();
    // The browser's role joins first when it is the coordinator.
    let mut child = Command::new("node")
        .arg(node_modules.join("drive.mjs"))
        .arg(&server.url)
        .arg(&browser_as)
        .spawn()
        .expect("node");
    if native_role == Role::Peer {
        while server.members() == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mesh = NativeMesh::join(&server.url, NativeConfig::new(native_role, "native")).unwrap();
    let other = loop {
        match mesh.recv_timeout(Duration::from_secs(60)).unwrap() {
            Some(Input::Connected(p)) => break p,
            Some(e) => println!("event {e:?}"),
            None => panic!("no connection within 60 s"),
        }
    };
    println!("connected to browser member {other} after {:.0} ms", t0.elapsed().as_secs_f64() * 1e3);
    let recv = |secs: u64| match mesh.recv_timeout(Duration::from_secs(secs)).unwrap() {
        Some(Input::Frame(p, f)) if p == other => f,
        e => panic!("expected a frame, got {e:?}"),
    };
    for n in [1usize, 100, 16 << 10, 64 << 10, 256 << 10] {
        let f: Vec<u8> = (0..n).map(|i| (i * 31 % 253) as u8).collect();
        mesh.send(other, f.clone()).unwrap();
        assert_eq!(recv(10), f, "{n}-byte frame echoed intact");
    }
    println!("frames of 1 B .. 256 KiB echoed intact");
    let mut rtts = vec![];
    for i in 0..200u64 {
        let t = Instant::now();
        mesh.send(other, i.to_le_bytes().repeat(2)).unwrap();
        assert_eq!(recv(10), i.to_le_bytes().repeat(2));
        rtts.push(t.elapsed().as_secs_f64() * 1e3);
    }
    rtts.sort_by(f64::total_cmp);
    println!("RTT 16 B: median {:.3} ms, p99 {:.3} ms", rtts[100], rtts[198]);

    let chunk = 64 << 10;
    let total = mib << 20;
    let t = Instant::now();
    let (mut sent, mut got) = (0, 0);
    while got < total {
        while sent < total && sent - got < (2 << 20) {
            mesh.send(other, vec![(sent / chunk % 251) as u8; chunk]).unwrap();
            sent += chunk;
        }
        let f = recv(20);
        assert_eq!(f.len(), chunk);
        assert_eq!(f[0], (got / chunk % 251) as u8, "in order");
        got += f.len();
    }
    let s = t.elapsed().as_secs_f64();
    println!("echo {mib} MiB in 64 KiB frames: {:.1} s, {:.1} MB/s each way", s, total as f64 / s / 1e6);
    mesh.close_peer(other);
    let _ = mesh.recv_timeout(Duration::from_secs(5));
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(root);
}
