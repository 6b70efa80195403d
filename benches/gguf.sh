#!/usr/bin/env bash
# SmolLM2-135M-Instruct Q4_1 GGUF (30 layers x 9 heads, 8192 positions): what
# `info`, `dump` and `show` cost in time and peak RSS, from ~130 tokens up to
# the model's 8,192 (issue 10: "GGUF and decoders", "long inputs").
#
#   scripts/fetch-models.sh && cargo build --release && benches/gguf.sh [RUNS]
#
# The `dump` row is the whole command on ~130 tokens: all 270 heads, their
# PNGs, grid.png, view.html and attention.npy. For the side-by-side row the
# issue asks for, set CANDLE_MI_BIN to a program built on candle-mi 0.2.2 that
# takes `DIR TEXT_FILE OUT.npy`, loads DIR (config.json, model.safetensors in
# f32, tokenizer.json) as MIModel::from_pretrained does, captures
# HookPoint::AttnPattern at every layer in one forward pass and writes the
# [layers, heads, seq, seq] array; and CANDLE_MI_MODEL to SmolLM2 saved from
# this GGUF as f32 safetensors (transformers: from_pretrained(dir,
# gguf_file=...), state dict to model.safetensors, config and tokenizer
# beside it; candle-mi 0.2.2 reads only a top-level "rope_theta", which
# transformers 5 nests in "rope_parameters": copy it up, or its maps are off by
# 0.65). Both rows then run interleaved on the same text.
#
# Set ATTNMAP_BASELINE to an older attnmap binary to run its `dump` beside this
# build's on the same text, in both orders. Issue 10's "today" (1.36 s, 710 MiB)
# is commit cbca7eb:
#   git worktree add ../attnmap-cbca7eb cbca7eb
#   cargo build --release --manifest-path ../attnmap-cbca7eb/Cargo.toml
#   ATTNMAP_BASELINE=../attnmap-cbca7eb/target/release/attnmap benches/gguf.sh 5
#
# `show` keeps one head and computes attention in query blocks, so its peak
# grows with seq x block plus the one map kept (seq^2 floats), not with every
# head's [heads, seq, seq]. The 8,192-token row runs layer 1 only (`show
# --layer L` stops after layer L): every layer needs the same memory, and all
# 30 layers at 8,192 tokens take minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
gguf=.models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$gguf" ] || { echo "$gguf is missing: run scripts/fetch-models.sh" >&2; exit 2; }
# shellcheck source=benches/measure.sh
. benches/measure.sh

# A text of about N tokens: a paragraph repeated (~104 tokens each); the tokenizer cuts at 8,192.
text_of() {
  local para="On 14 March 2019, the small coastal town of Port Ellery opened its first public library in almost 80 years. The building, a converted 1920s warehouse on Harbour Street, cost roughly \$2.4 million to renovate, and about 60% of that money came from local donations. Volunteers spent 7 months cataloguing 31,500 books, 1,200 maps and a surprising number of old ship logs. "
  local n=$(( ($1 + 103) / 104 )) out=""
  for _ in $(seq "$n"); do out+="$para"; done
  printf '%s' "$out" >"$work/text$1.txt"
}
# The token count of the last map written: the shape in map.npy's header.
tokens() { head -c 128 "$work/map.npy" | tr -d '\0' | grep -ao "shape': ([0-9]*" | grep -o '[0-9]*$'; }

measure "info (GGUF header only)" "$bin" -q info --model "$gguf"

# ~130 tokens: one paragraph and a sentence.
text_of 104
printf '%s' "The mayor said the library would be open every day except Sunday, and that children under twelve could borrow up to five books at once." >>"$work/text104.txt"
dump_row() {
  measure "dump, all 270 heads + PNGs, ~130 tokens" "$bin" -q dump --file "$work/text104.txt" --model "$gguf" --out "$work/out"
  echo "  (attention.npy $(head -c 128 "$work/out/attention.npy" | tr -d '\0' | grep -ao "shape': ([0-9, ]*)"))"
}
if [ -n "${CANDLE_MI_BIN:-}" ]; then
  [ -x "$CANDLE_MI_BIN" ] && [ -f "${CANDLE_MI_MODEL:-}/model.safetensors" ] || { echo "CANDLE_MI_BIN must be executable and CANDLE_MI_MODEL a folder with model.safetensors" >&2; exit 2; }
fi
if [ -n "${ATTNMAP_BASELINE:-}" ]; then
  [ -x "$ATTNMAP_BASELINE" ] || { echo "ATTNMAP_BASELINE must be an attnmap binary" >&2; exit 2; }
fi
baseline_row() {
  [ -z "${ATTNMAP_BASELINE:-}" ] || measure "baseline build (ATTNMAP_BASELINE), same dump" "$ATTNMAP_BASELINE" -q dump --file "$work/text104.txt" --model "$gguf" --out "$work/out"
}
candle_mi_row() {
  [ -z "${CANDLE_MI_BIN:-}" ] || measure "candle-mi 0.2.2, all 270 patterns, array only" "$CANDLE_MI_BIN" "$CANDLE_MI_MODEL" "$work/text104.txt" "$work/cmi.npy"
}
dump_row
if [ -n "${ATTNMAP_BASELINE:-}${CANDLE_MI_BIN:-}" ]; then
  baseline_row; candle_mi_row
  # Again in the other order, so no side always runs first.
  candle_mi_row; baseline_row; dump_row
fi
text_of 128; text_of 2048; text_of 8192
for n in 128 2048; do
  measure "show, one head of layer 29, ~$n tokens" "$bin" -q --file "$work/text$n.txt" --model "$gguf" --layer 29 --head 8 -o "$work/map.npy" --format npy
  echo "  ($(tokens) tokens)"
done
measure "show, one head of layer 1, ~8192 tokens" "$bin" -q --file "$work/text8192.txt" --model "$gguf" --layer 1 --head 8 -o "$work/map.npy" --format npy
echo "  ($(tokens) tokens)"
