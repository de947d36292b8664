//! Bad input on the command line: unknown names, missing, garbage,
//! truncated and lying files, impossible arguments. Every case must end
//! with a non-zero exit and a clear error on stderr's first line
//! ("error: ..."), never a panic, and must leave no output file behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use tessera_graph::{npy, zoo, Tensor};

/// A scratch directory for this test binary's files.
fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-cli-errors-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(path: &Path, bytes: &[u8]) -> String {
    std::fs::write(path, bytes).unwrap();
    path.display().to_string()
}

/// An .npy header claiming `shape` (f32, C order) followed by `data` bytes.
fn npy_with(shape: &str, descr: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// Runs `tessera args`, checks the failure, returns stderr.
fn fails(args: &[&str], expect: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera")).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let what = format!("tessera {}", args.join(" "));
    assert!(!out.status.success(), "{what}: exit 0, stderr {err:?}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{what} panicked: {err}");
    let first = err.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{what}: no 'error:' line in {err:?}"));
    assert!(first.contains(expect), "{what}: {first:?} does not mention {expect:?}");
    // Our own errors are one line (clap's usage errors add a usage hint).
    if out.status.code() == Some(1) {
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{what}: {err}");
    }
    err
}

#[test]
fn bad_names_and_arguments() {
    fails(&["cost", "no-such-model"], "unknown model 'no-such-model'");
    fails(&["plan", "lenet", "--planner", "nosuch", "--devices", "2"], "unknown planner 'nosuch'");
    fails(&["plan", "lenet", "--planner", "modnn", "--devices", "pi9*2"], "unknown profile 'pi9'");
    fails(&["plan", "lenet", "--planner", "modnn", "--devices", "0"], "device count");
    fails(&["plan", "lenet", "--planner", "modnn", "--devices", "nano@fast"], "rate 'fast' needs a unit");
    fails(&["simulate", "--scenario", "nosuch"], "unknown scenario 'nosuch'");
    fails(&["bench", "cpu", "--threads", "0"], "at least 1");
    fails(&["bench", "cpu", "--tiles", "8x8", "--models", "lenet"], "--tiles applies to bench gpu only");
    fails(&["bench", "gpu", "--tiles", "3x3"], "bad GEMM tile '3x3'");
    fails(&["peer", "http://127.0.0.1:9/x", "--link", "5"], "expected MBPS,LATENCY_MS");
    fails(&["frobnicate"], "unrecognized subcommand");
}

#[test]
fn bad_model_files() {
    let d = dir();
    fails(&["cost", &write(&d.join("garbage.onnx"), b"not a model at all")], "not a valid ONNX model");
    let full = tessera_onnx::export(&zoo::build("lenet").unwrap());
    let cut = write(&d.join("truncated.onnx"), &full[..full.len() / 2]);
    fails(&["cost", &cut], "cannot import");
    fails(&["cost", &d.join("missing.onnx").display().to_string()], "missing.onnx");
    fails(&["export", "lenet", &d.join("no/such/dir/x.onnx").display().to_string()], "cannot write");
}

#[test]
fn bad_tensors_leave_no_output() {
    let d = dir();
    let out = d.join("out.npy");
    let out_s = out.display().to_string();
    let cases: Vec<(String, &str)> = vec![
        (d.join("missing.npy").display().to_string(), "missing.npy"),
        (write(&d.join("garbage.npy"), b"garbage"), "not an .npy file"),
        // A header promising 784 floats, followed by 10 bytes.
        (write(&d.join("short.npy"), &npy_with("(1, 1, 28, 28)", "<f4", &[0; 10])), "needs 784 f32 values, file holds 10 bytes"),
        // A header promising a petabyte: refused before any allocation.
        (write(&d.join("huge.npy"), &npy_with("(1000000000, 1000000000)", "<f4", &[])), "file holds 0 bytes"),
        // f64 data where f32 is required.
        (write(&d.join("f64.npy"), &npy_with("(1, 1, 28, 28)", "<f8", &[0; 784 * 8])), "is not f32"),
        // A valid tensor of the wrong shape.
        (write(&d.join("shape.npy"), &npy::encode(&Tensor::zeros(&[1, 3, 28, 28]))), "shape"),
    ];
    for (input, expect) in cases {
        fails(&["run", "lenet", "--input", &input, "--output", &out_s], expect);
        assert!(!out.exists(), "a failed run left {out_s} behind (input {input})");
    }
    // A plan that is not JSON, and one for another model.
    let x = write(&d.join("x.npy"), &npy::encode(&Tensor::zeros(&[1, 1, 28, 28])));
    let plan = write(&d.join("plan.json"), b"{ not json");
    fails(&["run", "lenet", "--input", &x, "--output", &out_s, "--plan", &plan], "plan");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&d);
}
