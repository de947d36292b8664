//! Transports move whole wire frames between a coordinator and its peers.
//! The state machines never see them; drivers do.
//!
//! - [`memory`]: in-process channels with simulated links, and
//!   [`memory::MemoryMesh`], a driver wiring one coordinator and N peers for
//!   end-to-end tests.
//! - [`signal`]: the signaling protocol of `tessera serve` (all targets).
//! - `native`: WebRTC data channels from Rust (str0m), native only.
//! - `web`: WebRTC data channels in the browser (web-sys), wasm32 only.

pub mod memory;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod signal;
#[cfg(target_arch = "wasm32")]
pub mod web;

/// A reliable, ordered, message-oriented channel set (one per peer).
pub trait Transport {
    /// Queues one frame for `to`.
    fn send(&mut self, to: crate::PeerId, frame: Vec<u8>) -> Result<(), String>;
    /// Bytes queued for `to` and not yet on the network (backpressure).
    fn buffered(&self, to: crate::PeerId) -> usize;
}
