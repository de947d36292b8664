//! Zoo models on the GPU against the CPU backend, as the runtime compiles
//! them (after `passes::optimize`). The small ones run by default; the
//! large ones (minutes on a software rasteriser) are `#[ignore]`d:
//! `cargo test --release -p tessera-gpu --test models -- --include-ignored`.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{check, inputs_for};
use tessera_graph::rng::Rng;
use tessera_graph::{passes, zoo, Tensor};
use tessera_gpu::{backend_or_cpu, GemmTile, GpuBackend, GpuOptions, TileChoice};
use tessera_kernels::{Backend, KernelError};

const TOL: f32 = 1e-3;

fn model(gpu: &GpuBackend, name: &str) {
    let g = passes::optimize(&zoo::build(name).unwrap()).unwrap();
    let x = inputs_for(&g, &mut Rng::new(42));
    let t = std::time::Instant::now();
    let d = check(gpu, &g, &x, TOL, name);
    eprintln!("{name}: relative error {d:.2e} ({:.1} s incl. CPU reference)", t.elapsed().as_secs_f64());
}

/// The trained LeNet classifies the bundled MNIST digits exactly as the
/// CPU backend does, unoptimised and optimised.
#[test]
fn lenet_matches_cpu_on_mnist() {
    let gpu = gpu_or_skip!();
    let digits = zoo::test_digits().unwrap();
    let raw = zoo::build("lenet").unwrap();
    for g in [raw.clone(), passes::optimize(&raw).unwrap()] {
        let mut exe = gpu.compile(&g).unwrap();
        let mut cpu = common::cpu().compile(&g).unwrap();
        let mut correct = 0;
        for d in digits.iter().take(64) {
            let x = std::slice::from_ref(&d.image);
            let (a, b) = (exe.run(x).unwrap().remove(0), cpu.run(x).unwrap().remove(0));
            assert!(a.max_rel_diff(&b) <= TOL);
            assert_eq!(a.argmax(), b.argmax());
            correct += (a.argmax() == d.label as usize) as usize;
        }
        assert!(correct >= 60, "{correct}/64 digits right");
    }
}

#[test]
fn mobilenetv2() {
    let gpu = gpu_or_skip!();
    model(&gpu, "mobilenetv2");
}

/// Tiles measured on the device (what hardware GPUs use by default), and
/// the widest tile with K split in two everywhere, Winograd on every 3x3
/// stride-1 layer: still the CPU's results on whole models.
#[test]
fn measured_and_wide_tiles_on_zoo_models() {
    let Some(_) = common::gpu() else { return };
    let measured = GpuBackend::new(GpuOptions { tiles: TileChoice::Measured, ..Default::default() }).unwrap();
    model(&measured, "mobilenetv2");
    assert!(measured.tile_measurements().len() > 5);
    let wide = GpuBackend::new(GpuOptions { tiles: TileChoice::Fixed(GemmTile::new(8, 8).split(2).winograd()), ..Default::default() }).unwrap();
    model(&wide, "resnet50");
}

#[test]
fn yolov2_tiny() {
    let gpu = gpu_or_skip!();
    model(&gpu, "yolov2-tiny");
}

#[test]
fn alexnet() {
    let gpu = gpu_or_skip!();
    model(&gpu, "alexnet");
}

#[test]
fn resnet50() {
    let gpu = gpu_or_skip!();
    model(&gpu, "resnet50");
}

#[test]
#[ignore = "slow on a software GPU (vgg16 ~31 GFLOP)"]
fn vgg16() {
    let gpu = gpu_or_skip!();
    model(&gpu, "vgg16");
}

#[test]
#[ignore = "slow on a software GPU (yolov2 ~35 GFLOP)"]
fn yolov2() {
    let gpu = gpu_or_skip!();
    model(&gpu, "yolov2");
}

/// f16 weights, where the adapter has shader-f16: close to the CPU (f32)
/// within the looser tolerance the f16 path promises.
#[test]
fn f16_weights_stay_accurate() {
    let Some(_) = common::gpu() else { return };
    let gpu = GpuBackend::new(GpuOptions { f16: true, ..Default::default() }).unwrap();
    if !gpu.f16() {
        eprintln!("SKIP: adapter has no shader-f16");
        return;
    }
    // YOLOv2-tiny: its 3x3 layers run as Winograd, on f16 transformed filters.
    for name in ["lenet", "mobilenetv2", "yolov2-tiny"] {
        let g = passes::optimize(&zoo::build(name).unwrap()).unwrap();
        let x = inputs_for(&g, &mut Rng::new(7));
        let d = check(&gpu, &g, &x, 2e-2, &format!("{name} f16"));
        eprintln!("{name} f16 weights: relative error {d:.2e}");
        assert!(d > 0.0);
    }
}

/// No adapter → the CPU backend with a reason; a lost device → the graph
/// moves to the CPU and still gives the right answer.
#[test]
fn fallbacks_to_cpu() {
    let Some(_) = common::gpu() else { return };
    let (be, reason) = backend_or_cpu(GpuOptions { adapter_name: Some("no-such-gpu".into()), ..Default::default() }, 1);
    assert!(be.gpu().is_none());
    let reason = reason.expect("a reason");
    assert!(reason.contains("no GPU adapter matching 'no-such-gpu'"), "{reason}");
    assert!(be.name().starts_with("cpu"));
    let notes = be.take_notes();
    assert!(notes.len() == 1 && notes[0].contains("GPU not used") && notes[0].contains("no-such-gpu"), "{notes:?}");

    // A layer over the storage binding limit: that graph runs on the CPU,
    // with a note; the others stay on the GPU.
    let small = GpuBackend::new(GpuOptions { binding_limit: Some(16 * 1024), ..Default::default() }).unwrap();
    let be = tessera_gpu::GpuOrCpu::new(tessera_gpu::Selected::Gpu(small), 1);
    let g = zoo::build("lenet").unwrap();
    let x = vec![Tensor::full(g.input_shape(), 0.5)];
    let want = tessera_kernels::CpuBackend::new(1).compile(&g).unwrap().run(&x).unwrap();
    let got = be.compile(&g).unwrap().run(&x).unwrap();
    assert!(got[0].max_rel_diff(&want[0]) <= TOL);
    let notes = be.take_notes();
    assert!(notes.len() == 1 && notes[0].contains("binding limit") && notes[0].contains("on the CPU"), "{notes:?}");
    assert!(be.gpu().is_some() && be.name().starts_with("gpu"), "one graph over a limit does not retire the GPU");

    let (be, reason) = backend_or_cpu(GpuOptions::default(), 1);
    assert!(reason.is_none(), "{reason:?}");
    let g = zoo::build("lenet").unwrap();
    let x = vec![Tensor::full(g.input_shape(), 0.5)];
    let mut exe = be.compile(&g).unwrap();
    let mut other = be.compile(&g).unwrap();
    // A clone (another peer on the same GPU) keeps its own notes.
    let be2 = be.clone();
    let mut exe2 = be2.compile(&g).unwrap();
    let before = exe.run(&x).unwrap();
    assert!(be.take_notes().is_empty());
    let gpu = be.gpu().unwrap().clone();
    gpu.simulate_device_loss();
    // The failed run is repeated on the CPU: the caller sees no error, on
    // the sync and the async path alike.
    let after = exe.run(&x).unwrap();
    assert!(after[0].max_rel_diff(&before[0]) <= TOL);
    let again = tessera_kernels::ready_now(exe.run_async(&x)).expect("native runs complete at once").unwrap();
    assert!(again[0].max_rel_diff(&before[0]) <= TOL);
    other.run(&x).unwrap();
    // One note for the lost device, however many graphs notice it.
    let notes = be.take_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("lost") && notes[0].contains("computing on the CPU"), "{notes:?}");
    assert!(be.take_notes().is_empty(), "notes are drained");
    // A clone (another peer) reports the loss itself, as soon as it is
    // known (the browser learns of it from a callback, between runs).
    let notes2 = be2.take_notes();
    assert!(notes2.len() == 1 && notes2[0].contains("lost"), "the clone reports the loss itself: {notes2:?}");
    assert!(exe2.run(&x).unwrap()[0].max_rel_diff(&before[0]) <= TOL);
    assert!(be2.take_notes().is_empty(), "one note per clone");
    assert!(be.gpu().is_none());
    assert!(be.name().starts_with("cpu") && be.name().ends_with("(GPU lost)"), "{}", be.name());
    // Later graphs compile straight for the CPU.
    let mut late = be.compile(&g).unwrap();
    assert!(late.run(&x).unwrap()[0].max_rel_diff(&before[0]) <= TOL);
    // A plain GPU executable reports the lost device as a Device error.
    match gpu.compile(&g).and_then(|mut e| e.run(&x)) {
        Err(KernelError::Device { .. }) => {}
        other => panic!("expected a device error, got {:?}", other.map(|_| ())),
    }
}
