#!/usr/bin/env bash
# The CUDA checks, run on a GPU machine that has CUDA, CMake and a pip
# PyTorch (no Go, no network), from the repository root, after
# scripts/device-bundle.sh made device/ here:
#   1. builds the bridge against pip torch's libtorch (build-cuda/);
#   2. runs the Go CUDA tests: every PyTorch-checked op on the GPU, the CUDA
#      runtime calls, a ResNet-18 trained on CPU and GPU side by side, and the
#      stitch command on CPU and GPU;
#   3. runs the training benchmark on the GPU (Go against PyTorch);
#   4. times the stitch command at every cut on the GPU and on the CPU.
# Logs go to $OUT (or device/out); summary.txt lists each step's exit status.
# Steps go on after a failure, so one run shows everything. ONLY="build torch"
# runs just the named steps (build, torch, vision, cli, bench, stitch-cuda,
# stitch-cpu).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-device/out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
summary="$OUT/summary.txt"
: >"$summary"

# step NAME CMD...: runs CMD with its output in $OUT/NAME.log and notes its status and time.
step() {
  local name=$1; shift
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  local t0=$SECONDS
  echo "== $name: $*" >>"$OUT/$name.log"
  "$@" >>"$OUT/$name.log" 2>&1
  local rc=$?
  printf '%-12s rc=%d %4ds\n' "$name" "$rc" $((SECONDS - t0)) | tee -a "$summary"
  tail -n 25 "$OUT/$name.log"
  return 0
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
  "$PY" -c 'import torchvision; print("torchvision", torchvision.__version__)' 2>&1 | tail -n 1
  cmake --version | head -n 1
  ldd --version | head -n 1
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

PREFIX=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
configure() {
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX" "$@"
}
# A pip torch's CMake files look for cuDNN, which pip installs as a Python
# package (nvidia/cudnn, with libcudnn.so.N but no libcudnn.so): if the plain
# configure fails, point them at it.
cudnn_hints() {
  local d
  d=$("$PY" -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__ or list(nvidia.cudnn.__path__)[0]))' 2>/dev/null) || return 0
  [ -d "$d/include" ] || return 0
  mkdir -p build-cuda/cudnn-lib
  for f in "$d"/lib/libcudnn.so*; do ln -sf "$f" build-cuda/cudnn-lib/libcudnn.so; break; done
  echo "-DCUDNN_INCLUDE_PATH=$d/include -DCUDNN_LIBRARY_PATH=$PWD/build-cuda/cudnn-lib/libcudnn.so"
}
build() {
  configure || { rm -rf build-cuda/CMakeCache.txt; configure $(cudnn_hints); } || return 1
  cmake --build build-cuda -j "$(nproc)"
}
step build build
rm -rf device/bin && tar -C device -xzf device/bin.tar.gz

export LD_LIBRARY_PATH="$PWD/build-cuda${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MODELSTITCH_PYTHON=$(command -v "$PY")
export MODELSTITCH_FASHION_MNIST_DIR="$PWD/device/data/fashion-mnist"
B=$PWD/device/bin
# Each test binary runs in its package directory (test data lives there).
step torch bash -c "cd torch && '$B/torch.test' -test.run 'CUDA|TF32|OpsMatchPyTorch' -test.v -test.count=1"
step vision bash -c "cd torch/vision && '$B/vision.test' -test.run 'CUDA' -test.v -test.count=1"
step cli bash -c "cd cmd/stitch && '$B/stitch.test' -test.run 'OnCUDA|BadInput' -test.v -test.count=1"
step bench bash -c "cd torch/vision && MODELSTITCH_BENCH_DEVICE=cuda MODELSTITCH_BENCH_ROUNDS=9 '$B/vision.test' -test.run '^\$' -test.bench ResNet18TrainStep -test.benchtime 1x -test.v"
for dev in cuda cpu; do
  step "stitch-$dev" "$B/stitch" --device "$dev" --threads "$(nproc)" --data-dir "$MODELSTITCH_FASHION_MNIST_DIR" \
    --out "$OUT/stitch-$dev.jsonl" --plot "$OUT/penalty-$dev.png" --quiet
done
echo "summary:"; cat "$summary"
