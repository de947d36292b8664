//! Shared by the native GPU tests: one GPU backend per test binary, or a
//! skip (or, with `TESSERA_REQUIRE_GPU=1`, a failure) when there is none.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use tessera_graph::rng::Rng;
use tessera_graph::{Graph, NodeId, Op, Tensor};
use tessera_gpu::{GpuBackend, GpuOptions};
use tessera_kernels::{Backend, CpuBackend};

/// The shared GPU backend, or `None` (after printing why) when the test
/// should skip.
pub fn gpu() -> Option<GpuBackend> {
    static GPU: OnceLock<Result<GpuBackend, String>> = OnceLock::new();
    match GPU.get_or_init(|| GpuBackend::new(GpuOptions::default()).map_err(|e| e.to_string())) {
        Ok(g) => Some(g.clone()),
        Err(e) => {
            if tessera_gpu::gpu_required() {
                panic!("TESSERA_REQUIRE_GPU=1 but the GPU backend cannot start: {e}");
            }
            // Once per binary, past the harness's output capture.
            static NOTE: OnceLock<()> = OnceLock::new();
            NOTE.get_or_init(|| {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "SKIP: GPU tests skipped, no GPU adapter ({e}); install mesa-vulkan-drivers for lavapipe, or set TESSERA_REQUIRE_GPU=1 to fail instead");
            });
            None
        }
    }
}

/// Returns from the test when there is no GPU.
#[macro_export]
macro_rules! gpu_or_skip {
    () => {
        match common::gpu() {
            Some(g) => g,
            None => return,
        }
    };
}

/// The reference backend.
pub fn cpu() -> CpuBackend {
    CpuBackend::new(2)
}

/// A tensor of values uniform in [-1, 1).
pub fn rand_tensor(rng: &mut Rng, shape: &[usize]) -> Tensor {
    Tensor::new(shape.to_vec(), rng.fill(shape.iter().product(), 1.0)).unwrap()
}

/// `Arc` of a random tensor (weights).
pub fn rand_arc(rng: &mut Rng, shape: &[usize], scale: f32) -> Arc<Tensor> {
    Arc::new(Tensor::new(shape.to_vec(), rng.fill(shape.iter().product(), scale)).unwrap())
}

/// One-node graph over fresh inputs of `shapes`; `None` if shape inference rejects it.
pub fn single(op: Op, shapes: &[&[usize]]) -> Option<Graph> {
    let mut g = Graph::new("t");
    let ids: Vec<NodeId> = shapes.iter().enumerate().map(|(i, s)| g.input(format!("x{i}"), s).unwrap()).collect();
    let y = g.add("y", op, &ids).ok()?;
    g.set_outputs(&[y]).unwrap();
    Some(g)
}

/// Runs `g` on both backends and checks every output within `tol`
/// (relative, max norm); returns the worst error.
pub fn check(gpu: &GpuBackend, g: &Graph, inputs: &[Tensor], tol: f32, what: &str) -> f32 {
    let want = cpu().compile(g).unwrap_or_else(|e| panic!("{what}: cpu compile: {e}")).run(inputs).unwrap_or_else(|e| panic!("{what}: cpu run: {e}"));
    let mut exe = gpu.compile(g).unwrap_or_else(|e| panic!("{what}: gpu compile: {e}"));
    let got = exe.run(inputs).unwrap_or_else(|e| panic!("{what}: gpu run: {e}"));
    assert_eq!(got.len(), want.len(), "{what}: output count");
    let mut worst = 0f32;
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_eq!(a.shape(), b.shape(), "{what}: output {i} shape");
        let d = a.max_rel_diff(b);
        assert!(d <= tol, "{what}: output {i}: relative error {d:.3e} > {tol:.0e}");
        worst = worst.max(d);
    }
    worst
}

/// Random inputs for every graph input.
pub fn inputs_for(g: &Graph, rng: &mut Rng) -> Vec<Tensor> {
    g.inputs().iter().map(|&i| rand_tensor(rng, &g.node(i).shape)).collect()
}
