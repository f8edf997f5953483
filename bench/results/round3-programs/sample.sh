#!/usr/bin/env bash
# Round 3: the program-aided system sampled once on round 2's 200 problems (greedy program
# with logprobs, then 4 sampled programs), resumable: rerun to continue where it stopped.
set -euo pipefail
export SCALE_LOCAL_RUNTIME=server
common=(--seed 0 --threads 4 --quiet --round-size 10 --vote-samples 4 --no-mlflow --timeout 900 --n 100 --system2-logprobs)
methods=${METHODS:-pot}
scale bench "${common[@]}" --dataset gsm8k --methods "$methods" --out bench/results/round3-programs/gsm8k
scale bench "${common[@]}" --dataset bench/results/round2-math500-l13/planned.jsonl --methods "$methods" --out bench/results/round3-programs/math500-l13
