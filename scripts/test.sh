#!/usr/bin/env bash
# The project's test command: fetch the real models the tests need (checksums
# verified), then run every test in release mode (the candle stack is ~50x
# slower unoptimised, and one profile keeps CI to a single build).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh
cargo test --release "$@"
