//! Tessera's runtime: plan tasks → kernels → merge.
//!
//! - [`hub::Hub`] is the coordinator's side: it admits frames, keeps every
//!   stage's inputs and outputs (HyPS's communication hub), decides which
//!   tasks can run, cuts what each must receive, and merges their outputs.
//! - [`runner::Runner`] is a device's side: it compiles its tasks once per
//!   plan, assembles each task's inputs from what it already holds and what
//!   the hub sent, and runs the sub-graph on its backend.
//! - [`local::LocalExecutor`] wires them together with threads and channels
//!   (one worker per device) — the same messages the mesh sends over WebRTC.
//!
//! Hub and runner are plain state machines with no threads or clocks, so the
//! browser coordinator and peers run them too.

pub mod error;
pub mod hub;
#[cfg(not(target_arch = "wasm32"))]
pub mod local;
pub mod msg;
pub mod profile;
pub mod runner;
#[cfg(not(target_arch = "wasm32"))]
pub mod slowed;

pub use error::{Result, RuntimeError};
pub use hub::Hub;
pub use msg::{RunTask, TaskDone};
pub use hub::Program;
pub use runner::{Job, PeerTask, Runner};
