//! One side's framing layer, shared by coordinator and peer: numbers and
//! chunks outgoing messages, reassembles and decodes incoming frames per
//! channel, answers every rejected frame with an Error message, closes a
//! channel on a version mismatch or after repeated faults, and counts bytes
//! per link for the dashboards.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::{ErrorCode, WireError};
use crate::msg::Msg;
use crate::wire::{Limits, Reassembler};
use crate::{Output, PeerId};

/// Consecutive faulty frames after which a channel is closed.
pub const MAX_STRIKES: u32 = 3;

/// Traffic on one link, as this side saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LinkCounters {
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Wire bytes (headers included).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Frames from the other side that were rejected.
    pub faults_in: u64,
    /// Error messages received from the other side.
    pub errors_in: u64,
}

struct Link {
    reasm: Reassembler,
    strikes: u32,
    closed: bool,
    c: LinkCounters,
}

/// A decoded message and its size.
#[derive(Debug)]
pub struct Received {
    /// The sender's message id.
    pub id: u32,
    /// The message.
    pub msg: Msg,
    /// Its payload size.
    pub payload_bytes: usize,
    /// Bytes of all its frames.
    pub wire_bytes: usize,
}

/// The framing layer of one state machine.
pub struct Endpoint {
    limits: Limits,
    chunk: usize,
    next_id: u32,
    links: HashMap<PeerId, Link>,
}

impl Endpoint {
    /// An endpoint chunking at `chunk` bytes and reassembling under `limits`.
    pub fn new(limits: Limits, chunk: usize) -> Endpoint {
        Endpoint { limits, chunk, next_id: 1, links: HashMap::new() }
    }

    fn link(&mut self, id: PeerId) -> &mut Link {
        let limits = self.limits;
        self.links.entry(id).or_insert_with(|| Link { reasm: Reassembler::new(limits), strikes: 0, closed: false, c: LinkCounters::default() })
    }

    /// (Re)opens the channel to `id` with fresh state.
    pub fn open(&mut self, id: PeerId) {
        self.links.remove(&id);
        self.link(id);
    }

    /// Forgets the channel to `id`.
    pub fn remove(&mut self, id: PeerId) {
        self.links.remove(&id);
    }

    /// True if `id` has a channel that was not closed by this side.
    pub fn is_open(&self, id: PeerId) -> bool {
        self.links.get(&id).is_some_and(|l| !l.closed)
    }

    /// Traffic counters of the link to `id`.
    pub fn counters(&self, id: PeerId) -> LinkCounters {
        self.links.get(&id).map(|l| l.c.clone()).unwrap_or_default()
    }

    /// Queues `msg` to `to` as frames; returns the wire bytes (0 if the
    /// channel is closed or the message cannot be framed).
    pub fn send(&mut self, to: PeerId, msg: &Msg, out: &mut Vec<Output>) -> u64 {
        let chunk = self.chunk;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let link = self.link(to);
        if link.closed {
            return 0;
        }
        let Ok(frames) = msg.to_frames(id, chunk) else { return 0 };
        let mut bytes = 0u64;
        for f in frames {
            bytes += f.len() as u64;
            link.c.frames_out += 1;
            out.push(Output::Send(to, f));
        }
        link.c.bytes_out += bytes;
        bytes
    }

    /// Closes the channel to `to` (once).
    pub fn close(&mut self, to: PeerId, reason: &str, out: &mut Vec<Output>) {
        let link = self.link(to);
        if !link.closed {
            link.closed = true;
            out.push(Output::Close(to, reason.to_string()));
        }
    }

    /// Accepts one frame from `from`: a decoded message when one completes;
    /// rejected frames are answered with an Error message (and may close
    /// the channel). Error messages from the other side are returned like
    /// any other message, never answered.
    pub fn receive(&mut self, from: PeerId, frame: &[u8], now_ms: f64, out: &mut Vec<Output>) -> Option<Received> {
        let link = self.link(from);
        if link.closed {
            return None;
        }
        link.c.frames_in += 1;
        link.c.bytes_in += frame.len() as u64;
        let res = match link.reasm.push(frame, now_ms) {
            Ok(None) => return None,
            Ok(Some(m)) => Msg::decode(m.kind, &m.payload).map(|msg| Received { id: m.id, msg, payload_bytes: m.payload.len(), wire_bytes: m.wire_bytes }),
            Err(e) => Err(e),
        };
        match res {
            Ok(r) => {
                link.strikes = 0;
                if matches!(r.msg, Msg::Error(_)) {
                    link.c.errors_in += 1;
                }
                Some(r)
            }
            Err(e) => {
                self.reject(from, &e, out);
                None
            }
        }
    }

    /// Answers a rejected frame; closes on a version mismatch or too many
    /// consecutive faults.
    pub fn reject(&mut self, from: PeerId, e: &WireError, out: &mut Vec<Output>) {
        let fatal = matches!(e, WireError::Version { .. });
        let counts = !matches!(e, WireError::UnknownKind { .. });
        self.send(from, &Msg::error(e.code(), e.message_id(), e.to_string()), out);
        let link = self.link(from);
        link.c.faults_in += 1;
        if counts {
            link.strikes += 1;
        }
        if fatal {
            self.close(from, &format!("protocol version mismatch: {e}"), out);
        } else if link.strikes >= MAX_STRIKES {
            self.close(from, &format!("{MAX_STRIKES} faulty frames in a row (last: {e})"), out);
        }
    }

    /// Answers a valid message that cannot be accepted in this state.
    pub fn refuse(&mut self, to: PeerId, code: ErrorCode, about: u32, text: &str, out: &mut Vec<Output>) {
        self.send(to, &Msg::error(code, about, text), out);
    }

    /// Drops stale partial messages on every link.
    pub fn gc(&mut self, now_ms: f64) {
        for l in self.links.values_mut() {
            l.reasm.gc(now_ms);
        }
    }
}
