#!/usr/bin/env python3
"""Train LeNet on MNIST with numpy only and export Tessera's test assets.

Produces, in --out (normally crates/tessera-graph/assets/):
  lenet-mnist.f32            trained weights, raw little-endian float32, no header,
                             concatenated in this order (44426 floats, 177704 bytes):
                             conv1.w [6,1,5,5], conv1.b [6], conv2.w [16,6,5,5], conv2.b [16],
                             conv3.w [120,16,4,4], conv3.b [120], fc1.w [84,120], fc1.b [84],
                             fc2.w [10,84], fc2.b [10]
                             (conv weights are PyTorch/ONNX [out_ch, in_ch, kh, kw];
                              fc weights are [out, in], y = x @ W.T + b)
  mnist-test-1k-images.idx3  first 1000 images of the official t10k set (uncompressed IDX)
  mnist-test-1k-labels.idx1  first 1000 labels of the official t10k set (uncompressed IDX)

The network is seed paper 000's LeNet (input = pixel/255.0, no mean/std normalisation):
  conv1 6x5x5 +ReLU -> maxpool 2 -> conv2 16x5x5 +ReLU -> maxpool 2 ->
  conv3 120x4x4 +ReLU -> fc1 120->84 +ReLU -> fc2 84->10 (logits, no softmax).

The Rust side (tessera-graph) loads these assets to run LeNet end to end and
checks its accuracy on the 1k subset; tools/check_lenet.py is an independent
numpy forward pass to compare against.

Usage:
  python3 tools/train_lenet.py --data /tmp/mnist/package/data \
      --out crates/tessera-graph/assets --epochs 10

--data is a folder with train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (optionally .gz). Deterministic
(fixed seed); Adam with mini-batches of 64; im2col convolutions in float32.
"""

import argparse
import gzip
import os
import struct
import sys
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SEED = 20240601
DTYPE = np.float32

# (name, shape) in the exact order of the exported weight file.
PARAM_ORDER = [
    ("conv1.w", (6, 1, 5, 5)), ("conv1.b", (6,)),
    ("conv2.w", (16, 6, 5, 5)), ("conv2.b", (16,)),
    ("conv3.w", (120, 16, 4, 4)), ("conv3.b", (120,)),
    ("fc1.w", (84, 120)), ("fc1.b", (84,)),
    ("fc2.w", (10, 84)), ("fc2.b", (10,)),
]


# ----------------------------------------------------------------------------- IDX I/O

def _open_maybe_gz(path):
    if os.path.exists(path):
        with open(path, "rb") as f:
            head = f.read(2)
        return gzip.open(path, "rb") if head == b"\x1f\x8b" else open(path, "rb")
    if os.path.exists(path + ".gz"):
        return gzip.open(path + ".gz", "rb")
    raise FileNotFoundError(path + "[.gz]")


def read_idx(path):
    """Read an IDX file (uint8 payload), gzipped or not. Returns a numpy array."""
    with _open_maybe_gz(path) as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not a uint8 IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: size mismatch")
    return arr.reshape(dims)


def write_idx_images(path, images):
    images = np.ascontiguousarray(images, dtype=np.uint8)
    n, h, w = images.shape
    with open(path, "wb") as f:
        f.write(struct.pack(">IIII", 0x00000803, n, h, w))
        f.write(images.tobytes())


def write_idx_labels(path, labels):
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">II", 0x00000801, labels.shape[0]))
        f.write(labels.tobytes())


def load_mnist(data_dir):
    def p(name):
        return os.path.join(data_dir, name)
    xtr = read_idx(p("train-images-idx3-ubyte"))
    ytr = read_idx(p("train-labels-idx1-ubyte"))
    xte = read_idx(p("t10k-images-idx3-ubyte"))
    yte = read_idx(p("t10k-labels-idx1-ubyte"))
    assert xtr.shape == (60000, 28, 28) and ytr.shape == (60000,)
    assert xte.shape == (10000, 28, 28) and yte.shape == (10000,)
    return xtr, ytr, xte, yte


def to_input(images_u8):
    """uint8 [N,28,28] -> float32 [N,1,28,28] = pixel/255."""
    return (images_u8.astype(DTYPE) / DTYPE(255.0))[:, None, :, :]


# ----------------------------------------------------------------------------- layers

def conv_forward(x, w, b):
    """Valid (no padding), stride-1 convolution via im2col.

    x [N,C,H,W], w [O,C,KH,KW], b [O] -> out [N,O,OH,OW], cache.
    """
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = h - kh + 1, wd - kw + 1
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))          # [N,C,OH,OW,KH,KW]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)
    wmat = w.reshape(o, c * kh * kw)
    out = cols @ wmat.T + b                                      # [N*OH*OW, O]
    out = out.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out), (x.shape, cols, w)


def conv_backward(dout, cache, need_dx=True):
    xshape, cols, w = cache
    n, c, h, wd = xshape
    o, _, kh, kw = w.shape
    oh, ow = h - kh + 1, wd - kw + 1
    d2 = dout.transpose(0, 2, 3, 1).reshape(n * oh * ow, o)
    dw = (d2.T @ cols).reshape(w.shape)
    db = d2.sum(axis=0)
    if not need_dx:
        return None, dw, db
    dcols = (d2 @ w.reshape(o, -1)).reshape(n, oh, ow, c, kh, kw)
    dcols = dcols.transpose(0, 3, 4, 5, 1, 2)                    # [N,C,KH,KW,OH,OW]
    dx = np.zeros(xshape, dtype=dout.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i:i + oh, j:j + ow] += dcols[:, :, i, j]
    return dx, dw, db


def maxpool_forward(x):
    """2x2 max pool, stride 2. x [N,C,H,W] with even H, W."""
    n, c, h, w = x.shape
    xr = x.reshape(n, c, h // 2, 2, w // 2, 2)
    out = xr.max(axis=(3, 5))
    return out, (xr, out)


def maxpool_backward(dout, cache):
    xr, out = cache
    n, c, h2, _, w2, _ = xr.shape
    # Route the gradient to the first maximum of each window only.
    flat = xr.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h2, w2, 4)
    idx = flat.argmax(axis=-1)
    dflat = np.zeros_like(flat)
    np.put_along_axis(dflat, idx[..., None], dout[..., None], axis=-1)
    dx = dflat.reshape(n, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return dx.reshape(n, c, h2 * 2, w2 * 2)


def relu(x):
    return np.maximum(x, 0, dtype=x.dtype)


# ----------------------------------------------------------------------------- model

def init_params(rng):
    """He-uniform weights (ReLU), zero biases, float32."""
    params = {}
    for name, shape in PARAM_ORDER:
        if name.endswith(".b"):
            params[name] = np.zeros(shape, dtype=DTYPE)
        else:
            fan_in = int(np.prod(shape[1:]))
            bound = np.sqrt(6.0 / fan_in)
            params[name] = rng.uniform(-bound, bound, size=shape).astype(DTYPE)
    return params


def forward(params, x, train=False):
    """x [N,1,28,28] float32 -> logits [N,10]. With train=True also returns caches."""
    c1, k1 = conv_forward(x, params["conv1.w"], params["conv1.b"])      # [N,6,24,24]
    a1 = relu(c1)
    p1, kp1 = maxpool_forward(a1)                                        # [N,6,12,12]
    c2, k2 = conv_forward(p1, params["conv2.w"], params["conv2.b"])     # [N,16,8,8]
    a2 = relu(c2)
    p2, kp2 = maxpool_forward(a2)                                        # [N,16,4,4]
    c3, k3 = conv_forward(p2, params["conv3.w"], params["conv3.b"])     # [N,120,1,1]
    a3 = relu(c3).reshape(x.shape[0], 120)
    f1 = a3 @ params["fc1.w"].T + params["fc1.b"]                        # [N,84]
    a4 = relu(f1)
    logits = a4 @ params["fc2.w"].T + params["fc2.b"]                    # [N,10]
    if not train:
        return logits
    cache = (k1, c1, kp1, k2, c2, kp2, k3, c3, a3, f1, a4)
    return logits, cache


def backward(params, dlogits, cache):
    k1, c1, kp1, k2, c2, kp2, k3, c3, a3, f1, a4 = cache
    g = {}
    g["fc2.w"] = dlogits.T @ a4
    g["fc2.b"] = dlogits.sum(axis=0)
    da4 = dlogits @ params["fc2.w"]
    df1 = da4 * (f1 > 0)
    g["fc1.w"] = df1.T @ a3
    g["fc1.b"] = df1.sum(axis=0)
    da3 = df1 @ params["fc1.w"]
    dc3 = (da3 * (a3 > 0)).reshape(c3.shape)
    dp2, g["conv3.w"], g["conv3.b"] = conv_backward(dc3, k3)
    da2 = maxpool_backward(dp2, kp2)
    dc2 = da2 * (c2 > 0)
    dp1, g["conv2.w"], g["conv2.b"] = conv_backward(dc2, k2)
    da1 = maxpool_backward(dp1, kp1)
    dc1 = da1 * (c1 > 0)
    _, g["conv1.w"], g["conv1.b"] = conv_backward(dc1, k1, need_dx=False)
    return g


def softmax_xent(logits, labels):
    """Mean softmax cross-entropy and its gradient w.r.t. logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    ez = np.exp(z)
    s = ez.sum(axis=1, keepdims=True)
    logp = z - np.log(s)
    n = logits.shape[0]
    loss = -logp[np.arange(n), labels].mean()
    dlogits = ez / s
    dlogits[np.arange(n), labels] -= 1.0
    return float(loss), (dlogits / n).astype(DTYPE)


def predict(params, images_u8, batch=1000):
    preds = []
    for i in range(0, images_u8.shape[0], batch):
        preds.append(forward(params, to_input(images_u8[i:i + batch])).argmax(axis=1))
    return np.concatenate(preds)


def save_weights(path, params):
    flat = np.concatenate([params[name].astype("<f4").ravel() for name, _ in PARAM_ORDER])
    assert flat.size == 44426, flat.size
    flat.tofile(path)


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="folder with MNIST IDX files (gz or not)")
    ap.add_argument("--out", required=True, help="output folder for the assets")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3, help="initial Adam learning rate")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()

    xtr, ytr, xte, yte = load_mnist(args.data)
    ytr = ytr.astype(np.int64)
    yte = yte.astype(np.int64)
    rng = np.random.default_rng(args.seed)
    params = init_params(rng)

    # Adam state.
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    step = 0

    n = xtr.shape[0]
    t_start = time.time()
    for epoch in range(1, args.epochs + 1):
        # Cosine decay of the learning rate over epochs (per epoch, deterministic).
        lr = args.lr * 0.5 * (1.0 + np.cos(np.pi * (epoch - 1) / args.epochs))
        perm = rng.permutation(n)
        t0 = time.time()
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            xb = to_input(xtr[idx])
            yb = ytr[idx]
            logits, cache = forward(params, xb, train=True)
            loss, dlogits = softmax_xent(logits, yb)
            grads = backward(params, dlogits, cache)
            step += 1
            bc1 = 1.0 - beta1 ** step
            bc2 = 1.0 - beta2 ** step
            for k in params:
                gk = grads[k].astype(DTYPE, copy=False)
                m[k] *= beta1
                m[k] += (1 - beta1) * gk
                v[k] *= beta2
                v[k] += (1 - beta2) * gk * gk
                upd = (lr / bc1) * m[k] / (np.sqrt(v[k] / bc2) + eps)
                params[k] -= upd.astype(DTYPE)
            loss_sum += loss * len(idx)
            correct += int((logits.argmax(axis=1) == yb).sum())
            seen += len(idx)
        test_acc = float((predict(params, xte) == yte).mean())
        print(f"epoch {epoch}/{args.epochs}  lr {lr:.2e}  train loss {loss_sum / seen:.4f}  "
              f"train acc {correct / seen:.4f}  test acc {test_acc:.4f}  "
              f"({time.time() - t0:.1f}s)", flush=True)

    train_time = time.time() - t_start
    preds = predict(params, xte)
    acc10k = float((preds == yte).mean())
    acc1k = float((preds[:1000] == yte[:1000]).mean())
    print(f"training wall time: {train_time:.1f}s")
    print(f"final test accuracy: full 10k {acc10k:.4f} ({int((preds == yte).sum())}/10000), "
          f"first 1k {acc1k:.4f} ({int((preds[:1000] == yte[:1000]).sum())}/1000)")

    os.makedirs(args.out, exist_ok=True)
    save_weights(os.path.join(args.out, "lenet-mnist.f32"), params)
    write_idx_images(os.path.join(args.out, "mnist-test-1k-images.idx3"), xte[:1000])
    write_idx_labels(os.path.join(args.out, "mnist-test-1k-labels.idx1"), yte[:1000])
    print(f"wrote assets to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
