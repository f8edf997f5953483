#!/usr/bin/env bash
# Round 2 on GSM8K as it was run (README "Results"): one sampling pass, then every other
# method from DSPy's cache. Usage: bench/round2.sh ROUNDS  (the rounds of 10 problems to use)
#   1. cot + 5 sampled chains per problem, through the managed llama-server (4 slots);
#      vote@1..5, Adaptive-Consistency, ESC and greedy-first Adaptive-Consistency are
#      replayed from those chains (it resumes: rerun with more ROUNDS to go on);
#   2. the default SCALE program on the same problems: its calls are CoT's and the chains';
#   3. the problem-level estimators on the same problems (no new call either);
#   4. tuned SCALE by cross-fitting: compiled on one half of the problems (routing and System
#      2 search; every trial's calls come from the cache), benchmarked on the other half.
set -euo pipefail
rounds=${1:?usage: bench/round2.sh ROUNDS}
out=bench/results/round2-gsm8k-server
store=sqlite:///bench/mlflow-round2.db
export SCALE_LOCAL_RUNTIME=server
common=(--seed 0 --threads 4 --quiet)
bench=(--dataset gsm8k --n 100 --round-size 10 --vote-samples 5 --out "$out" --no-mlflow)

scale bench "${common[@]}" "${bench[@]}" --rounds "$rounds" --methods cot,vote
scale bench "${common[@]}" "${bench[@]}" --rounds "$rounds" --methods cot,vote,scale

# the problems done, and their two halves, as dataset files
python - "$out" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
report = json.loads((out / "report.json").read_text())
ids = report["ids"][: report["n"]]  # the problems done, in order
rows = {json.loads(l)["id"]: json.loads(l) for l in open("scale/data/gsm8k_test.jsonl")}
done = [{k: rows[i][k] for k in ("id", "problem", "answer")} for i in ids]
half = len(done) // 2
for name, part in (("problems", done), ("fold-a", done[:half]), ("fold-b", done[half:])):
    (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
EOF

for m in 2 5; do
  scale estimators --seed 0 --quiet --dataset "$out/problems.jsonl" --n $((rounds * 10)) \
      --levels problems --agreement-samples $m --estimators agreement \
      --out "$out/estimators-problems-m$m" --no-mlflow
done

grid=(--optimizer none --estimators agreement,none --gates 0,1,none --decompose-options false
      --objective cost-aware --lambda 0.00005
      --system2-options "samples=5,stop=adaptive,confidence=0.8,greedy_first=true;samples=5,stop=adaptive,confidence=0.95,greedy_first=true;samples=3,stop=adaptive,confidence=0.8,greedy_first=true;samples=5,stop=fixed")
for fold in a b; do
  other=$([[ $fold == a ]] && echo b || echo a)
  n=$(wc -l < "$out/fold-$fold.jsonl"); m=$(wc -l < "$out/fold-$other.jsonl")
  scale compile "${common[@]}" --dataset "$out/fold-$fold.jsonl" --train 1 --val $((n - 1)) \
      "${grid[@]}" --out "$out/tuned-$fold.json" --tracking-uri "$store" --experiment round2-gsm8k
  scale bench "${common[@]}" --dataset "$out/fold-$other.jsonl" --n "$m" --round-size "$m" \
      --vote-samples 5 --methods cot,vote,scale,tuned --program "$out/tuned-$fold.json" \
      --out "$out/crossfit-$other" --no-mlflow
done
