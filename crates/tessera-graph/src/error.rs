//! The one error type of the graph crate.

use thiserror::Error;

/// Everything that can go wrong while building, checking or loading a graph.
/// Each variant carries enough context for a one-line user-facing message.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum GraphError {
    /// A node's inputs have shapes its op cannot accept.
    #[error("node '{node}' ({op}): {msg}")]
    Shape { node: String, op: String, msg: String },
    /// A node refers to a node id that does not exist (or comes later).
    #[error("node '{node}': input #{index} refers to unknown node {input}")]
    BadInput { node: String, index: usize, input: usize },
    /// Wrong number of inputs for an op.
    #[error("node '{node}' ({op}): expected {expected} input(s), got {got}")]
    Arity { node: String, op: String, expected: String, got: usize },
    /// A tensor whose data length does not match its shape.
    #[error("tensor of shape {shape:?} needs {expected} values, got {got}")]
    DataLen { shape: Vec<usize>, expected: usize, got: usize },
    /// A `.npy` file that is malformed or not f32.
    #[error("npy: {0}")]
    Npy(String),
    /// A model name that is not in the zoo.
    #[error("unknown model '{0}' (zoo: {1})")]
    UnknownModel(String, String),
    /// An input tensor passed at run time does not match the graph input.
    #[error("input '{name}': expected shape {expected:?}, got {got:?}")]
    InputShape { name: String, expected: Vec<usize>, got: Vec<usize> },
    /// Anything else that makes a graph invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for the graph crate.
pub type Result<T> = std::result::Result<T, GraphError>;
