//! ONNX backend conformance, tract style: every case named in
//! `tests/onnx/node-manifest.txt` (ONNX node tests) and
//! `tests/onnx/pytorch-manifest.txt` (PyTorch-converted tests) must import
//! and run on the CPU backend within 1e-4 relative of the expected output.
//!
//! Data: set `TESSERA_ONNX_NODE_TESTS` to the `onnx/backend/test/data`
//! directory of the onnx 1.22.0 wheel (`tests/onnx/fetch.sh` prints it after
//! fetching; the directory of an installed `onnx` package works too). The
//! test passes with a notice when it is not set.
//!
//! Each case feeds graph input 0 at run time and every other input as a
//! constant (Tessera graphs hold their weights), as onnxruntime would see
//! them after constant folding. All failures are reported together.
//!
//! `cargo test -p tessera-onnx --test conformance -- --ignored survey`
//! runs every case in the data set and lists which pass (to grow the
//! manifests).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use prost::Message;
use tessera_graph::Tensor;
use tessera_kernels::{Backend, CpuBackend};
use tessera_onnx::proto::{ModelProto, TensorProto};
use tessera_onnx::{import_model, tensor_from_proto, ImportOptions};

const RTOL: f32 = 1e-4;
const ATOL: f32 = 1e-6;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `(node dir, pytorch-converted dir)` from the environment.
fn data_dirs() -> Option<(PathBuf, PathBuf)> {
    let root = PathBuf::from(std::env::var_os("TESSERA_ONNX_NODE_TESTS")?);
    // Either the `data` directory or its `node` sub-directory.
    let data = if root.join("node").is_dir() { root } else { root.parent()?.to_path_buf() };
    Some((data.join("node"), data.join("pytorch-converted")))
}

fn manifest(name: &str) -> Vec<String> {
    let path = repo().join("tests/onnx").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

fn read_pb(path: &Path) -> Result<TensorProto, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    TensorProto::decode(bytes.as_slice()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs one case directory; `Err` says what went wrong.
fn run_case(dir: &Path, backend: &CpuBackend) -> Result<(), String> {
    let bytes = std::fs::read(dir.join("model.onnx")).map_err(|e| format!("model.onnx: {e}"))?;
    let mut model = ModelProto::decode(bytes.as_slice()).map_err(|e| format!("model.onnx: {e}"))?;
    let set = dir.join("test_data_set_0");
    let graph = model.graph.as_mut().ok_or("model has no graph")?;
    let inits: Vec<String> = graph.initializer.iter().filter_map(|t| t.name.clone()).collect();
    let runtime: Vec<String> = graph.input.iter().filter_map(|v| v.name.clone()).filter(|n| !inits.contains(n)).collect();
    let mut x0 = None;
    let mut opts = ImportOptions::default();
    for (k, name) in runtime.iter().enumerate() {
        let p = set.join(format!("input_{k}.pb"));
        if !p.exists() {
            // An optional input left out by the test.
            graph.input.retain(|v| v.name.as_deref() != Some(name));
            continue;
        }
        let mut t = read_pb(&p)?;
        if k == 0 {
            let tensor = tensor_from_proto(&t).map_err(|e| format!("input 0: {e}"))?;
            opts.input_shapes.push((name.clone(), tensor.shape().to_vec()));
            x0 = Some(tensor);
        } else {
            t.name = Some(name.clone());
            graph.initializer.push(t);
        }
    }
    let x0 = x0.ok_or("the case has no run-time input")?;
    let mut expected = Vec::new();
    for k in 0.. {
        let p = set.join(format!("output_{k}.pb"));
        if !p.exists() {
            break;
        }
        expected.push(tensor_from_proto(&read_pb(&p)?).map_err(|e| format!("output {k}: {e}"))?);
    }
    let g = import_model(model, &opts).map_err(|e| format!("import: {e}"))?;
    let mut exe = backend.compile(&g).map_err(|e| format!("compile: {e}"))?;
    let got = exe.run(&[x0]).map_err(|e| format!("run: {e}"))?;
    if got.len() != expected.len() {
        return Err(format!("{} outputs, expected {}", got.len(), expected.len()));
    }
    for (k, (a, b)) in got.iter().zip(&expected).enumerate() {
        compare(a, b).map_err(|e| format!("output {k}: {e}"))?;
    }
    Ok(())
}

/// Within `RTOL` relative (Tessera's `max_rel_diff`), or within `ATOL` +
/// `RTOL`·|expected| element-wise for outputs of tiny values.
fn compare(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!("shape {:?}, expected {:?}", got.shape(), want.shape()));
    }
    // Non-finite values must match exactly (max_rel_diff treats inf vs
    // anything as NaN, which compares as "not worse").
    for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
        let finite = a.is_finite() && b.is_finite();
        if !(finite || a == b || a.is_nan() && b.is_nan()) {
            return Err(format!("element {i}: got {a}, expected {b}"));
        }
    }
    let rel = got.max_rel_diff(want);
    if rel <= RTOL {
        return Ok(());
    }
    let mut worst = (0usize, 0f32);
    for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
        if a.is_nan() && b.is_nan() || a == b {
            continue;
        }
        let excess = (a - b).abs() - (ATOL + RTOL * b.abs());
        let bad = excess > 0.0 || excess.is_nan();
        if bad && (excess > worst.1 || excess.is_nan()) {
            worst = (i, if excess.is_nan() { f32::INFINITY } else { excess });
        }
    }
    if worst.1 == 0.0 {
        return Ok(());
    }
    let i = worst.0;
    Err(format!("max relative difference {rel:.3e}; element {i}: got {}, expected {}", got.data()[i], want.data()[i]))
}

fn run_all(cases: &[(String, PathBuf)]) -> (usize, Vec<(String, String)>) {
    let backend = CpuBackend::new(1);
    let mut failures = Vec::new();
    let mut passed = 0;
    for (name, dir) in cases {
        let r = if !dir.is_dir() {
            Err(format!("no such case directory {}", dir.display()))
        } else {
            catch_unwind(AssertUnwindSafe(|| run_case(dir, &backend))).unwrap_or_else(|p| {
                let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                Err(format!("panicked: {msg}"))
            })
        };
        match r {
            Ok(()) => passed += 1,
            Err(e) => failures.push((name.clone(), e)),
        }
    }
    (passed, failures)
}

#[test]
fn onnx_backend_conformance() {
    let Some((node, pytorch)) = data_dirs() else {
        eprintln!("skipping ONNX conformance: set TESSERA_ONNX_NODE_TESTS to the onnx 1.22.0 backend test data (tests/onnx/fetch.sh)");
        return;
    };
    let mut cases: Vec<(String, PathBuf)> = manifest("node-manifest.txt").into_iter().map(|c| (c.clone(), node.join(&c))).collect();
    cases.extend(manifest("pytorch-manifest.txt").into_iter().map(|c| (c.clone(), pytorch.join(&c))));
    std::panic::set_hook(Box::new(|_| {}));
    let (passed, failures) = run_all(&cases);
    let _ = std::panic::take_hook();
    eprintln!("ONNX conformance: {passed} of {} manifest cases pass", cases.len());
    if !failures.is_empty() {
        let list: Vec<String> = failures.iter().map(|(c, e)| format!("  {c}: {e}")).collect();
        panic!("{} of {} ONNX conformance cases failed:\n{}", failures.len(), cases.len(), list.join("\n"));
    }
}

/// The `light` models (AlexNet, DenseNet-121, Inception v1/v2, ResNet-50,
/// ShuffleNet, SqueezeNet, VGG-19, ZFNet-512 as exported from Caffe2, opset
/// 9, weights generated by ConstantOfShape): real architectures end to end.
/// Input `arange(n) / n`, as the ONNX runner feeds them.
#[test]
fn onnx_light_models() {
    let Some((node, _)) = data_dirs() else {
        eprintln!("skipping ONNX light models: set TESSERA_ONNX_NODE_TESTS");
        return;
    };
    let light = node.parent().unwrap().join("light");
    let backend = CpuBackend::new(2);
    let mut failures = Vec::new();
    let names = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet", "vgg19", "zfnet512"];
    for name in names {
        let r = (|| -> Result<(), String> {
            let bytes = std::fs::read(light.join(format!("light_{name}.onnx"))).map_err(|e| e.to_string())?;
            let g = tessera_onnx::import(&bytes).map_err(|e| format!("import: {e}"))?;
            let shape = g.input_shape().to_vec();
            let n: usize = shape.iter().product();
            let x = Tensor::new(shape, (0..n).map(|i| (i as f64 / n as f64) as f32).collect()).unwrap();
            let want = tensor_from_proto(&read_pb(&light.join(format!("light_{name}_output_0.pb")))?).map_err(|e| e.to_string())?;
            let mut exe = backend.compile(&g).map_err(|e| format!("compile: {e}"))?;
            let got = exe.run(&[x]).map_err(|e| format!("run: {e}"))?;
            compare(&got[0], &want)
        })();
        if let Err(e) = r {
            failures.push(format!("  light_{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "ONNX light models failed:\n{}", failures.join("\n"));
}

/// Runs every case of the data set (not just the manifests) and prints one
/// line per case: `PASS name` or `FAIL name: why`.
#[test]
#[ignore]
fn survey() {
    let Some((node, pytorch)) = data_dirs() else {
        eprintln!("set TESSERA_ONNX_NODE_TESTS");
        return;
    };
    let mut cases = Vec::new();
    for (kind, dir) in [("node", &node), ("pytorch", &pytorch)] {
        let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        cases.extend(names.into_iter().map(|n| (format!("{kind}/{n}"), dir.join(&n))));
    }
    std::panic::set_hook(Box::new(|_| {}));
    let (passed, failures) = run_all(&cases);
    let _ = std::panic::take_hook();
    let failed: std::collections::HashMap<_, _> = failures.into_iter().collect();
    for (name, _) in &cases {
        match failed.get(name) {
            None => println!("PASS {name}"),
            Some(e) => println!("FAIL {name}: {}", e.replace('\n', " ")),
        }
    }
    eprintln!("{passed} of {} cases pass", cases.len());
}
