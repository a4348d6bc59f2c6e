#!/usr/bin/env bash
# The browser tests (run by scripts/test.sh; needs what scripts/setup.sh installs):
# 1. tapelog-wasm in headless Chromium (wasm-bindgen-test, the core's test vectors);
# 2. the web player: its type check (tsc over the JSDoc types of web-demo/src, against the
#    declarations build.sh generates; a type error fails the stage), then end to end with
#    Playwright (recordings from `write-web-fixtures`), screenshots in target/web-demo/screenshots/;
# 3. the player served by the real `tapelog serve`, listing and playing a recorded session;
# 4. the player on `tapelog serve --teleport` (a read-only gateway) in front of the Teleport
#    Auth double run as a process (`teleport-double`), playing the cluster's session.
# Prints `browser: N passed, N failed` last; exits non-zero when a test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=target/web-demo
mkdir -p "$out"
# Each step's wall time, printed at the end (where the stage's time goes).
steps=()
mark=${EPOCHREALTIME:-0}
step_done() {
  local t=${EPOCHREALTIME:-0}
  steps+=("$(awk -v a="$mark" -v b="$t" -v n="$1" 'BEGIN { printf "%-28s %7.1f s", n, b - a }')")
  mark=$t
}

echo "== tapelog-wasm in headless Chromium (wasm-bindgen-test)"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner CHROMEDRIVER=/usr/bin/chromedriver \
  WASM_BINDGEN_TEST_TIMEOUT=120 \
  cargo test --target wasm32-unknown-unknown -p tapelog-wasm 2>&1 | tee "$out/wasm-test-output.txt"
wasm_rc=${PIPESTATUS[0]}
step_done "wasm tests (build + run)"

echo "== web player end to end (Playwright, headless Chromium)"
# The binaries come from one `cargo build --workspace --bins`: after scripts/test.sh's test
# stage it has nothing to compile (tests/Cargo.toml makes the features of the two builds the
# same), where `cargo run -p ...` would build every crate again with other features.
cargo build --quiet --workspace --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/debug/write-web-fixtures" target/web-fixtures --big "${WEB_BIG_MB:-12}"
step_done "web fixtures"
# testkit: the features the wasm tests above were built with, so the page's wasm reuses them.
WASM_FEATURES=${WASM_FEATURES-testkit} PROFILE=${PROFILE:-dev} bash web-demo/build.sh
step_done "web player build"
echo "== type check of the web player (tsc --checkJs --noEmit: web-demo/tsconfig*.json)"
(cd web-demo && node_modules/.bin/tsc -p tsconfig.json && node_modules/.bin/tsc -p tsconfig.worker.json) 2>&1 \
  | tee "$out/tsc-output.txt"
tsc_rc=${PIPESTATUS[0]}
[ "$tsc_rc" -eq 0 ] && echo "type check: no errors"
step_done "type check"
node web-demo/tests/e2e.mjs web-demo/dist target/web-fixtures "$out/screenshots" 2>&1 | tee "$out/e2e-output.txt"
e2e_rc=${PIPESTATUS[0]}
step_done "player end to end"

echo "== the player served by tapelog serve (Playwright, the real binary)"
bin=$target_dir/debug/tapelog
node web-demo/tests/daemon.mjs "$bin" web-demo/dist "$out/screenshots" 2>&1 | tee "$out/daemon-output.txt"
daemon_rc=${PIPESTATUS[0]}
step_done "player on tapelog serve"

echo "== the player on tapelog serve --teleport, a gateway to the Auth double (Playwright)"
node web-demo/tests/gateway.mjs "$bin" "$target_dir/debug/teleport-double" web-demo/dist "$out/screenshots" 2>&1 \
  | tee "$out/gateway-output.txt"
gateway_rc=${PIPESTATUS[0]}
step_done "player on serve --teleport"
printf '%s\n' "${steps[@]}"

passed=$(cat "$out/wasm-test-output.txt" "$out/e2e-output.txt" "$out/daemon-output.txt" "$out/gateway-output.txt" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(cat "$out/wasm-test-output.txt" "$out/e2e-output.txt" "$out/daemon-output.txt" "$out/gateway-output.txt" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
if [ "$wasm_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi  # a build failure counts
if [ "$e2e_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
if [ "$tsc_rc" -ne 0 ]; then failed=$((failed + 1)); fi  # type errors (not a test: not in passed)
if [ "$daemon_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
if [ "$gateway_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "browser: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
