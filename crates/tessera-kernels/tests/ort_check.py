#!/usr/bin/env python3
"""Checks CPU-backend outputs against onnxruntime, op by op.

Usage: ort_check.py DIR

DIR holds cases.json (written by the Rust test `ort_oracle` in
src/cpu/tests.rs) and the .npy files it names: for every case the inputs,
any constant operands (weights, pads, sizes ...), and the backend's output.
Each case becomes a one-node ONNX model, runs on onnxruntime's CPU provider,
and is compared with the backend's output by Tessera's relative metric
(|a-b| / max(|b|, 1e-3 max|b|)). Prints one line per failure and a summary;
exits 1 if any case is off by more than its tolerance. A model onnxruntime
itself refuses is reported and skipped.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def rel_diff(a, b):
    if a.shape != b.shape:
        return float("inf")
    scale = float(np.abs(b).max()) if b.size else 0.0
    floor = max(scale * 1e-3, 1e-12)
    return float((np.abs(a.astype(np.float64) - b) / np.maximum(np.abs(b), floor)).max()) if b.size else 0.0


def run_case(d, case):
    load = lambda name: np.load(os.path.join(d, name))
    inputs = [load(f) for f in case["inputs"]]
    graph_inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, list(x.shape)) for i, x in enumerate(inputs)]
    names = [f"x{i}" for i in range(len(inputs))]
    inits = []
    for cname, cfile in case.get("consts", []):
        arr = load(cfile)
        if cname.startswith("i64:"):
            cname, arr = cname[4:], arr.astype(np.int64)
        inits.append(numpy_helper.from_array(arr, cname))
        names.append(cname)
    node = helper.make_node(case["op"], names, ["y"], **case.get("attrs", {}))
    g = helper.make_graph([node], "case", graph_inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", case["opset"])])
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    want = s.run(None, {f"x{i}": x for i, x in enumerate(inputs)})[0]
    got = load(case["out"])
    return rel_diff(got, want)


def main():
    d = sys.argv[1]
    cases = json.load(open(os.path.join(d, "cases.json")))
    bad = 0
    worst = {}
    refused = 0
    for case in cases:
        try:
            diff = run_case(d, case)
        except Exception as e:  # onnxruntime rejects the model: not a mismatch
            refused += 1
            print(f"REFUSED {case['name']}: {str(e).splitlines()[0][:160]}")
            continue
        worst[case["op"]] = max(worst.get(case["op"], 0.0), diff)
        if not diff <= case["tol"]:
            bad += 1
            print(f"MISMATCH {case['name']}: rel diff {diff:.3g} > {case['tol']:.0e}")
    for op, w in sorted(worst.items()):
        print(f"{op:<20} worst rel diff {w:.2e}")
    print(f"{len(cases) - bad - refused}/{len(cases)} cases match onnxruntime {ort.__version__} ({refused} refused by it)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
