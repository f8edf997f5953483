#!/usr/bin/env bash
# Round 2 as it was run (README "Results"): one sampling pass through the model, then every
# method whose calls are those samples re-run on them by the recorded runtime (no model).
# Usage: bench/round2.sh gsm8k|math500 ROUNDS [replay|replays]  (the rounds of 10 problems
#   to use; replay: skip stage 1, the model runs, e.g. while the other dataset is being
#   sampled; replays: stages 2 and 5 alone, e.g. after more chains: 3-4 use at most 5)
#   1. plain-cot, cot (its greedy reply with token logprobs) and 5 sampled chains per
#      problem, through the managed llama-server (4 slots); it resumes: rerun with more
#      ROUNDS to go on. GSM8K's first pass recorded no logprobs: its cot is drawn again with
#      them into logprobs/ (vote's chains linked), and the replays below use that one;
#      then vote is extended to 8 chains per problem into chains-8/ (the 5 drawn replayed
#      by the recorded+server runtime, rollouts 5-7 drawn; cot's recording linked there);
#   2. on the recorded runtime (each call answered from chains-8/'s cot and vote rows,
#      matched exactly, see scale/recorded.py): cot, vote and the default SCALE program, with
#      vote@1..8, Adaptive-Consistency, ESC and greedy-first Adaptive-Consistency replayed
#      from the chains, in replayed/; the default program gated on the greedy reply's
#      logprob confidence instead, at several gates (gates/ESTIMATOR/GATE.jsonl); the
#      estimators (agreement at m = 2 and 5, the logprob confidences) on every problem;
#   3. tuned SCALE by cross-fitting: compiled on one half of the problems (estimator, gate
#      and System 2 search), benchmarked on the other;
#   4. transfer: compiled on all the problems here, benchmarked on the other dataset's
#      recordings, and the other dataset's program on these (once both datasets are done);
#   5. summary.md and its plots (bench/round2_report.py): every method, paired.
# Stages 2 and 3-4 need no model and use one core each: they run side by side.
set -euo pipefail
dataset=${1:?usage: bench/round2.sh gsm8k|math500 ROUNDS}
rounds=${2:?usage: bench/round2.sh gsm8k|math500 ROUNDS}
mode=${3:-}
[[ -z $mode || $mode == replay || $mode == replays ]] || { echo "unknown mode $mode" >&2; exit 2; }
declare -A folder=([gsm8k]=bench/results/round2-gsm8k-server
                   [math500]=bench/results/round2-math500-l13)
declare -A sampled_in=([gsm8k]=${folder[gsm8k]}/logprobs [math500]=${folder[math500]})
chains=8  # vote's chains per problem: 5 drawn in the first pass, then 3 more
declare -A recordings_of=([gsm8k]=${folder[gsm8k]}/chains-$chains
                         [math500]=${folder[math500]}/chains-$chains)
case $dataset in
  gsm8k) other=math500; data=(--dataset gsm8k --n 100); logprobs=() ;;
  # the 20 problems of round 1 first, then 80 more (a fixed file, in order)
  math500) other=gsm8k; data=(--dataset "${folder[math500]}/planned.jsonl" --n 100)
    logprobs=(--system2-logprobs) ;;
  *) echo "unknown dataset $dataset (gsm8k or math500)" >&2; exit 2 ;;
esac
out=${folder[$dataset]}
sampled_recordings=${sampled_in[$dataset]}
recordings=${recordings_of[$dataset]}
store=sqlite:///bench/mlflow-round2.db
export SCALE_LOCAL_RUNTIME=server
common=(--seed 0 --threads 4 --quiet)
sampled=("${data[@]}" --round-size 10 --vote-samples 5 --rounds "$rounds" --no-mlflow)
# a 1,024-token reply takes 4-5 minutes in one of 4 slots on 2 cores: --timeout 900
live=(--timeout 900)

if [[ -z $mode ]]; then
  scale bench "${common[@]}" "${sampled[@]}" "${live[@]}" "${logprobs[@]}" \
      --methods cot,vote,plain-cot --out "$out"
fi
if [[ -z $mode && $sampled_recordings != "$out" ]]; then
  scale bench "${common[@]}" "${sampled[@]}" "${live[@]}" --system2-logprobs --methods cot \
      --out "$sampled_recordings"
  ln -sf ../vote.jsonl "$sampled_recordings/vote.jsonl"
fi
if [[ -z $mode ]]; then
  SCALE_LOCAL_RUNTIME=recorded+server SCALE_RECORDINGS=$sampled_recordings scale bench \
      "${common[@]}" "${sampled[@]}" "${live[@]}" "${logprobs[@]}" --vote-samples $chains \
      --methods vote --out "$recordings"
  mkdir -p "$recordings"
  ln -sf "$(realpath --relative-to="$recordings" "$sampled_recordings/cot.jsonl")" \
      "$recordings/cot.jsonl"
fi

# the problems done, and their two halves, as dataset files
python - "$out" "${data[1]}" <<'PY'
import json, sys
from pathlib import Path
from scale.datasets import load_dataset
out, source = Path(sys.argv[1]), sys.argv[2]
report = json.loads((out / "report.json").read_text())
ids = report["ids"][: report["n"]]  # the problems done, in order
rows = {e.id: e for e in load_dataset(source)}
done = [{k: rows[i][k] for k in ("id", "problem", "answer")} for i in ids]
half = len(done) // 2
for name, part in (("problems", done), ("fold-a", done[:half]), ("fold-b", done[half:])):
    (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
PY

SCALE_LOCAL_RUNTIME=recorded
export SCALE_RECORDINGS=$recordings
n=$(wc -l < "$out/problems.jsonl")  # the problems done
# the logprob-confidence gates swept in stage 2 and searched in stage 3
gates=(0.02 0.04 0.06 0.08 0.1 0.12 0.15 0.2 0.25 0.3 0.4)

replays() {  # 2. every replayed method, the gates, the estimators
  rm -rf "$out/replayed"  # replays are cheap, and must be of the recordings as they are now
  scale bench "${common[@]}" "${sampled[@]}" --vote-samples $chains --methods cot,vote,scale \
      --out "$out/replayed"
  # the default program with its gate on the greedy reply's token logprobs instead of a
  # second reply: one call for a problem it keeps, System 2 going on from it for the rest
  rm -rf "$out/gates"
  for estimator in confidence-mean confidence-total; do
    for g in "${gates[@]}"; do
      scale eval "${common[@]}" --dataset "$out/problems.jsonl" --n "$n" --estimator $estimator \
          --gate "$g" --no-mlflow --out "$out/gates/$estimator/$g.jsonl" > /dev/null
    done
  done
  for m in 2 5; do
    rm -rf "$out/estimators-problems-m$m"
    scale estimators "${common[@]}" --dataset "$out/problems.jsonl" --n "$n" --levels problems \
        --no-mlflow --agreement-samples $m --estimators agreement --out "$out/estimators-problems-m$m"
  done
  rm -rf "$out/estimators-problems-confidence"
  scale estimators "${common[@]}" --dataset "$out/problems.jsonl" --n "$n" --levels problems \
      --no-mlflow --estimators confidence,confidence-mean,confidence-total \
      --out "$out/estimators-problems-confidence"
}

tuning() {  # 3-4. cross-fitted tuned SCALE, then transfer
  # gate 1 on confidence-mean answers every problem with the greedy reply alone: plain CoT
  grid=(--optimizer none --estimators agreement,confidence-mean,confidence-total,none
        --decompose-options false
        --gates "0,$(IFS=,; echo "${gates[*]}"),0.5,1,none"
        --objective cost-aware --lambda 0.00005
        --system2-options "samples=5,stop=adaptive,confidence=0.8,greedy_first=true;samples=5,stop=adaptive,confidence=0.95,greedy_first=true;samples=3,stop=adaptive,confidence=0.8,greedy_first=true;samples=5,stop=fixed")
  for fold in a b; do
    rest=$([[ $fold == a ]] && echo b || echo a)
    k=$(wc -l < "$out/fold-$fold.jsonl"); m=$(wc -l < "$out/fold-$rest.jsonl")
    scale compile "${common[@]}" --dataset "$out/fold-$fold.jsonl" --train 1 --val $((k - 1)) \
        "${grid[@]}" --out "$out/tuned-$fold.json" --tracking-uri "$store" \
        --experiment "round2-$dataset"
    rm -rf "$out/crossfit-$rest"  # its problems and program change as rounds are added
    scale bench "${common[@]}" --dataset "$out/fold-$rest.jsonl" --n "$m" --round-size "$m" \
        --methods tuned --program "$out/tuned-$fold.json" --out "$out/crossfit-$rest" --no-mlflow
  done

  # 4. transfer, both ways once both datasets have a program compiled on all their problems
  scale compile "${common[@]}" --dataset "$out/problems.jsonl" --train 1 --val $((n - 1)) \
      "${grid[@]}" --out "$out/tuned-all.json" --tracking-uri "$store" --experiment "round2-$dataset"
  for pair in "$other $dataset" "$dataset $other"; do
    read -r from to <<< "$pair"
    program=${folder[$from]}/tuned-all.json
    [[ -f $program && -f ${folder[$to]}/problems.jsonl ]] || continue
    rm -rf "${folder[$to]}/transfer-from-$from"
    SCALE_RECORDINGS=${recordings_of[$to]} scale bench "${common[@]}" \
        --dataset "${folder[$to]}/problems.jsonl" --n "$(wc -l < "${folder[$to]}/problems.jsonl")" \
        --round-size 100 --methods tuned --program "$program" \
        --out "${folder[$to]}/transfer-from-$from" --no-mlflow
  done
}

replays & replaying=$!
if [[ $mode != replays ]]; then tuning & tuning=$!; wait "$tuning"; fi
wait "$replaying"
python bench/round2_report.py "$out"  # summary.md and its plots: every method, paired
# the other dataset's summary shows the transfer from this one
if [[ -f ${folder[$other]}/summary.md ]]; then python bench/round2_report.py "${folder[$other]}"; fi
