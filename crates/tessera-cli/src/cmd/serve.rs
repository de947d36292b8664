//! `tessera serve`: the pages, the wasm build and the signaling WebSocket;
//! prints the room's join URL and its QR code, then serves until killed.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tessera_cli::serve::{self, ServeConfig, net};

#[derive(clap::Args)]
pub struct Args {
    /// TCP port; 0 picks a free one (printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Bind the LAN address (found from the interface list) so phones on the
    /// same network can join. Default: 127.0.0.1 only.
    #[arg(long, conflicts_with = "bind")]
    lan: bool,
    /// Bind this address instead.
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Directory holding www/ and pkg/ (default: the repository).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Room name (default: random).
    #[arg(long)]
    room: Option<String>,
    /// Room token (default: 128 random bits). Anyone with it can join.
    #[arg(long)]
    token: Option<String>,
    /// Members per room.
    #[arg(long, default_value_t = 32)]
    room_capacity: usize,
    /// Largest signaling message, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_message: usize,
    /// Per-connection message rate limit (messages per second).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Per-connection burst allowance (messages).
    #[arg(long, default_value_t = 200.0)]
    burst: f64,
    /// Do not draw the QR code.
    #[arg(long)]
    no_qr: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.room_capacity == 0 {
        bail!("--room-capacity must be at least 1");
    }
    if a.max_message < 256 {
        bail!("--max-message must be at least 256 bytes");
    }
    if !(a.rate > 0.0 && a.burst >= 1.0) {
        bail!("--rate must be positive and --burst at least 1");
    }
    let bind = match (a.lan, a.bind) {
        (true, _) => net::lan_address().map_err(anyhow::Error::msg).context("--lan")?,
        (false, Some(b)) => b,
        (false, None) => ServeConfig::default().bind,
    };
    let root = a.root.unwrap_or_else(serve::default_root);
    let cfg = ServeConfig {
        bind,
        port: a.port,
        root: root.clone(),
        room: a.room,
        token: a.token,
        room_capacity: a.room_capacity,
        max_message: a.max_message,
        rate: a.rate,
        burst: a.burst,
        log: true,
        ..ServeConfig::default()
    };
    let handle = serve::start(cfg).map_err(anyhow::Error::msg).context("tessera serve")?;
    println!("tessera serve: listening on http://{}", handle.addr);
    println!("  serving {} and {}", root.join("www").display(), root.join("pkg").display());
    if !root.join("www").join("index.html").is_file() {
        println!("  note: {} has no index.html yet (build the pages first)", root.join("www").display());
    }
    println!("  room {} (up to {} members)", handle.room, a.room_capacity);
    println!();
    println!("  join URL: {}", handle.url);
    if bind.is_loopback() {
        println!("  (loopback only: use --lan to let phones on this network join)");
    }
    if !a.no_qr {
        match net::qr_text(&handle.url) {
            Ok(q) => {
                println!();
                for line in q.lines() {
                    println!("  {line}");
                }
            }
            Err(e) => println!("  (no QR code: {e})"),
        }
    }
    println!();
    println!("  native peers: tessera peer '{}'", handle.url);
    println!("  Ctrl-C to stop");
    handle.wait();
    Ok(())
}
