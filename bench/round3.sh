#!/usr/bin/env bash
# Round 3 as it was run (bench/results/round3-programs/): the program-aided system on round
# 2's 200 problems, sampled once, then replayed with round 2's CoT chains (no model).
# Usage: bench/round3.sh gsm8k|math500 [sample]
#   sample: 1. draw the programs first (bench/results/round3-programs/sample.sh: pot, greedy
#      with logprobs, and METHODS=pot-vote for 4 sampled programs); resumable;
#   2. on the recorded runtime (round 2's cot and 8 vote chains, and pot.jsonl, linked in
#      recordings/): the crosscheck preset, each problem's CoT greedy reply against its
#      program, System 2 going on from them (crosscheck/scale.jsonl); the programs run
#      again in the sandbox;
#   3. bench/round2_report.py adds the round-3 rows, the estimator and the targets to round
#      2's summary of the dataset (its stop-rule grid is replayed from these samples).
set -euo pipefail
dataset=${1:?usage: bench/round3.sh gsm8k|math500 [sample]}
declare -A round2=([gsm8k]=bench/results/round2-gsm8k-server [math500]=bench/results/round2-math500-l13)
declare -A round3=([gsm8k]=bench/results/round3-programs/gsm8k
                   [math500]=bench/results/round3-programs/math500-l13)
[[ -n ${round2[$dataset]:-} ]] || { echo "unknown dataset $dataset (gsm8k or math500)" >&2; exit 2; }
out=${round3[$dataset]}
if [[ ${2:-} == sample ]]; then
  bench/results/round3-programs/sample.sh
fi
export SCALE_LOCAL_RUNTIME=recorded SCALE_RECORDINGS=$out/recordings
rm -rf "$out/crosscheck"  # a replay is cheap, and must be of the recordings as they are now
scale bench --seed 0 --threads 4 --quiet --no-mlflow --dataset "${round2[$dataset]}/problems.jsonl" \
    --n 100 --round-size 100 --methods scale --preset crosscheck --out "$out/crosscheck"
python bench/round2_report.py "${round2[$dataset]}" > /dev/null
