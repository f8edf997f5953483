#!/usr/bin/env bash
# Local runtimes side by side on this machine, nothing else running: generation speed at
# 1, 2, 4 and 8 concurrent requests, then cot, vote (8 chains) and the SCALE default preset
# on the same 10 GSM8K problems, each runtime with a fresh DSPy cache; peak memory sampled.
# Usage: bench/runtime.sh OUT_DIR   (writes OUT_DIR/{inproc,server}/..., OUT_DIR/memory-*.txt)
set -euo pipefail
out=${1:?usage: bench/runtime.sh OUT_DIR}
model=local/qwen2.5-coder-1.5b
common=(--dataset gsm8k --n 10 --seed 0 --model "$model" --round-size 10 --no-mlflow --quiet)
peak() {  # the highest RSS (kB) of processes matching $1 while $2 runs
  local pattern=$1 pid=$2 max=0 rss
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(ps -eo rss,args | grep -E "$pattern" | grep -v grep | awk '{s+=$1} END {print s+0}')
    (( rss > max )) && max=$rss
    sleep 2
  done
  echo "$max"
}
for runtime in inproc server; do
  mkdir -p "$out/$runtime"
  threads=1; [[ $runtime == server ]] && threads=4
  export DSPY_CACHEDIR="$out/$runtime/dspy-cache" SCALE_LOCAL_RUNTIME=$runtime
  scale throughput --model "$model" --runtime "$runtime" --threads 1,2,4,8 --out "$out/$runtime" &
  pid=$!; echo "throughput peak RSS kB: $(peak 'scale throughput|llama-server' $pid)" >> "$out/memory-$runtime.txt"
  wait "$pid"
  scale bench "${common[@]}" --methods cot,vote --vote-samples 8 --threads "$threads" \
      --out "$out/$runtime" &
  pid=$!; echo "cot+vote peak RSS kB: $(peak 'scale bench|llama-server' $pid)" >> "$out/memory-$runtime.txt"
  wait "$pid"
  scale bench "${common[@]}" --methods scale --threads "$threads" --out "$out/$runtime/scale" &
  pid=$!; echo "scale peak RSS kB: $(peak 'scale bench|llama-server' $pid)" >> "$out/memory-$runtime.txt"
  wait "$pid"
done
rm -rf "$out"/*/dspy-cache
