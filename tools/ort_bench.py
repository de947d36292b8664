"""Times an ONNX model in onnxruntime for `tessera bench` (the reference run).

Usage: python3 ort_bench.py MODEL.onnx THREADS RUNS
Prints one JSON object: {"ms": median latency, "reference": "onnxruntime X.Y"}.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    path, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = {}
    rng = np.random.default_rng(0)
    for i in sess.get_inputs():
        feeds[i.name] = rng.standard_normal(i.shape).astype(np.float32)
    for _ in range(2):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"ms": float(np.median(times)), "reference": f"onnxruntime {ort.__version__}"}))


if __name__ == "__main__":
    main()
