"""Times an ONNX model (a `tessera export` of a zoo model) in PyTorch, for
`tessera bench gpu` (the reference run on the same GPU, in the same run).

Usage: python3 torch_bench.py MODEL.onnx RUNS
Prints one JSON object: {"ms": median latency, "reference": "...", ...}.

Needs only torch: the ONNX file is decoded by the small protobuf reader
below (the benchmark machine has no package registry, so no `onnx`), and
the graph runs as torch.nn.functional calls. Batch 1, fp32, TF32 off.
On CUDA the graph is also captured as a CUDA graph (no Python overhead per
op) and the faster of eager and graph replay is reported.
"""
import json
import math
import struct
import sys
import time

import torch
import torch.nn.functional as F

# ---------- a minimal protobuf reader for the ONNX subset Tessera exports ----------


def _varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v, i


def _fields(b):
    """Yields (field number, wire type, value) of one message."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield f, wt, v


def _signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def _packed_varints(v, wt):
    if wt == 0:
        return [_signed(v)]
    out, i = [], 0
    while i < len(v):
        x, i = _varint(v, i)
        out.append(_signed(x))
    return out


def _tensor(b):
    dims, dtype, floats, ints, raw, name = [], 1, [], [], None, ""
    for f, wt, v in _fields(b):
        if f == 1:
            dims += _packed_varints(v, wt)
        elif f == 2:
            dtype = v
        elif f == 4:
            floats += list(struct.unpack(f"<{len(v) // 4}f", v)) if wt == 2 else [struct.unpack("<f", v)[0]]
        elif f == 7:
            ints += _packed_varints(v, wt)
        elif f == 8:
            name = v.decode()
        elif f == 9:
            raw = v
    if dtype == 1:
        data = list(struct.unpack(f"<{len(raw) // 4}f", raw)) if raw is not None else floats
        t = torch.tensor(data, dtype=torch.float32)
    elif dtype == 7:
        data = list(struct.unpack(f"<{len(raw) // 8}q", raw)) if raw is not None else ints
        t = torch.tensor(data, dtype=torch.int64)
    else:
        raise ValueError(f"tensor {name}: data type {dtype}")
    return name, t.reshape(dims) if dims else t.reshape(())


def _attr(b):
    name, val, ints, floats = "", None, [], []
    for f, wt, v in _fields(b):
        if f == 1:
            name = v.decode()
        elif f == 2:
            val = struct.unpack("<f", v)[0]
        elif f == 3:
            val = _signed(v)
        elif f == 4:
            val = v.decode()
        elif f == 7:
            floats += list(struct.unpack(f"<{len(v) // 4}f", v)) if wt == 2 else [struct.unpack("<f", v)[0]]
        elif f == 8:
            ints += _packed_varints(v, wt)
    if val is None:
        val = ints if ints else floats
    return name, val


def _value_info(b):
    name, dims = "", []
    for f, _, v in _fields(b):
        if f == 1:
            name = v.decode()
        elif f == 2:  # TypeProto
            for f2, _, v2 in _fields(v):
                if f2 == 1:  # tensor_type
                    for f3, _, v3 in _fields(v2):
                        if f3 == 2:  # shape
                            for f4, _, v4 in _fields(v3):
                                if f4 == 1:  # dim
                                    for f5, _, v5 in _fields(v4):
                                        if f5 == 1:
                                            dims.append(v5)
    return name, dims


def load(path):
    model = open(path, "rb").read()
    graph = next(v for f, _, v in _fields(model) if f == 7)
    nodes, inits, inputs, outputs = [], {}, [], []
    for f, _, v in _fields(graph):
        if f == 1:
            n = {"in": [], "out": [], "op": "", "attrs": {}}
            for f2, _, v2 in _fields(v):
                if f2 == 1:
                    n["in"].append(v2.decode())
                elif f2 == 2:
                    n["out"].append(v2.decode())
                elif f2 == 4:
                    n["op"] = v2.decode()
                elif f2 == 5:
                    k, a = _attr(v2)
                    n["attrs"][k] = a
            nodes.append(n)
        elif f == 5:
            k, t = _tensor(v)
            inits[k] = t
        elif f == 11:
            inputs.append(_value_info(v))
        elif f == 12:
            outputs.append(_value_info(v)[0])
    return nodes, inits, [i for i in inputs if i[0] not in inits], outputs


# ---------- ONNX ops as torch.nn.functional ----------


def _pads2d(p):
    # ONNX (top, left, bottom, right) -> F.pad order (left, right, top, bottom)
    return [p[1], p[3], p[0], p[2]]


def _pool(x, a, is_max):
    k = a["kernel_shape"]
    s = a.get("strides", [1, 1])
    p = a.get("pads", [0, 0, 0, 0])
    d = a.get("dilations", [1, 1])
    ceil = bool(a.get("ceil_mode", 0))
    if p[0] == p[2] and p[1] == p[3] and 2 * p[0] <= k[0] and 2 * p[1] <= k[1] and (is_max or d == [1, 1]):
        if is_max:
            return F.max_pool2d(x, k, s, [p[0], p[1]], d, ceil_mode=ceil)
        return F.avg_pool2d(x, k, s, [p[0], p[1]], ceil_mode=ceil, count_include_pad=bool(a.get("count_include_pad", 0)))
    fill = -math.inf if is_max else 0.0
    x = F.pad(x, _pads2d(p), value=fill)
    if is_max:
        return F.max_pool2d(x, k, s, 0, d, ceil_mode=ceil)
    return F.avg_pool2d(x, k, s, 0, ceil_mode=ceil, count_include_pad=True)


def run_node(n, env):
    a = n["attrs"]
    x = [env[i] if i else None for i in n["in"]]
    op = n["op"]
    if op == "Conv":
        p = a.get("pads", [0, 0, 0, 0])
        inp = x[0]
        if p[0] != p[2] or p[1] != p[3]:
            inp, pad = F.pad(inp, _pads2d(p)), [0, 0]
        else:
            pad = [p[0], p[1]]
        return F.conv2d(inp, x[1], x[2] if len(x) > 2 else None, a.get("strides", [1, 1]), pad, a.get("dilations", [1, 1]), a.get("group", 1))
    if op == "Gemm":
        return F.linear(x[0], x[1], x[2] if len(x) > 2 else None)
    if op == "MatMul":
        return torch.matmul(x[0], x[1])
    if op in ("Relu", "Sigmoid", "Tanh"):
        return {"Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh}[op](x[0])
    if op == "LeakyRelu":
        return F.leaky_relu(x[0], a.get("alpha", 0.01))
    if op == "HardSigmoid":
        return torch.clamp(a.get("alpha", 0.2) * x[0] + a.get("beta", 0.5), 0.0, 1.0)
    if op == "Clip":
        lo = float(x[1]) if len(x) > 1 and x[1] is not None else None
        hi = float(x[2]) if len(x) > 2 and x[2] is not None else None
        return torch.clamp(x[0], lo, hi)
    if op == "Identity":
        return x[0]
    if op == "MaxPool":
        return _pool(x[0], a, True)
    if op == "AveragePool":
        return _pool(x[0], a, False)
    if op == "GlobalAveragePool":
        return x[0].mean(dim=tuple(range(2, x[0].dim())), keepdim=True)
    if op == "GlobalMaxPool":
        return x[0].amax(dim=tuple(range(2, x[0].dim())), keepdim=True)
    if op in ("Add", "Sub", "Mul", "Div", "Max", "Min"):
        f = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "Max": torch.maximum, "Min": torch.minimum}[op]
        return f(x[0], x[1])
    if op == "PRelu":
        return torch.where(x[0] < 0, x[0] * x[1], x[0])
    if op == "BatchNormalization":
        return F.batch_norm(x[0], x[3], x[4], x[1], x[2], False, 0.0, a.get("epsilon", 1e-5))
    if op == "Concat":
        return torch.cat(x, dim=a["axis"])
    if op == "Flatten":
        ax = a.get("axis", 1)
        return x[0].reshape(math.prod(x[0].shape[:ax]), -1)
    if op == "Reshape":
        return x[0].reshape([int(v) for v in x[1].tolist()])
    if op == "Transpose":
        return x[0].permute(a["perm"])
    if op == "Softmax":
        return F.softmax(x[0], dim=a.get("axis", -1))
    if op == "Pad":
        pads = [int(v) for v in x[1].tolist()]
        r = len(pads) // 2
        tp = []
        for d in reversed(range(r)):
            tp += [pads[d], pads[d + r]]
        mode = a.get("mode", "constant")
        if mode == "constant":
            return F.pad(x[0], tp, value=float(x[2]) if len(x) > 2 and x[2] is not None else 0.0)
        return F.pad(x[0], tp[:4], mode={"reflect": "reflect", "edge": "replicate"}[mode])
    if op == "Slice":
        idx = [slice(None)] * x[0].dim()
        for s, e, ax in zip(x[1].tolist(), x[2].tolist(), x[3].tolist()):
            idx[ax] = slice(s, e)
        return x[0][tuple(idx)]
    if op == "Resize":
        if len(x) > 3 and x[3] is not None:
            size = [int(v) for v in x[3].tolist()][2:]
        else:
            size = [int(math.floor(d * s)) for d, s in zip(x[0].shape[2:], x[2].tolist()[2:])]
        return F.interpolate(x[0], size=size, mode="nearest")
    if op == "LRN":
        return F.local_response_norm(x[0], a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0))
    if op == "SpaceToDepth":
        b = a["blocksize"]
        n, c, h, w = x[0].shape
        t = x[0].reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
        return t.reshape(n, c * b * b, h // b, w // b)
    if op == "DepthToSpace":
        b = a["blocksize"]
        n, c, h, w = x[0].shape
        if a.get("mode", "DCR") == "CRD":
            t = x[0].reshape(n, c // (b * b), b, b, h, w).permute(0, 1, 4, 2, 5, 3)
        else:
            t = x[0].reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
        return t.reshape(n, c // (b * b), h * b, w * b)
    raise NotImplementedError(op)


def main():
    path, runs = sys.argv[1], int(sys.argv[2])
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    nodes, inits, inputs, outputs = load(path)
    consts = {k: v.to(dev) for k, v in inits.items()}
    gen = torch.Generator().manual_seed(0)
    feeds = {name: torch.randn(*dims, generator=gen).to(dev) for name, dims in inputs}

    def forward():
        env = dict(consts)
        env.update(feeds)
        for n in nodes:
            env[n["out"][0]] = run_node(n, env)
        return [env[o] for o in outputs]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def median_ms(fn):
        times = []
        for _ in range(runs):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        return times[len(times) // 2]

    with torch.inference_mode():
        for _ in range(3):
            forward()
        sync()
        eager = median_ms(forward)
        result = {"ms": eager, "eager_ms": eager}
        mode = "eager"
        if dev.type == "cuda":
            try:
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):
                        forward()
                torch.cuda.current_stream().wait_stream(s)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    forward()
                graph.replay()
                sync()
                replay = median_ms(graph.replay)
                result["cuda_graph_ms"] = replay
                if replay < eager:
                    result["ms"], mode = replay, "cuda graph"
            except Exception as e:  # capture is best effort
                result["cuda_graph_error"] = str(e)
        name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    result["reference"] = f"pytorch {torch.__version__} {dev.type} ({name}, fp32, TF32 off, {mode})"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
