//! `tessera serve`: the pages (`www/`), the wasm build (`pkg/`) and the
//! WebSocket signaling of the rooms (`/ws`), in one small HTTP server.
//!
//! - `GET /` → `www/index.html`; `GET /pkg/…` → `pkg/…`; any other path →
//!   `www/…`. MIME types from the file extension (`.wasm` is
//!   `application/wasm`); `..` and encoded traversal are refused (404).
//! - `GET /ws?room=ROOM&token=TOKEN` → the signaling WebSocket; the protocol
//!   is in `PROTOCOL.md` beside this file and its types in
//!   [`tessera_mesh::transport::signal`].
//!
//! [`start`] runs the server on its own thread (its own tokio runtime), so a
//! caller needs no runtime: `tessera serve` waits on the handle, `tessera
//! demo` and the tests start it in-process and shut it down.

mod conn;
pub mod net;
pub mod rooms;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tessera_mesh::transport::signal::parse_query;
use tokio::sync::watch;
use tower_http::services::ServeDir;

pub use conn::Bucket;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to bind (127.0.0.1 by default; the LAN address for `--lan`).
    pub bind: IpAddr,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// Directory holding `www/` and `pkg/`.
    pub root: PathBuf,
    /// Name of the room to create; random (48 bits, hex) when `None`.
    pub room: Option<String>,
    /// The room's token; random (128 bits from the OS RNG, hex) when `None`.
    pub token: Option<String>,
    /// Members per room.
    pub room_capacity: usize,
    /// Largest signaling message accepted, in bytes.
    pub max_message: usize,
    /// Per-connection rate limit: messages per second, and burst.
    pub rate: f64,
    pub burst: f64,
    /// A connection that has not joined after this long is closed.
    pub join_timeout: Duration,
    /// Print joins and leaves on stderr.
    pub log: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            root: PathBuf::from("."),
            room: None,
            token: None,
            room_capacity: 32,
            max_message: 64 * 1024,
            rate: 100.0,
            burst: 200.0,
            join_timeout: Duration::from_secs(10),
            log: false,
        }
    }
}

/// Shared by every connection.
pub(crate) struct Hub {
    pub(crate) cfg: ServeConfig,
    pub(crate) rooms: rooms::Rooms,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Open WebSocket connections.
    pub(crate) live: AtomicUsize,
}

/// A running server. Dropping it shuts the server down.
pub struct ServerHandle {
    /// The bound address (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The join URL: `http://HOST:PORT/?room=ROOM&token=TOKEN`.
    pub url: String,
    /// The signaling URL: `ws://HOST:PORT/ws?room=ROOM&token=TOKEN`.
    pub ws_url: String,
    pub room: String,
    pub token: String,
    hub: Arc<Hub>,
    shutdown: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// Members currently in the room.
    pub fn members(&self) -> usize {
        self.hub.rooms.count(&self.room)
    }

    /// Closes every connection (with an `error` frame, code `shutdown`) and
    /// stops the server.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Blocks until the server stops (it does not by itself: for `tessera serve`).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn stop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").field("addr", &self.addr).field("room", &self.room).finish_non_exhaustive()
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds, creates the room and starts serving on a background thread.
pub fn start(cfg: ServeConfig) -> Result<ServerHandle, String> {
    let room = match &cfg.room {
        Some(r) if valid_name(r) => r.clone(),
        Some(r) => return Err(format!("room name {r:?}: use 1-64 letters, digits, '-' or '_'")),
        None => net::random_hex(6)?,
    };
    let token = match &cfg.token {
        Some(t) if t.len() >= 16 && valid_name(t) => t.clone(),
        Some(_) => return Err("token: use at least 16 letters, digits, '-' or '_'".into()),
        None => net::random_hex(16)?,
    };
    let listener = std::net::TcpListener::bind(SocketAddr::new(cfg.bind, cfg.port))
        .map_err(|e| format!("binding {}:{}: {e}", cfg.bind, cfg.port))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let host = match addr.ip() {
        IpAddr::V6(a) => format!("[{a}]"),
        IpAddr::V4(a) => a.to_string(),
    };
    let url = format!("http://{host}:{}/?room={room}&token={token}", addr.port());
    let ws_url = format!("ws://{host}:{}/ws?room={room}&token={token}", addr.port());

    let (stop_tx, stop_rx) = watch::channel(false);
    let hub = Arc::new(Hub {
        rooms: rooms::Rooms::new(),
        shutdown: stop_rx.clone(),
        live: AtomicUsize::new(0),
        cfg: cfg.clone(),
    });
    hub.rooms.create(&room, &token, cfg.room_capacity.max(1));
    let app = router(hub.clone(), &cfg.root);
    let hub_thread = hub.clone();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tessera-serve")
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let thread = std::thread::Builder::new()
        .name("tessera-serve".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("tessera serve: {e}");
                        return;
                    }
                };
                let mut stop = stop_rx;
                let mut stop2 = stop.clone();
                let server = tokio::spawn(
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stop2.wait_for(|s| *s).await;
                        })
                        .into_future(),
                );
                let _ = stop.wait_for(|s| *s).await;
                // Every connection got the shutdown too: give them a moment
                // to send their last frames and close.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                let _ = tokio::time::timeout_at(deadline, server).await;
                while hub_thread.live.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
            rt.shutdown_timeout(Duration::from_millis(500));
        })
        .map_err(|e| format!("spawning the server thread: {e}"))?;

    Ok(ServerHandle { addr, url, ws_url, room, token, hub, shutdown: Some(stop_tx), thread: Some(thread) })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

fn router(hub: Arc<Hub>, root: &Path) -> Router {
    let www = root.join("www");
    let index = www.join("index.html");
    Router::new()
        .route("/ws", get(ws_route))
        .route("/", get(move || index_page(index.clone())))
        // The wasm module is most of a join's download (a phone's first
        // load): served gzipped where `./run` left a `.gz` beside it and the
        // browser accepts gzip.
        .nest_service("/pkg", ServeDir::new(root.join("pkg")).append_index_html_on_directories(false).precompressed_gzip())
        .fallback_service(ServeDir::new(www))
        .layer(axum::middleware::map_response(common_headers))
        .with_state(hub)
}

async fn common_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    // Pages and wasm change with every build: always revalidate.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

async fn index_page(index: PathBuf) -> Response {
    match tokio::fs::read(&index).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], bytes).into_response(),
        Err(_) => (
            StatusCode::OK,
            Html(
                "<!doctype html><meta charset=utf-8><title>Tessera</title>\
                 <p>The Tessera pages are not built here (no <code>www/index.html</code> \
                 under the server's root). Run <code>./run demo</code> from the repository, \
                 or start <code>tessera serve --root DIR</code>.</p>",
            ),
        )
            .into_response(),
    }
}

async fn ws_route(State(hub): State<Arc<Hub>>, uri: Uri, ws: WebSocketUpgrade) -> Response {
    let q = parse_query(uri.query().unwrap_or(""));
    let get = |k: &str| q.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    let (room, token) = (get("room"), get("token"));
    // Frames beyond the limit are cut off by the WebSocket layer itself (a
    // little headroom so the handler can answer with a clear error first).
    let hard = hub.cfg.max_message.saturating_mul(2).max(1024);
    ws.max_message_size(hard).max_frame_size(hard).on_upgrade(move |socket| conn::handle(socket, room, token, hub))
}

/// The directory `tessera serve` serves by default: the current directory
/// if it has `www/`, else the nearest ancestor of the executable that has
/// (`target/release/tessera` → the repository), else the current directory.
pub fn default_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if cwd.join("www").is_dir() {
        return cwd;
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            if dir.join("www").is_dir() && dir.join("Cargo.toml").is_file() {
                return dir.to_path_buf();
            }
        }
    }
    cwd
}
