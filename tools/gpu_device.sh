#!/usr/bin/env bash
# Issue 5's real-GPU measurement, ready to go: `tessera bench gpu` (wgpu on
# Vulkan) next to PyTorch on the same GPU in the same run, on the NVIDIA
# benchmark machine a session is sometimes lent (see ../shared/toolchain.md,
# "Vulkan on the NVIDIA H100 benchmark machine"). Nothing here runs in CI.
#
#   tools/gpu_device.sh prepare   # here: loader packages into .gl/, the
#                                 # release binary into .devbin/; prints the
#                                 # device tool call to make
#   tools/gpu_device.sh remote    # there (the command that call runs):
#                                 # unpack the loader, bench, write $OUT/
#
# The machine there has no package registry and no libvulkan, only the
# NVIDIA ICD: the Vulkan loader travels as .deb files (extracted there),
# the binary travels prebuilt (x86-64 both sides).
set -euo pipefail
cd "$(dirname "$0")/.."

MODELS=${TESSERA_GPU_MODELS:-vgg16,resnet50,mobilenetv2}
RUNS=${TESSERA_GPU_RUNS:-30}

prepare() {
  if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    mkdir -p .gl /tmp/amd64/partial
    local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update -qq
    (cd .gl && apt-get "${o[@]}" download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  fi
  cargo build -q --release -p tessera-cli
  mkdir -p .devbin
  cp target/release/tessera .devbin/tessera
  cat <<EOF
ready: .gl/ ($(ls .gl | wc -l) packages), .devbin/tessera ($(du -h .devbin/tessera | cut -f1))
device tool call:
  run(command="bash tools/gpu_device.sh remote", carry=[".gl", ".devbin"], timeout_s=600)
results come back as \$OUT/bench-gpu.json, bench-gpu-heuristic.json, bench-gpu-f16.json and bench-gpu.txt (per-layer tables)
EOF
}

remote() {
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  local out=${OUT:-/tmp/tessera-gpu-bench}
  mkdir -p "$out"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt" || true
  # Per-layer tables with every GEMM tile candidate's time (text), then the
  # per-model figures with the PyTorch reference and the ratio (JSON), in
  # one process each; last, the heuristic tiles for comparison.
  .devbin/tessera bench gpu --models "$MODELS" --runs "$RUNS" --layers 2>&1 | tee "$out/bench-gpu.txt"
  .devbin/tessera bench gpu --models "$MODELS" --runs "$RUNS" --json >"$out/bench-gpu.json"
  .devbin/tessera bench gpu --models "$MODELS" --runs "$RUNS" --json --no-reference --tiles heuristic >"$out/bench-gpu-heuristic.json"
  # f16 weights (where the adapter has shader-f16).
  TESSERA_GPU_F16=1 .devbin/tessera bench gpu --models "$MODELS" --runs "$RUNS" --json --no-reference >"$out/bench-gpu-f16.json" || true
  cat "$out/bench-gpu.json" "$out/bench-gpu-heuristic.json" "$out/bench-gpu-f16.json"
}

case "${1:-}" in
  prepare) prepare ;;
  remote) remote ;;
  *) echo "usage: tools/gpu_device.sh prepare|remote" >&2; exit 2 ;;
esac
