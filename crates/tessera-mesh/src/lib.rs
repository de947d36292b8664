//! The mesh: how a coordinator and its peers talk.
//!
//! - [`wire`]: the versioned binary frame format (28-byte header + payload,
//!   tensors as raw f32, chunked under the 256 KiB data-channel limit) and
//!   the bounded-memory [`wire::Reassembler`]. The protocol is specified in
//!   the module docs and in `PROTOCOL.md`.
//! - [`msg`]: the messages (hello, load plan, run task, task done, probes,
//!   errors, ...) and their payload encodings.
//! - [`coordinator`] / [`peer`]: the two state machines. Plain Rust, no I/O,
//!   no threads, no clocks (time is an input): they take [`Input`]s and
//!   return [`Output`]s, so the browser, the native binary and the tests
//!   drive the same code.
//! - [`transport`]: moving frames — in memory for tests ([`transport::memory`]),
//!   WebRTC natively and in the browser.
//!
//! # Driving the state machines
//! A driver owns one state machine and its channels. For every event it
//! calls `handle` and carries out the returned outputs in order:
//! `Connected(id)` when a data channel opens, `Frame(id, bytes)` for every
//! message received on it, `Disconnected(id)` when it closes, and
//! `Tick { now_ms }` with a monotonic clock at least every ~100 ms (and,
//! for precise RTT and throughput figures, right before each `Frame`).
//! `Output::Send(id, frame)` goes on the channel to `id` as one message;
//! `Output::Close(id, reason)` closes it. The coordinator also takes frames
//! through `submit` and returns results through `take_results`; messages
//! those calls cause come out of `take_outputs` (or the next `handle`).

pub mod codec;
pub mod coordinator;
#[cfg(not(target_arch = "wasm32"))]
pub mod driver;
pub mod endpoint;
pub mod error;
pub mod msg;
pub mod peer;
pub mod transport;
pub mod weights;
pub mod wire;

pub use coordinator::{Coordinator, CoordinatorConfig, CoordinatorStatus, FrameId};
pub use error::{ErrorCode, MeshError, Result, WireError};
pub use msg::Msg;
pub use peer::{Peer, PeerConfig, PeerStatus};

/// Identifies a member of a room (assigned by the signaling server).
pub type PeerId = u32;

/// What a state machine is told.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A data channel to `PeerId` is open.
    Connected(PeerId),
    /// One complete wire frame arrived from `PeerId`.
    Frame(PeerId, Vec<u8>),
    /// The channel to `PeerId` closed or failed.
    Disconnected(PeerId),
    /// Time passed; `now_ms` is the driver's monotonic clock.
    Tick { now_ms: f64 },
}

/// What a state machine asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send one wire frame to a peer.
    Send(PeerId, Vec<u8>),
    /// Close the channel to a peer (protocol violation, eviction).
    Close(PeerId, String),
}
