//! The signaling protocol spoken over the WebSocket of `tessera serve`
//! (`/ws?room=ROOM&token=TOKEN`), shared by the server, the native transport
//! and (through JSON) the browser pages. The full description, with examples,
//! is `crates/tessera-cli/src/serve/PROTOCOL.md`.
//!
//! Every message is one JSON text frame with a `"type"` field:
//!
//! | direction | type | fields |
//! |---|---|---|
//! | client → server | `join` | `role` (`"coordinator"`/`"peer"`), `name`, optional `room`, `token` |
//! | client → server | `signal` | `to` (member id), `data` (opaque JSON object) |
//! | client → server | `ping` | — |
//! | server → client | `welcome` | `id`, `room`, `role`, `coordinator` (id or null), `peers` (`[{id,name,role}]`, everyone else) |
//! | server → client | `peer-joined` | `id`, `name`, `role` |
//! | server → client | `peer-left` | `id`, `role` |
//! | server → client | `signal` | `from`, `data` |
//! | server → client | `pong` | — |
//! | server → client | `error` | `code`, `message` |
//!
//! `data` of a `signal` is, by convention, either a session description in
//! the browser's `RTCSessionDescription.toJSON()` shape (`{type, sdp}`) or an
//! ICE candidate in `RTCIceCandidate.toJSON()`'s (`{candidate, sdpMid,
//! sdpMLineIndex}`); see [`SignalData`]. The server relays it untouched.
//!
//! This module builds on every target; the WebSocket client that speaks it
//! natively is [`crate::transport::native`].

use serde::{Deserialize, Serialize};

use crate::PeerId;

/// What a member of a room is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Plans, ships weights and inputs, collects results. One per room.
    Coordinator,
    /// Runs the tasks it is given.
    Peer,
}

impl Role {
    /// `"coordinator"` or `"peer"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Peer => "peer",
        }
    }
}

/// A client's message to the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMsg {
    /// The first message of a connection. `room`/`token` may be given here
    /// instead of in the WebSocket URL's query.
    Join {
        /// Coordinator or peer.
        role: Role,
        /// Shown to the others (the server keeps at most 64 characters).
        #[serde(default)]
        name: String,
        /// The room, if not in the URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The room's token, if not in the URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// Relay `data` to member `to` of the same room.
    Signal {
        /// The recipient's id.
        to: PeerId,
        /// Any JSON object (by convention a [`SignalData`]).
        data: serde_json::Value,
    },
    /// Keep-alive; answered with `pong`.
    Ping,
}

/// A member as listed in `welcome`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: PeerId,
    /// The name it joined with.
    pub name: String,
    /// Coordinator or peer.
    pub role: Role,
}

/// The server's message to a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMsg {
    /// Answer to a successful `join`.
    Welcome {
        /// The id the server gave this connection (unique on the server).
        id: PeerId,
        /// The room joined.
        room: String,
        /// The role joined as.
        role: Role,
        /// The room's coordinator, if one has joined.
        coordinator: Option<PeerId>,
        /// Everyone else in the room, coordinator included.
        peers: Vec<Member>,
    },
    /// Someone joined the room.
    PeerJoined {
        /// Its id.
        id: PeerId,
        /// Its name.
        name: String,
        /// Its role.
        role: Role,
    },
    /// Someone left the room (`role` coordinator: the coordinator left).
    PeerLeft {
        /// Its id.
        id: PeerId,
        /// Its role.
        role: Role,
    },
    /// A relayed signal.
    Signal {
        /// The sender's id.
        from: PeerId,
        /// What it sent.
        data: serde_json::Value,
    },
    /// Answer to `ping`.
    Pong,
    /// A refused or invalid message. Fatal codes are followed by a close.
    Error {
        /// One of [`codes`].
        code: String,
        /// For people.
        message: String,
    },
}

impl ServerMsg {
    /// An `error` message.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        ServerMsg::Error { code: code.to_string(), message: message.into() }
    }
}

/// Error codes the server sends (`error.code`).
pub mod codes {
    /// No token, or not the room's token (fatal).
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// No such room (fatal).
    pub const UNKNOWN_ROOM: &str = "unknown-room";
    /// The room is at capacity (fatal).
    pub const ROOM_FULL: &str = "room-full";
    /// The room already has a coordinator (fatal).
    pub const COORDINATOR_EXISTS: &str = "coordinator-exists";
    /// Anything but `join` as the first message (fatal).
    pub const NOT_JOINED: &str = "not-joined";
    /// A second `join` (not fatal).
    pub const ALREADY_JOINED: &str = "already-joined";
    /// Not JSON, or JSON without a known shape.
    pub const BAD_MESSAGE: &str = "bad-message";
    /// A JSON message with an unknown `type`.
    pub const UNKNOWN_TYPE: &str = "unknown-type";
    /// A message over the size limit (fatal).
    pub const TOO_LARGE: &str = "too-large";
    /// A binary frame (only JSON text frames are spoken).
    pub const BINARY: &str = "binary-unsupported";
    /// Over the per-connection message rate; the message was dropped.
    pub const RATE_LIMITED: &str = "rate-limited";
    /// `signal.to` is not a member of the room (or is the sender).
    pub const UNKNOWN_PEER: &str = "unknown-peer";
    /// No `join` within the join timeout (fatal).
    pub const JOIN_TIMEOUT: &str = "join-timeout";
    /// The recipient's queue is full; the member was dropped.
    pub const SLOW_CONSUMER: &str = "slow-consumer";
    /// The server is shutting down (fatal).
    pub const SHUTDOWN: &str = "shutdown";
}

/// The payload of a `signal`, in the browser's JSON shapes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SignalData {
    /// `RTCSessionDescription.toJSON()`: `{"type":"offer"|"answer","sdp":"v=0..."}`.
    Description {
        /// `"offer"` or `"answer"`.
        #[serde(rename = "type")]
        kind: String,
        /// The SDP text.
        sdp: String,
    },
    /// `RTCIceCandidate.toJSON()`: `{"candidate":"candidate:...","sdpMid":"0","sdpMLineIndex":0}`.
    /// An empty `candidate` means end of candidates.
    Candidate {
        /// `candidate:...` (an SDP candidate attribute without `a=`).
        candidate: String,
        /// The media section's mid.
        #[serde(rename = "sdpMid", default)]
        sdp_mid: Option<String>,
        /// The media section's index.
        #[serde(rename = "sdpMLineIndex", default)]
        sdp_m_line_index: Option<u16>,
    },
}

/// Turns a join URL `http://HOST:PORT/?room=R&token=T` (as printed by
/// `tessera serve`, or any page URL with those query parameters) into the
/// signaling WebSocket URL `ws://HOST:PORT/ws?room=R&token=T`. A `ws://`
/// or `wss://` URL is returned unchanged.
pub fn ws_url_from_join_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    if url.starts_with("ws://") || url.starts_with("wss://") {
        return Ok(url.to_string());
    }
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        ("ws", r)
    } else if let Some(r) = url.strip_prefix("https://") {
        ("wss", r)
    } else {
        return Err(format!("not an http(s) or ws(s) URL: {url:?}"));
    };
    let (authority, path_query) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(format!("URL has no host: {url:?}"));
    }
    let query = path_query.split('#').next().unwrap_or("").split_once('?').map(|(_, q)| q).unwrap_or("");
    let params = parse_query(query);
    let room = params.iter().find(|(k, _)| k == "room").map(|(_, v)| v.as_str());
    let token = params.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str());
    match (room, token) {
        (Some(r), Some(t)) if !r.is_empty() && !t.is_empty() => {
            Ok(format!("{scheme}://{authority}/ws?room={}&token={}", encode_component(r), encode_component(t)))
        }
        _ => Err(format!("URL has no room and token (expected ?room=ROOM&token=TOKEN): {url:?}")),
    }
}

/// Splits a query string into decoded `(key, value)` pairs.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_documented_json_shapes() {
        let j: ClientMsg = serde_json::from_str(r#"{"type":"join","role":"peer","name":"pi"}"#).unwrap();
        assert_eq!(j, ClientMsg::Join { role: Role::Peer, name: "pi".into(), room: None, token: None });
        let s: ClientMsg =
            serde_json::from_str(r#"{"type":"signal","to":3,"data":{"type":"offer","sdp":"v=0"}}"#).unwrap();
        let ClientMsg::Signal { to: 3, data } = s else { panic!() };
        let d: SignalData = serde_json::from_value(data).unwrap();
        assert_eq!(d, SignalData::Description { kind: "offer".into(), sdp: "v=0".into() });
        let c: SignalData =
            serde_json::from_str(r#"{"candidate":"candidate:1 1 udp 1 127.0.0.1 5 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"x"}"#)
                .unwrap();
        assert!(matches!(c, SignalData::Candidate { sdp_m_line_index: Some(0), .. }));

        let w =
            ServerMsg::Welcome { id: 1, room: "r".into(), role: Role::Coordinator, coordinator: None, peers: vec![] };
        assert_eq!(
            serde_json::to_string(&w).unwrap(),
            r#"{"type":"welcome","id":1,"room":"r","role":"coordinator","coordinator":null,"peers":[]}"#
        );
        let l = ServerMsg::PeerLeft { id: 2, role: Role::Peer };
        assert_eq!(serde_json::to_string(&l).unwrap(), r#"{"type":"peer-left","id":2,"role":"peer"}"#);
        let e = ServerMsg::error(codes::ROOM_FULL, "full");
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"type":"error","code":"room-full","message":"full"}"#);
    }

    #[test]
    fn join_url_becomes_ws_url() {
        assert_eq!(
            ws_url_from_join_url("http://127.0.0.1:8080/?room=ab12&token=f00d").unwrap(),
            "ws://127.0.0.1:8080/ws?room=ab12&token=f00d"
        );
        assert_eq!(
            ws_url_from_join_url("https://h:1/peer.html?x=1&token=t%2B&room=r#frag").unwrap(),
            "wss://h:1/ws?room=r&token=t%2B"
        );
        assert_eq!(ws_url_from_join_url("ws://h/ws?room=a&token=b").unwrap(), "ws://h/ws?room=a&token=b");
        assert!(ws_url_from_join_url("http://127.0.0.1:8080/").is_err());
        assert!(ws_url_from_join_url("ftp://x").is_err());
        assert!(ws_url_from_join_url("http:///?room=a&token=b").is_err());
    }

    #[test]
    fn query_decoding_never_panics() {
        for q in ["%", "%4", "a=%zz", "=&&=", "k=%41%42", "x=%e2%82%ac"] {
            let _ = parse_query(q);
        }
        assert_eq!(parse_query("k=%41%42+c"), vec![("k".to_string(), "AB c".to_string())]);
    }
}
