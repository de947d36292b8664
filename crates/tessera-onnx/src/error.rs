//! The one error type of the ONNX crate.

use tessera_graph::GraphError;
use thiserror::Error;

/// Why a model could not be imported. Every variant renders as one line
/// that names what is wrong (and, for a node, its name, op type and opset).
#[derive(Debug, Error, Clone, PartialEq)]
pub enum OnnxError {
    /// The bytes are not a protobuf `ModelProto`.
    #[error("not a valid ONNX model: {0}")]
    Decode(String),
    /// The model is structurally unusable (no graph, no opset, bad names ...).
    #[error("ONNX model: {0}")]
    Model(String),
    /// A graph input, output or initializer is malformed or unsupported.
    #[error("ONNX {kind} '{name}': {msg}")]
    Value { kind: &'static str, name: String, msg: String },
    /// An initializer names external data the importer was not given.
    #[error("ONNX initializer '{name}' refers to external weight '{location}', which is not held here")]
    MissingExternal { name: String, location: String },
    /// One node cannot be imported.
    #[error("node '{node}' ({op}, opset {opset}): {msg}")]
    Node { node: String, op: String, opset: i64, msg: String },
    /// The graph IR rejected the imported graph.
    #[error(transparent)]
    Graph(#[from] GraphError),
}
