# modelstitch: the one entry point beside CMake.
#   make run    set up (if needed) and run the main job: stitch the shipped models on Fashion-MNIST
#   make test   set up (if needed) and run the whole test suite
#   make build  build the C bridge (CMake) and the Go packages
#   make bench  run the benchmarks (Go vs PyTorch training speed, loader throughput)
#   make bench-stitch  time our stitching of a pair at every cut against a plain PyTorch script
#               (BENCH_STITCH_ARGS, e.g. "--fit-samples 6000 --rounds 3 --device cuda")
#   make test-cuda  the CUDA tests (a GPU machine, the bridge built against a CUDA libtorch:
#               make build TORCH_PREFIX=...); they fail instead of skipping when no GPU is usable
#   make check  gofmt, go vet, staticcheck and the fast test tier (go test -short -race);
#               it installs nothing, and stops with the command to run where something is missing
#   make fuzz   run every fuzz target for FUZZTIME each (default 1000000x: a million inputs; or a time, FUZZTIME=10m)
#   make soak   train 10,000 tiny steps and report resident-memory drift and live tensors (minutes)
#   make device-bundle  prepare device/ for scripts/device-check.sh on a GPU machine
# For a CUDA build: make build TORCH_PREFIX="$$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')"

SHELL := /bin/bash
BUILD_DIR ?= build
TORCH_PREFIX ?=
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(PATH):/usr/local/go/bin

# Debian packages: build tools and libtorch for the bridge; PyTorch, torchvision and
# Fashion-MNIST for the tests and the main job; Slurm and munge for the local-cluster test.
# With TORCH_PREFIX (another libtorch, e.g. a pip torch's with CUDA) Debian's libtorch-dev
# is not needed; with MODELSTITCH_PYTHON (a Python that has torch and torchvision) neither
# is Debian's python3-torch.
BUILD_PKGS := cmake g++ make $(if $(TORCH_PREFIX),,libtorch-dev)
TEST_PKGS := $(if $(MODELSTITCH_PYTHON),,python3-torch python3-torchvision) dataset-fashion-mnist slurm-wlm munge
RUN_PKGS := dataset-fashion-mnist

LIB := $(BUILD_DIR)/libcbridge.so

# make fuzz: how long each fuzz target runs (a count of inputs, Nx, or a
# time), and the packages that have them. FUZZPARALLEL workers (default: all CPUs).
FUZZTIME ?= 1000000x
FUZZPARALLEL ?=
FUZZ_PKGS ?= ./weights ./torch/vision/datasets ./experiments/grid

.PHONY: all build run test test-cuda check bench bench-stitch fuzz soak device-bundle deps-build deps-test deps-run clean vet

all: build

# install-missing installs the named Debian packages that are not installed yet.
define install-missing
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
endef

# need-packages stops, naming the make target that installs them, when any of
# the Debian packages $(1) is not installed ($(2): that target).
define need-packages
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "missing Debian packages:$$missing (install them with: make $(2), or apt-get install$$missing)" >&2; exit 1; \
	fi
endef

deps-build:
	$(call install-missing,$(BUILD_PKGS))

deps-test: deps-build
	$(call install-missing,$(TEST_PKGS))

deps-run: deps-build
	$(call install-missing,$(RUN_PKGS))

$(LIB): CMakeLists.txt cbridge/*.h cbridge/*.cc
	$(call need-packages,$(BUILD_PKGS),deps-build)
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release $(if $(TORCH_PREFIX),-DCMAKE_PREFIX_PATH="$(TORCH_PREFIX)")
	cmake --build $(BUILD_DIR) -j $$(nproc)

build: deps-build $(LIB)
	$(GO) build ./...

vet: build
	$(GO) vet ./...

run: deps-run build
	$(GO) run ./cmd/stitch

test: deps-test build
	$(GO) vet ./...
	$(GO) test -timeout 40m ./...

# The tests that need a GPU (every other test skips them): PyTorch-checked ops
# and runtime calls on CUDA, a ResNet on CPU vs GPU, the stitch command on CPU
# vs GPU, and the device flag's errors.
test-cuda: deps-test build
	MODELSTITCH_REQUIRE_CUDA=1 $(GO) test -count=1 -timeout 30m -v -run 'CUDA|TF32|BadInput' ./torch/... ./cmd/stitch

# The fast tier: formatting, vet, staticcheck (pinned), and every test in -short
# mode (long training and PyTorch-reference tests skip) under the race detector.
# It installs nothing: it builds the bridge if it is out of date, and stops with
# a hint when a Debian package, a Go module or staticcheck is not here yet
# (GOPROXY=off: nothing is fetched).
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
check: export GOPROXY := off
check: $(LIB)
	$(call need-packages,$(TEST_PKGS),deps-test)
	@$(GO) list -deps -test ./... >/dev/null || { echo "Go modules are missing from the module cache: fetch them with: $(GO) mod download" >&2; exit 1; }
	@$(GO) run $(STATICCHECK) -version >/dev/null 2>&1 || { echo "staticcheck is not in the module cache: fetch it with: $(GO) install $(STATICCHECK)" >&2; exit 1; }
	$(GO) build ./...
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "gofmt needed:" $$unformatted >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) test -short -race -timeout 15m ./...

bench: deps-test build
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 60m ./...

BENCH_STITCH_ARGS ?=
bench-stitch: deps-test build
	$(GO) run ./cmd/stitchbench $(BENCH_STITCH_ARGS)

# Each fuzz target runs on its own (go test -fuzz takes one target at a time);
# new failing inputs land in the package's testdata/fuzz/<target>/.
fuzz: build
	@set -e; for pkg in $(FUZZ_PKGS); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$target for $(FUZZTIME)"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $(if $(FUZZPARALLEL),-parallel $(FUZZPARALLEL)); \
	  done; \
	done

# A leak check, not a test: SOAK_ARGS e.g. "--steps 20000 --threads 2".
SOAK_ARGS ?= --steps 10000 --threads 1
soak: deps-test build
	$(GO) run ./cmd/soak $(SOAK_ARGS)

# The Go test binaries and a Fashion-MNIST subset for scripts/device-check.sh,
# which builds the bridge against a CUDA libtorch and runs the CUDA checks on a
# GPU machine without Go.
device-bundle: deps-test build
	bash scripts/device-bundle.sh

clean:
	rm -rf $(BUILD_DIR) build-cuda device
