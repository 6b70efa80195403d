#!/usr/bin/env bash
# attnmap in CI, runnable: dump the old version once, diff every change against
# it, keep the report, fail past a threshold.
#
#   scripts/fetch-models.sh && cargo build --release && examples/ci-diff.sh
#
# Here "old" is all-MiniLM-L6-v2 and "new" its fine-tuned descendant; in your CI
# they are your released model and the checkpoint under review.
set -euo pipefail
cd "$(dirname "$0")/.."

attnmap=${ATTNMAP:-target/release/attnmap}
old_model=${OLD_MODEL:-.models/minilm}
new_model=${NEW_MODEL:-.models/sre}
threshold=${THRESHOLD:-0.05}          # per-head Jensen-Shannon divergence
work=${WORK:-target/attnmap-ci}
probe=${PROBE:-"The WhirlyGigs arrived broken, and support never answered."}
mkdir -p "$work"

# 1. Once (cache or commit this folder): the baseline maps of the old version.
if [ ! -f "$work/baseline/manifest.json" ]; then
  "$attnmap" -q dump "$probe" --model "$old_model" --out "$work/baseline"
fi

# 2. On every change: the candidate's maps of the same text, then the diff.
"$attnmap" -q dump "$probe" --model "$new_model" --out "$work/candidate" --force
status=0
"$attnmap" diff "$work/baseline" "$work/candidate" --metric jsd --fail-above "$threshold" \
  --markdown --out "$work/report" --force >"$work/summary.md" || status=$?

# 3. The report: a job summary where the CI has one, the log otherwise;
#    upload $work/report (pictures, report.md, report.json) as an artifact.
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat "$work/summary.md" >>"$GITHUB_STEP_SUMMARY"; fi
cat "$work/summary.md"
case $status in
  0) echo "attention maps within jsd $threshold of the baseline" ;;
  1) echo "attention maps moved past jsd $threshold: see $work/report" >&2 ;;
esac
exit "$status"
