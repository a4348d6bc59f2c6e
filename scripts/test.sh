#!/usr/bin/env bash
# Runs every test of tapelog. Installs what it needs first (scripts/setup.sh). The core's
# wasm32 build is checked by the browser step (tapelog-wasm's tests build it for wasm32).
# Environment: FUZZ_SECONDS (per fuzz target, default 15; two targets run at once on 2 cores); TAPELOG_CACHE (below).
#
# Build cache. With TAPELOG_CACHE=DIR (the default under CI=true:
# ${XDG_CACHE_HOME:-~/.cache}/tapelog-ci), cargo builds into DIR/target and the fuzz targets
# into DIR/fuzz-target instead of this checkout's target/, and scripts/build-cache.py gives
# every file whose content the cache was built from its old modification time back, so that a
# fresh clone rebuilds only what changed (docs/toolchain.md, "CI and its cache").
#
# Stages, in order: setup, format, clippy, tests, fuzz, browser. A failed stage does not stop
# the ones after it (so one run shows every failure), except setup: without what it installs
# the rest can't run, and they are reported as skipped. Whatever happens (a failed stage, an
# error in this script, Ctrl-C) the run ends with a table of the stages (result, wall time),
# the stages that failed, and last the line CI reads:
#   tests: N passed, N failed
# N passed and failed count the tests of `cargo test` and the browser tests; a stage that
# failed without a failed test of its own (a format or clippy error, a build failure, a fuzz
# crash) counts as one failure. The exit status is non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
# Outputs of an earlier run must not be counted in this one.
rm -f target/test-output.txt target/web-test-output.txt

stages=()           # stage names, in the order they ran
declare -A result   # name -> ok | FAILED | skipped | interrupted
declare -A took     # name -> wall seconds
current=""          # the stage running now
current_start=""

now() { printf '%s\n' "${EPOCHREALTIME:-$(date +%s.%N)}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# run_stage NAME HEADER COMMAND...: runs COMMAND as stage NAME, records its result and time.
run_stage() {
  local name=$1 header=$2 rc
  shift 2
  stages+=("$name")
  current=$name
  current_start=$(now)
  echo "== $header"
  "$@"
  rc=$?
  took[$name]=$(since "$current_start")
  if [ "$rc" -eq 0 ]; then result[$name]=ok; else result[$name]=FAILED; fi
  current=""
  return "$rc"
}

skip_stage() {
  stages+=("$1")
  result[$1]=skipped
  took[$1]=0.0
}

if [ -z "${TAPELOG_CACHE:-}" ] && [ "${CI:-}" = true ]; then
  TAPELOG_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/tapelog-ci
fi
stage_setup() {
  if [ -n "${TAPELOG_CACHE:-}" ]; then
    mkdir -p "$TAPELOG_CACHE" || return 1
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TAPELOG_CACHE/target}
    export FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$TAPELOG_CACHE/fuzz-target}
    # No incremental compilation data in the cache: a CI build compiles a changed crate whole
    # anyway, and that data was two thirds of the cache (24 of 38 GB seen here). Data left by
    # an earlier run is removed; a cache past TAPELOG_CACHE_MAX_GB (default 40) starts cold,
    # since cargo never removes the artifacts of old versions of a crate.
    export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
    if [ "$CARGO_INCREMENTAL" = 0 ]; then
      find "$TAPELOG_CACHE" -maxdepth 5 -type d -name incremental -prune -exec rm -rf {} + 2>/dev/null || true
    fi
    local used_kb
    used_kb=$(du -sk "$TAPELOG_CACHE" 2>/dev/null | awk '{print $1}')
    if [ "${used_kb:-0}" -gt $(( ${TAPELOG_CACHE_MAX_GB:-40} * 1024 * 1024 )) ]; then
      echo "build cache: over ${TAPELOG_CACHE_MAX_GB:-40} GB, starting cold"
      rm -rf "$TAPELOG_CACHE/target" "$TAPELOG_CACHE/fuzz-target" "$TAPELOG_CACHE/mtimes.json"
    fi
    echo "build cache: $TAPELOG_CACHE ($(( ${used_kb:-0} / 1024 )) MB)"
    python3 scripts/build-cache.py restore "$TAPELOG_CACHE/mtimes.json" || return 1
    # Azurite (an npm install of a few hundred packages) and the Python venvs of moto and
    # asciinema are kept in the cache too (setup.sh makes the venvs at the cache's own path,
    # so that their scripts work from any clone).
    local tool
    for tool in azurite moto asciinema; do
      mkdir -p "$TAPELOG_CACHE/$tool" target || return 1
      if [ ! -e "target/$tool" ]; then ln -s "$TAPELOG_CACHE/$tool" "target/$tool" || return 1; fi
    done
  fi
  bash scripts/setup.sh
}
stage_format() { cargo fmt --all -- --check; }
stage_clippy() { cargo clippy --workspace --all-targets --quiet -- -D warnings; }
stage_tests() { cargo test --workspace --no-fail-fast --quiet 2>&1 | tee target/test-output.txt; }
stage_fuzz() { bash scripts/fuzz.sh "${FUZZ_SECONDS:-15}"; }
# The browser tests print `browser: N passed, N failed` last and exit non-zero on a failure.
stage_browser() { bash web-demo/test.sh 2>&1 | tee target/web-test-output.txt; }

# Sum of the numbers before WORD ("passed" or "failed") in FILE (0 when it does not exist).
count() {
  if [ -f "$2" ]; then
    grep -Eo "[0-9]+ $1" "$2" | awk '{s+=$1} END {print s+0}'
  else
    echo 0
  fi
}

# The summary and the closing line; the exit status. Runs on every exit.
finish() {
  local rc=$? name passed failed n failed_stages=()
  trap - EXIT INT TERM
  if [ -n "$current" ]; then
    result[$current]=interrupted
    took[$current]=$(since "$current_start")
  fi
  passed=0
  failed=0
  for name in "${stages[@]}"; do
    n=0
    case $name in
      tests)
        passed=$((passed + $(count passed target/test-output.txt)))
        n=$(count failed target/test-output.txt)
        ;;
      browser)
        local line=""
        if [ -f target/web-test-output.txt ]; then
          line=$(grep -E '^browser: [0-9]+ passed, [0-9]+ failed' target/web-test-output.txt | tail -1)
        fi
        if [ -n "$line" ]; then
          passed=$((passed + $(echo "$line" | grep -Eo '[0-9]+ passed' | awk '{print $1+0}')))
          n=$(echo "$line" | grep -Eo '[0-9]+ failed' | awk '{print $1+0}')
        elif [ "${result[$name]}" != skipped ]; then
          n=1 # it never said how it went
        fi
        ;;
    esac
    case ${result[$name]} in
      FAILED | interrupted)
        failed_stages+=("$name")
        if [ "$n" -eq 0 ]; then n=1; fi
        ;;
    esac
    failed=$((failed + n))
  done
  if [ "$rc" -ne 0 ] && [ "${#failed_stages[@]}" -eq 0 ]; then
    # This script itself failed outside any stage.
    failed_stages+=("test.sh (exit status $rc)")
    failed=$((failed + 1))
  fi
  echo
  echo "== summary"
  printf '%-10s %-12s %10s\n' stage result "wall time"
  for name in "${stages[@]}"; do
    printf '%-10s %-12s %8s s\n' "$name" "${result[$name]}" "${took[$name]}"
  done
  if [ "${#failed_stages[@]}" -gt 0 ]; then
    local joined
    joined=$(printf '%s, ' "${failed_stages[@]}")
    echo "failed stages: ${joined%, }"
  else
    echo "failed stages: none"
  fi
  # The plain closing line CI reads: keep it last and in this form.
  echo "tests: $passed passed, $failed failed"
  if [ "$failed" -gt 0 ]; then
    exit 1
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if run_stage setup "setup (scripts/setup.sh)" stage_setup; then
  run_stage format "format" stage_format
  run_stage clippy "clippy" stage_clippy
  run_stage tests "unit and integration tests" stage_tests
  run_stage fuzz "fuzz targets, ${FUZZ_SECONDS:-15} s each" stage_fuzz
  # ---- browser: tapelog-wasm in headless Chromium and the web player (web-demo/test.sh) ----
  run_stage browser "browser" stage_browser
else
  for name in format clippy tests fuzz browser; do skip_stage "$name"; done
fi
exit 0
