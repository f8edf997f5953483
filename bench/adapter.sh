#!/usr/bin/env bash
# The format tax (README "Prompt formats"), on the problems of round 2 and through the same
# managed llama-server (4 slots), so that round 2's own rows are the native-adapter arm:
#   - cot through DSPy's chat format (field markers) on the first 60 problems of each dataset
#     (round 2's plain-cot and cot are the plain-prompt and native arms);
#   - the decomposition stage alone through both adapters on the first 20 (bench/decompositions.py:
#     whether its first reply parses, at a fraction of uniform-s2's cost);
#   - uniform-s2 (a decomposition, the steps in context) through both adapters on the first 20
#     (the native arm goes to round 2's first-20/, beside its other methods).
# Then bench/adapter_report.py writes adapter-native/report.md. Resumable: rerun to go on.
# Usage: bench/adapter.sh gsm8k|math500
set -euo pipefail
dataset=${1:?usage: bench/adapter.sh gsm8k|math500}
case $dataset in
  gsm8k) round2=bench/results/round2-gsm8k-server; chat=bench/results/adapter-native/gsm8k-chat
    data=(--dataset gsm8k --n 100) ;;
  math500) round2=bench/results/round2-math500-l13
    chat=bench/results/adapter-native/math500-l13-chat
    data=(--dataset "$round2/planned.jsonl" --n 100) ;;
  *) echo "unknown dataset $dataset (gsm8k or math500)" >&2; exit 2 ;;
esac
export SCALE_LOCAL_RUNTIME=server
# a 1,024-token reply takes 4-5 minutes in one of 4 slots on 2 cores: --timeout 900
common=(--seed 0 --threads 4 --quiet --round-size 10 --no-mlflow --timeout 900 --no-cache
        "${data[@]}")
scale bench "${common[@]}" --rounds 6 --methods cot --adapter chat --out "$chat"
for adapter in native chat; do
  python bench/decompositions.py --adapter $adapter --dataset "${data[1]}" --n 20 \
      --out "$(dirname "$chat")/$(basename "$chat" -chat)-decompose-$adapter.jsonl"
done
scale bench "${common[@]}" --rounds 2 --methods uniform-s2 --out "$round2/first-20"
scale bench "${common[@]}" --rounds 2 --methods uniform-s2 --adapter chat --out "$chat"
python bench/adapter_report.py bench/results/adapter-native
