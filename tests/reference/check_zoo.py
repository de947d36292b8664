"""Every zoo model through `tessera run` equals onnxruntime on the same ONNX
export within 1e-4 relative (issue 2, item 10).

The model goes out through `tessera export` (Tessera's ONNX writer), the
same seeded input goes to both runtimes, and the outputs are compared with
the metric Tessera uses everywhere: max |a-b| / max(|b|, 1e-3 * max|b|).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

MODELS = ["lenet", "alexnet", "vgg16", "resnet50", "mobilenetv2", "yolov2", "yolov2-tiny"]


def rel_diff(a, b):
    # Max-norm relative error, as Tensor::max_rel_diff: max|a-b| / max|b|.
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", required=True)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            onnx_path = os.path.join(tmp, f"{name}.onnx")
            subprocess.run([args.tessera, "export", name, onnx_path], check=True)
            sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
            inp = sess.get_inputs()[0]
            x = np.random.default_rng(42).standard_normal(inp.shape).astype(np.float32)
            if name == "lenet":
                x = np.abs(x)  # pixel-like input
            ref = sess.run(None, {inp.name: x})[0]
            in_path, out_path = os.path.join(tmp, "in.npy"), os.path.join(tmp, "out.npy")
            np.save(in_path, x)
            subprocess.run([args.tessera, "run", name, "--input", in_path, "--output", out_path], check=True)
            got = np.load(out_path)
            d = rel_diff(got, ref) if got.shape == ref.shape else float("inf")
            ok = d <= args.tol
            print(f"{'ok  ' if ok else 'FAIL'} {name:<12} shape {tuple(got.shape)} max rel diff {d:.2e}")
            if not ok:
                failures.append(name)
    if failures:
        print("models differing from onnxruntime:", ", ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
