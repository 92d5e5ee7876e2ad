#!/usr/bin/env bash
# "More is better": bottoms trained with more data, more width or more epochs,
# plugged into a weaker top, lower its error (negative penalty).
source "$(dirname "$0")/common.sh"
train data-10k --seed 1 --train-samples 10000
train data-25k --seed 2 --train-samples 25000
train data-5k --seed 3 --train-samples 5000
stitch "$OUT/data-25k.pt" "$OUT/data-10k.pt" data-25k-into-10k
stitch "$OUT/data-5k.pt" "$OUT/data-10k.pt" data-5k-into-10k
train width-0.25 --seed 1 --width 0.25
train width-0.5 --seed 2 --width 0.5
stitch "$OUT/width-0.5.pt" "$OUT/width-0.25.pt" width-0.5-into-0.25
train epochs-short --seed 1 --epochs 1
train epochs-long --seed 2 --epochs "$((EPOCHS * 2))"
stitch "$OUT/epochs-long.pt" "$OUT/epochs-short.pt" long-into-short
