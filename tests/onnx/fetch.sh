#!/usr/bin/env bash
# Fetches the ONNX backend conformance data (node tests and PyTorch-converted
# tests) from the onnx 1.22.0 wheel, the last release that ships them.
#
#   tests/onnx/fetch.sh [CACHE_DIR]      (default: .cache/onnx-node-tests)
#
# Prints the data directory (holding node/ and pytorch-converted/) on stdout;
# point TESSERA_ONNX_NODE_TESTS at it. Does nothing if it is already there.
# Needs python3 with pip (PyPI is the only network access).
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-.cache/onnx-node-tests}
DATA=$DIR/onnx/backend/test/data
if [ -d "$DATA/node" ] && [ -d "$DATA/pytorch-converted" ]; then
  cd "$DATA" && pwd
  exit 0
fi
PY=${PYTHON:-python3}
mkdir -p "$DIR/wheel"
# Any platform's wheel carries the same data: pin one so the local Python
# version does not matter.
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 \
  onnx==1.22.0 -d "$DIR/wheel" >&2
WHL=$(ls "$DIR"/wheel/onnx-1.22.0-*.whl | head -n 1)
TMP=$(mktemp -d "$DIR/extract.XXXXXX")
"$PY" - "$WHL" "$TMP" <<'PYEOF'
import sys, zipfile
whl, out = sys.argv[1:]
keep = ("onnx/backend/test/data/node/", "onnx/backend/test/data/pytorch-converted/")
with zipfile.ZipFile(whl) as z:
    z.extractall(out, [n for n in z.namelist() if n.startswith(keep)])
PYEOF
rm -rf "$DIR/onnx"
mv "$TMP/onnx" "$DIR/onnx"
rm -rf "$TMP" "$DIR/wheel"
cd "$DATA" && pwd
