#!/usr/bin/env bash
# tapelog's main job on the embedded default: write a sample recording to local disk, then
# decode it and print it as Teleport's JSON and as terminal output. No configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p tapelog --quiet
bin=target/release/tapelog
out=${TAPELOG_DATA:-tapelog-data}
mkdir -p "$out"
$bin sample --output "$out/sample-session.tar"
echo "== $out/sample-session.tar as Teleport's JSON (first 5 events) =="
$bin export --format json --stats "$out/sample-session.tar" | head -n 5
echo "== the terminal output =="
$bin export --format text "$out/sample-session.tar" | head -n 5
echo "== the shipped legacy (pre-4.4) recording examples/legacy-session.tar, normalised to V1 =="
$bin export --format proto --output "$out/legacy-session.tar" examples/legacy-session.tar
$bin export --format json --stats "$out/legacy-session.tar" | tail -n 1
