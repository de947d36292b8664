//! Runtime errors.

use thiserror::Error;

/// Why a frame could not be executed.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Plan(#[from] tessera_plan::PlanError),
    #[error(transparent)]
    Kernel(#[from] tessera_kernels::KernelError),
    #[error(transparent)]
    Graph(#[from] tessera_graph::GraphError),
    /// A message that does not fit the plan (wrong task, wrong shapes).
    #[error("protocol: {0}")]
    Protocol(String),
    /// A worker stopped.
    #[error("device {device} failed: {msg}")]
    Device { device: usize, msg: String },
}

/// Result alias for the runtime.
pub type Result<T> = std::result::Result<T, RuntimeError>;
