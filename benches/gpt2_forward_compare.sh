#!/usr/bin/env bash
# The GPT-2 forward benchmark of issue 13, both sides in one run, interleaved (this machine drifts by ±20% over
# minutes, so a figure from another run is no comparison): circuitscope's `bench forward` on the dense path and
# transformers' forward (benches/gpt2_forward_torch.py) alternate, ROUNDS times per token count, each printing one
# JSON line. circuitscope runs its dense path only (`--only dense`: a dense GPT-2 has no sparse matrix to run).
# The PyTorch side skips with a note when torch or transformers is not installed.
#
#   cargo build --release
#   target/release/circuitscope synth --shape gpt2-small /tmp/gpt2-small
#   benches/gpt2_forward_compare.sh /tmp/gpt2-small            # ROUNDS=3 TOKENS="128 1024" THREADS=2 ITERS=5
set -euo pipefail
MODEL=${1:?usage: benches/gpt2_forward_compare.sh MODEL_DIR}
BIN=${CIRCUITSCOPE:-target/release/circuitscope}
ROUNDS=${ROUNDS:-3}
TOKENS=${TOKENS:-128 1024}
THREADS=${THREADS:-2}
ITERS=${ITERS:-5}
here=$(dirname "$0")
for round in $(seq "$ROUNDS"); do
    for n in $TOKENS; do
        echo "{\"round\": $round, \"side\": \"circuitscope\", \"result\": $(RAYON_NUM_THREADS=$THREADS "$BIN" bench forward --only dense --model "$MODEL" --tokens "$n" --iters "$ITERS" --json)}"
        torch=$(OMP_NUM_THREADS=$THREADS python3 "$here/gpt2_forward_torch.py" "$MODEL" --tokens "$n" --iters "$ITERS" --threads "$THREADS")
        [ -n "$torch" ] && echo "{\"round\": $round, \"side\": \"pytorch\", \"result\": $torch}"
    done
done
