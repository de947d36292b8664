//! The wire format: how one message becomes one or more binary frames, and
//! how a receiver puts them back together with bounded memory.
//!
//! # Wire protocol, version 1
//!
//! Every frame is one data-channel message (WebRTC, WebSocket or the
//! in-memory transport): a fixed 28-byte header followed by a payload.
//! All integers are little-endian.
//!
//! | offset | size | field         | meaning                                                   |
//! |-------:|-----:|---------------|-----------------------------------------------------------|
//! | 0      | 4    | magic         | `b"TSRA"`                                                 |
//! | 4      | 1    | version       | `1`                                                       |
//! | 5      | 1    | kind          | message kind (table in [`Kind`])                          |
//! | 6      | 1    | flags         | reserved: senders write 0, receivers ignore               |
//! | 7      | 1    | reserved      | 0                                                         |
//! | 8      | 4    | message id    | chosen by the sender, distinct among its messages in flight |
//! | 12     | 4    | chunk index   | 0-based position of this frame in its message             |
//! | 16     | 4    | chunk count   | frames in the message (≥ 1)                               |
//! | 20     | 4    | message bytes | payload length of the whole message                       |
//! | 24     | 4    | payload bytes | payload length of this frame (= frame length − 28)        |
//!
//! The first 6 bytes (magic, version, kind) are frozen across versions, so a
//! receiver can always tell a version mismatch from garbage and answer it.
//!
//! **Chunking.** A message whose payload exceeds the sender's chunk size
//! (default [`DEFAULT_CHUNK_BYTES`] = 64 KiB) is split into consecutive
//! chunks with the same kind and message id; every chunk but the last is
//! non-empty. A frame never exceeds [`MAX_FRAME_BYTES`] (255 KiB, under the
//! 256 KiB WebRTC data-channel limit). Chunks of one message are sent in
//! order (the channel is ordered and reliable); chunks of different
//! messages may interleave.
//!
//! **Reassembly** ([`Reassembler`]) is bounded: a message may not exceed the
//! receiver's per-message cap, at most [`Limits::max_partial`] messages may
//! be partly received at once, the bytes held by partial messages are
//! capped, and partial messages idle for [`Limits::partial_timeout_ms`] are
//! dropped. A violation discards the partial message (later chunks of it are
//! dropped silently) and is answered with an Error frame.
//!
//! **Errors.** Any frame that cannot be accepted — bad magic, truncated,
//! unknown version or kind, oversize, out-of-sequence chunk, undecodable
//! payload — is answered with an `Error` message (kind 14: u16 code, u32 id
//! of the offending message, UTF-8 text). A version mismatch is answered and
//! then the channel is closed; repeated faults close it too. No byte string
//! makes a receiver panic.
//!
//! Payload encodings of each message kind are in [`crate::msg`]; tensors are
//! `u8 rank, rank × u32 dims, numel × f32` (little-endian, C order).

use std::collections::{HashMap, VecDeque};

use crate::error::WireError;

/// Frame magic.
pub const MAGIC: [u8; 4] = *b"TSRA";
/// The wire version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes of the frame header.
pub const HEADER_LEN: usize = 28;
/// Hard cap on a frame (header + payload): under WebRTC's 256 KiB.
pub const MAX_FRAME_BYTES: usize = 255 * 1024;
/// Largest chunk payload a sender may use.
pub const MAX_CHUNK_BYTES: usize = MAX_FRAME_BYTES - HEADER_LEN;
/// Default chunk payload.
pub const DEFAULT_CHUNK_BYTES: usize = 64 * 1024;

/// Message kinds (the header's `kind` byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Peer → coordinator: name, backend, capabilities, device profile.
    Hello = 1,
    /// Coordinator → peer: accepted, your id.
    Welcome = 2,
    /// Coordinator → peer: your tasks of a plan (ONNX sub-graphs + metadata).
    LoadPlan = 3,
    /// Peer → coordinator: plan loaded.
    LoadAck = 4,
    /// Coordinator → peer: run one task for one frame.
    Run = 5,
    /// Peer → coordinator: a task's outputs.
    Done = 6,
    /// Coordinator → peer: a frame completed; drop what you hold for it.
    Forget = 7,
    /// Coordinator → peer: drop a plan.
    Unload = 8,
    /// RTT probe.
    Ping = 9,
    /// RTT probe answer.
    Pong = 10,
    /// Throughput probe: N bytes.
    Probe = 11,
    /// Throughput probe answer.
    ProbeAck = 12,
    /// Orderly goodbye.
    Bye = 13,
    /// Something sent was rejected.
    Error = 14,
    /// Peer → coordinator: the backend changed (a GPU fell back to the CPU).
    Backend = 15,
}

impl Kind {
    /// Every kind, for tests and tables.
    pub const ALL: [Kind; 15] = [
        Kind::Hello,
        Kind::Welcome,
        Kind::LoadPlan,
        Kind::LoadAck,
        Kind::Run,
        Kind::Done,
        Kind::Forget,
        Kind::Unload,
        Kind::Ping,
        Kind::Pong,
        Kind::Probe,
        Kind::ProbeAck,
        Kind::Bye,
        Kind::Error,
        Kind::Backend,
    ];

    /// The kind of a header byte, if known.
    pub fn from_u8(b: u8) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| *k as u8 == b)
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hello => "hello",
            Kind::Welcome => "welcome",
            Kind::LoadPlan => "load-plan",
            Kind::LoadAck => "load-ack",
            Kind::Run => "run",
            Kind::Done => "done",
            Kind::Forget => "forget",
            Kind::Unload => "unload",
            Kind::Ping => "ping",
            Kind::Pong => "pong",
            Kind::Probe => "probe",
            Kind::ProbeAck => "probe-ack",
            Kind::Bye => "bye",
            Kind::Error => "error",
            Kind::Backend => "backend",
        }
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message kind.
    pub kind: Kind,
    /// Reserved flags (0 in version 1).
    pub flags: u8,
    /// The sender's message id (shared by all chunks of a message).
    pub id: u32,
    /// Chunk position, from 0.
    pub index: u32,
    /// Chunks in the message.
    pub count: u32,
    /// Payload bytes of the whole message.
    pub total: u32,
    /// Payload bytes of this frame.
    pub len: u32,
}

impl Header {
    /// Writes the 28 header bytes.
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind as u8);
        out.push(self.flags);
        out.push(0);
        for v in [self.id, self.index, self.count, self.total, self.len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Parses and checks a frame's header (not the chunk sequence: that is
    /// the [`Reassembler`]'s job). Never panics.
    pub fn parse(frame: &[u8]) -> Result<Header, WireError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(WireError::TooLarge { bytes: frame.len(), limit: MAX_FRAME_BYTES });
        }
        if frame.len() < 4 || frame[..4] != MAGIC {
            return Err(WireError::BadMagic);
        }
        if frame.len() < 6 {
            return Err(WireError::Truncated { need: HEADER_LEN, got: frame.len() });
        }
        if frame[4] != VERSION {
            return Err(WireError::Version { got: frame[4], ours: VERSION });
        }
        if frame.len() < HEADER_LEN {
            return Err(WireError::Truncated { need: HEADER_LEN, got: frame.len() });
        }
        let u = |o: usize| u32::from_le_bytes([frame[o], frame[o + 1], frame[o + 2], frame[o + 3]]);
        let id = u(8);
        let kind = Kind::from_u8(frame[5]).ok_or(WireError::UnknownKind { kind: frame[5], id })?;
        let h = Header { kind, flags: frame[6], id, index: u(12), count: u(16), total: u(20), len: u(24) };
        let actual = frame.len() - HEADER_LEN;
        if h.len as usize != actual {
            return Err(WireError::Length { declared: h.len as usize, actual });
        }
        if h.count == 0 || h.index >= h.count {
            return Err(WireError::BadChunk { id, msg: format!("chunk {} of {}", h.index, h.count) });
        }
        if h.len > h.total {
            return Err(WireError::BadChunk { id, msg: format!("chunk of {} bytes in a message of {}", h.len, h.total) });
        }
        if h.count == 1 && h.len != h.total {
            return Err(WireError::BadChunk { id, msg: format!("single frame carries {} of {} bytes", h.len, h.total) });
        }
        Ok(h)
    }
}

/// Splits one message into frames of at most `chunk` payload bytes
/// (clamped to `1..=MAX_CHUNK_BYTES`). Fails only for payloads over 4 GiB.
pub fn frames(kind: Kind, id: u32, payload: &[u8], chunk: usize) -> Result<Vec<Vec<u8>>, WireError> {
    let chunk = chunk.clamp(1, MAX_CHUNK_BYTES);
    let total = u32::try_from(payload.len()).map_err(|_| WireError::MessageTooLarge { id, bytes: payload.len(), limit: u32::MAX as usize })?;
    let count = payload.len().div_ceil(chunk).max(1);
    let count32 = u32::try_from(count).map_err(|_| WireError::MessageTooLarge { id, bytes: payload.len(), limit: u32::MAX as usize })?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let part = &payload[(i * chunk).min(payload.len())..((i + 1) * chunk).min(payload.len())];
        let mut f = Vec::with_capacity(HEADER_LEN + part.len());
        Header { kind, flags: 0, id, index: i as u32, count: count32, total, len: part.len() as u32 }.write(&mut f);
        f.extend_from_slice(part);
        out.push(f);
    }
    Ok(out)
}

/// Receiver-side bounds.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Largest message (payload bytes) accepted.
    pub max_message_bytes: usize,
    /// Most messages partly received at once.
    pub max_partial: usize,
    /// Most bytes held by partial messages together.
    pub max_buffered_bytes: usize,
    /// Partial messages idle this long are dropped.
    pub partial_timeout_ms: f64,
}

impl Limits {
    /// For a peer: plans (ONNX weights) can be large.
    pub fn peer() -> Limits {
        Limits { max_message_bytes: 1 << 30, max_partial: 8, max_buffered_bytes: (1 << 30) + (64 << 20), partial_timeout_ms: 120_000.0 }
    }
    /// For a coordinator: peers send task outputs and small control messages.
    pub fn coordinator() -> Limits {
        Limits { max_message_bytes: 256 << 20, max_partial: 16, max_buffered_bytes: 512 << 20, partial_timeout_ms: 60_000.0 }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::peer()
    }
}

/// A complete, reassembled message (payload not yet decoded).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Message kind.
    pub kind: Kind,
    /// The sender's message id.
    pub id: u32,
    /// The reassembled payload.
    pub payload: Vec<u8>,
    /// Wire bytes of all its frames (headers included).
    pub wire_bytes: usize,
}

struct Partial {
    kind: Kind,
    next: u32,
    count: u32,
    total: u32,
    buf: Vec<u8>,
    wire: usize,
    last_ms: f64,
}

/// How many rejected message ids are remembered (their later chunks are
/// dropped without another error).
const POISON_MEMORY: usize = 64;

/// Puts chunked messages back together with bounded memory (one per
/// incoming channel).
pub struct Reassembler {
    limits: Limits,
    partial: HashMap<u32, Partial>,
    buffered: usize,
    poisoned: VecDeque<u32>,
}

impl Reassembler {
    /// A reassembler with these limits.
    pub fn new(limits: Limits) -> Reassembler {
        Reassembler { limits, partial: HashMap::new(), buffered: 0, poisoned: VecDeque::new() }
    }

    /// Messages partly received.
    pub fn partial_messages(&self) -> usize {
        self.partial.len()
    }

    /// Bytes held by partial messages.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    fn poison(&mut self, id: u32) {
        if let Some(p) = self.partial.remove(&id) {
            self.buffered -= p.buf.len();
        }
        if !self.poisoned.contains(&id) {
            if self.poisoned.len() == POISON_MEMORY {
                self.poisoned.pop_front();
            }
            self.poisoned.push_back(id);
        }
    }

    /// Accepts one frame at time `now_ms`: a complete message, nothing yet
    /// (a chunk was stored, or a chunk of a rejected message was dropped),
    /// or an error to answer. Never panics.
    pub fn push(&mut self, frame: &[u8], now_ms: f64) -> Result<Option<Message>, WireError> {
        let h = match Header::parse(frame) {
            Ok(h) => h,
            Err(WireError::UnknownKind { kind, id }) => {
                // A newer sender's message: answer its first chunk once, drop the rest.
                let index = u32::from_le_bytes([frame[12], frame[13], frame[14], frame[15]]);
                if index > 0 && self.poisoned.contains(&id) {
                    return Ok(None);
                }
                self.poison(id);
                return Err(WireError::UnknownKind { kind, id });
            }
            Err(e) => return Err(e),
        };
        let payload = &frame[HEADER_LEN..];
        let lim = self.limits;
        if h.total as usize > lim.max_message_bytes {
            if h.index == 0 {
                self.poison(h.id);
                return Err(WireError::MessageTooLarge { id: h.id, bytes: h.total as usize, limit: lim.max_message_bytes });
            }
            if self.poisoned.contains(&h.id) {
                return Ok(None);
            }
            return Err(WireError::MessageTooLarge { id: h.id, bytes: h.total as usize, limit: lim.max_message_bytes });
        }
        if h.count == 1 {
            if self.partial.contains_key(&h.id) {
                self.poison(h.id);
                return Err(WireError::BadChunk { id: h.id, msg: "a new message reuses the id of a partial one".into() });
            }
            return Ok(Some(Message { kind: h.kind, id: h.id, payload: payload.to_vec(), wire_bytes: frame.len() }));
        }
        if h.index == 0 {
            if self.partial.contains_key(&h.id) {
                self.poison(h.id);
                return Err(WireError::BadChunk { id: h.id, msg: "a new message reuses the id of a partial one".into() });
            }
            // A message re-using a previously rejected id starts afresh.
            self.poisoned.retain(|&p| p != h.id);
            if self.partial.len() >= lim.max_partial {
                self.poison(h.id);
                return Err(WireError::Overloaded { msg: format!("{} partial messages", self.partial.len()) });
            }
            if h.len == 0 {
                self.poison(h.id);
                return Err(WireError::BadChunk { id: h.id, msg: "empty non-final chunk".into() });
            }
            if self.buffered + payload.len() > lim.max_buffered_bytes {
                self.poison(h.id);
                return Err(WireError::Overloaded { msg: format!("{} bytes buffered", self.buffered) });
            }
            // Grow with what actually arrives, never with what is declared.
            let mut buf = Vec::with_capacity((h.total as usize).min(4 << 20));
            buf.extend_from_slice(payload);
            self.buffered += payload.len();
            self.partial.insert(h.id, Partial { kind: h.kind, next: 1, count: h.count, total: h.total, buf, wire: frame.len(), last_ms: now_ms });
            return Ok(None);
        }
        let Some(p) = self.partial.get_mut(&h.id) else {
            if self.poisoned.contains(&h.id) {
                return Ok(None);
            }
            return Err(WireError::BadChunk { id: h.id, msg: format!("chunk {} of a message that never started", h.index) });
        };
        let fault = if p.kind != h.kind || p.count != h.count || p.total != h.total {
            Some("chunk header disagrees with its message's first chunk".to_string())
        } else if h.index != p.next {
            Some(format!("chunk {} arrived, {} expected", h.index, p.next))
        } else if p.buf.len() + payload.len() > p.total as usize {
            Some("chunks carry more bytes than the message declares".into())
        } else if h.index + 1 < h.count && payload.is_empty() {
            Some("empty non-final chunk".into())
        } else if h.index + 1 == h.count && p.buf.len() + payload.len() != p.total as usize {
            Some(format!("message ends at {} of {} bytes", p.buf.len() + payload.len(), p.total))
        } else if self.buffered + payload.len() > lim.max_buffered_bytes {
            Some(format!("{} bytes buffered", self.buffered))
        } else {
            None
        };
        if let Some(msg) = fault {
            self.poison(h.id);
            return Err(if msg.ends_with("buffered") { WireError::Overloaded { msg } } else { WireError::BadChunk { id: h.id, msg } });
        }
        p.buf.extend_from_slice(payload);
        p.next += 1;
        p.wire += frame.len();
        p.last_ms = now_ms;
        self.buffered += payload.len();
        if p.next == p.count {
            let p = self.partial.remove(&h.id).expect("present");
            self.buffered -= p.buf.len();
            return Ok(Some(Message { kind: p.kind, id: h.id, payload: p.buf, wire_bytes: p.wire }));
        }
        Ok(None)
    }

    /// Drops partial messages idle since before `now_ms - partial_timeout_ms`;
    /// returns how many were dropped.
    pub fn gc(&mut self, now_ms: f64) -> usize {
        let cutoff = now_ms - self.limits.partial_timeout_ms;
        let stale: Vec<u32> = self.partial.iter().filter(|(_, p)| p.last_ms < cutoff).map(|(id, _)| *id).collect();
        for id in &stale {
            self.poison(*id);
        }
        stale.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_graph::rng::Rng;

    fn small() -> Limits {
        Limits { max_message_bytes: 1 << 20, max_partial: 4, max_buffered_bytes: 2 << 20, partial_timeout_ms: 1000.0 }
    }

    #[test]
    fn header_round_trip_and_layout() {
        let f = frames(Kind::Run, 0xABCD, &[1, 2, 3], 64).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(&f[0][..4], b"TSRA");
        assert_eq!(f[0][4], 1);
        assert_eq!(f[0][5], 5);
        assert_eq!(f[0].len(), HEADER_LEN + 3);
        let h = Header::parse(&f[0]).unwrap();
        assert_eq!(h, Header { kind: Kind::Run, flags: 0, id: 0xABCD, index: 0, count: 1, total: 3, len: 3 });
        // Empty messages are one frame.
        let f = frames(Kind::Bye, 1, &[], 64).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(Reassembler::new(small()).push(&f[0], 0.0).unwrap().unwrap().payload, Vec::<u8>::new());
    }

    #[test]
    fn chunks_reassemble_interleaved() {
        let mut rng = Rng::new(5);
        let a: Vec<u8> = (0..300_000).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = (0..70_000).map(|i| (i % 13) as u8).collect();
        let fa = frames(Kind::LoadPlan, 1, &a, DEFAULT_CHUNK_BYTES).unwrap();
        let fb = frames(Kind::Done, 2, &b, 1000).unwrap();
        assert_eq!(fa.len(), 5);
        assert!(fa.iter().chain(&fb).all(|f| f.len() <= MAX_FRAME_BYTES));
        // Random merge keeping each message's order.
        let (mut ia, mut ib) = (0, 0);
        let mut r = Reassembler::new(small());
        let mut got = Vec::new();
        while ia < fa.len() || ib < fb.len() {
            let take_a = ib == fb.len() || (ia < fa.len() && rng.f32() < 0.3);
            let f = if take_a {
                ia += 1;
                &fa[ia - 1]
            } else {
                ib += 1;
                &fb[ib - 1]
            };
            if let Some(m) = r.push(f, 0.0).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 2);
        let ma = got.iter().find(|m| m.id == 1).unwrap();
        let mb = got.iter().find(|m| m.id == 2).unwrap();
        assert_eq!(ma.payload, a);
        assert_eq!(mb.payload, b);
        assert_eq!(r.partial_messages(), 0);
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn limits_are_enforced() {
        let mut r = Reassembler::new(small());
        // Too large: the first chunk is refused, the rest dropped silently.
        let big = vec![0u8; 2 << 20];
        let f = frames(Kind::LoadPlan, 9, &big, MAX_CHUNK_BYTES).unwrap();
        assert!(matches!(r.push(&f[0], 0.0), Err(WireError::MessageTooLarge { .. })));
        for x in &f[1..] {
            assert_eq!(r.push(x, 0.0), Ok(None));
        }
        // Too many partial messages.
        for id in 0..4 {
            let f = frames(Kind::Done, 100 + id, &[0u8; 200], 100).unwrap();
            assert_eq!(r.push(&f[0], 0.0), Ok(None));
        }
        let f = frames(Kind::Done, 200, &[0u8; 200], 100).unwrap();
        assert!(matches!(r.push(&f[0], 0.0), Err(WireError::Overloaded { .. })));
        assert_eq!(r.partial_messages(), 4);
        // Garbage collection of idle partials.
        assert_eq!(r.gc(5000.0), 4);
        assert_eq!(r.partial_messages(), 0);
        assert_eq!(r.buffered_bytes(), 0);
        // Out-of-order chunk.
        let f = frames(Kind::Done, 300, &[0u8; 300], 100).unwrap();
        r.push(&f[0], 0.0).unwrap();
        assert!(matches!(r.push(&f[2], 0.0), Err(WireError::BadChunk { .. })));
        assert_eq!(r.push(&f[1], 0.0), Ok(None), "later chunks of a rejected message are dropped");
    }

    #[test]
    fn header_faults_are_classified() {
        let good = frames(Kind::Ping, 3, &[0u8; 12], 64).unwrap().remove(0);
        assert_eq!(Header::parse(b"nope"), Err(WireError::BadMagic));
        assert!(matches!(Header::parse(&good[..10]), Err(WireError::Truncated { .. })));
        let mut v2 = good.clone();
        v2[4] = 2;
        assert_eq!(Header::parse(&v2), Err(WireError::Version { got: 2, ours: 1 }));
        let mut unk = good.clone();
        unk[5] = 99;
        assert_eq!(Header::parse(&unk), Err(WireError::UnknownKind { kind: 99, id: 3 }));
        let mut extra = good.clone();
        extra.push(0);
        assert!(matches!(Header::parse(&extra), Err(WireError::Length { .. })));
        assert!(matches!(Header::parse(&vec![0u8; MAX_FRAME_BYTES + 1]), Err(WireError::TooLarge { .. })));
    }
}
