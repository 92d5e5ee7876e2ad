#!/usr/bin/env bash
# Self-supervised vs supervised: a SimCLR bottom into a supervised top, and the reverse
# (the SimCLR backbone gets a linear probe as its classifier).
source "$(dirname "$0")/common.sh"
train sup-seed1 --seed 1
train simclr-seed1 --seed 1 --objective simclr
stitch "$OUT/simclr-seed1.pt" "$OUT/sup-seed1.pt" simclr-into-sup
stitch "$OUT/sup-seed1.pt" "$OUT/simclr-seed1.pt" sup-into-simclr --probe
