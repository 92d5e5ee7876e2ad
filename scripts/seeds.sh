#!/usr/bin/env bash
# Stitching connectivity: two seeds of the same recipe stitch at every cut with a small penalty.
source "$(dirname "$0")/common.sh"
train sup-seed1 --seed 1
train sup-seed2 --seed 2
stitch "$OUT/sup-seed2.pt" "$OUT/sup-seed1.pt" seeds
