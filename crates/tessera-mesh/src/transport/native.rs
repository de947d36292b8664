//! The native WebRTC transport: str0m (sans-IO) driven over one UDP socket,
//! with the signaling client for `tessera serve` ([`super::signal`]).
//!
//! [`NativeMesh::join`] connects to the room's WebSocket, joins as
//! coordinator or peer and returns once the server has welcomed it. From
//! then on a background thread (its own single-threaded tokio runtime, so a
//! mesh can be created from any thread, inside a runtime or not) runs the
//! event loop:
//!
//! - the coordinator opens one WebRTC connection per peer in the room (as
//!   peers join), creating the offer and one reliable, ordered data channel
//!   labelled `"tessera"`; a peer answers whatever offer it receives;
//! - the SDP offer/answer travel as `signal`s in the browser's JSON shapes, so
//!   either end may be a browser. str0m's candidates ride inside the SDP
//!   (host candidates only: the UDP socket's address; no STUN, no TURN, no
//!   address outside the ones given is ever contacted); trickled browser
//!   candidates are added as they come;
//! - frames handed to [`NativeMesh::send`] become one binary data-channel
//!   message each (≤ 256 KiB, the wire layer chunks); arrivals, opens and
//!   closes become [`Input`]s read with [`NativeMesh::recv_timeout`].
//!
//! The UDP socket binds the IP given in [`NativeConfig::bind_ip`], or else the
//! local IP of the signaling TCP connection: `127.0.0.1` when the server is
//! on loopback, the LAN address when it is across the LAN. All peer
//! connections share that one socket (str0m's `accepts` demultiplexes).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Rtc};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::Transport;
use super::signal::{ClientMsg, Role, ServerMsg, SignalData, ws_url_from_join_url};
use crate::{Input, PeerId};

/// The data channel's label.
pub const CHANNEL_LABEL: &str = "tessera";

/// Largest frame [`NativeMesh::send`] accepts (the browsers' data-channel
/// message limit).
pub const MAX_FRAME: usize = 256 * 1024;

/// How a [`NativeMesh`] joins.
#[derive(Clone, Debug)]
pub struct NativeConfig {
    /// Coordinator (opens a connection to every peer) or peer.
    pub role: Role,
    /// Shown to the other members.
    pub name: String,
    /// The IP to bind the UDP socket to (the host candidate). `None`: the
    /// local IP of the connection to the signaling server.
    pub bind_ip: Option<IpAddr>,
    /// Limit for connecting to the server and being welcomed.
    pub join_timeout: Duration,
    /// A WebRTC connection that has not opened its channel after this long
    /// is dropped.
    pub connect_timeout: Duration,
    /// Bytes the SCTP layer may hold unacknowledged per connection (must
    /// exceed [`MAX_FRAME`]). More is slower, not faster: sctp-proto walks
    /// its whole in-flight queue on every poll (512 KiB: ≈ 12 MB/s on a
    /// loaded 2-core box, 1 MiB ≈ 6.5, 2 MiB ≈ 5–10).
    pub sctp_buffer: usize,
}

impl NativeConfig {
    /// Defaults for `role` named `name`.
    pub fn new(role: Role, name: impl Into<String>) -> Self {
        NativeConfig {
            role,
            name: name.into(),
            bind_ip: None,
            join_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(30),
            sctp_buffer: 512 * 1024,
        }
    }
}

/// Why a mesh could not be joined or stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativeError {
    /// The URL is not a join URL.
    BadUrl(String),
    /// No TCP or WebSocket connection to the server.
    Connect(String),
    /// The server refused the join.
    Refused {
        /// The `code` of its error frame (see [`super::signal::codes`]).
        code: String,
        /// Its `message`.
        message: String,
    },
    /// Something local failed (socket, runtime).
    Io(String),
    /// The mesh's event loop has stopped (after [`NativeMesh::close`], or an error).
    Closed(String),
}

impl std::fmt::Display for NativeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NativeError::BadUrl(m) => write!(f, "bad join URL: {m}"),
            NativeError::Connect(m) => write!(f, "cannot reach the signaling server: {m}"),
            NativeError::Refused { code, message } => write!(f, "join refused ({code}): {message}"),
            NativeError::Io(m) => write!(f, "network error: {m}"),
            NativeError::Closed(m) => write!(f, "mesh closed: {m}"),
        }
    }
}

impl std::error::Error for NativeError {}

/// Bytes waiting to go to one peer: in our queue, and accepted by SCTP but
/// not yet acknowledged.
#[derive(Default, Debug)]
struct Pending {
    queued: AtomicUsize,
    in_flight: AtomicUsize,
}

type Open = Arc<Mutex<HashMap<PeerId, Arc<Pending>>>>;

enum Cmd {
    Send(PeerId, Vec<u8>),
    Close(PeerId),
    Shutdown,
}

/// A clonable handle for sending from another thread than the one receiving.
#[derive(Clone)]
pub struct MeshSender {
    cmd: mpsc::UnboundedSender<Cmd>,
    open: Open,
}

impl MeshSender {
    /// Queues one binary frame (≤ [`MAX_FRAME`] bytes) for `to`. Fails if
    /// no channel to `to` is open, the frame is too large, or the mesh stopped.
    pub fn send(&self, to: PeerId, frame: Vec<u8>) -> Result<(), NativeError> {
        if frame.len() > MAX_FRAME {
            return Err(NativeError::Io(format!("frame of {} bytes exceeds the {MAX_FRAME}-byte limit", frame.len())));
        }
        let pending = self.open.lock().unwrap_or_else(|e| e.into_inner()).get(&to).cloned();
        let Some(pending) = pending else {
            return Err(NativeError::Io(format!("no open channel to peer {to}")));
        };
        pending.queued.fetch_add(frame.len(), Ordering::SeqCst);
        self.cmd.send(Cmd::Send(to, frame)).map_err(|_| NativeError::Closed("event loop stopped".into()))
    }

    /// Bytes handed to [`MeshSender::send`] for `to` that the remote end has
    /// not acknowledged yet (0 for an unknown peer).
    pub fn buffered(&self, to: PeerId) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&to).map_or(0, |p| p.queued.load(Ordering::SeqCst) + p.in_flight.load(Ordering::SeqCst))
    }

    /// Closes the channel to `to`; a [`Input::Disconnected`] follows.
    pub fn close_peer(&self, to: PeerId) {
        let _ = self.cmd.send(Cmd::Close(to));
    }

    /// Peers with an open channel, ascending.
    pub fn connected(&self) -> Vec<PeerId> {
        let mut v: Vec<PeerId> = self.open.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        v.sort_unstable();
        v
    }
}

/// One member's WebRTC mesh: the coordinator's star to every peer, or a
/// peer's single link to the coordinator.
pub struct NativeMesh {
    id: PeerId,
    room: String,
    role: Role,
    coordinator: Option<PeerId>,
    udp_addr: SocketAddr,
    sender: MeshSender,
    events: Mutex<std_mpsc::Receiver<Input>>,
    stop_reason: Arc<Mutex<Option<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NativeMesh {
    /// Joins the room of `url` (a join URL `http://HOST:PORT/?room=R&token=T`
    /// or the WebSocket URL `ws://HOST:PORT/ws?room=R&token=T`). Blocks until
    /// welcomed (or refused, or `join_timeout`).
    pub fn join(url: &str, config: NativeConfig) -> Result<NativeMesh, NativeError> {
        let ws_url = ws_url_from_join_url(url).map_err(NativeError::BadUrl)?;
        if ws_url.starts_with("wss://") {
            return Err(NativeError::BadUrl(
                "wss:// (TLS) is not supported by the native client; use ws:// or http://".into(),
            ));
        }
        let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = std_mpsc::channel();
        let open: Open = Arc::default();
        let stop_reason = Arc::new(Mutex::new(None));
        let join_timeout = config.join_timeout;
        let thread = {
            let open = open.clone();
            let stop_reason = stop_reason.clone();
            std::thread::Builder::new()
                .name(format!("tessera-mesh-{}", config.role.as_str()))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(NativeError::Io(format!("tokio runtime: {e}"))));
                            return;
                        }
                    };
                    let reason = rt.block_on(run(ws_url, config, ready_tx, cmd_rx, ev_tx, open.clone()));
                    open.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    *stop_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                })
                .map_err(|e| NativeError::Io(format!("spawning the mesh thread: {e}")))?
        };
        let welcome = match ready_rx.recv_timeout(join_timeout + Duration::from_secs(1)) {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = cmd_tx.send(Cmd::Shutdown);
                return Err(NativeError::Connect("timed out joining".into()));
            }
        };
        Ok(NativeMesh {
            id: welcome.id,
            room: welcome.room,
            role: welcome.role,
            coordinator: welcome.coordinator,
            udp_addr: welcome.udp_addr,
            sender: MeshSender { cmd: cmd_tx, open },
            events: Mutex::new(ev_rx),
            stop_reason,
            thread: Some(thread),
        })
    }

    /// This member's id (assigned by the server).
    pub fn id(&self) -> PeerId {
        self.id
    }
    /// The room joined.
    pub fn room(&self) -> &str {
        &self.room
    }
    /// The role joined as.
    pub fn role(&self) -> Role {
        self.role
    }
    /// The room's coordinator when this member was welcomed.
    pub fn coordinator_at_join(&self) -> Option<PeerId> {
        self.coordinator
    }
    /// The local UDP address (the host candidate).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// A clonable sending handle.
    pub fn sender(&self) -> MeshSender {
        self.sender.clone()
    }

    /// See [`MeshSender::send`].
    pub fn send(&self, to: PeerId, frame: Vec<u8>) -> Result<(), NativeError> {
        self.sender.send(to, frame)
    }

    /// See [`MeshSender::buffered`].
    pub fn buffered(&self, to: PeerId) -> usize {
        self.sender.buffered(to)
    }

    /// See [`MeshSender::close_peer`].
    pub fn close_peer(&self, to: PeerId) {
        self.sender.close_peer(to)
    }

    /// See [`MeshSender::connected`].
    pub fn connected(&self) -> Vec<PeerId> {
        self.sender.connected()
    }

    /// The next event, waiting at most `timeout`: `Ok(None)` on timeout,
    /// `Err(Closed)` once the event loop has stopped and every event was read.
    /// Yields only `Connected`, `Frame` and `Disconnected` (ticks are the
    /// driver's).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Input>, NativeError> {
        match self.events.lock().unwrap_or_else(|e| e.into_inner()).recv_timeout(timeout) {
            Ok(i) => Ok(Some(i)),
            Err(std_mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(self.closed()),
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Result<Option<Input>, NativeError> {
        match self.events.lock().unwrap_or_else(|e| e.into_inner()).try_recv() {
            Ok(i) => Ok(Some(i)),
            Err(std_mpsc::TryRecvError::Empty) => Ok(None),
            Err(std_mpsc::TryRecvError::Disconnected) => Err(self.closed()),
        }
    }

    fn closed(&self) -> NativeError {
        let r = self.stop_reason.lock().unwrap_or_else(|e| e.into_inner()).clone();
        NativeError::Closed(r.unwrap_or_else(|| "event loop stopped".into()))
    }

    /// Closes every connection (the remote ends see them close) and leaves
    /// the room. Dropping the mesh does the same.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.sender.cmd.send(Cmd::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NativeMesh {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Transport for NativeMesh {
    fn send(&mut self, to: PeerId, frame: Vec<u8>) -> Result<(), String> {
        self.sender.send(to, frame).map_err(|e| e.to_string())
    }
    fn buffered(&self, to: PeerId) -> usize {
        self.sender.buffered(to)
    }
}

impl Transport for MeshSender {
    fn send(&mut self, to: PeerId, frame: Vec<u8>) -> Result<(), String> {
        MeshSender::send(self, to, frame).map_err(|e| e.to_string())
    }
    fn buffered(&self, to: PeerId) -> usize {
        MeshSender::buffered(self, to)
    }
}

// ---------------------------------------------------------------------------
// The event loop.

struct Welcome {
    id: PeerId,
    room: String,
    role: Role,
    coordinator: Option<PeerId>,
    udp_addr: SocketAddr,
}

/// One WebRTC connection to one remote member.
struct Conn {
    rtc: Rtc,
    /// The coordinator's offer awaiting the answer.
    pending_offer: Option<SdpPendingOffer>,
    channel: Option<ChannelId>,
    /// Frames waiting for room in the SCTP send buffer.
    queue: VecDeque<Vec<u8>>,
    /// Shared with the senders once the channel is open.
    pending: Arc<Pending>,
    deadline: Instant,
    started: Instant,
    /// `Connected` was emitted (so `Disconnected` must be).
    announced: bool,
    dead: bool,
    /// Inputs handled since the last poll.
    undriven: u32,
}

/// Datagrams handled per connection between polls.
const DRIVE_EVERY: u32 = 8;

impl Conn {
    fn kill(&mut self, id: PeerId, why: String) {
        if !self.dead {
            debug(format_args!("connection to {id} ends: {why}"));
        }
        self.dead = true;
    }
}

/// Diagnostics on stderr when `TESSERA_MESH_DEBUG` is set.
fn debug(args: std::fmt::Arguments<'_>) {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("TESSERA_MESH_DEBUG").is_some()) {
        eprintln!("[tessera-mesh native] {args}");
    }
}

struct Loop {
    me: PeerId,
    config: NativeConfig,
    udp: UdpSocket,
    udp_addr: SocketAddr,
    conns: HashMap<PeerId, Conn>,
    /// Signals to send over the WebSocket.
    outbox: Vec<ClientMsg>,
    events: std_mpsc::Sender<Input>,
    open: Open,
}

async fn run(
    ws_url: String,
    config: NativeConfig,
    ready: std_mpsc::SyncSender<Result<Welcome, NativeError>>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    events: std_mpsc::Sender<Input>,
    open: Open,
) -> String {
    // 1. Connect, join, wait for the welcome.
    let joined = tokio::time::timeout(config.join_timeout, connect_and_join(&ws_url, &config)).await;
    let (ws, welcome_msg, local_ip) = match joined {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            let r = e.to_string();
            let _ = ready.send(Err(e));
            return r;
        }
        Err(_) => {
            let _ = ready.send(Err(NativeError::Connect("timed out joining".into())));
            return "timed out joining".into();
        }
    };
    let ServerMsg::Welcome { id, room, role, coordinator, peers } = welcome_msg else {
        unreachable!("connect_and_join returns a welcome");
    };
    let bind_ip = config.bind_ip.unwrap_or(local_ip);
    let udp = match bind_udp(SocketAddr::new(bind_ip, 0)) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(NativeError::Io(format!("binding UDP on {bind_ip}: {e}"))));
            return format!("binding UDP: {e}");
        }
    };
    let udp_addr = match udp.local_addr() {
        Ok(a) => a,
        Err(e) => {
            let _ = ready.send(Err(NativeError::Io(e.to_string())));
            return e.to_string();
        }
    };
    if ready.send(Ok(Welcome { id, room, role, coordinator, udp_addr })).is_err() {
        return "joiner gave up".into();
    }

    let mut lp = Loop { me: id, config, udp, udp_addr, conns: HashMap::new(), outbox: Vec::new(), events, open };
    if lp.config.role == Role::Coordinator {
        for m in &peers {
            if m.role == Role::Peer {
                lp.offer_to(m.id);
            }
        }
    }

    // 2. The loop.
    let (mut ws_tx, mut ws_rx) = ws.split();
    let mut ws_open = true;
    let mut buf = vec![0u8; 65536];
    loop {
        // Flush queued frames, drive every connection until it waits on time.
        let now = Instant::now();
        lp.service(now);
        for msg in lp.outbox.drain(..) {
            if !ws_open {
                break;
            }
            let text = serde_json::to_string(&msg).unwrap_or_default();
            if ws_tx.send(Message::text(text)).await.is_err() {
                ws_open = false;
            }
        }
        let deadline = lp.conns.values().map(|c| c.deadline).min().unwrap_or(now + Duration::from_secs(1));
        let sleep_until = deadline.max(now).min(now + Duration::from_secs(1));

        tokio::select! {
            biased;
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Send(to, frame)) => {
                    lp.enqueue(to, frame);
                    // Take every command already waiting before servicing.
                    while let Ok(c) = cmds.try_recv() {
                        match c {
                            Cmd::Send(to, frame) => lp.enqueue(to, frame),
                            Cmd::Close(to) => lp.close(to),
                            Cmd::Shutdown => {
                                lp.shutdown();
                                break_loop(&mut ws_tx).await;
                                return "closed".into();
                            }
                        }
                    }
                }
                Some(Cmd::Close(to)) => lp.close(to),
                Some(Cmd::Shutdown) | None => {
                    lp.shutdown();
                    break_loop(&mut ws_tx).await;
                    return "closed".into();
                }
            },
            r = lp.udp.recv_from(&mut buf) => {
                if let Ok((n, source)) = r {
                    lp.receive(&buf[..n], source);
                    // Drain whatever else is already there before servicing.
                    for _ in 0..256 {
                        match lp.udp.try_recv_from(&mut buf) {
                            Ok((n, source)) => lp.receive(&buf[..n], source),
                            Err(_) => break,
                        }
                    }
                }
            },
            msg = ws_rx.next(), if ws_open => match msg {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(m) = serde_json::from_str::<ServerMsg>(t.as_str()) {
                        lp.on_server(m);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // Signaling is gone; open channels keep working.
                    ws_open = false;
                }
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(sleep_until)) => {}
        }
    }
}

/// A UDP socket with room for a burst of datagrams: with the default
/// ~200 KiB buffer, loopback drops datagrams whenever the loop is late and
/// SCTP falls back to retransmission timeouts.
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = s.set_recv_buffer_size(UDP_BUFFER);
    let _ = s.set_send_buffer_size(UDP_BUFFER);
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

const UDP_BUFFER: usize = 4 << 20;

async fn break_loop<S>(ws_tx: &mut S)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        let _ = ws_tx.send(Message::Close(None)).await;
        let _ = ws_tx.flush().await;
    })
    .await;
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn connect_and_join(ws_url: &str, config: &NativeConfig) -> Result<(Ws, ServerMsg, IpAddr), NativeError> {
    let authority = ws_url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| NativeError::BadUrl(ws_url.to_string()))?;
    let tcp = TcpStream::connect(authority).await.map_err(|e| NativeError::Connect(format!("{authority}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let local_ip = tcp.local_addr().map_err(|e| NativeError::Io(e.to_string()))?.ip();
    let (mut ws, _) = tokio_tungstenite::client_async(ws_url, tcp)
        .await
        .map_err(|e| NativeError::Connect(format!("WebSocket handshake: {e}")))?;
    let join = ClientMsg::Join { role: config.role, name: config.name.clone(), room: None, token: None };
    ws.send(Message::text(serde_json::to_string(&join).unwrap_or_default()))
        .await
        .map_err(|e| NativeError::Connect(format!("sending join: {e}")))?;
    while let Some(msg) = ws.next().await {
        let msg = msg.map_err(|e| NativeError::Connect(format!("reading welcome: {e}")))?;
        match msg {
            Message::Text(t) => match serde_json::from_str::<ServerMsg>(t.as_str()) {
                Ok(w @ ServerMsg::Welcome { .. }) => return Ok((ws, w, local_ip)),
                Ok(ServerMsg::Error { code, message }) => return Err(NativeError::Refused { code, message }),
                _ => {}
            },
            Message::Close(f) => {
                return Err(NativeError::Refused {
                    code: "closed".into(),
                    message: f
                        .map(|f| f.reason.to_string())
                        .unwrap_or_else(|| "connection closed before welcome".into()),
                });
            }
            _ => {}
        }
    }
    Err(NativeError::Connect("connection closed before welcome".into()))
}

impl Loop {
    fn new_rtc(&self) -> Option<Rtc> {
        let mut rtc = Rtc::builder().set_sctp_max_buffered_amount(self.config.sctp_buffer).build(Instant::now());
        let cand = Candidate::host(self.udp_addr, "udp").ok()?;
        rtc.add_local_candidate(cand)?;
        Some(rtc)
    }

    fn new_conn(&self, rtc: Rtc) -> Conn {
        let now = Instant::now();
        Conn {
            rtc,
            pending_offer: None,
            channel: None,
            queue: VecDeque::new(),
            pending: Arc::default(),
            deadline: now,
            started: now,
            announced: false,
            dead: false,
            undriven: 0,
        }
    }

    /// Coordinator: open a connection to `peer`.
    fn offer_to(&mut self, peer: PeerId) {
        if peer == self.me {
            return;
        }
        self.drop_conn(peer);
        let Some(mut rtc) = self.new_rtc() else { return };
        let mut api = rtc.sdp_api();
        api.add_channel_with_config(ChannelConfig {
            label: CHANNEL_LABEL.into(),
            ordered: true,
            reliability: Reliability::Reliable,
            negotiated: None,
            protocol: String::new(),
        });
        let Some((offer, pending)) = api.apply() else { return };
        let data = SignalData::Description { kind: "offer".into(), sdp: offer.to_sdp_string() };
        self.outbox.push(ClientMsg::Signal { to: peer, data: serde_json::to_value(data).unwrap_or_default() });
        let mut conn = self.new_conn(rtc);
        conn.pending_offer = Some(pending);
        self.conns.insert(peer, conn);
    }

    fn on_server(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::PeerJoined { id, role: Role::Peer, .. } if self.config.role == Role::Coordinator => {
                self.offer_to(id)
            }
            ServerMsg::PeerLeft { id, .. } => self.drop_conn(id),
            ServerMsg::Signal { from, data } => self.on_signal(from, data),
            _ => {}
        }
    }

    fn on_signal(&mut self, from: PeerId, data: serde_json::Value) {
        let Ok(data) = serde_json::from_value::<SignalData>(data) else { return };
        // Whatever a remote member sends must not take the loop down: SDP
        // handling is fenced off so that even a parser panic only drops
        // that member's connection.
        let fenced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.on_signal_data(from, data)));
        if fenced.is_err() {
            debug(format_args!("peer {from}: signal handling panicked; connection dropped"));
            if let Some(mut c) = self.conns.remove(&from) {
                c.kill(from, "bad signal".into());
                self.finish(from, c);
            }
        }
    }

    fn on_signal_data(&mut self, from: PeerId, data: SignalData) {
        match data {
            SignalData::Description { kind, sdp } if kind == "offer" => {
                let Ok(offer) = SdpOffer::from_sdp_string(&sdp) else { return };
                let Some(mut rtc) = self.new_rtc() else { return };
                let answer = match rtc.sdp_api().accept_offer(offer) {
                    Ok(a) => a,
                    Err(e) => {
                        debug(format_args!("peer {from}: offer refused: {e}"));
                        return;
                    }
                };
                // A newer offer from the same member replaces its connection.
                self.drop_conn(from);
                let data = SignalData::Description { kind: "answer".into(), sdp: answer.to_sdp_string() };
                self.outbox.push(ClientMsg::Signal { to: from, data: serde_json::to_value(data).unwrap_or_default() });
                let conn = self.new_conn(rtc);
                self.conns.insert(from, conn);
            }
            SignalData::Description { kind, sdp } if kind == "answer" => {
                let Ok(answer) = SdpAnswer::from_sdp_string(&sdp) else { return };
                let Some(conn) = self.conns.get_mut(&from) else { return };
                let Some(pending) = conn.pending_offer.take() else { return };
                if let Err(e) = conn.rtc.sdp_api().accept_answer(pending, answer) {
                    conn.kill(from, format!("bad answer: {e}"));
                }
            }
            SignalData::Candidate { candidate, .. } => {
                let Some(conn) = self.conns.get_mut(&from) else { return };
                let c = candidate.trim().trim_start_matches("a=");
                if c.is_empty() {
                    return;
                }
                // mDNS (`*.local`) candidates do not parse and are skipped: the
                // remote's checks then arrive as peer-reflexive candidates.
                if let Ok(cand) = Candidate::from_sdp_string(c) {
                    conn.rtc.add_remote_candidate(cand);
                }
            }
            _ => {}
        }
    }

    fn enqueue(&mut self, to: PeerId, frame: Vec<u8>) {
        match self.conns.get_mut(&to) {
            Some(c) if c.channel.is_some() && !c.dead => c.queue.push_back(frame),
            Some(c) => {
                c.pending.queued.fetch_sub(frame.len(), Ordering::SeqCst);
            }
            None => {}
        }
    }

    fn close(&mut self, peer: PeerId) {
        if let Some(c) = self.conns.get_mut(&peer) {
            let _ = c.rtc.close();
            c.kill(peer, "closed locally".into());
        }
    }

    fn receive(&mut self, data: &[u8], source: SocketAddr) {
        let Ok(contents) = data.try_into() else { return };
        let input = str0m::Input::Receive(
            Instant::now(),
            Receive { proto: Protocol::Udp, source, destination: self.udp_addr, contents },
        );
        let Some(id) = self.conns.iter().find(|(_, c)| !c.dead && c.rtc.accepts(&input)).map(|(&id, _)| id) else {
            return;
        };
        let Some(mut c) = self.conns.remove(&id) else { return };
        match c.rtc.handle_input(input) {
            Ok(()) => {}
            // DTLS holds only a few records between polls; a datagram it
            // cannot take is lost like any other and SCTP resends it.
            Err(e) if e.to_string().contains("queue full") => debug(format_args!("peer {id}: datagram dropped: {e}")),
            Err(e) => c.kill(id, format!("input: {e}")),
        }
        // str0m must be polled every few inputs (DTLS holds ~30 records);
        // the loop polls every connection after each batch anyway.
        c.undriven += 1;
        if !c.dead && c.undriven >= DRIVE_EVERY {
            self.drive(id, &mut c);
            if self.flush(&mut c) {
                self.drive(id, &mut c);
            }
        }
        if c.dead || !c.rtc.is_alive() {
            self.finish(id, c);
        } else {
            self.conns.insert(id, c);
        }
    }

    /// Time passes, queues drain, outputs go out, events come in.
    fn service(&mut self, now: Instant) {
        let ids: Vec<PeerId> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(mut c) = self.conns.remove(&id) else { continue };
            if !c.dead
                && c.deadline <= now
                && let Err(e) = c.rtc.handle_input(str0m::Input::Timeout(now))
            {
                c.kill(id, format!("timeout input: {e}"));
            }
            if !c.dead {
                self.flush(&mut c);
                self.drive(id, &mut c);
                // Acks may have made room: flush again, then drive the new data out.
                if !c.queue.is_empty() && self.flush(&mut c) {
                    self.drive(id, &mut c);
                }
            }
            if c.channel.is_none() && now.duration_since(c.started) > self.config.connect_timeout {
                c.kill(id, "channel did not open in time".into());
            }
            if c.dead || !c.rtc.is_alive() {
                self.finish(id, c);
            } else {
                self.conns.insert(id, c);
            }
        }
    }

    /// Moves queued frames into the channel while SCTP has room; true if any moved.
    fn flush(&self, c: &mut Conn) -> bool {
        let Some(cid) = c.channel else { return false };
        if c.queue.is_empty() {
            return false;
        }
        let Some(mut ch) = c.rtc.channel(cid) else { return false };
        let mut wrote = false;
        while let Some(front) = c.queue.front() {
            match ch.write(true, front) {
                Ok(true) => {
                    let n = front.len();
                    c.queue.pop_front();
                    c.pending.queued.fetch_sub(n, Ordering::SeqCst);
                    wrote = true;
                }
                Ok(false) => break,
                Err(e) => {
                    c.dead = true;
                    debug(format_args!("peer {}: write: {e}", c.pending.queued.load(Ordering::Relaxed)));
                    break;
                }
            }
        }
        c.pending.in_flight.store(ch.buffered_amount(), Ordering::SeqCst);
        wrote
    }

    fn drive(&mut self, id: PeerId, c: &mut Conn) {
        c.undriven = 0;
        loop {
            if !c.rtc.is_alive() {
                return;
            }
            match c.rtc.poll_output() {
                Ok(str0m::Output::Timeout(t)) => {
                    c.deadline = t;
                    break;
                }
                Ok(str0m::Output::Transmit(t)) => {
                    // Loopback rarely fills; a dropped datagram is retransmitted by SCTP.
                    let _ = self.udp.try_send_to(&t.contents, t.destination);
                }
                Ok(str0m::Output::Event(e)) => self.on_event(id, c, e),
                Err(e) => {
                    c.kill(id, format!("poll: {e}"));
                    return;
                }
            }
        }
        if let Some(cid) = c.channel
            && let Some(mut ch) = c.rtc.channel(cid)
        {
            c.pending.in_flight.store(ch.buffered_amount(), Ordering::SeqCst);
        }
    }

    fn on_event(&mut self, id: PeerId, c: &mut Conn, e: Event) {
        match e {
            // The coordinator knows its channel by label; a peer takes the
            // first channel the coordinator opens (a browser may label it).
            Event::ChannelOpen(cid, label)
                if c.channel.is_none() && (label == CHANNEL_LABEL || self.config.role == Role::Peer) =>
            {
                c.channel = Some(cid);
                c.announced = true;
                self.open.lock().unwrap_or_else(|e| e.into_inner()).insert(id, c.pending.clone());
                let _ = self.events.send(Input::Connected(id));
            }
            Event::ChannelData(d) if Some(d.id) == c.channel => {
                let _ = self.events.send(Input::Frame(id, d.data));
            }
            Event::ChannelClose(cid) if Some(cid) == c.channel => c.kill(id, "channel closed".into()),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => c.kill(id, "ICE disconnected".into()),
            Event::Closed => c.kill(id, "closed by the remote end".into()),
            _ => {}
        }
    }

    fn drop_conn(&mut self, id: PeerId) {
        if let Some(mut c) = self.conns.remove(&id) {
            let _ = c.rtc.close();
            self.drive(id, &mut c);
            self.finish(id, c);
        }
    }

    /// Forget a connection; tell the driver if it had been told it opened.
    fn finish(&mut self, id: PeerId, mut c: Conn) {
        if c.rtc.is_alive() {
            let _ = c.rtc.close();
            // Send the close (DTLS close_notify) so the remote notices at once.
            let mut n = 0;
            while let Ok(o) = c.rtc.poll_output() {
                n += 1;
                match o {
                    str0m::Output::Transmit(t) => {
                        let _ = self.udp.try_send_to(&t.contents, t.destination);
                    }
                    str0m::Output::Timeout(_) => break,
                    str0m::Output::Event(_) => {}
                }
                if n > 64 || !c.rtc.is_alive() {
                    break;
                }
            }
        }
        if c.announced {
            self.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            let _ = self.events.send(Input::Disconnected(id));
        }
    }

    fn shutdown(&mut self) {
        let ids: Vec<PeerId> = self.conns.keys().copied().collect();
        for id in ids {
            self.drop_conn(id);
        }
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    fn is_sync<T: Sync>() {}
    is_send::<NativeMesh>();
    is_sync::<NativeMesh>();
    is_send::<MeshSender>();
}
