#!/usr/bin/env bash
# tapelog's main job on the embedded default (local disk under ./tapelog-data, no configuration):
# write a sample recording, stream it through the recording stream into the local store as a
# multipart upload (parts, completion), then decode the stored recording and print it as
# Teleport's JSON and as terminal output; append the session's audit events to the file audit
# log and search it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p tapelog --quiet
bin=target/release/tapelog
out=${TAPELOG_DATA:-tapelog-data}
mkdir -p "$out"
$bin sample --lines 2000 --output "$out/sample-session.tar"
echo "== upload it through the stream into $out/log/records (the embedded default store) =="
upload=$($bin upload --storage "$out/log/records" --part-size 131072 "$out/sample-session.tar")
echo "$upload"
sid=$(echo "$upload" | awk '/^upload/ {print $4}')
echo "== $out/log/records/$sid.tar as Teleport's JSON (first 5 events) =="
$bin export --format json --stats "$out/log/records/$sid.tar" | head -n 5
echo "== the terminal output =="
$bin export --format text "$out/log/records/$sid.tar" | head -n 5
echo "== open uploads left in the store (none expected) =="
$bin uploads list --storage "$out/log/records"
echo "== the session's audit events (not its prints) into the file audit log under $out/log/ =="
$bin export --format json "$out/log/records/$sid.tar" | grep -v '"event":"print"' \
  | $bin emit --data-dir "$out" --server-id local --cluster-name tapelog.example
echo "== search it: completed sessions, then every event of the log =="
$bin search --data-dir "$out" --sessions
$bin search --data-dir "$out" --limit 5
echo "== the shipped legacy (pre-4.4) recording examples/legacy-session.tar, normalised to V1 =="
$bin export --format proto --output "$out/legacy-session.tar" examples/legacy-session.tar
$bin export --format json --stats "$out/legacy-session.tar" | tail -n 1
