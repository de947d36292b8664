//! Kernels: the [`Backend`] trait every executor runs graphs through, and
//! Tessera's CPU backend. The GPU backend (`tessera-gpu`) implements the same
//! trait, so planners, runtime and mesh never care which one a peer uses.

#![warn(missing_docs)]

pub mod backend;
pub mod cpu;

pub use backend::{ready_now, Backend, Clock, Executable, KernelError, NodeTiming, RunFuture};
pub use cpu::{CpuBackend, Isa};
