#!/usr/bin/env bash
# Prepares device/ (git-ignored) for scripts/device-check.sh on a GPU machine
# that has CUDA, CMake and a pip PyTorch but no Go toolchain and no network:
#   device/bin.tar.gz  the Go test binaries that hold the CUDA checks, and
#                    stitch (compressed: the transfer limit is 64 MiB)
#   device/data/fashion-mnist/  the test split and the first TRAIN_N training
#                    images (the whole set does not fit the transfer limit)
# Run it here (make device-bundle), then on the GPU machine, from the
# repository root with device/ alongside: bash scripts/device-check.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"
TRAIN_N=${TRAIN_N:-12000}
SRC=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}

rm -rf device && mkdir -p device/bin device/data/fashion-mnist
# Stripped binaries; they find libcbridge.so through LD_LIBRARY_PATH there.
for pkg in torch torch/vision cmd/stitch; do
  go test -c -ldflags='-s -w' -o "device/bin/$(basename "$pkg").test" "./$pkg"
done
go build -ldflags='-s -w' -o device/bin/stitch ./cmd/stitch

cp "$SRC"/t10k-*-ubyte.gz device/data/fashion-mnist/
# The first TRAIN_N training images and labels, as IDX files with the count fixed.
/usr/bin/python3 - "$SRC" device/data/fashion-mnist "$TRAIN_N" <<'PY'
import gzip, struct, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for name, item in (("train-images-idx3-ubyte.gz", 28 * 28), ("train-labels-idx1-ubyte.gz", 1)):
    data = gzip.open(f"{src}/{name}").read()
    ndim = data[3]
    head = 4 + 4 * ndim
    dims = list(struct.unpack(">%dI" % ndim, data[4:head]))
    if dims[0] < n:
        sys.exit(f"{name} has {dims[0]} items, fewer than {n}")
    dims[0] = n
    with gzip.open(f"{dst}/{name}", "wb") as f:
        f.write(data[:4] + struct.pack(">%dI" % ndim, *dims) + data[head:head + n * item])
PY
tar -C device -czf device/bin.tar.gz bin && rm -r device/bin
du -sh device/*
