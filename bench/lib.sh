# Helpers shared by the benchmark scripts (source it). Servers run pinned to one core and load
# generators to the other, so that the two do not compete for the same CPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
KINDLING="$TARGET/release/kindling"
PLAIN_HELLO="$TARGET/release/plain-hello"
SERVER_CORE="${BENCH_SERVER_CORE:-0}"
CLIENT_CORE="${BENCH_CLIENT_CORE:-1}"
RESULTS="${BENCH_RESULTS:-$ROOT/bench/results}"
mkdir -p "$RESULTS"
# Wasmtime captures backtraces on internal errors when this is set; no benchmark runs with it.
unset RUST_BACKTRACE

# Installs Debian packages the benchmarks need when they are missing.
ensure_packages() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
}

# Builds Kindling, the bench tools and the guests, optimised.
build_release() {
  scripts/setup.sh
  ensure_packages wrk util-linux curl
  scripts/build-guests.sh
  cargo build --quiet --release --locked -p kindling-cli -p kindling-bench --bins
}

# Waits until a URL answers (a readiness check, not a fixed sleep).
wait_http() {
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: $1 never answered" >&2
  return 1
}

# Starts `kindling serve` pinned to the server core on port $1 with extra flags; sets
# SERVER_PID and KINDLING_SERVER. The data directory is fresh unless BENCH_DATA names one.
start_kindling() {
  local port=$1
  shift
  local data
  data=${BENCH_DATA:-$(mktemp -d)}
  taskset -c "$SERVER_CORE" "$KINDLING" serve --listen "127.0.0.1:$port" --data-dir "$data" \
    "$@" >"$RESULTS/kindling-$port.log" 2>&1 &
  SERVER_PID=$!
  export KINDLING_SERVER="http://127.0.0.1:$port"
  # The CLI finds the node's admin token there.
  export KINDLING_DATA_DIR="$data"
  wait_http "$KINDLING_SERVER/readyz"
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

# Runs `kindling bench` pinned to the client core.
client_bench() {
  taskset -c "$CLIENT_CORE" "$KINDLING" bench "$@"
}
