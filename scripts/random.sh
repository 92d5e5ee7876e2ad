#!/usr/bin/env bash
# The random-network baseline: an untrained bottom stitches early but not late.
source "$(dirname "$0")/common.sh"
train sup-seed1 --seed 1
stitch random "$OUT/sup-seed1.pt" random
