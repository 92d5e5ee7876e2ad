# Shared settings for the experiment scripts. Every step is resumable: `stitch
# train` continues an interrupted checkpoint and skips a finished one, and
# `stitch` skips cuts already in its results file, so re-running a script after
# an interruption picks up where it stopped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"
OUT=${OUT:-results/experiments}
DATA=${DATA:-fashion-mnist}
EPOCHS=${EPOCHS:-4}          # training epochs of the compared models
DEVICE=${DEVICE:-cpu}
STITCH_ARGS=${STITCH_ARGS:-} # extra flags for every stitch run, e.g. "--init least-squares"
mkdir -p "$OUT"
go build -o "$OUT/stitch" ./cmd/stitch
STITCH="$OUT/stitch"

# train NAME FLAGS...: trains $OUT/NAME.pt unless it is already finished.
train() {
  local name=$1; shift
  if [ -f "$OUT/$name.pt" ] && "$STITCH" inspect --json "$OUT/$name.pt" 2>/dev/null | grep -q '"test_accuracy"'; then
    echo "have $OUT/$name.pt (finished)"; return
  fi
  "$STITCH" train --data "$DATA" --device "$DEVICE" --epochs "$EPOCHS" --out "$OUT/$name.pt" "$@"
}

# stitch BOTTOM TOP TAG [FLAGS...]: stitches at every cut into $OUT/TAG.jsonl and plots it.
stitch() {
  local bottom=$1 top=$2 tag=$3; shift 3
  # shellcheck disable=SC2086
  "$STITCH" --bottom "$bottom" --top "$top" --data "$DATA" --device "$DEVICE" \
    --out "$OUT/$tag.jsonl" --plot "$OUT/$tag.png" $STITCH_ARGS "$@"
}
