#!/usr/bin/env bash
# Cluster mode on this machine: three nats-server processes clustered with JetStream (R3) and
# three Kindling nodes joined through them, the examples deployed once on the first node and
# served by all three; keeps running until Ctrl-C. Everything lives under ./.kindling-cluster
# (KINDLING_CLUSTER_DIR); run it again and the nodes start on what they had.
#
#   KINDLING_CLUSTER_DIR  where the NATS stores and the nodes' data go (default ./.kindling-cluster)
#   KINDLING_PORT_BASE    first of the ports used (default 4300): NATS clients on BASE..BASE+2,
#                         routes on BASE+10.., monitoring on BASE+20.., Kindling on BASE+30..
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
command -v nats-server >/dev/null || {
  echo "cluster: installing nats-server (Debian)"
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq nats-server
}
scripts/build-guests.sh
cargo build --release --locked -p kindling-cli
kindling="${CARGO_TARGET_DIR:-$PWD/target}/release/kindling"
unset RUST_BACKTRACE

dir="${KINDLING_CLUSTER_DIR:-$PWD/.kindling-cluster}"
base="${KINDLING_PORT_BASE:-4300}"
mkdir -p "$dir"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
trap 'exit 130' INT TERM

routes="nats://127.0.0.1:$((base + 10)),nats://127.0.0.1:$((base + 11)),nats://127.0.0.1:$((base + 12))"
urls="nats://127.0.0.1:$base,nats://127.0.0.1:$((base + 1)),nats://127.0.0.1:$((base + 2))"
for i in 0 1 2; do
  mkdir -p "$dir/nats-$i"
  nats-server -js -a 127.0.0.1 -p $((base + i)) -m $((base + 20 + i)) -n "nats-$i" \
    --cluster_name kindling --cluster "nats://127.0.0.1:$((base + 10 + i))" --routes "$routes" \
    -sd "$dir/nats-$i" 2>"$dir/nats-$i.log" &
  pids+=($!)
done
wait_for() { # URL WHAT
  for _ in $(seq 1 600); do
    if curl -fsS "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "cluster: $2 did not become ready; see $dir/*.log" >&2
  exit 1
}
for i in 0 1 2; do wait_for "http://127.0.0.1:$((base + 20 + i))/healthz" "nats-server $i"; done

# Every node must open the secrets another sealed: they share one key.
[ -f "$dir/secret.key" ] || head -c 32 /dev/urandom >"$dir/secret.key"
chmod 600 "$dir/secret.key"
for i in 1 2 3; do
  mkdir -p "$dir/node-$i"
  cp "$dir/secret.key" "$dir/node-$i/secret.key"
  "$kindling" serve --listen "127.0.0.1:$((base + 29 + i))" --data-dir "$dir/node-$i" \
    --cluster "$urls" --node-name "node-$i" --zone local >"$dir/node-$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do wait_for "http://127.0.0.1:$((base + 29 + i))/readyz" "node $i"; done

node1="http://127.0.0.1:$((base + 30))"
export KINDLING_SERVER="$node1" KINDLING_DATA_DIR="$dir/node-1"
"$kindling" deploy hello examples/hello.wasm
"$kindling" deploy wagi-hello examples/wagi-hello.wasm
echo
"$kindling" nodes
cat <<TXT

A three-node Kindling cluster is serving; the examples were deployed once, on node 1. Try:
  curl http://127.0.0.1:$((base + 31))/hello/      (node 2)
  curl http://127.0.0.1:$((base + 32))/hello/      (node 3)
  KINDLING_SERVER=$node1 KINDLING_DATA_DIR=$dir/node-1 $kindling nodes
  KINDLING_SERVER=http://127.0.0.1:$((base + 32)) KINDLING_DATA_DIR=$dir/node-3 $kindling rollback hello
Logs are in $dir/*.log. Ctrl-C stops everything; the registry stays in $dir.
TXT
wait
