#!/usr/bin/env bash
# Installs what tapelog's build and tests need on a fresh machine. Idempotent: each step checks
# first. Used by scripts/test.sh and scripts/run.sh.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

# The sans-IO core must build for the browser.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# cargo-fuzz runs the fuzz targets (short runs in the test command).
if ! have cargo-fuzz; then
  echo "setup: installing cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.2
fi
