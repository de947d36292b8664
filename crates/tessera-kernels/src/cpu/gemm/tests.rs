//! GEMM against a naive triple loop, for every ISA this machine runs.

use tessera_graph::rng::Rng;
use tessera_graph::Activation;

use super::*;

fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], bias: Option<&[f32]>, act: Activation) -> Vec<f32> {
    naive_res(m, n, k, a, b, bias, None, act)
}

/// With a residual laid out `m × n`.
#[allow(clippy::too_many_arguments)]
fn naive_res(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], bias: Option<&[f32]>, res: Option<&[f32]>, act: Activation) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += a[i * k + p] as f64 * b[p * n + j] as f64;
            }
            c[i * n + j] = act.apply(s as f32 + bias.map_or(0.0, |b| b[i]) + res.map_or(0.0, |r| r[i * n + j]));
        }
    }
    c
}

fn close(got: &[f32], want: &[f32], k: usize) -> Result<(), String> {
    let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        // Errors grow with the dot length; inputs are uniform in [-1, 1).
        let tol = 1e-5 * (k as f32).sqrt().max(1.0) * scale.max(1.0);
        if (g - w).abs() > tol || g.is_nan() != w.is_nan() {
            return Err(format!("element {i}: got {g}, want {w}"));
        }
    }
    Ok(())
}

const ACTS: [Activation; 5] = [
    Activation::Identity,
    Activation::Relu,
    Activation::LeakyRelu { alpha: 0.1 },
    Activation::Clip { min: -0.5, max: 0.5 },
    Activation::Sigmoid,
];

#[test]
fn gemm_matches_naive_for_many_shapes_on_every_isa() {
    let pars = [Par::new(1).unwrap(), Par::new(2).unwrap()];
    let mut rng = Rng::new(7);
    let dims = [1usize, 2, 3, 5, 7, 8, 13, 17, 31, 48, 49, 64, 97, 130];
    for isa in Isa::all_available() {
        for case in 0..120 {
            let (m, n, k) = if case < 40 {
                (dims[case % dims.len()], dims[(case * 7 + 3) % dims.len()], dims[(case * 5 + 1) % dims.len()])
            } else {
                (rng.range(1, 70), rng.range(1, 700), rng.range(1, 600))
            };
            let a = rng.fill(m * k, 1.0);
            let b = rng.fill(k * n, 1.0);
            let bias = rng.fill(m, 1.0);
            let act = ACTS[case % ACTS.len()];
            let with_bias = case % 3 != 0;
            let bias = with_bias.then_some(bias.as_slice());
            let res = (case % 4 == 1).then(|| rng.fill(m * n, 1.0));
            let want = naive_res(m, n, k, &a, &b, bias, res.as_deref(), act);
            let pa = PackedA::pack(isa, m, k, &a, k);
            // The same B read in place (whole panels inside `n`, the rest packed).
            let offs: Vec<usize> = (0..k).map(|p| p * n).collect();
            let direct = OffsetRows::new(&b, &offs, n);
            let matrix = Matrix { data: &b, ld: n };
            for (pi, par) in pars.iter().enumerate() {
                let src: &dyn BSource = if (case + pi) % 2 == 0 { &matrix } else { &direct };
                // ldc > n: C is a window of a wider matrix; the margin must stay untouched.
                let ldc = n + 3;
                let mut c = vec![f32::NAN; m * ldc];
                // The residual shares C's row stride.
                let wide_res: Option<Vec<f32>> = res.as_ref().map(|r| (0..m * ldc).map(|i| if i % ldc < n { r[i / ldc * n + i % ldc] } else { f32::NAN }).collect());
                gemm(isa, par, &pa, src, n, &mut c, ldc, Epilogue { bias, residual: wide_res.as_deref(), act });
                let got: Vec<f32> = (0..m).flat_map(|i| c[i * ldc..i * ldc + n].to_vec()).collect();
                close(&got, &want, k).unwrap_or_else(|e| panic!("{isa:?} m={m} n={n} k={k} act={act:?} threads={}: {e}", par.threads()));
                assert!((0..m).all(|i| c[i * ldc + n..i * ldc + ldc].iter().all(|v| v.is_nan())), "wrote past n");
            }
        }
    }
}

#[test]
fn transposed_source_is_b_transposed() {
    let par = Par::new(1).unwrap();
    let mut rng = Rng::new(3);
    for isa in Isa::all_available() {
        for &(m, n, k) in &[(10usize, 3usize, 37usize), (33, 20, 300), (5, 1, 1000), (8, 60, 9)] {
            let a = rng.fill(m * k, 1.0);
            let x = rng.fill(n * k, 1.0); // n × k
            let b: Vec<f32> = (0..k * n).map(|i| x[(i % n) * k + i / n]).collect();
            let want = naive(m, n, k, &a, &b, None, Activation::Identity);
            let pa = PackedA::pack(isa, m, k, &a, k);
            let mut c = vec![0.0; m * n];
            gemm(isa, &par, &pa, &Transposed { data: &x, k }, n, &mut c, n, Epilogue::default());
            close(&c, &want, k).unwrap_or_else(|e| panic!("{isa:?} {m}x{n}x{k}: {e}"));
        }
    }
}

#[test]
fn empty_k_gives_bias_and_activation() {
    let par = Par::new(1).unwrap();
    let pa = PackedA::pack(Isa::Scalar, 2, 0, &[], 0);
    let mut c = vec![9.0; 6];
    gemm(Isa::Scalar, &par, &pa, &Matrix { data: &[], ld: 3 }, 3, &mut c, 3, Epilogue { bias: Some(&[-1.0, 2.0]), residual: None, act: Activation::Relu });
    assert_eq!(c, vec![0.0, 0.0, 0.0, 2.0, 2.0, 2.0]);
}

/// `cargo test --release -p tessera-kernels gemm_speed -- --ignored --nocapture`
#[test]
#[ignore]
fn gemm_speed() {
    let par = Par::new(1).unwrap();
    let mut rng = Rng::new(1);
    for isa in Isa::all_available() {
        for &(m, n, k) in &[(64usize, 3136usize, 576usize), (256, 784, 2304), (512, 196, 4608), (512, 49, 4608), (2048, 49, 512), (64, 50176, 27), (128, 3136, 64)] {
            let a = rng.fill(m * k, 1.0);
            let b = rng.fill(k * n, 1.0);
            let pa = PackedA::pack(isa, m, k, &a, k);
            let mut c = vec![0.0; m * n];
            let src = Matrix { data: &b, ld: n };
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                gemm(isa, &par, &pa, &src, n, &mut c, n, Epilogue { act: Activation::Relu, ..Default::default() });
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!("{isa:?} m={m} n={n} k={k}: {:.2} ms, {:.1} GFLOP/s", best * 1e3, 2.0 * (m * n * k) as f64 / best / 1e9);
        }
    }
}

/// Micro-kernel throughput on L1-resident panels (the ceiling for GEMM):
/// `cargo test --release -p tessera-kernels kernel_peak -- --ignored --nocapture`
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore]
fn kernel_peak() {
    fn peak<K: Micro>(name: &str) {
        let g = K::GEO;
        let k = 256;
        let a = vec![0.5f32; k * g.mr];
        let b = vec![0.25f32; k * g.nr];
        let mut c = vec![0.0f32; g.mr * g.nr];
        let iters = 200_000;
        let t = std::time::Instant::now();
        for i in 0..iters {
            let tile = Tile { k, a: a.as_ptr(), b: b.as_ptr(), offs: std::ptr::null(), bw: g.nr, c: c.as_mut_ptr(), ldc: g.nr, rows: g.mr, cols: g.nr, accumulate: i > 0, bias: std::ptr::null(), res: std::ptr::null(), act: VecAct::None };
            unsafe { K::tile(&tile) };
        }
        let s = t.elapsed().as_secs_f64();
        println!("{name}: {:.1} GFLOP/s", 2.0 * (k * g.mr * g.nr * iters) as f64 / s / 1e9);
    }
    if Isa::Avx512.is_available() {
        peak::<avx512::Avx512>("avx512 8x48");
    }
    if Isa::Avx2.is_available() {
        peak::<avx2::Avx2>("avx2 6x16");
    }
}
