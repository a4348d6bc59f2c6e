#!/usr/bin/env bash
# Runs every test of tapelog. Installs what it needs first (scripts/setup.sh). The core's
# wasm32 build is checked by the browser step (tapelog-wasm's tests build it for wasm32).
# Environment: FUZZ_SECONDS (per fuzz target, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== format"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== unit and integration tests"
cargo test --workspace --quiet 2>&1 | tee target/test-output.txt

echo "== fuzz targets, ${FUZZ_SECONDS:-20} s each"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"

# ---- browser: tapelog-wasm in headless Chromium and the web player (web-demo/test.sh) ----
echo "== browser"
bash web-demo/test.sh 2>&1 | tee target/web-test-output.txt || true
browser=$(grep -E '^browser: [0-9]+ passed, [0-9]+ failed' target/web-test-output.txt | tail -1)
browser_passed=$(echo "$browser" | grep -Eo '[0-9]+ passed' | awk '{print $1+0}')
browser_failed=$(echo "${browser:-browser: 0 passed, 1 failed}" | grep -Eo '[0-9]+ failed' | awk '{print $1+0}')
# ---- end of browser ----

# The plain closing line CI reads.
passed=$(grep -Eo '[0-9]+ passed' target/test-output.txt | awk -v b="${browser_passed:-0}" '{s+=$1} END {print s+b}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk -v b="${browser_failed:-0}" '{s+=$1} END {print s+b}')
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
