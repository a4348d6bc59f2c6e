#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 20), from the committed seeds
# (fuzz/seeds/<target>, written by `cargo run -p tapelog-tests --bin write-seeds -- fuzz/seeds`)
# and the working corpus (fuzz/corpus/<target>, not in git, where new inputs go).
# FUZZ_JOBS=N runs N targets at once (default: the cores, at most 4).
# A long run: scripts/fuzz.sh 3600; one target: scripts/fuzz.sh 20 page_key (see docs/fuzzing.md).
# FUZZ_RUNS=N runs each target for N executions instead of N seconds (the long run of
# docs/fuzzing.md: FUZZ_RUNS=10000000 FUZZ_BUILD="--sanitizer none" bash scripts/fuzz.sh 0).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(read_whole read_split json_event fluent_split legacy audit_lines page_key storage_url config_toml api_body)
fi
# A short run (the test command's dose, 60 s or less a target) builds without optimisation and
# without AddressSanitizer: that build costs a fraction of the optimised ASan one (the core's
# generated schema is 4 MB of Rust), and the code under test has no unsafe code for ASan to
# watch. Long runs build optimised with ASan, cargo-fuzz's default. FUZZ_BUILD overrides the
# choice.
if [ "$secs" -le 60 ] && [ -z "${FUZZ_RUNS:-}" ]; then build=${FUZZ_BUILD---dev --sanitizer none}; else build=${FUZZ_BUILD-}; fi
if [ -n "${FUZZ_RUNS:-}" ]; then limit=(-runs="$FUZZ_RUNS"); else limit=(-max_total_time="$secs"); fi
if rustup toolchain list | grep -q '^nightly'; then tc=+nightly; else tc=; export RUSTC_BOOTSTRAP=1; fi
# FUZZ_TARGET_DIR: where the fuzz build goes (default fuzz/target; scripts/test.sh's cache).
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then build="$build --target-dir $FUZZ_TARGET_DIR"; fi
# One build of every target first, so that each run below starts at once.
out=$(cargo $tc fuzz build $build 2>&1) || { echo "$out" | tail -40; exit 1; }
# FUZZ_JOBS targets run at once (default: the number of cores, at most 4): libFuzzer runs one
# process per target, so on 2 cores two targets at a time give the same dose in half the time.
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
if [ "$jobs" -gt 4 ]; then jobs=4; fi
if [ "$jobs" -lt 1 ]; then jobs=1; fi
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
run_one() {
  local t=$1
  mkdir -p "fuzz/corpus/$t"
  if cargo $tc fuzz run $build "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- "${limit[@]}" -rss_limit_mb=2048 -max_len=65536 >"$logs/$t.log" 2>&1; then
    echo ok >"$logs/$t.rc"
  else
    echo failed >"$logs/$t.rc"
  fi
}
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait
status=0
for t in "${targets[@]}"; do
  if [ "$(cat "$logs/$t.rc" 2>/dev/null)" = ok ]; then
    echo "fuzz $t: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$logs/$t.log" | tail -1)"
  else
    echo "fuzz $t: FAILED"
    tail -40 "$logs/$t.log"
    status=1
  fi
done
exit $status
