#!/usr/bin/env bash
# What drawing every head costs in a dump (issue 10: "PNG encoding of many heads runs in
# parallel and its cost is measured"): each dump runs with its pictures and with
# --no-pictures (the same forward pass, arrays, grid.png and view.html), and the
# difference over the number of heads is one head's PNG (drawing + encoding + writing),
# in wall time on all cores and with RAYON_NUM_THREADS=1 (how well the heads of a layer
# draw in parallel). Peak RSS says the pictures hold no more than a layer's worth.
#
#   scripts/fetch-models.sh && cargo build --release && benches/pictures.sh [RUNS]
#   ATTNMAP_BIN=/path/to/other/attnmap benches/pictures.sh     # another build of it
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
# shellcheck source=benches/measure.sh
. benches/measure.sh

# A text of about N words (MiniLM: about as many tokens).
text_of() {
  local words=(the support team never answered my emails and the order arrived broken again while we waited for a refund)
  local out=() i
  for ((i = 0; i < $1; i++)); do out+=("${words[i % ${#words[@]}]}"); done
  echo "${out[*]}"
}

median_of() { # label, command...: shows measure's line on stderr, prints the median wall seconds
  local line
  line=$(measure "$@")
  echo "$line" >&2
  awk '{for (i = 1; i <= NF; i++) if ($i == "median") print $(i + 1)}' <<<"$line"
}

per_head() { # label, heads, model, text
  local label=$1 heads=$2 model=$3 text=$4 with without serial_with serial_without
  with=$(median_of "$label dump" "$bin" -q dump "$text" --model "$model" --out "$work/out")
  without=$(median_of "$label dump --no-pictures" "$bin" -q dump "$text" --model "$model" --out "$work/out" --no-pictures)
  serial_with=$(median_of "$label dump, 1 thread" env RAYON_NUM_THREADS=1 "$bin" -q dump "$text" --model "$model" --out "$work/out")
  serial_without=$(median_of "$label dump --no-pictures, 1 thread" env RAYON_NUM_THREADS=1 "$bin" -q dump "$text" --model "$model" --out "$work/out" --no-pictures)
  awk -v label="$label" -v heads="$heads" -v a="$with" -v b="$without" -v c="$serial_with" -v d="$serial_without" \
    'BEGIN {printf "%-30s one head'"'"'s PNG: %6.2f ms wall on all cores, %6.2f ms on one (%d heads, %.1fx)\n\n", label, (a - b) * 1000 / heads, (c - d) * 1000 / heads, heads, (c - d) / ((a - b) > 0 ? (a - b) : 1e-9)}'
}

minilm=.models/minilm
if [ -d "$minilm" ]; then
  per_head "MiniLM, ~128 tokens" 72 "$minilm" "$(text_of 124)"
  per_head "MiniLM, 512 tokens" 72 "$minilm" "$(text_of 520) "
fi
gguf=.models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$gguf" ]; then
  per_head "SmolLM2 GGUF, ~140 tokens" 270 "$gguf" "$(text_of 120)"
fi
