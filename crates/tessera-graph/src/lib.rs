//! Tessera's graph IR: what a CNN is (ops, shapes, weights), what each layer
//! costs, the built-in model zoo, and `.npy` tensor I/O.
//!
//! Data flows one way through Tessera: graph → plan → tasks → wire →
//! kernels → merge. This crate is the first box; it knows nothing of the
//! others and builds for `wasm32-unknown-unknown`.

pub mod cost;
pub mod error;
pub mod graph;
pub mod half;
pub mod npy;
pub mod op;
pub mod passes;
pub mod rng;
pub mod tensor;
pub mod zoo;

pub use cost::{cost_table, node_cost, Cost, CostTable};
pub use error::{GraphError, Result};
pub use graph::{Graph, Node, NodeId};
pub use op::{Activation, BinaryOp, Conv, Dense, Op, Pool};
pub use tensor::Tensor;
