#!/bin/sh
# Rebuilds the bundled circuits: one prune per task and model at the same target loss, then `circuit check`.
# Run from the repository root after `cargo build --release`. The two models run side by side, one thread each.
set -eu
BIN=${BIN:-target/release/circuitscope}
TASKS=${TASKS:-"bracket_counting single_double_quote set_or_string_fixedvarname for_while if_equals enumerate_range"}
TARGET=${TARGET:-0.15}
for model in tinypython-sparse tinypython-dense; do
  (
    mkdir -p "assets/circuits/$model"
    for task in $TASKS; do
      out="assets/circuits/$model/$task.json"
      RAYON_NUM_THREADS=1 "$BIN" prune --model "assets/models/$model" --task "$task" --target-loss "$TARGET" \
        -o "$out" --force --json > "assets/circuits/$model/$task.prune.log" 2>&1
      RAYON_NUM_THREADS=1 "$BIN" circuit check "$out" --model "assets/models/$model" > /dev/null
    done
  ) &
done
wait
