//! Weights a peer already holds, named by content, so that a re-plan ships
//! only what is new to each peer. A task's sub-graph travels as ONNX; a
//! weight the peer holds from a plan it still has goes as ONNX external
//! data whose location is [`location`] of its content hash, and the peer
//! resolves it from its held plans (sharing the tensor, not copying it).
//!
//! Both sides name weights the same way, from the task graphs' own tensors
//! ([`named`]); a reference the peer cannot resolve (it dropped the plan
//! meanwhile) is answered with `missing-weights`, and the coordinator sends
//! that peer's tasks again in full. Peers announce support with the
//! capability [`CAP`].

use std::collections::HashMap;
use std::sync::Arc;

use tessera_graph::{Graph, Tensor};

/// The Hello capability of peers that resolve weight references.
pub const CAP: &str = "weight-refs";

/// Tensors smaller than this always travel inline (a reference costs ~40 bytes).
pub const MIN_BYTES: usize = 4096;

/// The external-data location naming a weight by its content hash.
pub fn location(hash: u64) -> String {
    format!("tessera:weight/{hash:016x}")
}

/// The weights of `graph` worth naming, by content hash.
pub fn named(graph: &Graph) -> HashMap<u64, Arc<Tensor>> {
    let mut out = HashMap::new();
    for n in graph.nodes() {
        for t in n.op.tensors() {
            if t.bytes() >= MIN_BYTES {
                out.entry(t.content_hash()).or_insert_with(|| t.clone());
            }
        }
    }
    out
}

/// The hashes of tensors already computed in this pass, by address (an
/// exporter sees the same tensors [`named`] saw).
#[derive(Default)]
pub struct HashCache(HashMap<usize, u64>);

impl HashCache {
    /// Records the hashes of `named`'s result.
    pub fn remember(&mut self, named: &HashMap<u64, Arc<Tensor>>) {
        for (h, t) in named {
            self.0.insert(Arc::as_ptr(t) as usize, *h);
        }
    }

    /// The hash of `t` (cached by address while its `Arc` lives).
    pub fn hash(&self, t: &Tensor) -> u64 {
        self.0.get(&(t as *const Tensor as usize)).copied().unwrap_or_else(|| t.content_hash())
    }
}
