//! The one error type of the planning crate.

use thiserror::Error;

/// Why a plan, a device spec or a planner request was rejected.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PlanError {
    /// A `--devices` spec, profile or cluster file that cannot be used.
    #[error("devices: {0}")]
    Devices(String),
    /// A plan that does not describe a valid execution of its model.
    #[error("invalid plan: {0}")]
    Invalid(String),
    /// A stage cannot be split the requested way.
    #[error("stage {stage} ({first}..{last}): {msg}")]
    Split { stage: usize, first: String, last: String, msg: String },
    /// No plan fits the devices (memory, bandwidth).
    #[error("no feasible plan: {0}")]
    Infeasible(String),
    /// Unknown planner or scenario name.
    #[error("unknown {kind} '{name}' (known: {known})")]
    Unknown { kind: &'static str, name: String, known: String },
    /// From the graph crate.
    #[error(transparent)]
    Graph(#[from] tessera_graph::GraphError),
}

/// Result alias for the planning crate.
pub type Result<T> = std::result::Result<T, PlanError>;
