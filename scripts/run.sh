#!/usr/bin/env bash
# tapelog's main job on the embedded default: build tapelog and the web player, then run
# `tapelog serve` with everything under ./tapelog-data (recordings in log/records, open
# uploads, the audit log) on 127.0.0.1:7450, no configuration. Once it is up, one short demo
# session is recorded through it with `tapelog record`, so there is something to search and
# play at once. The last line printed is the web player's login URL. Ctrl-C stops the server
# (open streams are closed and stay resumable).
# TAPELOG_DATA_DIR and TAPELOG_LISTEN change the directory and the address.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
cargo build --release -p tapelog --quiet
bash web-demo/build.sh >/dev/null
bin=target/release/tapelog
export TAPELOG_DATA_DIR=${TAPELOG_DATA_DIR:-tapelog-data}
listen=${TAPELOG_LISTEN:-127.0.0.1:7450}

fifo=$(mktemp -u)
mkfifo "$fifo"
"$bin" serve --data-dir "$TAPELOG_DATA_DIR" --listen "$listen" >"$fifo" &
serve=$!
trap 'kill -TERM $serve 2>/dev/null; wait $serve 2>/dev/null; rm -f "$fifo"' EXIT
trap 'exit 130' INT TERM
exec 3<"$fifo"
read -r first <&3 || { echo "tapelog serve did not start" >&2; exit 1; }
echo "$first"
url=${first#listening on }
# The second line is the web player's login URL (with no tokens configured it carries the
# admin token in its #fragment); it is shown last, below.
read -r second <&3 || { echo "tapelog serve printed no login URL" >&2; exit 1; }
login=${second#web player: }
cat <&3 &

echo "== a demo session recorded through the server (tapelog record --server $url)"
"$bin" record --server "$url" --cols 100 --rows 30 -- bash -c \
  'echo "hello from tapelog"; uname -a; for i in 1 2 3; do echo "step $i"; sleep 0.3; done; ls -la' \
  </dev/null 2>&1 | tail -n 3
echo "== completed sessions on the server"
"$bin" sessions list --server "$url"
case $login in
  *'#token='*) how="this link logs you in: it holds the admin token, keep it to yourself" ;;
  *) how="tokens are configured: give the page an auditor's or an admin's token" ;;
esac
cat <<EOF

tapelog serve is running on $url with its data in $TAPELOG_DATA_DIR/ (Ctrl-C stops it).
  record a session:  $bin record --server $url -- bash
  play one here:     $bin play --server $url SESSION_ID
Open the web player ($how):
  $login
EOF
wait $serve
