#!/usr/bin/env bash
# Issue 10's scale figures: `dump` of a random BERT of 96 layers x 96 heads (9,216 maps
# at 128 tokens, a 604 MB attention.npy, 9,216 PNGs) with its wall time and peak RSS.
# The model is regenerated from its recipe (examples/scale_model.rs, the same code as
# tests/integration/scale.rs, which checks the arrays against transformers and the peak
# RSS); no Python, no download.
#
#   cargo build --release && benches/scale.sh [RUNS]
#   ATTNMAP_BIN=target/dist/attnmap benches/scale.sh     # another build of it
#
# Prints the median wall time and the largest peak RSS over RUNS runs (default 3).
# Targets (issue 10): under 60 s on 2 cores, peak RSS under 300 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
# shellcheck source=benches/measure.sh
. benches/measure.sh
text=$(cargo run -q --release --example scale_model -- "$work/model")

echo "attnmap $("$bin" --version | cut -d' ' -f2), $(nproc) cores, model: 96 layers x 96 heads, hidden 192 (62 MB f32)"
measure "show (layer 95, head 95: the whole forward)" "$bin" -q "$text" --model "$work/model" --layer 95 --head 95 -o "$work/map.png"
measure "dump (9,216 heads at 128 tokens)" "$bin" -q dump "$text" --model "$work/model" --out "$work/out"
# CPU seconds say more than wall time on a loaded machine.
rm -rf "$work/out"
/usr/bin/time -f "one more dump: wall %e s, user %U s, system %S s, peak RSS %M KiB" "$bin" -q dump "$text" --model "$work/model" --out "$work/out" 2>&1 | grep '^one more dump'
echo "dump size: $(du -sh "$work/out" | cut -f1) ($(find "$work/out" -type f | wc -l) files; attention.npy $(stat -c %s "$work/out/attention.npy") bytes)"
