//! Every GPU op against the CPU backend (the reference) on random
//! configurations from a seeded generator: odd sizes, asymmetric pads,
//! groups, dilation, stride, ceil mode, broadcasting, every activation.
//! Tolerance: 1e-3 relative in the max norm (`Tensor::max_rel_diff`).

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::sync::Arc;

use common::{check, inputs_for, rand_arc, rand_tensor, single};
use tessera_graph::op::{CoordMode, Lrn, NearestMode, PadMode, Resize};
use tessera_graph::rng::Rng;
use tessera_graph::{Activation, BinaryOp, Conv, Dense, Graph, Op, Pool, Tensor};
use tessera_gpu::{GemmTile, GpuBackend, GpuOptions, TileChoice};
use tessera_kernels::{Backend, KernelError};

const TOL: f32 = 1e-3;

fn activations(rng: &mut Rng) -> Activation {
    match rng.range(0, 7) {
        0 => Activation::Identity,
        1 => Activation::Relu,
        2 => Activation::LeakyRelu { alpha: 0.1 },
        3 => Activation::Sigmoid,
        4 => Activation::Tanh,
        5 => Activation::Clip { min: -0.3, max: 0.6 },
        6 => Activation::HardSigmoid { alpha: 0.2, beta: 0.5 },
        _ => Activation::HardSwish,
    }
}

fn run_single(gpu: &GpuBackend, op: Op, shapes: &[&[usize]], rng: &mut Rng, what: &str) -> bool {
    let Some(g) = single(op, shapes) else { return false };
    let x = inputs_for(&g, rng);
    check(gpu, &g, &x, TOL, what);
    true
}

#[test]
fn conv_random_configs() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(11);
    let mut done = 0;
    while done < 60 {
        let groups = match rng.range(0, 5) {
            0..=2 => 1,
            3 => rng.range(2, 3),
            _ => 0, // depthwise
        };
        let (icg, ocg, groups) = if groups == 0 {
            let c = rng.range(1, 12);
            (1, rng.range(1, 2), c)
        } else {
            (rng.range(1, 9), rng.range(1, 40), groups)
        };
        let (kh, kw) = (rng.range(1, 5), rng.range(1, 5));
        let stride = [rng.range(1, 3), rng.range(1, 3)];
        let dilation = [rng.range(1, 2), rng.range(1, 2)];
        let pads = [rng.range(0, 2), rng.range(0, 2), rng.range(0, 2), rng.range(0, 2)];
        let (n, h, w) = (rng.range(1, 2), rng.range(3, 17), rng.range(3, 17));
        let oc = ocg * groups;
        let conv = Conv {
            weight: rand_arc(&mut rng, &[oc, icg, kh, kw], 0.5),
            bias: if rng.range(0, 1) == 1 { Some(rand_arc(&mut rng, &[oc], 0.5)) } else { None },
            stride,
            pads,
            dilation,
            groups,
            act: activations(&mut rng),
        };
        let what = format!("conv n{n} c{} {h}x{w} oc{oc} g{groups} k{kh}x{kw} s{stride:?} d{dilation:?} p{pads:?}", icg * groups);
        if run_single(&gpu, Op::Conv(conv), &[&[n, icg * groups, h, w]], &mut rng, &what) {
            done += 1;
        }
    }
}

#[test]
fn conv_gemm_tiles_and_pointwise() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(12);
    // Wide layers (8-row tiles), pointwise vec4 path, odd K, batch 2.
    for &(n, c, h, w, oc, k, s, p) in &[
        (1, 32, 8, 8, 130, 1, 1, 0),
        (2, 17, 6, 10, 70, 1, 1, 0),
        (1, 24, 7, 7, 96, 1, 1, 0), // 49 pixels: not a multiple of 4 -> im2col
        (1, 16, 9, 11, 200, 3, 1, 1),
        (1, 40, 12, 12, 64, 3, 2, 1),
        (2, 3, 15, 13, 33, 7, 2, 3),
        (1, 64, 4, 4, 256, 1, 2, 0),
    ] {
        let conv = Conv { weight: rand_arc(&mut rng, &[oc, c, k, k], 0.2), bias: Some(rand_arc(&mut rng, &[oc], 0.5)), stride: [s, s], pads: [p; 4], dilation: [1, 1], groups: 1, act: Activation::Relu };
        let what = format!("conv n{n} c{c} {h}x{w} oc{oc} k{k} s{s} p{p}");
        assert!(run_single(&gpu, Op::Conv(conv), &[&[n, c, h, w]], &mut rng, &what));
    }
}

/// Convolution shapes: (n, c, h, w, oc, kernel, stride, pad, groups).
type ConvCase = (usize, usize, usize, usize, usize, usize, usize, usize, usize);

/// Runs each case as a single random conv (random weights, bias and
/// activation) on `gpu` against the CPU.
fn check_convs(gpu: &GpuBackend, rng: &mut Rng, label: &str, cases: &[ConvCase]) {
    for &(n, c, h, w, oc, k, s, p, groups) in cases {
        let conv = Conv { weight: rand_arc(rng, &[oc, c / groups, k, k], 0.2), bias: Some(rand_arc(rng, &[oc], 0.5)), stride: [s, s], pads: [p; 4], dilation: [1, 1], groups, act: activations(rng) };
        let what = format!("{label}: conv n{n} c{c} {h}x{w} oc{oc} k{k} s{s} p{p} g{groups}");
        assert!(run_single(gpu, Op::Conv(conv), &[&[n, c, h, w]], rng, &what));
    }
}

/// `relu(x + conv3x3(x))` over a `[1, c, hw, hw]` input (the conv fused
/// with the residual), checked on `gpu` against the CPU.
fn check_residual(gpu: &GpuBackend, rng: &mut Rng, label: &str, c: usize, hw: usize) -> Graph {
    let mut g = Graph::new("res");
    let x = g.input("x", &[1, c, hw, hw]).unwrap();
    let conv = Conv { weight: rand_arc(rng, &[c, c, 3, 3], 0.2), bias: Some(rand_arc(rng, &[c], 0.5)), stride: [1, 1], pads: [1; 4], dilation: [1, 1], groups: 1, act: Activation::Identity };
    let y = g.add("conv", Op::Conv(conv), &[x]).unwrap();
    let out = g.add("add", Op::Binary(BinaryOp::Add), &[x, y]).unwrap();
    let out = g.add("relu", Op::Act(Activation::Relu), &[out]).unwrap();
    g.set_outputs(&[out]).unwrap();
    let xs = inputs_for(&g, rng);
    check(gpu, &g, &xs, TOL, &format!("{label}: residual"));
    g
}

/// Every GEMM tile shape computes the same convolutions (implicit im2col,
/// pointwise vec4, groups, batches, ragged edges, a fused residual) and
/// dense layers over rows as the CPU backend.
#[test]
fn every_gemm_tile_matches_the_cpu() {
    let Some(_) = common::gpu() else { return };
    let mut rng = Rng::new(17);
    for tile in GemmTile::ALL {
        let gpu = GpuBackend::new(GpuOptions { tiles: TileChoice::Fixed(tile), ..Default::default() }).unwrap();
        let label = format!("tile {tile}");
        check_convs(&gpu, &mut rng, &label, &[(1, 16, 9, 11, 200, 3, 1, 1, 1), (2, 17, 6, 10, 70, 1, 1, 0, 1), (1, 24, 7, 7, 96, 1, 1, 0, 1), (1, 32, 12, 12, 48, 3, 2, 1, 2), (1, 8, 21, 17, 9, 5, 1, 2, 1)]);
        check_residual(&gpu, &mut rng, &label, 24, 10);
        let d = Dense { weight: rand_arc(&mut rng, &[130, 37], 0.3), bias: Some(rand_arc(&mut rng, &[130], 0.3)), act: Activation::Relu };
        assert!(run_single(&gpu, Op::Dense(d), &[&[70, 37]], &mut rng, &format!("tile {tile}: dense rows")));
    }
}

/// Split-K tiles (each K slice summed into scratch by one dispatch, the
/// slices, bias, residual and activation added by a second) compute the
/// same convolutions as the CPU: more slices than K steps, ragged last
/// slices, groups, batches, a fused residual, and a 1x1 pointwise layer.
#[test]
fn split_k_tiles_match_the_cpu() {
    let Some(_) = common::gpu() else { return };
    let mut rng = Rng::new(23);
    for tile in ["1x4k2", "4x4k16", "8x8k4", "2x8k8"] {
        let tile: GemmTile = tile.parse().unwrap();
        let gpu = GpuBackend::new(GpuOptions { tiles: TileChoice::Fixed(tile), ..Default::default() }).unwrap();
        let label = format!("tile {tile}");
        check_convs(&gpu, &mut rng, &label, &[(1, 64, 7, 7, 96, 3, 1, 1, 1), (2, 40, 5, 6, 24, 3, 2, 1, 2), (1, 300, 4, 4, 20, 1, 1, 0, 1), (1, 8, 9, 9, 16, 3, 1, 0, 1)]);
        let g = check_residual(&gpu, &mut rng, &label, 48, 6);
        let kernels = gpu.compile_gpu(&g).unwrap().kernels();
        assert_eq!(kernels.len(), 1, "{kernels:?}");
        assert_eq!(kernels[0].1, format!("gemm im2col {tile}+splitk"), "{kernels:?}");
    }
}

/// Winograd F(2x2, 3x3) and F(4x4, 3x3) tiles compute the same 3x3 stride-1 convolutions
/// as the CPU (odd and even planes, padding 0 to 2, batches, K slices, a
/// fused residual); layers it does not apply to (stride 2, groups, 1x1)
/// run the direct GEMM under the same fixed tile.
#[test]
fn winograd_tiles_match_the_cpu() {
    let Some(_) = common::gpu() else { return };
    let mut rng = Rng::new(29);
    for tile in ["4x4w", "8x8k4w", "1x8k2w", "2x4w", "4x4w4", "8x8k2w4", "1x4w4"] {
        let tile: GemmTile = tile.parse().unwrap();
        let gpu = GpuBackend::new(GpuOptions { tiles: TileChoice::Fixed(tile), ..Default::default() }).unwrap();
        let label = format!("tile {tile}");
        check_convs(&gpu, &mut rng, &label, &[(1, 16, 9, 11, 40, 3, 1, 1, 1), (2, 24, 8, 8, 16, 3, 1, 0, 1), (1, 70, 7, 7, 130, 3, 1, 2, 1), (1, 9, 5, 13, 12, 3, 1, 1, 1), (1, 32, 12, 12, 48, 3, 2, 1, 2), (1, 24, 6, 6, 32, 1, 1, 0, 1)]);
        let g = check_residual(&gpu, &mut rng, &label, 48, 6);
        let kernels = gpu.compile_gpu(&g).unwrap().kernels();
        assert_eq!(kernels.len(), 1, "{kernels:?}");
        let m = if tile.winograd == 4 { "4" } else { "" };
        assert_eq!(kernels[0].1, format!("winograd{m}-in+gemm matrix {tile}+winograd{m}-out"), "{kernels:?}");
    }
}

/// Measured tiles: each layer shape is timed once per device (every
/// candidate, direct and Winograd, the fastest kept), the results stay equal to the CPU's, and
/// a second compile of the same shapes measures nothing.
#[test]
fn measured_tiles_are_the_fastest_candidates_and_cached() {
    let Some(_) = common::gpu() else { return };
    let gpu = GpuBackend::new(GpuOptions { tiles: TileChoice::Measured, ..Default::default() }).unwrap();
    let mut rng = Rng::new(18);
    let mut g = Graph::new("two convs");
    let x = g.input("x", &[1, 32, 16, 16]).unwrap();
    let conv = |rng: &mut Rng, oc: usize, ic: usize, k: usize| Conv { weight: rand_arc(rng, &[oc, ic, k, k], 0.2), bias: Some(rand_arc(rng, &[oc], 0.2)), stride: [1, 1], pads: [k / 2; 4], dilation: [1, 1], groups: 1, act: Activation::Relu };
    let a = g.add("a", Op::Conv(conv(&mut rng, 96, 32, 3)), &[x]).unwrap();
    let b = g.add("b", Op::Conv(conv(&mut rng, 64, 96, 1)), &[a]).unwrap();
    g.set_outputs(&[b]).unwrap();
    let xs = inputs_for(&g, &mut rng);
    check(&gpu, &g, &xs, TOL, "measured tiles");
    let m = gpu.tile_measurements();
    assert_eq!(m.len(), 2, "{m:?}");
    for layer in &m {
        let pointwise = layer.layer.starts_with("conv [1, 96,");
        let (m, k) = if pointwise { (64, 96) } else { (96, 288) };
        let mut candidates = GemmTile::candidates(m, 256, k, 1);
        if !pointwise {
            // The 3x3 layer: its Winograd form too (8 x 8 tiles of 2 x 2, 32 input channels).
            candidates.extend(GemmTile::candidates(96, 64, 32, 16).into_iter().map(GemmTile::winograd));
            candidates.extend(GemmTile::candidates(96, 16, 32, 36).into_iter().map(GemmTile::winograd4));
        }
        // Every register tile, then the K splits of the two fastest.
        let measured: Vec<GemmTile> = layer.times.iter().map(|t| t.0).collect();
        let unsplit: Vec<GemmTile> = candidates.iter().copied().filter(|t| t.splits == 1).collect();
        assert_eq!(measured[..unsplit.len()], unsplit[..], "{layer:?}");
        let mut ranked = layer.times[..unsplit.len()].to_vec();
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
        let finalists = [ranked[0].0, ranked[1].0];
        let splits: Vec<GemmTile> = candidates.iter().copied().filter(|t| t.splits > 1 && finalists.contains(&t.split(1))).collect();
        assert_eq!(measured[unsplit.len()..], splits[..], "{layer:?}");
        assert_eq!(layer.chosen, layer.times.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0);
        assert!(layer.times.iter().all(|t| t.1 > 0.0 && t.1.is_finite()), "{layer:?}");
        assert!(layer.failed.is_empty(), "{layer:?}");
    }
    // The kept tiles are the ones dispatched.
    let kernels = gpu.compile_gpu(&g).unwrap().kernels();
    for (name, layer) in [("a", &m[0]), ("b", &m[1])] {
        let (_, k) = kernels.iter().find(|(n, _)| g.node(*n).name == name).unwrap();
        let t = layer.chosen;
        // "gemm im2col 8x4", "gemm im2col 8x4k2+splitk", "winograd-in+gemm matrix 8x4w+winograd-out"
        assert!(k.split('+').any(|part| part.ends_with(&format!(" {t}"))), "{name}: {k} vs {layer:?}");
    }
    check(&gpu, &g, &xs, TOL, "measured tiles, cached");
    assert_eq!(gpu.tile_measurements(), m);
}

/// A candidate tile that cannot run a layer (its weight padding over the
/// binding limit) is skipped, not fatal: the layer still compiles on the
/// GPU with a tile that fits. A fixed tile over the limit is refused.
#[test]
fn measured_tiles_skip_candidates_that_cannot_run() {
    let Some(_) = common::gpu() else { return };
    let gpu = GpuBackend::new(GpuOptions { tiles: TileChoice::Measured, binding_limit: Some(60_000), ..Default::default() }).unwrap();
    let mut rng = Rng::new(19);
    let conv = Conv { weight: rand_arc(&mut rng, &[96, 16, 3, 3], 0.2), bias: None, stride: [1, 1], pads: [1; 4], dilation: [1, 1], groups: 1, act: Activation::Relu };
    assert!(run_single(&gpu, Op::Conv(conv), &[&[1, 16, 8, 8]], &mut rng, "conv with a tight binding limit"));
    let m = gpu.tile_measurements();
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(!m[0].failed.is_empty() && m[0].failed.iter().all(|(_, why)| why.contains("binding limit")), "{m:?}");
    assert!(!m[0].times.iter().any(|(t, _)| m[0].failed.iter().any(|(f, _)| f == t)));
    assert!(GpuBackend::new(GpuOptions { tiles: TileChoice::Fixed(GemmTile::new(3, 4)), ..Default::default() }).is_err());
}

/// Conv → Add(residual) → activation, fused into the conv's epilogue.
#[test]
fn conv_residual_fusion() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(13);
    for (c, k, act, depthwise) in [(16, 3, Some(Activation::Relu), false), (8, 1, None, false), (12, 3, Some(Activation::Clip { min: 0.0, max: 6.0 }), true), (40, 3, Some(Activation::Relu), false)] {
        let mut g = Graph::new("res");
        let x = g.input("x", &[1, c, 9, 9]).unwrap();
        let groups = if depthwise { c } else { 1 };
        let conv = Conv { weight: rand_arc(&mut rng, &[c, c / groups, k, k], 0.3), bias: Some(rand_arc(&mut rng, &[c], 0.3)), stride: [1, 1], pads: [k / 2; 4], dilation: [1, 1], groups, act: Activation::Identity };
        let y = g.add("conv", Op::Conv(conv), &[x]).unwrap();
        let r = g.add("r", Op::Act(Activation::Sigmoid), &[x]).unwrap();
        let mut out = g.add("add", Op::Binary(BinaryOp::Add), &[r, y]).unwrap();
        if let Some(a) = act {
            out = g.add("act", Op::Act(a), &[out]).unwrap();
        }
        g.set_outputs(&[out]).unwrap();
        let xs = inputs_for(&g, &mut rng);
        check(&gpu, &g, &xs, TOL, &format!("residual c{c} k{k} {act:?} dw {depthwise}"));
    }
}

#[test]
fn dense_rows_and_features() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(14);
    for &(rows, inf, outf) in &[(1, 1, 1), (1, 7, 3), (1, 301, 129), (3, 64, 10), (4, 33, 65), (7, 50, 20), (70, 37, 130), (2, 4096, 17)] {
        for act in [Activation::Identity, activations(&mut rng)] {
            let d = Dense { weight: rand_arc(&mut rng, &[outf, inf], 0.3), bias: if outf % 2 == 1 { Some(rand_arc(&mut rng, &[outf], 0.3)) } else { None }, act };
            assert!(run_single(&gpu, Op::Dense(d), &[&[rows, inf]], &mut rng, &format!("dense {rows}x{inf}->{outf} {act:?}")));
        }
    }
    // Rank-3 input: rows over the leading axes.
    let d = Dense { weight: rand_arc(&mut rng, &[9, 5], 0.3), bias: None, act: Activation::Relu };
    assert!(run_single(&gpu, Op::Dense(d), &[&[2, 3, 5]], &mut rng, "dense rank 3"));
}

/// Weights over the binding limit are split into row chunks.
#[test]
fn dense_weights_split_under_a_binding_limit() {
    let Some(_) = common::gpu() else { return };
    let gpu = GpuBackend::new(GpuOptions { binding_limit: Some(64 * 1024), ..Default::default() }).unwrap();
    let mut rng = Rng::new(15);
    for &(rows, inf, outf) in &[(1, 1000, 100), (2, 999, 37), (80, 150, 150)] {
        let d = Dense { weight: rand_arc(&mut rng, &[outf, inf], 0.1), bias: Some(rand_arc(&mut rng, &[outf], 0.1)), act: Activation::Identity };
        assert!(run_single(&gpu, Op::Dense(d), &[&[rows, inf]], &mut rng, &format!("split dense {rows}x{inf}->{outf}")));
    }
    // An activation over the limit is refused, so callers can fall back.
    let g = single(Op::Act(Activation::Relu), &[&[1, 64, 32, 32]]).unwrap();
    match gpu.compile(&g) {
        Err(KernelError::Unsupported { backend, msg, .. }) => assert!(backend == "gpu" && msg.contains("binding limit"), "{msg}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a 256 KiB activation should exceed a 64 KiB limit"),
    }
}

#[test]
fn pooling_random_configs() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(16);
    let mut done = 0;
    while done < 50 {
        let kernel = [rng.range(1, 4), rng.range(1, 4)];
        let p = Pool {
            kernel,
            stride: [rng.range(1, 3), rng.range(1, 3)],
            pads: [rng.range(0, kernel[0] - 1), rng.range(0, kernel[1] - 1), rng.range(0, kernel[0] - 1), rng.range(0, kernel[1] - 1)],
            dilation: [rng.range(1, 2), rng.range(1, 2)],
            ceil_mode: rng.range(0, 1) == 1,
            count_include_pad: rng.range(0, 1) == 1,
        };
        let shape = [rng.range(1, 2), rng.range(1, 5), rng.range(2, 13), rng.range(2, 13)];
        let op = if rng.range(0, 1) == 1 { Op::MaxPool(p.clone()) } else { Op::AveragePool(p.clone()) };
        if run_single(&gpu, op, &[&shape], &mut rng, &format!("pool {shape:?} {p:?}")) {
            done += 1;
        }
    }
    for shape in [[1usize, 3, 5, 7], [2, 130, 7, 7], [1, 1, 1, 1], [1, 4, 33, 1]] {
        assert!(run_single(&gpu, Op::GlobalAveragePool, &[&shape], &mut rng, "gap"));
        assert!(run_single(&gpu, Op::GlobalMaxPool, &[&shape], &mut rng, "gmp"));
    }
}

#[test]
fn activations_and_batch_norm() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(17);
    for a in [
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu { alpha: 0.01 },
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Clip { min: 0.0, max: 6.0 },
        Activation::HardSigmoid { alpha: 0.2, beta: 0.5 },
        Activation::HardSwish,
    ] {
        let mut g = Graph::new("act");
        let x = g.input("x", &[2, 3, 5, 7]).unwrap();
        let s = g.add("scale", Op::Binary(BinaryOp::Mul), &[x, x]).unwrap(); // wider range
        let s = g.add("s8", Op::Binary(BinaryOp::Add), &[s, x]).unwrap();
        let y = g.add("y", Op::Act(a), &[s]).unwrap();
        g.set_outputs(&[y]).unwrap();
        let xs = vec![Tensor::new(vec![2, 3, 5, 7], rng.fill(210, 4.0)).unwrap()];
        check(&gpu, &g, &xs, TOL, &format!("{a:?}"));
    }
    for shape in [vec![1usize, 5, 3, 3], vec![2, 7], vec![1, 3, 2, 2, 2]] {
        let c = shape[1];
        let bn = tessera_graph::op::BatchNorm {
            scale: rand_arc(&mut rng, &[c], 1.0),
            bias: rand_arc(&mut rng, &[c], 1.0),
            mean: rand_arc(&mut rng, &[c], 1.0),
            var: Arc::new(Tensor::new(vec![c], (0..c).map(|i| 0.5 + i as f32).collect()).unwrap()),
            eps: 1e-5,
        };
        assert!(run_single(&gpu, Op::BatchNorm(bn), &[&shape], &mut rng, &format!("bn {shape:?}")));
    }
}

#[test]
fn binary_broadcasting() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(18);
    let ops = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min, BinaryOp::PRelu];
    let mut done = 0;
    while done < 60 {
        let rank = rng.range(1, 5);
        let out: Vec<usize> = (0..rank).map(|_| rng.range(1, 6)).collect();
        let pick = |rng: &mut Rng| -> Vec<usize> {
            let r = rng.range(0, rank);
            out[rank - r..].iter().map(|&d| if rng.range(0, 2) == 0 { 1 } else { d }).collect()
        };
        let (a, b) = (pick(&mut rng), pick(&mut rng));
        let op = ops[done % ops.len()];
        let Some(g) = single(Op::Binary(op), &[&a, &b]) else { continue };
        let mut xs = inputs_for(&g, &mut rng);
        if op == BinaryOp::Div {
            // Keep divisors away from zero.
            xs[1].data_mut().iter_mut().for_each(|v| *v = v.signum() * (0.5 + v.abs()));
        }
        check(&gpu, &g, &xs, TOL, &format!("{op:?} {a:?} {b:?}"));
        done += 1;
    }
    // Same-shape, scalar, and a rank-6 broadcast.
    assert!(run_single(&gpu, Op::Binary(BinaryOp::Add), &[&[3, 4], &[3, 4]], &mut rng, "same"));
    assert!(run_single(&gpu, Op::Binary(BinaryOp::Mul), &[&[2, 3, 4], &[]], &mut rng, "scalar"));
    assert!(run_single(&gpu, Op::Binary(BinaryOp::Sub), &[&[2, 1, 3, 1, 2, 1], &[1, 2, 1, 3, 1, 2]], &mut rng, "rank 6"));
}

#[test]
fn layout_ops() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(19);
    // Concat along every axis, 2-3 inputs.
    for axis in 0..4 {
        let base = [2usize, 3, 4, 5];
        let shapes: Vec<Vec<usize>> = (0..rng.range(2, 3))
            .map(|_| {
                let mut s = base.to_vec();
                s[axis] = rng.range(1, 4);
                s
            })
            .collect();
        let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        assert!(run_single(&gpu, Op::Concat { axis }, &refs, &mut rng, &format!("concat axis {axis}")));
    }
    // Transposes.
    for perm in [vec![1, 0], vec![0, 2, 3, 1], vec![3, 1, 0, 2], vec![2, 0, 1]] {
        let shape: Vec<usize> = (0..perm.len()).map(|_| rng.range(1, 6)).collect();
        assert!(run_single(&gpu, Op::Transpose { perm: perm.clone() }, &[&shape], &mut rng, &format!("transpose {perm:?}")));
    }
    // Slices.
    for _ in 0..10 {
        let shape: Vec<usize> = (0..4).map(|_| rng.range(1, 7)).collect();
        let starts: Vec<usize> = shape.iter().map(|&d| rng.range(0, d - 1)).collect();
        let ends: Vec<usize> = shape.iter().zip(&starts).map(|(&d, &s)| rng.range(s + 1, d)).collect();
        assert!(run_single(&gpu, Op::Slice { starts, ends }, &[&shape], &mut rng, "slice"));
    }
    // Pads in every mode, asymmetric.
    for mode in [PadMode::Constant(0.0), PadMode::Constant(-1.5), PadMode::Reflect, PadMode::Edge] {
        for _ in 0..4 {
            let shape = [1usize, rng.range(1, 3), rng.range(3, 7), rng.range(3, 7)];
            let lim = |d: usize| if mode == PadMode::Reflect { d - 1 } else { 3 };
            let begin: Vec<usize> = shape.iter().enumerate().map(|(i, &d)| if i < 2 { 0 } else { rng.range(0, lim(d).min(3)) }).collect();
            let end: Vec<usize> = shape.iter().enumerate().map(|(i, &d)| if i < 2 { rng.range(0, 1) * (mode == PadMode::Constant(-1.5)) as usize } else { rng.range(0, lim(d).min(3)) }).collect();
            assert!(run_single(&gpu, Op::Pad { begin, end, mode }, &[&shape], &mut rng, &format!("pad {mode:?}")));
        }
    }
    // Nearest resizes, every coordinate and rounding mode.
    let coords = [CoordMode::HalfPixel, CoordMode::PytorchHalfPixel, CoordMode::AlignCorners, CoordMode::Asymmetric, CoordMode::TfHalfPixelForNearest];
    let nearest = [NearestMode::RoundPreferFloor, NearestMode::RoundPreferCeil, NearestMode::Floor, NearestMode::Ceil];
    for (i, &coord) in coords.iter().enumerate() {
        for (j, &nm) in nearest.iter().enumerate() {
            let x = [1usize, 2, 3 + i, 4 + j];
            let out = vec![1, 2, rng.range(1, 9), rng.range(1, 9)];
            let scales = vec![1.0, 1.0, out[2] as f32 / x[2] as f32, out[3] as f32 / x[3] as f32];
            let r = Resize { out_shape: out, scales, coord, nearest: nm };
            assert!(run_single(&gpu, Op::Resize(r), &[&x], &mut rng, &format!("resize {coord:?} {nm:?}")));
        }
    }
    assert!(run_single(&gpu, Op::Resize(Resize::upsample(&[1, 3, 5, 4], 2)), &[&[1, 3, 5, 4]], &mut rng, "upsample"));
    // Space/depth shuffles.
    for b in [2usize, 3] {
        assert!(run_single(&gpu, Op::SpaceToDepth { block: b }, &[&[2, 3, 2 * b, 3 * b]], &mut rng, "s2d"));
        for crd in [false, true] {
            assert!(run_single(&gpu, Op::DepthToSpace { block: b, crd }, &[&[2, 2 * b * b, 3, 2]], &mut rng, "d2s"));
        }
    }
}

/// Reshapes alias their input where they can and copy where they cannot.
#[test]
fn reshape_flatten_aliasing() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(20);
    let mut g = Graph::new("reshape");
    let x = g.input("x", &[2, 3, 4]).unwrap();
    let a = g.add("flat_in", Op::Flatten { axis: 1 }, &[x]).unwrap(); // of a graph input
    let r = g.add("relu", Op::Act(Activation::Relu), &[x]).unwrap();
    let b = g.add("reshape", Op::Reshape { shape: vec![4, 6] }, &[r]).unwrap(); // not the last reader of r
    let c = g.add("tanh", Op::Act(Activation::Tanh), &[r]).unwrap();
    let d = g.add("flat", Op::Reshape { shape: vec![4, 6] }, &[c]).unwrap(); // last reader: aliases
    let e = g.add("sum", Op::Binary(BinaryOp::Add), &[b, d]).unwrap();
    g.set_outputs(&[a, b, d, e, x]).unwrap();
    let xs = inputs_for(&g, &mut rng);
    check(&gpu, &g, &xs, TOL, "reshape aliasing");
}

#[test]
fn softmax_and_lrn() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(21);
    for shape in [vec![1usize, 1000], vec![2, 5, 3, 4], vec![3, 7], vec![1, 3, 1, 1]] {
        for axis in 0..shape.len() {
            for flatten in [false, true] {
                let Some(g) = single(Op::Softmax { axis, flatten }, &[&shape]) else { continue };
                let xs = vec![Tensor::new(shape.clone(), rng.fill(shape.iter().product(), 5.0)).unwrap()];
                check(&gpu, &g, &xs, TOL, &format!("softmax {shape:?} axis {axis} flatten {flatten}"));
            }
        }
    }
    for (size, c) in [(5usize, 9usize), (3, 2), (1, 4), (4, 7)] {
        let l = Lrn { size, alpha: 1e-2, beta: 0.75, bias: 1.0 };
        assert!(run_single(&gpu, Op::Lrn(l), &[&[1, c, 3, 5]], &mut rng, &format!("lrn {size}")));
    }
    let l = Lrn { size: 3, alpha: 0.5, beta: 0.6, bias: 2.0 };
    assert!(run_single(&gpu, Op::Lrn(l), &[&[2, 4, 2, 3]], &mut rng, "lrn beta 0.6"));
}

/// Outputs that are constants, a graph with two inputs and several
/// outputs, and repeated runs of one executable with new inputs.
#[test]
fn multi_io_constants_and_repeated_runs() {
    let gpu = gpu_or_skip!();
    let mut rng = Rng::new(22);
    let mut g = Graph::new("multi");
    let x = g.input("x", &[1, 4, 6, 6]).unwrap();
    let y = g.input("y", &[1, 4, 1, 1]).unwrap();
    let k = g.add("k", Op::Const(rand_arc(&mut rng, &[1, 4, 1, 1], 1.0)), &[]).unwrap();
    let s = g.add("s", Op::Binary(BinaryOp::Mul), &[x, k]).unwrap();
    let t = g.add("t", Op::Binary(BinaryOp::Add), &[s, y]).unwrap();
    let p = g.add("p", Op::MaxPool(Pool::square(3, 2, 1)), &[t]).unwrap();
    g.set_outputs(&[p, k, t]).unwrap();
    let mut exe = gpu.compile(&g).unwrap();
    let cpu = common::cpu();
    let mut reference = cpu.compile(&g).unwrap();
    for _ in 0..3 {
        let xs = vec![rand_tensor(&mut rng, &[1, 4, 6, 6]), rand_tensor(&mut rng, &[1, 4, 1, 1])];
        let got = exe.run(&xs).unwrap();
        let want = reference.run(&xs).unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert!(a.max_rel_diff(b) <= TOL);
        }
    }
    // Wrong input shapes are an error, not a hang or garbage.
    assert!(matches!(exe.run(&[Tensor::zeros(&[1, 4, 6, 5]), Tensor::zeros(&[1, 4, 1, 1])]), Err(KernelError::Graph(_))));
    assert!(exe.run(&[]).is_err());
}

/// Profiled runs time every step and return the same outputs.
#[test]
fn profiled_run_times_every_node() {
    let gpu = gpu_or_skip!();
    let g = tessera_graph::passes::optimize(&tessera_graph::zoo::build("lenet").unwrap()).unwrap();
    let mut exe = gpu.compile(&g).unwrap();
    let x = inputs_for(&g, &mut Rng::new(3));
    let start = std::time::Instant::now();
    let clock = || start.elapsed().as_secs_f64() * 1e3;
    let (out, timings) = exe.run_profiled(&x, &clock).unwrap();
    let plain = exe.run(&x).unwrap();
    assert_eq!(out[0].max_rel_diff(&plain[0]), 0.0);
    assert!(!timings.is_empty() && timings.iter().all(|t| t.ms >= 0.0));
    // Each timed node's kernels, for per-layer reports.
    let kernels = gpu.compile_gpu(&g).unwrap().kernels();
    let label = |name: &str| kernels.iter().find(|(n, _)| g.node(*n).name == name).map(|(_, k)| k.clone());
    assert_eq!(label("conv1").as_deref(), Some("direct"));
    assert!(label("conv2").is_some_and(|k| k.starts_with("gemm im2col ")), "{kernels:?}");
    assert_eq!(label("fc1").as_deref(), Some("gemv"));
    assert!(timings.iter().all(|t| kernels.iter().any(|(n, _)| *n == t.node) || g.node(t.node).name == "flatten"), "{kernels:?}");
}

/// Every kernel variant compiles on this device (f32 and, where the
/// adapter has shader-f16, f16 weights).
#[test]
fn every_kernel_compiles() {
    let gpu = gpu_or_skip!();
    assert!(pollster::block_on(gpu.compile_all_kernels()).unwrap() > 10);
    if let Ok(g16) = GpuBackend::new(GpuOptions { f16: true, ..Default::default() })
        && g16.f16()
    {
        pollster::block_on(g16.compile_all_kernels()).unwrap();
    }
}
