#!/usr/bin/env bash
# Builds the web player into web-demo/dist/: the page's modules, the worker, tapelog-wasm
# (wasm-bindgen --target web) and xterm.js, all self-contained (no CDN): any static server can
# serve dist/.
# Installs what it needs (npm packages under web-demo/, the wasm target, wasm-bindgen-cli at
# the version of Cargo.lock) if missing. Environment: PROFILE=release|dev (default release);
# WASM_FEATURES: tapelog-wasm features (bench.sh: serde-bench).
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
profile=${PROFILE:-release}

if [ ! -f node_modules/@xterm/xterm/lib/xterm.js ] || [ ! -d node_modules/playwright-core ] \
  || [ ! -f node_modules/@xterm/headless/lib-headless/xterm-headless.mjs ] \
  || [ ! -f node_modules/@xterm/addon-serialize/lib/addon-serialize.mjs ] \
  || [ ! -f node_modules/typescript/package.json ]; then
  echo "build: npm install (web-demo)"
  npm install --no-audit --no-fund --loglevel=error >/dev/null
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print}' "$root/Cargo.lock")
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
  echo "build: installing wasm-bindgen-cli $want"
  cargo install wasm-bindgen-cli --version "$want" # not --locked: see docs/toolchain.md
fi

echo "build: tapelog-wasm ($profile)"
flag=$([ "$profile" = release ] && echo --release || true)
(cd "$root" && cargo build $flag --quiet -p tapelog-wasm --lib --target wasm32-unknown-unknown ${WASM_FEATURES:+--features "$WASM_FEATURES"})
dir=$([ "$profile" = release ] && echo release || echo debug)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

rm -rf dist
mkdir -p dist/pkg dist/xterm
# With its TypeScript declarations (pkg/*.d.ts): test.sh type-checks the page against them.
wasm-bindgen --target web --out-dir dist/pkg \
  "$target_dir/wasm32-unknown-unknown/$dir/tapelog_wasm.wasm"
cp src/index.html src/*.js src/style.css dist/
cp node_modules/@xterm/xterm/lib/xterm.js node_modules/@xterm/xterm/css/xterm.css dist/xterm/
# The worker's headless terminal and its serializer (checkpoints of the terminal's state).
cp node_modules/@xterm/headless/lib-headless/xterm-headless.mjs \
  node_modules/@xterm/addon-serialize/lib/addon-serialize.mjs dist/xterm/
echo "build: web-demo/dist ($(du -sh dist | cut -f1))"
