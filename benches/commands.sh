#!/usr/bin/env bash
# Whole-command timings, each run a fresh (cold) process, as a user runs attnmap:
# model load + tokenizer + forward + render + write. File caches are warm (one
# untimed run first), so this measures attnmap, not the disk.
#
#   scripts/fetch-models.sh && cargo build --release && benches/commands.sh [RUNS]
#
# Sections:
#   SmolLM2-135M-Instruct Q4_1 GGUF (30 layers x 9 heads), 128 tokens:
#     show   one head (layer 29, the deepest: the whole forward pass runs)
#     dump   all 270 heads: attention.npy, 270 PNGs, grid.png, manifest (target: under 3 s
#            on the project's 2-core machine)
#
#     show --quantized  the same head with candle's quantized matmuls
#
# Reference points measured on the project's 2-core machine (median of 5, load average
# ~2 from other builds): show 0.68 s, dump 1.34 s, show --quantized 3.42 s (candle has no
# SIMD kernel for Q4_1, so its quantized matmuls are slower than gemm on the dequantized
# f32 weights). Under heavier load (load average 5) the dump took up to 2.5 s.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
bin=target/release/attnmap
gguf=.models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[ -x "$bin" ] || { echo "commands.sh: build first: cargo build --release" >&2; exit 2; }
[ -f "$gguf" ] || { echo "commands.sh: $gguf is missing: run scripts/fetch-models.sh" >&2; exit 2; }

# 128 tokens with the SmolLM2 tokenizer (digits are single tokens).
text='On 14 March 2019, the small coastal town of Port Ellery opened its first public library in almost 80 years. The building, a converted 1920s warehouse on Harbour Street, cost roughly $2.4 million to renovate, and about 60% of that money came from local donations. Volunteers spent 7 months cataloguing 31,500 books, 1,200 maps and a surprising number of old ship logs. "We didn'"'"'t expect the logs," said Margaret Oyelaran, the head librarian. "Some of them date back'

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# time_runs NAME CMD...: run once untimed, then RUNS times; print the median and the range.
time_runs() {
  local name=$1
  shift
  "$@" >/dev/null 2>&1
  local times=()
  for _ in $(seq "$runs"); do
    rm -rf "$work/dump"
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc -l)")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v name="$name" -v n="$runs" '
    { t[NR] = $1 }
    END { printf "%-44s median %.2f s  (min %.2f, max %.2f, %d runs)\n", name, t[int((n + 1) / 2)], t[1], t[n], n }'
}

tokens=$("$bin" dump "$text" --out "$work/probe" --model "$gguf" -q && python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seq_len"])' "$work/probe/manifest.json")
echo "SmolLM2-135M-Instruct.Q4_1.gguf, $tokens tokens, $(nproc) cores"
time_runs "show (one head, layer 29)" "$bin" show "$text" --layer 29 --head 8 -o "$work/head.png" --model "$gguf" -q
time_runs "dump (270 heads)" "$bin" dump "$text" --out "$work/dump" --model "$gguf" -q
time_runs "show --quantized (one head, layer 29)" "$bin" show "$text" --layer 29 --head 8 -o "$work/head.png" --model "$gguf" -q --quantized
