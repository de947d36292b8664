//! The GPU backend in a browser: WebGPU in headless Chromium (SwiftShader
//! there, ~0.2 GFLOP/s, so small graphs only), against the CPU backend
//! compiled to wasm. Run with
//! `wasm-pack test --headless --chrome crates/tessera-gpu`
//! (`webdriver.json` in the crate root enables WebGPU). Without an adapter
//! the tests log a skip and pass, unless the build had
//! `TESSERA_REQUIRE_GPU=1` in its environment.

#![cfg(target_arch = "wasm32")]

use std::sync::Arc;

use tessera_graph::rng::Rng;
use tessera_graph::{passes, zoo, Activation, BinaryOp, Conv, Dense, Graph, NodeId, Op, Pool, Tensor};
use tessera_gpu::{gpu_required, select_async, GemmTile, GpuBackend, GpuOptions, GpuOrCpu, Selected, TileChoice};
use tessera_kernels::{Backend, CpuBackend};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const TOL: f32 = 1e-3;

/// The WebGPU backend, or `None` after logging why the test skips.
async fn gpu() -> Option<GpuBackend> {
    match GpuBackend::new_async(GpuOptions::default()).await {
        Ok(g) => {
            console_log!("WebGPU adapter: {} ({})", g.adapter_name(), g.api());
            Some(g)
        }
        Err(e) if gpu_required() => panic!("TESSERA_REQUIRE_GPU=1 but WebGPU cannot start: {e}"),
        Err(e) => {
            console_log!("SKIP: no WebGPU adapter: {e}");
            None
        }
    }
}

async fn check(gpu: &GpuBackend, g: &Graph, inputs: &[Tensor], what: &str) {
    let want = CpuBackend::new(1).compile(g).unwrap().run(inputs).unwrap();
    let mut exe = gpu.compile_async(g).await.unwrap_or_else(|e| panic!("{what}: compile: {e}"));
    let got = exe.run_async(inputs).await.unwrap_or_else(|e| panic!("{what}: run: {e}"));
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(&want) {
        let d = a.max_rel_diff(b);
        assert!(d <= TOL, "{what}: relative error {d:.3e}");
    }
    console_log!("{what}: ok");
}

fn arc(rng: &mut Rng, shape: &[usize]) -> Arc<Tensor> {
    Arc::new(Tensor::new(shape.to_vec(), rng.fill(shape.iter().product(), 0.5)).unwrap())
}

fn single(op: Op, shapes: &[&[usize]], rng: &mut Rng) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new("t");
    let ids: Vec<NodeId> = shapes.iter().enumerate().map(|(i, s)| g.input(format!("x{i}"), s).unwrap()).collect();
    let y = g.add("y", op, &ids).unwrap();
    g.set_outputs(&[y]).unwrap();
    let xs = shapes.iter().map(|s| Tensor::new(s.to_vec(), rng.fill(s.iter().product(), 1.0)).unwrap()).collect();
    (g, xs)
}

#[wasm_bindgen_test]
async fn lenet_on_webgpu() {
    let Some(gpu) = gpu().await else { return };
    let raw = zoo::build("lenet").unwrap();
    let opt = passes::optimize(&raw).unwrap();
    let digits = zoo::test_digits().unwrap();
    for g in [raw, opt] {
        let mut exe = gpu.compile_async(&g).await.unwrap();
        let mut cpu = CpuBackend::new(1).compile(&g).unwrap();
        for d in digits.iter().take(8) {
            let x = std::slice::from_ref(&d.image);
            let a = exe.run_async(x).await.unwrap().remove(0);
            let b = cpu.run(x).unwrap().remove(0);
            assert!(a.max_rel_diff(&b) <= TOL);
            assert_eq!(a.argmax(), b.argmax());
        }
    }
    console_log!("lenet: 8 digits match the CPU backend");
}

#[wasm_bindgen_test]
async fn ops_on_webgpu() {
    let Some(gpu) = gpu().await else { return };
    let mut rng = Rng::new(3);
    // Grouped, dilated, strided conv with asymmetric pads (implicit GEMM).
    let conv = Conv { weight: arc(&mut rng, &[24, 4, 3, 2]), bias: Some(arc(&mut rng, &[24])), stride: [2, 1], pads: [1, 0, 2, 1], dilation: [2, 1], groups: 2, act: Activation::LeakyRelu { alpha: 0.1 } };
    let (g, x) = single(Op::Conv(conv), &[&[1, 8, 11, 9]], &mut rng);
    check(&gpu, &g, &x, "conv gemm").await;
    // Pointwise (vec4 B loads) and depthwise (direct).
    let conv = Conv { weight: arc(&mut rng, &[40, 16, 1, 1]), bias: None, stride: [1, 1], pads: [0; 4], dilation: [1, 1], groups: 1, act: Activation::Relu };
    let (g, x) = single(Op::Conv(conv), &[&[1, 16, 8, 6]], &mut rng);
    check(&gpu, &g, &x, "conv pointwise").await;
    let conv = Conv { weight: arc(&mut rng, &[6, 1, 3, 3]), bias: Some(arc(&mut rng, &[6])), stride: [1, 1], pads: [1; 4], dilation: [1, 1], groups: 6, act: Activation::Clip { min: 0.0, max: 6.0 } };
    let (g, x) = single(Op::Conv(conv), &[&[1, 6, 7, 7]], &mut rng);
    check(&gpu, &g, &x, "conv depthwise").await;
    // Pooling with ceil mode and padding, dense, softmax, broadcast, concat.
    let p = Pool { kernel: [3, 3], stride: [2, 2], pads: [1, 0, 1, 1], dilation: [1, 1], ceil_mode: true, count_include_pad: true };
    let (g, x) = single(Op::AveragePool(p), &[&[1, 3, 8, 9]], &mut rng);
    check(&gpu, &g, &x, "avg pool").await;
    let d = Dense { weight: arc(&mut rng, &[10, 75]), bias: Some(arc(&mut rng, &[10])), act: Activation::Sigmoid };
    let (g, x) = single(Op::Dense(d), &[&[1, 75]], &mut rng);
    check(&gpu, &g, &x, "dense").await;
    let (g, x) = single(Op::Softmax { axis: 1, flatten: false }, &[&[2, 7, 3]], &mut rng);
    check(&gpu, &g, &x, "softmax").await;
    let (g, x) = single(Op::Binary(BinaryOp::PRelu), &[&[1, 4, 3, 5], &[4, 1, 1]], &mut rng);
    check(&gpu, &g, &x, "prelu broadcast").await;
    let (g, x) = single(Op::Concat { axis: 1 }, &[&[1, 2, 3, 3], &[1, 5, 3, 3]], &mut rng);
    check(&gpu, &g, &x, "concat").await;
    let (g, x) = single(Op::MaxPool(Pool::square(2, 2, 0)), &[&[1, 2, 5, 5]], &mut rng);
    check(&gpu, &g, &x, "max pool").await;
}

/// The widest GEMM tile (all 16 KiB of the workgroup memory WebGPU
/// guarantees), and Winograd with split K, compile and compute a
/// convolution right.
#[wasm_bindgen_test]
async fn the_widest_tile_on_webgpu() {
    if gpu().await.is_none() {
        return;
    }
    let wide = GpuBackend::new_async(GpuOptions { tiles: TileChoice::Fixed(GemmTile::new(8, 8)), ..Default::default() }).await.unwrap();
    let mut rng = Rng::new(4);
    let conv = Conv { weight: arc(&mut rng, &[130, 12, 3, 3]), bias: Some(arc(&mut rng, &[130])), stride: [1, 1], pads: [1; 4], dilation: [1, 1], groups: 1, act: Activation::Relu };
    let (g, x) = single(Op::Conv(conv), &[&[1, 12, 10, 13]], &mut rng);
    check(&wide, &g, &x, "conv, 8x8 tile").await;
    // Winograd with K split in two (three kernels and two scratch buffers).
    let wino = GpuBackend::new_async(GpuOptions { tiles: TileChoice::Fixed("8x8k2w".parse().unwrap()), ..Default::default() }).await.unwrap();
    let (g, x) = single(Op::Conv(Conv { weight: arc(&mut rng, &[40, 96, 3, 3]), bias: Some(arc(&mut rng, &[40])), stride: [1, 1], pads: [1; 4], dilation: [1, 1], groups: 1, act: Activation::Relu }), &[&[1, 96, 7, 9]], &mut rng);
    assert_eq!(wino.compile_gpu(&g).unwrap().kernels()[0].1, "winograd-in+gemm matrix 8x8k2w+winograd-out");
    check(&wino, &g, &x, "conv, Winograd 8x8k2w").await;
    let wino4 = GpuBackend::new_async(GpuOptions { tiles: TileChoice::Fixed("4x4k2w4".parse().unwrap()), ..Default::default() }).await.unwrap();
    assert_eq!(wino4.compile_gpu(&g).unwrap().kernels()[0].1, "winograd4-in+gemm matrix 4x4k2w4+winograd4-out");
    check(&wino4, &g, &x, "conv, Winograd 4x4k2w4").await;
}

/// A GPU that does not finish within the timeout counts as hung: the run
/// fails like a lost device, and behind `GpuOrCpu` the same run completes
/// on the CPU, with a note saying why (what a peer reports).
#[wasm_bindgen_test]
async fn a_hung_gpu_times_out_and_the_cpu_takes_over() {
    if gpu().await.is_none() {
        return;
    }
    let mut rng = Rng::new(5);
    // About 1.4 GFLOP: seconds on SwiftShader, never within 1 ms.
    let conv = Conv { weight: arc(&mut rng, &[128, 64, 3, 3]), bias: None, stride: [1, 1], pads: [1; 4], dilation: [1, 1], groups: 1, act: Activation::Relu };
    let (g, x) = single(Op::Conv(conv), &[&[1, 64, 96, 96]], &mut rng);
    let hurried = || GpuBackend::new_async(GpuOptions { timeout_ms: 1, ..Default::default() });
    let gpu = hurried().await.unwrap();
    let mut exe = gpu.compile_gpu(&g).unwrap();
    let err = exe.run_async(&x).await.unwrap_err().to_string();
    assert!(err.contains("did not finish within 1 ms"), "{err}");
    assert!(gpu.lost_reason().is_some());

    let be = GpuOrCpu::new(Selected::Gpu(hurried().await.unwrap()), 1);
    let mut exe = be.compile(&g).unwrap();
    let got = exe.run_async(&x).await.unwrap();
    let want = CpuBackend::new(1).compile(&g).unwrap().run(&x).unwrap();
    assert!(got[0].max_rel_diff(&want[0]) <= TOL);
    let notes = be.take_notes();
    assert!(notes.iter().any(|n| n.contains("lost") && n.contains("did not finish")), "{notes:?}");
    assert!(be.gpu().is_none());
}

/// Measured tiles in the browser: the executable starts on the heuristic
/// tiles, measures its layers on its first run, recompiles with the
/// fastest, and its results equal the CPU's before and after.
#[wasm_bindgen_test]
async fn tiles_are_measured_on_the_first_run() {
    if gpu().await.is_none() {
        return;
    }
    let gpu = GpuBackend::new_async(GpuOptions { tiles: TileChoice::Measured, ..Default::default() }).await.unwrap();
    let mut rng = Rng::new(6);
    // Small layers with two candidate tiles each (1x4, 2x4): SwiftShader
    // compiles every new pipeline for about a second.
    let mut g = Graph::new("two convs");
    let x = g.input("x", &[1, 16, 8, 8]).unwrap();
    let conv = |rng: &mut Rng, oc: usize, ic: usize, k: usize| Conv { weight: arc(rng, &[oc, ic, k, k]), bias: Some(arc(rng, &[oc])), stride: [1, 1], pads: [k / 2; 4], dilation: [1, 1], groups: 1, act: Activation::Relu };
    let a = g.add("a", Op::Conv(conv(&mut rng, 32, 16, 3)), &[x]).unwrap();
    let b = g.add("b", Op::Conv(conv(&mut rng, 24, 32, 1)), &[a]).unwrap();
    g.set_outputs(&[b]).unwrap();
    let xs = vec![Tensor::new(vec![1, 16, 8, 8], rng.fill(16 * 64, 1.0)).unwrap()];
    let want = CpuBackend::new(1).compile(&g).unwrap().run(&xs).unwrap();
    let mut exe = gpu.compile_gpu(&g).unwrap();
    assert!(exe.tiles_pending());
    assert!(gpu.tile_measurements().is_empty());
    for run in 0..2 {
        let got = exe.run_async(&xs).await.unwrap();
        let d = got[0].max_rel_diff(&want[0]);
        assert!(d <= TOL, "run {run}: relative error {d:.3e}");
    }
    assert!(!exe.tiles_pending());
    let m = gpu.tile_measurements();
    assert_eq!(m.len(), 2, "{m:?}");
    let kernels = exe.kernels();
    for (name, layer) in [("a", &m[0]), ("b", &m[1])] {
        assert!(layer.times.len() >= 2 && layer.times.iter().all(|t| t.1 > 0.0), "{layer:?}");
        let (_, k) = kernels.iter().find(|(n, _)| g.node(*n).name == name).unwrap();
        let t = layer.chosen;
        // "gemm im2col 8x4", "gemm im2col 8x4k2+splitk", "winograd-in+gemm matrix 8x4w+winograd-out"
        assert!(k.split('+').any(|part| part.ends_with(&format!(" {t}"))), "{name}: {k} vs {layer:?}");
        console_log!("{name}: {k}, candidates {:?}", layer.times);
    }
    // A new executable of the same shapes starts tuned.
    assert!(!gpu.compile_gpu(&g).unwrap().tiles_pending());
}

#[wasm_bindgen_test]
async fn select_prefers_a_working_gpu() {
    if gpu().await.is_none() {
        return;
    }
    let sel = select_async(GpuOptions::default(), 1).await;
    assert!(sel.fallback_reason().is_none(), "{:?}", sel.fallback_reason());
    let g = zoo::build("lenet").unwrap();
    let mut exe = sel.compile_async(&g).await.unwrap();
    let y = exe.run_async(&[Tensor::full(g.input_shape(), 0.1)]).await.unwrap();
    assert_eq!(y[0].shape(), &[1, 10]);
    console_log!("selected: {}", sel.name());
}
