#!/usr/bin/env bash
cd "$(dirname "$0")/.."
# Installs what tapelog's build and tests need on a fresh machine. Idempotent: each step checks
# first. `setup.sh build` (scripts/run.sh) installs what building tapelog and the web player
# needs; `setup.sh` (scripts/test.sh) also what the tests use.
set -euo pipefail
mode=${1:-test}

have() { command -v "$1" >/dev/null 2>&1; }

# The sans-IO core must build for the browser.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
if ! have npm; then
  echo "setup: installing nodejs and npm"
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
# wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock (installed without
# --locked: see docs/toolchain.md), for the web player and its tests.
wasm_bindgen_version=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wasm_bindgen_version" ]; then
  echo "setup: installing wasm-bindgen-cli $wasm_bindgen_version"
  cargo install wasm-bindgen-cli --version "$wasm_bindgen_version"
fi
if [ "$mode" = build ]; then exit 0; fi

# cargo-fuzz runs the fuzz targets (short runs in the test command).
if ! have cargo-fuzz; then
  echo "setup: installing cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.2
fi

# A real S3-compatible server for the object-store tests (s3s-fs 0.14.1 is the newest that
# builds with rustc 1.95; see docs/toolchain.md).
if [ "$(s3s-fs --version 2>/dev/null | awk '{print $2}')" != "0.14.1" ]; then
  echo "setup: installing s3s-fs 0.14.1"
  cargo install s3s-fs --version 0.14.1 --features binary
fi

# Azurite, the Azure Blob Storage emulator, for the Azure uploader tests (3.35 runs on Node 20).
# Installed under target/ so that it stays out of the source tree.
azurite_dir=target/azurite
if [ ! -f "$azurite_dir/node_modules/azurite/dist/src/blob/main.js" ]; then
  echo "setup: installing azurite 3.35.0"
  mkdir -p "$azurite_dir"
  (cd "$azurite_dir" && npm install --no-audit --no-fund --loglevel=error azurite@3.35.0 >/dev/null)
fi

# moto 5.1.22 (PyPI, moto[server]): a second, independent S3 implementation, for what s3s-fs
# lacks (ListMultipartUploads, sparse part numbers): the S3 multipart uploader's tests start
# `moto_server` on a loopback port themselves (tests/integration/util/stores.rs). In a venv
# under target/. Not 5.2.x: its ListParts answer has the root element `ListPartsResponse`
# instead of S3's `ListPartsResult`, which aws-sdk-s3 refuses (docs/storage.md).
moto_dir=target/moto
# (Also when moto_server's `#!` names an interpreter that is gone: a venv made elsewhere.)
if [ "$("$moto_dir/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null)" != "5.1.22" ] \
  || [ ! -x "$(head -1 "$moto_dir/bin/moto_server" 2>/dev/null | cut -c3-)" ]; then
  echo "setup: installing moto 5.1.22"
  mkdir -p "$moto_dir"
  # At the real path (target/moto may be a link into the CI cache): the venv's scripts name it.
  moto_dir=$(readlink -f "$moto_dir")
  python3 -m venv --clear "$moto_dir"
  "$moto_dir/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.1.22'
fi

# asciinema 2.4.0 (PyPI) checks `tapelog export --format asciicast`: `asciinema cat` must print
# the terminal output exactly (tests/integration/asciicast.rs). Installed in a venv under target/.
asciinema_dir=target/asciinema
if [ "$("$asciinema_dir/bin/asciinema" --version 2>/dev/null)" != "asciinema 2.4.0" ]; then
  echo "setup: installing asciinema 2.4.0"
  mkdir -p "$asciinema_dir"
  asciinema_dir=$(readlink -f "$asciinema_dir")
  python3 -m venv --clear "$asciinema_dir"
  "$asciinema_dir/bin/pip" install --quiet --disable-pip-version-check asciinema==2.4.0
fi

# PostgreSQL 15 from Debian for the PostgreSQL audit back end's tests: they run initdb and
# postgres from its bin directory themselves (tests/integration/util/postgres.rs, as the
# `postgres` user when root); the package's own cluster is not used.
if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
  echo "setup: installing postgresql-15"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi

# ---- browser (tapelog-wasm tests, the web player and its Playwright tests) ------------------
# Chromium and its WebDriver from Debian (wasm-bindgen-cli is installed above); the npm
# packages of web-demo/ (@xterm/xterm, @xterm/headless, @xterm/addon-serialize,
# playwright-core, typescript; from its package-lock.json). The Chromium flags that stop DNS lookups are
# in wasm/webdriver.json and web-demo/tests/serve.mjs.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "setup: installing chromium and chromium-driver"
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if [ ! -f web-demo/node_modules/@xterm/xterm/lib/xterm.js ] || [ ! -f web-demo/node_modules/playwright-core/package.json ] \
  || [ ! -f web-demo/node_modules/@xterm/headless/lib-headless/xterm-headless.mjs ] \
  || [ ! -f web-demo/node_modules/@xterm/addon-serialize/lib/addon-serialize.mjs ] \
  || [ ! -f web-demo/node_modules/typescript/package.json ]; then
  echo "setup: npm install in web-demo"
  (cd web-demo && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
# ---- end of browser ----------------------------------------------------------------------
