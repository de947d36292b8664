//! Tessera in the browser: the wasm-bindgen entry points of the two pages,
//! built to `pkg/` (`./run` does `cargo build --release --target
//! wasm32-unknown-unknown -p tessera-web` then `wasm-bindgen --target web`).
//!
//! - [`PeerApp`] (the join page, `www/peer.js`): detects WebGPU and wasm
//!   SIMD, picks its backend, runs the quick self-profile, joins the room
//!   over WebRTC (`tessera_mesh::transport::web`) and runs the
//!   [`tessera_mesh::Peer`] state machine, tasks in small slices so the
//!   page stays live.
//! - [`CoordinatorApp`] (the dashboard, `www/coordinator.js`): loads a zoo
//!   model or a dropped `.onnx`, runs the [`tessera_mesh::Coordinator`]
//!   (planning in the browser), streams inputs (bundled MNIST digits,
//!   procedural images, files, the camera) and shows results next to a
//!   local-only run ([`session`]).
//!
//! Both expose small methods and a JSON `status()`; the JavaScript only
//! draws. The transport-free parts ([`input`], [`view`], [`session`]) build
//! and are tested on every target.

pub mod input;
pub mod session;
pub mod view;

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
pub use app::{CoordinatorApp, PeerApp, capabilities_json as capabilities, planners, qr_svg, version, ws_url, zoo};
