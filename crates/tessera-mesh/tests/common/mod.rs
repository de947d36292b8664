//! Shared helpers for the end-to-end mesh tests: models, inputs, the local
//! reference run, and a mesh of N peers.
#![allow(dead_code)]

use std::sync::Arc;

use tessera_graph::rng::Rng;
use tessera_graph::{Graph, Tensor, passes, zoo};
use tessera_kernels::{Backend, CpuBackend};
use tessera_mesh::transport::memory::{MemoryMesh, MeshOptions, PeerSpec};
use tessera_mesh::{Coordinator, CoordinatorConfig};

/// The optimised zoo model `name`.
pub fn model(name: &str) -> Arc<Graph> {
    Arc::new(passes::optimize(&zoo::build(name).unwrap()).unwrap())
}

/// `n` inputs: real MNIST digits for LeNet, seeded noise otherwise.
pub fn inputs(g: &Graph, name: &str, n: usize) -> Vec<Vec<Tensor>> {
    if name == "lenet" {
        return zoo::test_digits().unwrap().into_iter().take(n).map(|d| vec![d.image]).collect();
    }
    (0..n)
        .map(|i| {
            let shape = g.input_shape().to_vec();
            let k = shape.iter().product();
            vec![Tensor::new(shape, Rng::new(100 + i as u64).fill(k, 1.0)).unwrap()]
        })
        .collect()
}

/// The single-device reference outputs.
pub fn reference(g: &Graph, xs: &[Vec<Tensor>]) -> Vec<Vec<Tensor>> {
    let mut exe = CpuBackend::new(1).compile(g).unwrap();
    xs.iter().map(|x| exe.run(x).unwrap()).collect()
}

/// Asserts results are frames 0..n in order and match the reference.
pub fn check(results: &[(u64, Vec<Tensor>)], reference: &[Vec<Tensor>], what: &str) {
    assert_eq!(results.len(), reference.len(), "{what}: number of results");
    for (i, (f, outs)) in results.iter().enumerate() {
        assert_eq!(*f, i as u64, "{what}: results out of order");
        for (o, r) in outs.iter().zip(&reference[i]) {
            let d = o.max_rel_diff(r);
            assert!(d <= 1e-4, "{what}: frame {f}: max rel diff {d}");
        }
    }
}

/// A coordinator config for tests.
pub fn config(model: &str, planner: &str) -> CoordinatorConfig {
    CoordinatorConfig { model: model.into(), planner: planner.into(), window: 4, ..Default::default() }
}

/// A mesh with `n` default peers, ready (plan loaded).
pub fn mesh(g: &Arc<Graph>, cfg: CoordinatorConfig, n: usize, opts: MeshOptions) -> MemoryMesh {
    let c = Coordinator::new(g.clone(), cfg).unwrap();
    let mut m = MemoryMesh::new(c, opts);
    for i in 0..n {
        m.add_peer(PeerSpec::new(format!("p{i}")));
    }
    assert!(m.wait_ready(60_000.0), "mesh never became ready: {:#?}", m.coordinator.status());
    m
}
