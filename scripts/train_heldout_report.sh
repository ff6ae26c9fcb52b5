#!/usr/bin/env bash
# Evaluates weights on the held-out pairs of the shipped split (see docs/model_card.md): all of
# them together, then LEVIR-CD and DSIFN-CD apart. Writes one JSON file per run and part into OUT.
#   scripts/train_heldout_report.sh [WEIGHTS...]     # default: both shipped networks
# Environment: DATA (the change_pairs folder), OUT (default out/heldout), EVAL_ARGS (more
# options of `weijian evaluate`, e.g. --tta), TAG (suffix of the JSON names).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/change_pairs}
OUT=${OUT:-out/heldout}
mkdir -p "$OUT"
LEVIR=(--only 'levir_1024/test_102' --only 'levir_256/test_121_*' --only 'levir_256/test_55_*')
DSIFN=(--only 'dsifn_256/0_2' --only 'dsifn_256/8_3' --only 'dsifn_256/9_3')
if [ $# -eq 0 ]; then set -- tinysiam fc_siam_diff; fi
for weights in "$@"; do
  tag=$(basename "$(dirname "$weights")")-$(basename "$weights" .pt)${TAG:-}
  for part in all levir dsifn; do
    case $part in
      all) only=("${LEVIR[@]}" "${DSIFN[@]}") ;;
      levir) only=("${LEVIR[@]}") ;;
      dsifn) only=("${DSIFN[@]}") ;;
    esac
    echo "== $weights, held-out $part"
    uv run --frozen weijian evaluate "$DATA/levir_256" "$DATA/levir_1024" "$DATA/dsifn_256" \
      --weights "$weights" --device cpu "${only[@]}" ${EVAL_ARGS:-} --json "$OUT/$tag-$part.json"
  done
done
