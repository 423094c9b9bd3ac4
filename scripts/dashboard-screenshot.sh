#!/usr/bin/env bash
# Takes the dashboard screenshots in docs/: a node with the three examples under load, the
# overview and one function's page, in headless Chromium (driven over the DevTools protocol by
# scripts/screenshot.mjs) after half a minute of live data.
#   scripts/dashboard-screenshot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
scripts/build-guests.sh >/dev/null
cargo build --quiet --release --locked -p kindling-cli
target="${CARGO_TARGET_DIR:-target}"
kindling="$target/release/kindling"
data=$(mktemp -d)
port=3900
server="http://127.0.0.1:$port"
# The CLI finds the node's admin token in its data directory.
export KINDLING_DATA_DIR="$data"
"$kindling" serve --listen "127.0.0.1:$port" --data-dir "$data" >/dev/null 2>&1 &
pid=$!
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$data" "${profile:-}"' EXIT
for _ in $(seq 100); do curl -fsS -o /dev/null "$server/readyz" 2>/dev/null && break; sleep 0.1; done
"$kindling" deploy hello examples/hello.wasm --server "$server" >/dev/null
"$kindling" deploy greet examples/wagi-hello.wasm --server "$server" >/dev/null
"$kindling" deploy c-hello examples/c-hello.wasm --server "$server" >/dev/null
"$kindling" bench "$server/hello/" --rate 400 --rate-to 900 --duration 60s --json >/dev/null &
"$kindling" bench "$server/greet/docs" --rate 60 --duration 60s --json >/dev/null &
"$kindling" bench "$server/c-hello/" --rate 150 --duration 60s --json >/dev/null &
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-quic --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
  --remote-debugging-port=9333 about:blank >/dev/null 2>&1 &
for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:9333/json/version 2>/dev/null && break; sleep 0.1; done
# Half a minute of live data on each page, both at once.
node --experimental-websocket scripts/screenshot.mjs 9333 30 1280 760 "$server/dashboard" docs/dashboard.png &
overview=$!
node --experimental-websocket scripts/screenshot.mjs 9333 30 1280 1100 "$server/dashboard#/fn/greet&token=$(cat "$data/admin.token")" docs/dashboard-function.png &
function_page=$!
wait "$overview" "$function_page"
echo "wrote docs/dashboard.png and docs/dashboard-function.png"
kill "$pid"
