//! Transports move whole wire frames between a coordinator and its peers.
//! The state machines never see them; drivers do.
//!
//! - [`memory`]: in-process channels with simulated links, and
//!   [`memory::MemoryMesh`], a driver wiring one coordinator and N peers for
//!   end-to-end tests.
//! - [`signal`]: the signaling protocol of `tessera serve` (all targets).
//! - `native`: WebRTC data channels from Rust (str0m), native only.
//! - `web`: WebRTC data channels in the browser (web-sys), wasm32 only.
//! - [`shaper`]: an emulated link (bandwidth, latency) in front of a real
//!   one, so one machine can host peers with a Pi's or a phone's network.

pub mod memory;
pub mod shaper;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod signal;
#[cfg(target_arch = "wasm32")]
pub mod web;

/// A simulated or emulated link (both directions alike).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkSim {
    /// One-way latency.
    pub latency_ms: f64,
    /// Throughput, Mbit/s.
    pub mbps: f64,
}

impl Default for LinkSim {
    fn default() -> Self {
        LinkSim { latency_ms: 0.1, mbps: 1000.0 }
    }
}

impl LinkSim {
    /// Parses `MBPS[mbit],LATENCY[ms]` (`20mbit,15ms`, `20,15`): the
    /// command-line form.
    pub fn parse(s: &str) -> Result<LinkSim, String> {
        let (a, b) = s.split_once(',').ok_or_else(|| format!("link {s:?}: expected MBPS,LATENCY_MS (e.g. 20mbit,15ms)"))?;
        let num = |v: &str, unit: &str| -> Result<f64, String> {
            let v = v.trim();
            let v = v.strip_suffix(unit).unwrap_or(v);
            v.trim().parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| format!("link {s:?}: {v:?} is not a number"))
        };
        let (mbps, latency_ms) = (num(a, "mbit")?, num(b, "ms")?);
        if mbps <= 0.0 || latency_ms < 0.0 {
            return Err(format!("link {s:?}: bandwidth must be > 0 and latency >= 0"));
        }
        Ok(LinkSim { latency_ms, mbps })
    }
}

/// A reliable, ordered, message-oriented channel set (one per peer).
pub trait Transport {
    /// Queues one frame for `to`.
    fn send(&mut self, to: crate::PeerId, frame: Vec<u8>) -> Result<(), String>;
    /// Bytes queued for `to` and not yet on the network (backpressure).
    fn buffered(&self, to: crate::PeerId) -> usize;
}
