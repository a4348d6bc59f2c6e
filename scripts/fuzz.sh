#!/usr/bin/env bash
# Runs each fuzz target for N seconds (default 20) with seeds from the test vectors.
# A long run: scripts/fuzz.sh 3600  (see docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
# A short run (the test command's dose, 60 s or less a target) builds without optimisation and
# without AddressSanitizer: that build costs a fraction of the optimised ASan one (the core's
# generated schema is 4 MB of Rust), and the core has no unsafe code for ASan to watch. Long
# runs build optimised with ASan, cargo-fuzz's default. FUZZ_BUILD overrides the choice.
if [ "$secs" -le 60 ]; then build=${FUZZ_BUILD---dev --sanitizer none}; else build=${FUZZ_BUILD-}; fi
if rustup toolchain list | grep -q '^nightly'; then tc=+nightly; else tc=; export RUSTC_BOOTSTRAP=1; fi
cargo run --quiet -p tapelog-tests --bin write-seeds -- fuzz/corpus
for t in read_whole read_split json_event fluent_split; do
  mkdir -p "fuzz/corpus/$t"
  out=$(cargo $tc fuzz run $build "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=262144 2>&1) || { echo "$out" | tail -40; exit 1; }
  echo "fuzz $t: $(echo "$out" | grep -Eo 'Done [0-9]+ runs in [0-9]+ second' | tail -1)"
done
