#!/usr/bin/env python3
"""Independent numpy check of Tessera's LeNet assets.

Loads the raw float32 weights written by tools/train_lenet.py (lenet-mnist.f32,
see crates/tessera-graph/assets/README.md for the layout), runs the LeNet
forward pass on an IDX image/label set and prints the accuracy. The Rust
implementation in tessera-graph should reproduce these numbers.

This deliberately shares no code with train_lenet.py (convolution is a direct
sum over kernel taps via einsum rather than im2col).

Usage:
  python3 tools/check_lenet.py \
      --weights crates/tessera-graph/assets/lenet-mnist.f32 \
      --images crates/tessera-graph/assets/mnist-test-1k-images.idx3 \
      --labels crates/tessera-graph/assets/mnist-test-1k-labels.idx1
"""

import argparse
import gzip
import os
import struct
import sys

import numpy as np

LAYOUT = [
    ("conv1.w", (6, 1, 5, 5)), ("conv1.b", (6,)),
    ("conv2.w", (16, 6, 5, 5)), ("conv2.b", (16,)),
    ("conv3.w", (120, 16, 4, 4)), ("conv3.b", (120,)),
    ("fc1.w", (84, 120)), ("fc1.b", (84,)),
    ("fc2.w", (10, 84)), ("fc2.b", (10,)),
]

DEFAULT_WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                               "crates", "tessera-graph", "assets", "lenet-mnist.f32")


def load_weights(path):
    flat = np.fromfile(path, dtype="<f4")
    total = sum(int(np.prod(s)) for _, s in LAYOUT)
    if flat.size != total:
        raise ValueError(f"{path}: {flat.size} floats, expected {total}")
    params, off = {}, 0
    for name, shape in LAYOUT:
        size = int(np.prod(shape))
        params[name] = flat[off:off + size].reshape(shape).astype(np.float32)
        off += size
    return params


def read_idx(path):
    opener = open
    with open(path, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            opener = gzip.open
    with opener(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: bad IDX magic {magic:#010x}")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def conv2d(x, w, b):
    """Valid, stride-1 conv. x [N,C,H,W], w [O,C,KH,KW] -> [N,O,OH,OW]."""
    _, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = h - kh + 1, wd - kw + 1
    out = np.zeros((x.shape[0], o, oh, ow), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nchw,oc->nohw", x[:, :, i:i + oh, j:j + ow], w[:, :, i, j],
                             optimize=True)
    return out + b[None, :, None, None]


def maxpool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def lenet(params, x):
    x = maxpool2(np.maximum(conv2d(x, params["conv1.w"], params["conv1.b"]), 0))
    x = maxpool2(np.maximum(conv2d(x, params["conv2.w"], params["conv2.b"]), 0))
    x = np.maximum(conv2d(x, params["conv3.w"], params["conv3.b"]), 0)
    x = x.reshape(x.shape[0], -1)                                  # [N,120]
    x = np.maximum(x @ params["fc1.w"].T + params["fc1.b"], 0)
    return x @ params["fc2.w"].T + params["fc2.b"]                 # logits [N,10]


def main():
    ap = argparse.ArgumentParser(description="numpy LeNet accuracy check")
    ap.add_argument("--weights", default=DEFAULT_WEIGHTS)
    ap.add_argument("--images", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--show", type=int, default=0, help="print logits of the first K images")
    args = ap.parse_args()

    params = load_weights(args.weights)
    images = read_idx(args.images)
    labels = read_idx(args.labels).astype(np.int64)
    assert images.shape[0] == labels.shape[0] and images.shape[1:] == (28, 28)

    preds = []
    for i in range(0, images.shape[0], 500):
        x = (images[i:i + 500].astype(np.float32) / np.float32(255.0))[:, None]
        logits = lenet(params, x)
        if i == 0 and args.show:
            np.set_printoptions(precision=4, suppress=True, linewidth=150)
            for k in range(min(args.show, logits.shape[0])):
                print(f"image {k} label {labels[k]} logits {logits[k]}")
        preds.append(logits.argmax(axis=1))
    preds = np.concatenate(preds)
    correct = int((preds == labels).sum())
    print(f"accuracy {correct / labels.size:.4f} ({correct}/{labels.size}) on {args.images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
