//! One WebSocket connection: authenticate, join, relay; enforce the size
//! limit, the rate limit and the join timeout. Every refusal is an `error`
//! frame; fatal ones are followed by a close frame.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tessera_mesh::transport::signal::{ClientMsg, Role, ServerMsg, codes};
use tokio::sync::{Notify, mpsc};

use super::Hub;
use super::rooms::{Slot, text};

/// Frames a member may have waiting to be written before it is dropped.
const QUEUE: usize = 512;

/// WebSocket close codes.
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_AWAY: u16 = 1001;
const CLOSE_TRY_LATER: u16 = 1013;

/// Token bucket: `rate` messages per second, bursts of `burst`.
pub struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Bucket { tokens: burst, rate, burst, last: Instant::now() }
    }
    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Joined {
    room: String,
    id: u32,
    role: Role,
    name: String,
}

enum Step {
    Continue,
    /// Send this error, then close with this code.
    Fatal(&'static str, String, u16),
}

/// Serves one upgraded connection. `room`/`token` come from the URL query.
pub async fn handle(socket: WebSocket, room: Option<String>, token: Option<String>, hub: Arc<Hub>) {
    struct Live(Arc<Hub>);
    impl Drop for Live {
        fn drop(&mut self) {
            self.0.live.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    hub.live.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _live = Live(hub.clone());
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
    let (close_tx, mut close_rx) = mpsc::channel::<(u16, String)>(1);
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                m = rx.recv() => match m {
                    Some(t) => if sink.send(Message::text(t)).await.is_err() { return },
                    None => {
                        if let Ok((code, reason)) = close_rx.try_recv() {
                            let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                        }
                        break;
                    }
                },
                c = close_rx.recv() => {
                    // Flush what is queued (the error frame), then close.
                    while let Ok(t) = rx.try_recv() {
                        if sink.send(Message::text(t)).await.is_err() { return }
                    }
                    if let Some((code, reason)) = c {
                        let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    }
                    break;
                }
            }
        }
        let _ = sink.close().await;
    });

    let kick = Arc::new(Notify::new());
    let mut shutdown = hub.shutdown.clone();
    let mut bucket = Bucket::new(hub.cfg.rate, hub.cfg.burst);
    let mut strikes = 0u32;
    let mut joined: Option<Joined> = None;
    let join_deadline = tokio::time::sleep(hub.cfg.join_timeout);
    tokio::pin!(join_deadline);

    let fatal = |code: &'static str, message: String, close: u16| {
        let _ = tx.try_send(text(&ServerMsg::error(code, message.clone())));
        let _ = close_tx.try_send((close, message.chars().take(100).collect()));
    };
    let error = |code: &'static str, message: String| {
        let _ = tx.try_send(text(&ServerMsg::error(code, message)));
    };

    // A token in the URL is checked before anything is read.
    if let (Some(r), Some(t)) = (&room, &token)
        && let Err((code, message)) = hub.rooms.check(r, t)
    {
        fatal(code, message, CLOSE_POLICY);
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        return;
    }

    loop {
        let step = tokio::select! {
            m = stream.next() => match m {
                None | Some(Ok(Message::Close(_))) => break,
                Some(Err(e)) => {
                    let s = e.to_string();
                    if s.contains("too long") || s.contains("limit") || s.contains("Space") {
                        Step::Fatal(codes::TOO_LARGE, format!("message over {} bytes", hub.cfg.max_message), CLOSE_TOO_BIG)
                    } else {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Continue,
                Some(Ok(msg)) => {
                    if !bucket.take(Instant::now()) {
                        strikes += 1;
                        if strikes == 1 {
                            error(codes::RATE_LIMITED, format!("over {} messages/s; message dropped", hub.cfg.rate));
                        }
                        if strikes as f64 > hub.cfg.burst {
                            Step::Fatal(codes::RATE_LIMITED, "sustained flood".into(), CLOSE_POLICY)
                        } else {
                            Step::Continue
                        }
                    } else {
                        strikes = 0;
                        match msg {
                            Message::Text(t) if t.len() > hub.cfg.max_message => Step::Fatal(
                                codes::TOO_LARGE,
                                format!("message of {} bytes over the {}-byte limit", t.len(), hub.cfg.max_message),
                                CLOSE_TOO_BIG,
                            ),
                            Message::Text(t) => on_text(t.as_str(), &mut joined, &room, &token, &hub, &tx, &kick),
                            Message::Binary(b) if b.len() > hub.cfg.max_message => Step::Fatal(
                                codes::TOO_LARGE,
                                format!("message of {} bytes over the {}-byte limit", b.len(), hub.cfg.max_message),
                                CLOSE_TOO_BIG,
                            ),
                            _ => {
                                error(codes::BINARY, "only JSON text frames are accepted".into());
                                Step::Continue
                            }
                        }
                    }
                }
            },
            _ = kick.notified() => Step::Fatal(codes::SLOW_CONSUMER, "too many undelivered messages".into(), CLOSE_TRY_LATER),
            _ = &mut join_deadline, if joined.is_none() =>
                Step::Fatal(codes::JOIN_TIMEOUT, format!("no join within {:?}", hub.cfg.join_timeout), CLOSE_POLICY),
            _ = shutdown.changed() => Step::Fatal(codes::SHUTDOWN, "server shutting down".into(), CLOSE_AWAY),
        };
        match step {
            Step::Continue => {}
            Step::Fatal(code, message, close) => {
                fatal(code, message, close);
                break;
            }
        }
    }

    if let Some(j) = joined {
        hub.rooms.leave(&j.room, j.id);
        if hub.cfg.log {
            eprintln!("  {} {} ({:?}) left; {} in room", j.role.as_str(), j.id, j.name, hub.rooms.count(&j.room));
        }
    }
    drop(tx);
    drop(close_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

fn on_text(
    t: &str,
    joined: &mut Option<Joined>,
    room: &Option<String>,
    token: &Option<String>,
    hub: &Arc<Hub>,
    tx: &mpsc::Sender<String>,
    kick: &Arc<Notify>,
) -> Step {
    let send = |m: ServerMsg| {
        let _ = tx.try_send(text(&m));
    };
    let v: serde_json::Value = match serde_json::from_str(t) {
        Ok(v) => v,
        Err(e) => {
            if joined.is_none() {
                return Step::Fatal(
                    codes::BAD_MESSAGE,
                    format!("not JSON: {e}; the first message must be a join"),
                    CLOSE_POLICY,
                );
            }
            send(ServerMsg::error(codes::BAD_MESSAGE, format!("not JSON: {e}")));
            return Step::Continue;
        }
    };
    let kind = v.get("type").and_then(|k| k.as_str()).map(str::to_string);
    let msg = match kind.as_deref() {
        Some("join" | "signal" | "ping") => match serde_json::from_value::<ClientMsg>(v) {
            Ok(m) => m,
            Err(e) => {
                let m = format!("malformed {:?} message: {e}", kind.unwrap_or_default());
                if joined.is_none() {
                    return Step::Fatal(codes::BAD_MESSAGE, m, CLOSE_POLICY);
                }
                send(ServerMsg::error(codes::BAD_MESSAGE, m));
                return Step::Continue;
            }
        },
        Some(other) => {
            let m = format!("unknown message type {other:?}");
            if joined.is_none() {
                return Step::Fatal(codes::NOT_JOINED, format!("{m}; the first message must be a join"), CLOSE_POLICY);
            }
            send(ServerMsg::error(codes::UNKNOWN_TYPE, m));
            return Step::Continue;
        }
        None => {
            let m = "message has no \"type\"".to_string();
            if joined.is_none() {
                return Step::Fatal(codes::BAD_MESSAGE, m, CLOSE_POLICY);
            }
            send(ServerMsg::error(codes::BAD_MESSAGE, m));
            return Step::Continue;
        }
    };

    match (msg, joined.as_ref()) {
        (ClientMsg::Join { role, name, room: r2, token: t2 }, None) => {
            let Some(room_name) = r2.or_else(|| room.clone()) else {
                return Step::Fatal(codes::UNKNOWN_ROOM, "no room given (?room=ROOM in the URL)".into(), CLOSE_POLICY);
            };
            let Some(tok) = t2.or_else(|| token.clone()) else {
                return Step::Fatal(
                    codes::UNAUTHORIZED,
                    "no token given (?token=TOKEN in the URL)".into(),
                    CLOSE_POLICY,
                );
            };
            let name = clean_name(&name, role);
            let slot = Slot { name: name.clone(), role, tx: tx.clone(), kick: kick.clone() };
            match hub.rooms.join(&room_name, &tok, slot) {
                Ok((id, welcome)) => {
                    send(welcome);
                    if hub.cfg.log {
                        eprintln!(
                            "  {} {id} ({name:?}) joined; {} in room",
                            role.as_str(),
                            hub.rooms.count(&room_name)
                        );
                    }
                    *joined = Some(Joined { room: room_name, id, role, name });
                    Step::Continue
                }
                Err((code, message)) => Step::Fatal(code, message, CLOSE_POLICY),
            }
        }
        (ClientMsg::Join { .. }, Some(_)) => {
            send(ServerMsg::error(codes::ALREADY_JOINED, "already joined"));
            Step::Continue
        }
        (_, None) => Step::Fatal(codes::NOT_JOINED, "the first message must be a join".into(), CLOSE_POLICY),
        (ClientMsg::Signal { to, data }, Some(j)) => {
            if !data.is_object() {
                send(ServerMsg::error(codes::BAD_MESSAGE, "signal data must be a JSON object"));
            } else if let Err((code, message)) = hub.rooms.relay(&j.room, j.id, to, data) {
                send(ServerMsg::error(code, message));
            }
            Step::Continue
        }
        (ClientMsg::Ping, Some(_)) => {
            send(ServerMsg::Pong);
            Step::Continue
        }
    }
}

/// At most 64 printable characters; a default when empty.
fn clean_name(name: &str, role: Role) -> String {
    let n: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
    let n = n.trim();
    if n.is_empty() { role.as_str().to_string() } else { n.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let mut b = Bucket::new(10.0, 5.0);
        let t0 = Instant::now();
        assert!((0..5).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(110)));
        assert!(!b.take(t0 + Duration::from_millis(110)));
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("  \u{7}pi\n ", Role::Peer), "pi");
        assert_eq!(clean_name("", Role::Coordinator), "coordinator");
        assert_eq!(clean_name(&"x".repeat(100), Role::Peer).len(), 64);
    }
}
