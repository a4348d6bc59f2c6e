#!/usr/bin/env bash
# Browser benchmark: decode throughput of tapelog-wasm in Chromium as a ratio to the native
# decodes of the same file (typed events, and the page's own path run natively), time to first output and JS heap of the player on a large
# recording, and events into JS objects by JSON.parse against serde-wasm-bindgen. Figures go
# to docs/benchmarks.md (wasm section).
# Environment: BENCH_MB (recording size, default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${BENCH_MB:-100}
fixtures=target/web-fixtures
cargo run --quiet -p tapelog-tests --bin write-web-fixtures -- "$fixtures" --big "$mb"
WASM_FEATURES=serde-bench PROFILE=release bash web-demo/build.sh
# Printed after the run, not through `tee /dev/stderr`: that reopens a log file the output
# is redirected to, from its start, and overwrote these lines.
out=$(cargo bench --quiet -p tapelog-wasm --bench native_decode -- "$PWD/$fixtures/big.tlog")
echo "$out"
typed=$(awk -F= '/^native_decode_mb_s=/{print $2}' <<<"$out")
player=$(awk -F= '/^native_player_mb_s=/{print $2}' <<<"$out")
echo "load_average=$(cut -d' ' -f1-3 /proc/loadavg)"
node web-demo/tests/bench.mjs web-demo/dist "$fixtures" big.tlog "$typed" "$player"
echo "load_average=$(cut -d' ' -f1-3 /proc/loadavg)"
