//! ONNX ↔ Tessera graph IR, in pure Rust (builds for `wasm32-unknown-unknown`).
//!
//! * [`import`] / [`import_with`] / [`import_owned`]: an ONNX model (default
//!   domain, opsets 6–27) → a static-shape [`Graph`]. Initializers listed as
//!   graph inputs are constants; shape sub-graphs and any node whose inputs
//!   are all constant are folded; symbolic batch dims become
//!   [`ImportOptions::batch`]. Anything unsupported is an [`OnnxError`] naming
//!   the node, op type and opset. No byte string makes it panic, and no tensor
//!   larger than [`ImportOptions::max_elements`] is ever allocated or declared.
//! * [`export`]: any Tessera graph → an ONNX model (opset 13) with its
//!   weights as initializers, loadable by onnxruntime.
//!
//! The importer emits plain ops (Conv, BatchNorm, Relu ... one node each),
//! named after the ONNX values they produce; callers run
//! `tessera_graph::passes::optimize` to fold and fuse.
//!
//! Run-time mappings beyond one-to-one: 1-D Conv/MaxPool/AveragePool run as
//! 2-D with H = 1; Gemm/MatMul with a constant operand become Dense (plus
//! Transpose / Reshape / Add where needed); Squeeze/Unsqueeze become Reshape;
//! Gather/Split with constant indices become Slice (+ Concat); Expand becomes
//! a broadcast Mul by ones, Tile a Concat of copies; ReduceMean/ReduceMax
//! over all spatial axes become global pooling; Neg, Reciprocal, Pow(x, 2),
//! Sum/Mean/Max/Min of many inputs become Binary chains; negative Pad crops
//! with Slice.

mod attrs;
mod error;
mod export;
mod fold;
mod import;
pub mod proto;
mod value;

use prost::Message;
use tessera_graph::{Graph, Tensor};

pub use error::OnnxError;
pub use export::{export, export_with, EXPORT_OPSET};
pub use import::{MAX_OPSET, MIN_OPSET};

/// Knobs of the importer.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportOptions {
    /// Fixed shapes for named graph inputs, replacing the model's own
    /// (needed when a model has symbolic spatial dims).
    pub input_shapes: Vec<(String, Vec<usize>)>,
    /// The value of an unknown batch dim (a `dim_param`, 0 or -1 on axis 0).
    pub batch: usize,
    /// The most elements any one tensor may have, constant or run-time
    /// (default 2^28: 1 GiB of f32). Larger shapes are an error.
    pub max_elements: usize,
    /// Weights that initializers may name as external data (by their
    /// `location`), instead of carrying them; none by default, and an
    /// external reference not found here is an error.
    pub external: ExternalWeights,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { input_shapes: Vec::new(), batch: 1, max_elements: 1 << 28, external: ExternalWeights::default() }
    }
}

/// f32 weights by external-data `location`, shared with the imported graph
/// (no copy): what a mesh peer already holds ([`export_with`] writes the
/// references).
#[derive(Clone, Default)]
pub struct ExternalWeights(pub std::sync::Arc<std::collections::HashMap<String, std::sync::Arc<Tensor>>>);

impl std::fmt::Debug for ExternalWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExternalWeights({} tensors)", self.0.len())
    }
}

impl PartialEq for ExternalWeights {
    fn eq(&self, o: &Self) -> bool {
        self.0.len() == o.0.len() && self.0.iter().all(|(k, v)| o.0.get(k).is_some_and(|w| std::sync::Arc::ptr_eq(v, w) || v == w))
    }
}

/// Imports an ONNX model with default options.
pub fn import(bytes: &[u8]) -> Result<Graph, OnnxError> {
    import_with(bytes, &ImportOptions::default())
}

/// Imports an ONNX model.
pub fn import_with(bytes: &[u8], opts: &ImportOptions) -> Result<Graph, OnnxError> {
    import_model(decode(bytes)?, opts)
}

/// Imports an ONNX model from an owned buffer, without copying it: the
/// weights are decoded straight out of `bytes` (half the peak memory of
/// [`import_with`] for a large model, which matters in the browser).
pub fn import_owned(bytes: Vec<u8>, opts: &ImportOptions) -> Result<Graph, OnnxError> {
    import_model(decode_owned(bytes)?, opts)
}

/// Imports an already decoded model (e.g. one edited in code).
pub fn import_model(model: proto::ModelProto, opts: &ImportOptions) -> Result<Graph, OnnxError> {
    import::import_model(model, opts)
}

/// Decodes the protobuf bytes of a model (copied once into a shared buffer
/// that the tensors' raw data then slice).
pub fn decode(bytes: &[u8]) -> Result<proto::ModelProto, OnnxError> {
    decode_owned(bytes.to_vec())
}

/// Decodes a model from an owned buffer without copying its tensor data.
pub fn decode_owned(bytes: Vec<u8>) -> Result<proto::ModelProto, OnnxError> {
    proto::ModelProto::decode(prost::bytes::Bytes::from(bytes)).map_err(|e| OnnxError::Decode(e.to_string()))
}

/// An f32 tensor from a serialized ONNX `TensorProto` (the `.pb` files of
/// the ONNX test suites); float16/64 and bfloat16 are converted.
pub fn tensor_from_pb(bytes: &[u8]) -> Result<Tensor, OnnxError> {
    let t = proto::TensorProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    tensor_from_proto(&t)
}

/// An f32 tensor from a decoded ONNX `TensorProto`.
pub fn tensor_from_proto(t: &proto::TensorProto) -> Result<Tensor, OnnxError> {
    let lim = value::Limits { max_elements: ImportOptions::default().max_elements };
    value::tensor_from_proto(t, &lim).map_err(|msg| OnnxError::Value { kind: "tensor", name: t.name.clone().unwrap_or_default(), msg })
}
