//! The browser WebRTC transport: `RTCPeerConnection` data channels through
//! web-sys, with the signaling client for `tessera serve` over a browser
//! `WebSocket` ([`super::signal`]). wasm32 only; the native counterpart is
//! `transport::native` (read together: same roles, same channel, same JSON).
//!
//! [`WebMesh::join`] opens the room's WebSocket and joins as coordinator or
//! peer; it returns at once (the browser cannot block) and everything after
//! happens in event handlers:
//!
//! - the **coordinator** opens one `RTCPeerConnection` per peer in the room
//!   (those in its `welcome` and every later `peer-joined`), creates the
//!   offer and one reliable, ordered data channel labelled `"tessera"`; a
//!   **peer** answers whatever offer it receives (a newer offer from the
//!   same member replaces the old connection) and takes the channel the
//!   offerer opened;
//! - offers, answers and ICE candidates travel as `signal`s in the browser's
//!   JSON shapes ([`SignalData`]); candidates trickle both ways; remote
//!   candidates that arrive before the remote description wait for it;
//! - the configuration has **no ICE servers** (no STUN, no TURN): only host
//!   candidates, so nothing leaves the LAN (loopback in tests);
//! - frames handed to [`WebMesh::send`] become one binary message each
//!   (≤ [`MAX_FRAME`] = 256 KiB, the data-channel limit; the wire layer
//!   chunks below it). Backpressure: a frame goes to the channel only while
//!   its `bufferedAmount` is under `high_water`; the rest waits in our own
//!   queue and is flushed from `bufferedamountlow` (threshold `low_water`);
//!   [`WebMesh::buffered`] reports both;
//! - channel opens, messages and closes become [`Input`]s, drained with
//!   [`WebMesh::poll`]. After queueing events the mesh calls the *waker*
//!   set with [`WebMesh::set_waker`] — from a browser event handler, never
//!   while the mesh is borrowed, so the waker may call back into the mesh.
//!
//! A connection whose channel has not opened after `connect_timeout_ms` is
//! dropped; the coordinator then offers again (up to `offer_retries` times)
//! while the peer is still in the room. A peer that leaves the room (the
//! server's `peer-left`), a channel that closes or a connection that fails
//! yields [`Input::Disconnected`] — once, and only after `Connected`.
//!
//! The driver calls [`WebMesh::tick`] every ~100 ms (timeouts, keep-alive,
//! releasing closed connections).
//!
//! For tests without a server, [`WebMesh::manual`] makes a mesh whose
//! signals go to a callback and whose server messages are fed with
//! [`WebMesh::deliver`]: two such meshes wired to each other form a
//! coordinator ↔ peer link inside one page.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::{Rc, Weak};

use serde::Serialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{
    CloseEvent, MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit,
    RtcDataChannelState, RtcDataChannelType, RtcIceCandidateInit, RtcPeerConnection, RtcPeerConnectionIceEvent,
    RtcSdpType, RtcSessionDescriptionInit, WebSocket,
};

use super::Transport;
use super::signal::{ClientMsg, Role, ServerMsg, SignalData, ws_url_from_join_url};
use crate::{Input, PeerId};

/// The data channel's label.
pub const CHANNEL_LABEL: &str = "tessera";

/// Largest frame [`WebMesh::send`] accepts (the data-channel message limit).
pub const MAX_FRAME: usize = 256 * 1024;

/// How a [`WebMesh`] joins and paces its channels.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Coordinator (offers to every peer) or peer (answers).
    pub role: Role,
    /// Shown to the other members.
    pub name: String,
    /// A frame is handed to the channel only while its `bufferedAmount`
    /// is below this; otherwise it waits in the mesh's queue.
    pub high_water: usize,
    /// `bufferedAmountLowThreshold`: the queue is flushed when the
    /// channel's buffer drains to this.
    pub low_water: usize,
    /// A connection whose channel has not opened after this long is dropped.
    pub connect_timeout_ms: f64,
    /// Coordinator: new offers to a peer still in the room after a failed
    /// connection.
    pub offer_retries: u32,
    /// Signaling keep-alive period (`ping`).
    pub keepalive_ms: f64,
}

impl WebConfig {
    /// Defaults for `role` named `name`.
    pub fn new(role: Role, name: impl Into<String>) -> WebConfig {
        WebConfig {
            role,
            name: name.into(),
            high_water: 1 << 20,
            low_water: 256 << 10,
            connect_timeout_ms: 20_000.0,
            offer_retries: 3,
            keepalive_ms: 20_000.0,
        }
    }
}

/// Where the signaling connection is.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Signaling {
    /// WebSocket opening or join sent.
    Connecting,
    /// Welcomed into the room.
    Joined,
    /// The server refused the join (its error code and message).
    Refused { code: String, message: String },
    /// The signaling connection closed after the join (open channels keep working).
    Closed { reason: String },
}

/// One link as the dashboard shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LinkInfo {
    /// The remote member.
    pub id: PeerId,
    /// Its name in the room.
    pub name: String,
    /// "connecting" or "open".
    pub state: &'static str,
    /// `RTCPeerConnection.connectionState`.
    pub connection: String,
    /// Bytes in the channel's buffer plus the mesh's queue.
    pub buffered: usize,
    /// Frames waiting in the mesh's queue.
    pub queued_frames: usize,
    /// Frames and bytes through this link (as frames, both directions).
    pub frames_out: u64,
    pub frames_in: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Channel-open time since the connection started, ms.
    pub connect_ms: Option<f64>,
}

/// A snapshot of the mesh.
#[derive(Clone, Debug, Serialize)]
pub struct MeshInfo {
    /// This member's id, once welcomed.
    pub id: Option<PeerId>,
    pub room: String,
    pub role: Role,
    pub signaling: Signaling,
    /// The room's coordinator as last known.
    pub coordinator: Option<PeerId>,
    /// Other members of the room.
    pub members: usize,
    pub links: Vec<LinkInfo>,
    /// The last few transport events, oldest first.
    pub log: Vec<String>,
}

type Handler = Closure<dyn FnMut(JsValue)>;
type Shared = Rc<RefCell<State>>;

/// Where outgoing signals go.
enum Sink {
    Ws(WebSocket),
    Custom(Rc<dyn Fn(PeerId, serde_json::Value)>),
}

struct Member {
    name: String,
    role: Role,
}

struct Conn {
    /// Distinguishes this connection from an earlier one to the same member
    /// (async callbacks check it before touching anything).
    serial: u64,
    pc: RtcPeerConnection,
    dc: Option<RtcDataChannel>,
    open: bool,
    announced: bool,
    remote_set: bool,
    pending_candidates: Vec<RtcIceCandidateInit>,
    queue: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    started_ms: f64,
    open_ms: Option<f64>,
    frames_out: u64,
    frames_in: u64,
    bytes_out: u64,
    bytes_in: u64,
    handlers: Vec<Handler>,
}

impl Conn {
    fn buffered(&self) -> usize {
        self.queued_bytes + self.dc.as_ref().map_or(0, |d| d.buffered_amount() as usize)
    }

    /// Moves queued frames into the channel while it is under `high`.
    /// Returns an error text if the channel refused a frame.
    fn flush(&mut self, high: usize) -> Result<(), String> {
        let Some(dc) = &self.dc else { return Ok(()) };
        if !self.open {
            return Ok(());
        }
        while let Some(f) = self.queue.front() {
            if dc.buffered_amount() as usize >= high {
                break;
            }
            dc.send_with_u8_array(f).map_err(|e| format!("send: {}", js_text(&e)))?;
            let n = f.len();
            self.queued_bytes -= n;
            self.frames_out += 1;
            self.bytes_out += n as u64;
            self.queue.pop_front();
        }
        Ok(())
    }

    /// Detaches every handler and closes the channel and the connection.
    fn shut(&mut self) {
        if let Some(dc) = &self.dc {
            dc.set_onopen(None);
            dc.set_onmessage(None);
            dc.set_onclose(None);
            dc.set_onerror(None);
            dc.set_onbufferedamountlow(None);
            dc.close();
        }
        self.pc.set_onicecandidate(None);
        self.pc.set_ondatachannel(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.close();
    }
}

struct State {
    cfg: WebConfig,
    me: Option<PeerId>,
    room: String,
    coordinator: Option<PeerId>,
    signaling: Signaling,
    members: BTreeMap<PeerId, Member>,
    conns: HashMap<PeerId, Conn>,
    next_serial: u64,
    retries: HashMap<PeerId, u32>,
    events: VecDeque<Input>,
    signals_out: Vec<(PeerId, serde_json::Value)>,
    sink: Option<Sink>,
    ws_handlers: Vec<Handler>,
    waker: Option<Rc<dyn Fn()>>,
    /// Closed connections, kept until the next tick so that no handler is
    /// released while it runs.
    graveyard: Vec<Conn>,
    last_keepalive_ms: f64,
    log: VecDeque<String>,
    closed: bool,
}

const LOG_KEPT: usize = 24;

fn now_ms() -> f64 {
    js_sys::Date::now()
}

fn js_text(v: &JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}

impl State {
    fn new(cfg: WebConfig) -> State {
        State {
            cfg,
            me: None,
            room: String::new(),
            coordinator: None,
            signaling: Signaling::Connecting,
            members: BTreeMap::new(),
            conns: HashMap::new(),
            next_serial: 1,
            retries: HashMap::new(),
            events: VecDeque::new(),
            signals_out: Vec::new(),
            sink: None,
            ws_handlers: Vec::new(),
            waker: None,
            graveyard: Vec::new(),
            last_keepalive_ms: now_ms(),
            log: VecDeque::new(),
            closed: false,
        }
    }

    fn log(&mut self, s: String) {
        if self.log.len() == LOG_KEPT {
            self.log.pop_front();
        }
        let t = js_sys::Date::new_0();
        self.log.push_back(format!("{:02}:{:02}:{:02} {s}", t.get_hours(), t.get_minutes(), t.get_seconds()));
    }

    fn signal(&mut self, to: PeerId, data: SignalData) {
        if let Ok(v) = serde_json::to_value(data) {
            self.signals_out.push((to, v));
        }
    }

    /// Forgets the connection to `id`; `Disconnected` if it had opened.
    fn drop_conn(&mut self, id: PeerId, why: &str) {
        if let Some(mut c) = self.conns.remove(&id) {
            c.shut();
            if c.announced {
                self.events.push_back(Input::Disconnected(id));
            }
            self.log(format!("link {id} closed: {why}"));
            self.graveyard.push(c);
        }
    }

    fn conn(&mut self, id: PeerId, serial: u64) -> Option<&mut Conn> {
        self.conns.get_mut(&id).filter(|c| c.serial == serial)
    }
}

/// One member's WebRTC mesh in the browser: the coordinator's star to every
/// peer, or a peer's single link to the coordinator. Cloning gives another
/// handle to the same mesh.
#[derive(Clone)]
pub struct WebMesh {
    state: Shared,
}

impl WebMesh {
    /// Joins the room of `url` (a join URL `http://HOST:PORT/?room=R&token=T`
    /// — any page URL with those parameters — or the WebSocket URL). Returns
    /// at once; [`WebMesh::info`] tells when the server has welcomed (or
    /// refused) the join. Fails if the URL has no room and token or the
    /// WebSocket cannot be created.
    pub fn join(url: &str, cfg: WebConfig) -> Result<WebMesh, String> {
        let ws_url = ws_url_from_join_url(url)?;
        let ws = WebSocket::new(&ws_url).map_err(|e| format!("WebSocket {ws_url}: {}", js_text(&e)))?;
        let mesh = WebMesh { state: Rc::new(RefCell::new(State::new(cfg))) };
        let weak = Rc::downgrade(&mesh.state);
        let mut handlers = Vec::new();

        let w = weak.clone();
        let ws2 = ws.clone();
        let on_open: Handler = Closure::new(move |_: JsValue| {
            let Some(rc) = w.upgrade() else { return };
            let msg = {
                let s = rc.borrow();
                ClientMsg::Join { role: s.cfg.role, name: s.cfg.name.clone(), room: None, token: None }
            };
            if let Ok(t) = serde_json::to_string(&msg) {
                let _ = ws2.send_with_str(&t);
            }
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        handlers.push(on_open);

        let w = weak.clone();
        let on_message: Handler = Closure::new(move |ev: JsValue| {
            let Some(rc) = w.upgrade() else { return };
            let Some(text) = ev.unchecked_into::<MessageEvent>().data().as_string() else { return };
            match serde_json::from_str::<ServerMsg>(&text) {
                Ok(m) => on_server(&rc, m),
                Err(e) => rc.borrow_mut().log(format!("unreadable signaling message: {e}")),
            }
            notify(&rc);
        });
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        handlers.push(on_message);

        let w = weak.clone();
        let on_close: Handler = Closure::new(move |ev: JsValue| {
            let Some(rc) = w.upgrade() else { return };
            let ev: CloseEvent = ev.unchecked_into();
            let mut s = rc.borrow_mut();
            let reason = if ev.reason().is_empty() { format!("code {}", ev.code()) } else { format!("{} ({})", ev.reason(), ev.code()) };
            s.log(format!("signaling closed: {reason}"));
            s.signaling = match std::mem::replace(&mut s.signaling, Signaling::Connecting) {
                Signaling::Connecting => Signaling::Refused { code: "closed".into(), message: format!("the server closed the connection before the join: {reason}") },
                r @ Signaling::Refused { .. } => r,
                _ => Signaling::Closed { reason },
            };
            drop(s);
            notify(&rc);
        });
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        handlers.push(on_close);

        let w = weak;
        let on_error: Handler = Closure::new(move |_: JsValue| {
            if let Some(rc) = w.upgrade() {
                rc.borrow_mut().log("signaling WebSocket error".into());
            }
        });
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        handlers.push(on_error);

        {
            let mut s = mesh.state.borrow_mut();
            s.sink = Some(Sink::Ws(ws));
            s.ws_handlers = handlers;
        }
        Ok(mesh)
    }

    /// A mesh without a signaling server, already "welcomed" as member `me`:
    /// its outgoing signals go to `sink(to, data)`, and server messages
    /// (`peer-joined`, `signal`, `peer-left`) are fed with [`WebMesh::deliver`].
    pub fn manual(me: PeerId, cfg: WebConfig, sink: Rc<dyn Fn(PeerId, serde_json::Value)>) -> WebMesh {
        let mut st = State::new(cfg);
        st.me = Some(me);
        st.signaling = Signaling::Joined;
        st.sink = Some(Sink::Custom(sink));
        WebMesh { state: Rc::new(RefCell::new(st)) }
    }

    /// Feeds a server message (see [`WebMesh::manual`]).
    pub fn deliver(&self, msg: ServerMsg) {
        on_server(&self.state, msg);
        notify(&self.state);
    }

    /// Called (from an event handler, with the mesh not borrowed) whenever
    /// new events wait in [`WebMesh::poll`] or the signaling state changed.
    pub fn set_waker(&self, waker: Rc<dyn Fn()>) {
        self.state.borrow_mut().waker = Some(waker);
    }

    /// The events since the last call, in order.
    pub fn poll(&self) -> Vec<Input> {
        self.state.borrow_mut().events.drain(..).collect()
    }

    /// Queues one binary frame (≤ [`MAX_FRAME`] bytes) for `to`. Fails if
    /// no channel to `to` is open or the frame is too large.
    pub fn send(&self, to: PeerId, frame: Vec<u8>) -> Result<(), String> {
        if frame.len() > MAX_FRAME {
            return Err(format!("frame of {} bytes exceeds the {MAX_FRAME}-byte limit", frame.len()));
        }
        let mut s = self.state.borrow_mut();
        let high = s.cfg.high_water;
        let Some(c) = s.conns.get_mut(&to).filter(|c| c.open) else {
            return Err(format!("no open channel to peer {to}"));
        };
        c.queued_bytes += frame.len();
        c.queue.push_back(frame);
        if let Err(e) = c.flush(high) {
            s.drop_conn(to, &e);
            drop(s);
            notify(&self.state);
            return Err(e);
        }
        Ok(())
    }

    /// Bytes waiting to go to `to`: in the channel's buffer and in the
    /// mesh's queue (0 for an unknown peer).
    pub fn buffered(&self, to: PeerId) -> usize {
        self.state.borrow().conns.get(&to).map_or(0, Conn::buffered)
    }

    /// Closes the channel to `to`; a [`Input::Disconnected`] follows (if it had opened).
    pub fn close_peer(&self, to: PeerId) {
        self.state.borrow_mut().drop_conn(to, "closed locally");
        notify(&self.state);
    }

    /// Coordinator: drops every connection and offers anew to every peer in
    /// the room (each peer sees its channel close and a new one open, and
    /// introduces itself again — how a coordinator starts a new session,
    /// e.g. after switching models).
    pub fn reconnect_all(&self) {
        let peers: Vec<PeerId> = {
            let mut s = self.state.borrow_mut();
            if s.cfg.role != Role::Coordinator {
                return;
            }
            let ids: Vec<PeerId> = s.conns.keys().copied().collect();
            for id in ids {
                s.drop_conn(id, "reconnecting");
            }
            s.members.iter().filter(|(_, m)| m.role == Role::Peer).map(|(id, _)| *id).collect()
        };
        for p in peers {
            offer_to(&self.state, p);
        }
        notify(&self.state);
    }

    /// Peers with an open channel, ascending.
    pub fn connected(&self) -> Vec<PeerId> {
        let mut v: Vec<PeerId> = self.state.borrow().conns.iter().filter(|(_, c)| c.open).map(|(id, _)| *id).collect();
        v.sort_unstable();
        v
    }

    /// This member's id, once welcomed.
    pub fn id(&self) -> Option<PeerId> {
        self.state.borrow().me
    }

    /// Where the signaling connection is.
    pub fn signaling(&self) -> Signaling {
        self.state.borrow().signaling.clone()
    }

    /// Timeouts, keep-alive and housekeeping; call every ~100 ms.
    pub fn tick(&self) {
        let now = now_ms();
        let mut retry = Vec::new();
        {
            let mut guard = self.state.borrow_mut();
            let s = &mut *guard;
            s.graveyard.clear();
            let limit = s.cfg.connect_timeout_ms;
            let late: Vec<PeerId> = s.conns.iter().filter(|(_, c)| !c.open && now - c.started_ms > limit).map(|(id, _)| *id).collect();
            for id in late {
                s.drop_conn(id, "channel did not open in time");
                let tries = s.retries.entry(id).or_insert(0);
                *tries += 1;
                let again = *tries <= s.cfg.offer_retries;
                if s.cfg.role == Role::Coordinator && again && s.members.get(&id).is_some_and(|m| m.role == Role::Peer) {
                    retry.push(id);
                }
            }
            // Channels with queued frames: flush (in case bufferedamountlow was missed).
            let high = s.cfg.high_water;
            let mut failed = Vec::new();
            for (id, c) in s.conns.iter_mut() {
                if !c.queue.is_empty()
                    && let Err(e) = c.flush(high)
                {
                    failed.push((*id, e));
                }
            }
            for (id, e) in failed {
                s.drop_conn(id, &e);
            }
            if now - s.last_keepalive_ms > s.cfg.keepalive_ms {
                s.last_keepalive_ms = now;
                if let Some(Sink::Ws(ws)) = &s.sink
                    && ws.ready_state() == WebSocket::OPEN
                    && let Ok(t) = serde_json::to_string(&ClientMsg::Ping)
                {
                    let _ = ws.send_with_str(&t);
                }
            }
        }
        for id in retry {
            offer_to(&self.state, id);
        }
        notify(&self.state);
    }

    /// A snapshot for the pages.
    pub fn info(&self) -> MeshInfo {
        let s = self.state.borrow();
        let mut links: Vec<LinkInfo> = s
            .conns
            .iter()
            .map(|(id, c)| LinkInfo {
                id: *id,
                name: s.members.get(id).map_or_else(String::new, |m| m.name.clone()),
                state: if c.open { "open" } else { "connecting" },
                connection: format!("{:?}", c.pc.connection_state()).to_lowercase(),
                buffered: c.buffered(),
                queued_frames: c.queue.len(),
                frames_out: c.frames_out,
                frames_in: c.frames_in,
                bytes_out: c.bytes_out,
                bytes_in: c.bytes_in,
                connect_ms: c.open_ms.map(|t| t - c.started_ms),
            })
            .collect();
        links.sort_by_key(|l| l.id);
        MeshInfo {
            id: s.me,
            room: s.room.clone(),
            role: s.cfg.role,
            signaling: s.signaling.clone(),
            coordinator: s.coordinator,
            members: s.members.len(),
            links,
            log: s.log.iter().cloned().collect(),
        }
    }

    /// Closes every connection and leaves the room.
    pub fn close(&self) {
        let mut s = self.state.borrow_mut();
        if s.closed {
            return;
        }
        s.closed = true;
        let ids: Vec<PeerId> = s.conns.keys().copied().collect();
        for id in ids {
            s.drop_conn(id, "mesh closed");
        }
        if let Some(Sink::Ws(ws)) = &s.sink {
            ws.set_onmessage(None);
            let _ = ws.close();
        }
    }
}

impl Transport for WebMesh {
    fn send(&mut self, to: PeerId, frame: Vec<u8>) -> Result<(), String> {
        WebMesh::send(self, to, frame)
    }
    fn buffered(&self, to: PeerId) -> usize {
        WebMesh::buffered(self, to)
    }
}

/// Sends the queued signals and wakes the driver if events wait. Never
/// called with the state borrowed.
fn notify(rc: &Shared) {
    let (signals, sink_ws, sink_fn, waker, wake) = {
        let mut s = rc.borrow_mut();
        let signals = std::mem::take(&mut s.signals_out);
        let (ws, f) = match &s.sink {
            Some(Sink::Ws(ws)) => (Some(ws.clone()), None),
            Some(Sink::Custom(f)) => (None, Some(f.clone())),
            None => (None, None),
        };
        (signals, ws, f, s.waker.clone(), !s.events.is_empty())
    };
    for (to, data) in signals {
        if let Some(ws) = &sink_ws {
            if let Ok(t) = serde_json::to_string(&ClientMsg::Signal { to, data }) {
                let _ = ws.send_with_str(&t);
            }
        } else if let Some(f) = &sink_fn {
            f(to, data);
        }
    }
    if wake && let Some(w) = waker {
        w();
    }
}

fn on_server(rc: &Shared, msg: ServerMsg) {
    match msg {
        ServerMsg::Welcome { id, room, role, coordinator, peers } => {
            let offers: Vec<PeerId> = {
                let mut s = rc.borrow_mut();
                s.me = Some(id);
                s.room = room.clone();
                s.coordinator = coordinator;
                s.signaling = Signaling::Joined;
                s.log(format!("joined room {room} as {} {id}", role.as_str()));
                for m in &peers {
                    s.members.insert(m.id, Member { name: m.name.clone(), role: m.role });
                }
                if role == Role::Coordinator { peers.iter().filter(|m| m.role == Role::Peer).map(|m| m.id).collect() } else { Vec::new() }
            };
            for p in offers {
                offer_to(rc, p);
            }
        }
        ServerMsg::PeerJoined { id, name, role } => {
            let offer = {
                let mut s = rc.borrow_mut();
                s.log(format!("{} {id} ('{name}') joined", role.as_str()));
                s.members.insert(id, Member { name, role });
                s.retries.remove(&id);
                if role == Role::Coordinator {
                    s.coordinator = Some(id);
                }
                s.cfg.role == Role::Coordinator && role == Role::Peer
            };
            if offer {
                offer_to(rc, id);
            }
        }
        ServerMsg::PeerLeft { id, role } => {
            let mut s = rc.borrow_mut();
            s.members.remove(&id);
            if role == Role::Coordinator && s.coordinator == Some(id) {
                s.coordinator = None;
            }
            s.drop_conn(id, "left the room");
        }
        ServerMsg::Signal { from, data } => match serde_json::from_value::<SignalData>(data) {
            Ok(d) => on_signal(rc, from, d),
            Err(_) => rc.borrow_mut().log(format!("unreadable signal from {from}")),
        },
        ServerMsg::Pong => {}
        ServerMsg::Error { code, message } => {
            let mut s = rc.borrow_mut();
            s.log(format!("server error {code}: {message}"));
            if s.signaling == Signaling::Connecting {
                s.signaling = Signaling::Refused { code, message };
            }
        }
    }
}

fn new_pc() -> Result<RtcPeerConnection, String> {
    let cfg = RtcConfiguration::new();
    // No STUN, no TURN: host candidates only, nothing leaves the LAN.
    cfg.set_ice_servers(&js_sys::Array::new());
    RtcPeerConnection::new_with_configuration(&cfg).map_err(|e| format!("RTCPeerConnection: {}", js_text(&e)))
}

/// Makes a connection to `id` with the handlers every connection has
/// (candidates, state) and registers it, replacing any earlier one.
fn register_conn(rc: &Shared, id: PeerId, pc: RtcPeerConnection) -> u64 {
    let weak = Rc::downgrade(rc);
    let mut s = rc.borrow_mut();
    s.drop_conn(id, "replaced by a new connection");
    let serial = s.next_serial;
    s.next_serial += 1;
    let mut handlers = Vec::new();

    let w = weak.clone();
    let on_candidate: Handler = Closure::new(move |ev: JsValue| {
        let Some(rc) = w.upgrade() else { return };
        let ev: RtcPeerConnectionIceEvent = ev.unchecked_into();
        let Some(c) = ev.candidate() else { return }; // end of candidates: nothing to say
        {
            let mut s = rc.borrow_mut();
            if s.conn(id, serial).is_none() {
                return;
            }
            s.signal(id, SignalData::Candidate { candidate: c.candidate(), sdp_mid: c.sdp_mid(), sdp_m_line_index: c.sdp_m_line_index() });
        }
        notify(&rc);
    });
    pc.set_onicecandidate(Some(on_candidate.as_ref().unchecked_ref()));
    handlers.push(on_candidate);

    let w = weak.clone();
    let pc2 = pc.clone();
    let on_state: Handler = Closure::new(move |_: JsValue| {
        let Some(rc) = w.upgrade() else { return };
        let state = format!("{:?}", pc2.connection_state()).to_lowercase();
        {
            let mut s = rc.borrow_mut();
            if s.conn(id, serial).is_none() {
                return;
            }
            s.log(format!("link {id}: connection {state}"));
            if state == "failed" || state == "closed" {
                s.drop_conn(id, &format!("connection {state}"));
            }
        }
        notify(&rc);
    });
    pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
    handlers.push(on_state);

    if s.cfg.role == Role::Peer {
        let w = weak;
        let on_channel: Handler = Closure::new(move |ev: JsValue| {
            let Some(rc) = w.upgrade() else { return };
            let dc = ev.unchecked_into::<RtcDataChannelEvent>().channel();
            let has = rc.borrow_mut().conn(id, serial).is_some_and(|c| c.dc.is_some());
            if has {
                dc.close(); // one channel per connection
                return;
            }
            attach_channel(&rc, id, serial, dc);
            notify(&rc);
        });
        pc.set_ondatachannel(Some(on_channel.as_ref().unchecked_ref()));
        handlers.push(on_channel);
    }

    let now = now_ms();
    s.conns.insert(
        id,
        Conn {
            serial,
            pc,
            dc: None,
            open: false,
            announced: false,
            remote_set: false,
            pending_candidates: Vec::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            started_ms: now,
            open_ms: None,
            frames_out: 0,
            frames_in: 0,
            bytes_out: 0,
            bytes_in: 0,
            handlers,
        },
    );
    serial
}

/// Wires a data channel into connection (`id`, `serial`).
fn attach_channel(rc: &Shared, id: PeerId, serial: u64, dc: RtcDataChannel) {
    let weak = Rc::downgrade(rc);
    let mut guard = rc.borrow_mut();
    let s = &mut *guard;
    let low = s.cfg.low_water as u32;
    let Some(c) = s.conns.get_mut(&id).filter(|c| c.serial == serial) else {
        dc.close();
        return;
    };
    dc.set_binary_type(RtcDataChannelType::Arraybuffer);
    dc.set_buffered_amount_low_threshold(low);

    let w = weak.clone();
    let on_open: Handler = Closure::new(move |_: JsValue| {
        let Some(rc) = w.upgrade() else { return };
        {
            let mut s = rc.borrow_mut();
            let Some(c) = s.conn(id, serial) else { return };
            if c.open {
                return;
            }
            c.open = true;
            c.announced = true;
            c.open_ms = Some(now_ms());
            let ms = c.open_ms.unwrap_or(0.0) - c.started_ms;
            s.retries.remove(&id);
            s.events.push_back(Input::Connected(id));
            s.log(format!("link {id} open after {ms:.0} ms"));
        }
        notify(&rc);
    });
    dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));

    let w = weak.clone();
    let on_message: Handler = Closure::new(move |ev: JsValue| {
        let Some(rc) = w.upgrade() else { return };
        let data = ev.unchecked_into::<MessageEvent>().data();
        let Some(buf) = data.dyn_ref::<js_sys::ArrayBuffer>() else { return }; // text: not ours
        let bytes = js_sys::Uint8Array::new(buf).to_vec();
        {
            let mut s = rc.borrow_mut();
            let Some(c) = s.conn(id, serial) else { return };
            if !c.announced {
                return;
            }
            c.frames_in += 1;
            c.bytes_in += bytes.len() as u64;
            s.events.push_back(Input::Frame(id, bytes));
        }
        notify(&rc);
    });
    dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));

    let w = weak.clone();
    let on_low: Handler = Closure::new(move |_: JsValue| {
        let Some(rc) = w.upgrade() else { return };
        {
            let mut s = rc.borrow_mut();
            let high = s.cfg.high_water;
            let Some(c) = s.conn(id, serial) else { return };
            if let Err(e) = c.flush(high) {
                s.drop_conn(id, &e);
            }
        }
        notify(&rc);
    });
    dc.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));

    let w = weak.clone();
    let on_close: Handler = Closure::new(move |_: JsValue| {
        let Some(rc) = w.upgrade() else { return };
        {
            let mut s = rc.borrow_mut();
            if s.conn(id, serial).is_none() {
                return;
            }
            s.drop_conn(id, "channel closed");
        }
        notify(&rc);
    });
    dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));

    let w = weak;
    let on_error: Handler = Closure::new(move |ev: JsValue| {
        let Some(rc) = w.upgrade() else { return };
        let text = js_sys::Reflect::get(&ev, &"error".into()).map(|e| js_text(&e)).unwrap_or_default();
        let mut s = rc.borrow_mut();
        if s.conn(id, serial).is_some() {
            s.log(format!("link {id}: channel error {text}"));
        }
    });
    dc.set_onerror(Some(on_error.as_ref().unchecked_ref()));

    c.handlers.extend([on_open, on_message, on_low, on_close, on_error]);
    let already_open = dc.ready_state() == RtcDataChannelState::Open;
    c.dc = Some(dc);
    if already_open && !c.open {
        c.open = true;
        c.announced = true;
        c.open_ms = Some(now_ms());
        s.events.push_back(Input::Connected(id));
    }
}

/// Coordinator: a new connection to `peer`, its channel and the offer.
fn offer_to(rc: &Shared, peer: PeerId) {
    if rc.borrow().me == Some(peer) {
        return;
    }
    let pc = match new_pc() {
        Ok(pc) => pc,
        Err(e) => {
            rc.borrow_mut().log(e);
            return;
        }
    };
    let serial = register_conn(rc, peer, pc.clone());
    let init = RtcDataChannelInit::new();
    init.set_ordered(true);
    let dc = pc.create_data_channel_with_data_channel_dict(CHANNEL_LABEL, &init);
    attach_channel(rc, peer, serial, dc);
    let weak = Rc::downgrade(rc);
    spawn_local(async move {
        let res: Result<String, JsValue> = async {
            let offer = JsFuture::from(pc.create_offer()).await?;
            JsFuture::from(pc.set_local_description(offer.unchecked_ref())).await?;
            Ok(pc.local_description().map(|d| d.sdp()).unwrap_or_default())
        }
        .await;
        publish_description(&weak, peer, serial, "offer", res, "creating the offer");
    });
}

/// Sends our local description (`kind` "offer" or "answer") to `peer`, or,
/// if making it failed (`what`), drops the connection — unless a newer
/// connection to `peer` has replaced this one (`serial`) meanwhile.
fn publish_description(weak: &std::rc::Weak<RefCell<State>>, peer: PeerId, serial: u64, kind: &str, res: Result<String, JsValue>, what: &str) {
    let Some(rc) = weak.upgrade() else { return };
    {
        let mut s = rc.borrow_mut();
        if s.conn(peer, serial).is_none() {
            return;
        }
        match res {
            Ok(sdp) => s.signal(peer, SignalData::Description { kind: kind.into(), sdp }),
            Err(e) => s.drop_conn(peer, &format!("{what}: {}", js_text(&e))),
        }
    }
    notify(&rc);
}

fn on_signal(rc: &Shared, from: PeerId, data: SignalData) {
    match data {
        SignalData::Description { kind, sdp } if kind == "offer" => {
            if rc.borrow().cfg.role == Role::Coordinator {
                rc.borrow_mut().log(format!("ignored an offer from {from}: the coordinator makes the offers"));
                return;
            }
            let pc = match new_pc() {
                Ok(pc) => pc,
                Err(e) => {
                    rc.borrow_mut().log(e);
                    return;
                }
            };
            // A newer offer from the same member replaces its connection.
            let serial = register_conn(rc, from, pc.clone());
            let weak = Rc::downgrade(rc);
            spawn_local(async move {
                let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
                desc.set_sdp(&sdp);
                let set = JsFuture::from(pc.set_remote_description(&desc)).await;
                let ok = set.is_ok() && remote_description_set(&weak, from, serial, &pc);
                let res: Result<String, JsValue> = match set {
                    Err(e) => Err(e),
                    Ok(_) if !ok => return,
                    Ok(_) => {
                        async {
                            let answer = JsFuture::from(pc.create_answer()).await?;
                            JsFuture::from(pc.set_local_description(answer.unchecked_ref())).await?;
                            Ok(pc.local_description().map(|d| d.sdp()).unwrap_or_default())
                        }
                        .await
                    }
                };
                publish_description(&weak, from, serial, "answer", res, "answering the offer");
            });
        }
        SignalData::Description { kind, sdp } if kind == "answer" => {
            let Some((pc, serial)) = rc.borrow_mut().conns.get(&from).filter(|c| !c.remote_set).map(|c| (c.pc.clone(), c.serial)) else {
                return;
            };
            let weak = Rc::downgrade(rc);
            spawn_local(async move {
                let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
                desc.set_sdp(&sdp);
                match JsFuture::from(pc.set_remote_description(&desc)).await {
                    Ok(_) => {
                        remote_description_set(&weak, from, serial, &pc);
                    }
                    Err(e) => {
                        let Some(rc) = weak.upgrade() else { return };
                        let mut s = rc.borrow_mut();
                        if s.conn(from, serial).is_some() {
                            s.drop_conn(from, &format!("bad answer: {}", js_text(&e)));
                        }
                        drop(s);
                        notify(&rc);
                    }
                }
            });
        }
        SignalData::Candidate { candidate, sdp_mid, sdp_m_line_index } => {
            if candidate.trim().is_empty() {
                return; // end of candidates
            }
            let init = RtcIceCandidateInit::new(&candidate);
            init.set_sdp_mid(sdp_mid.as_deref());
            init.set_sdp_m_line_index(sdp_m_line_index.or(if sdp_mid.is_none() { Some(0) } else { None }));
            let mut s = rc.borrow_mut();
            let Some(c) = s.conns.get_mut(&from) else { return };
            if c.remote_set {
                add_candidate(&c.pc, init);
            } else {
                c.pending_candidates.push(init);
            }
        }
        SignalData::Description { kind, .. } => rc.borrow_mut().log(format!("ignored a '{kind}' description from {from}")),
    }
}

/// After `setRemoteDescription`: adds the candidates that waited for it.
/// False if the connection was replaced meanwhile.
fn remote_description_set(weak: &Weak<RefCell<State>>, id: PeerId, serial: u64, pc: &RtcPeerConnection) -> bool {
    let Some(rc) = weak.upgrade() else { return false };
    let mut s = rc.borrow_mut();
    let Some(c) = s.conn(id, serial) else { return false };
    c.remote_set = true;
    for init in c.pending_candidates.drain(..) {
        add_candidate(pc, init);
    }
    true
}

fn add_candidate(pc: &RtcPeerConnection, init: RtcIceCandidateInit) {
    let p = pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
    spawn_local(async move {
        // A candidate the browser cannot use (another address family, an
        // mDNS name it cannot resolve) is not an error for the connection.
        let _ = JsFuture::from(p).await;
    });
}
