#!/usr/bin/env bash
# Labels matter near the top: bottoms trained on noisy labels stitch early but not late.
source "$(dirname "$0")/common.sh"
train sup-seed1 --seed 1
for p in 0.1 0.5 1.0; do
  train "noise-$p" --seed 2 --label-noise "$p"
  stitch "$OUT/noise-$p.pt" "$OUT/sup-seed1.pt" "noise-$p-into-clean"
done
