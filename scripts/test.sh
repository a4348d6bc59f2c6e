#!/usr/bin/env bash
# Runs every test of tapelog. Installs what it needs first (scripts/setup.sh).
# Environment: FUZZ_SECONDS (per fuzz target, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== format"
cargo fmt --all -- --check

echo "== the core builds for the browser (wasm32-unknown-unknown)"
cargo build -p tapelog-core --target wasm32-unknown-unknown --quiet

echo "== clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== unit and integration tests"
cargo test --workspace --quiet 2>&1 | tee target/test-output.txt

echo "== fuzz targets, ${FUZZ_SECONDS:-20} s each"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"

# The plain closing line CI reads.
passed=$(grep -Eo '[0-9]+ passed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
