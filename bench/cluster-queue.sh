#!/usr/bin/env bash
# The cluster's invocation queue against each node's own: asynchronous invocations
# (`Prefer: respond-async`, then done) of the wasi-kv counter (a durable write per message),
# sent to node 1 by events-load, with
#   local    one node, --cluster-queue false (its queue.db only; the peer),
#   cluster  one node, the queue in JetStream (publish, take, hold, ack),
#   cluster2 two nodes taking from the one queue, the load still sent to node 1.
# One nats-server (JetStream, file store) and the load generator on one core, the Kindling
# nodes on the other: two nodes share that core, so cluster2 shows what a second node costs or
# adds on one machine, not a second machine's capacity. Modes alternate round by round.
#   bench/cluster-queue.sh [ROUNDS]   (default 3; BENCH_COUNT=3000, BENCH_CONCURRENCY=64)
source "$(dirname "$0")/lib.sh"
rounds="${1:-3}"
count="${BENCH_COUNT:-3000}"
concurrency="${BENCH_CONCURRENCY:-64}"
build_release
ensure_packages nats-server
out="$RESULTS/cluster-queue"
rm -rf "$out" && mkdir -p "$out"
LOAD="$TARGET/release/events-load"
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

nats_port=4390
start_nats() {
  rm -rf "$dir/nats"
  taskset -c "$CLIENT_CORE" nats-server -js -a 127.0.0.1 -p $nats_port -m $((nats_port + 1)) \
    -sd "$dir/nats" >"$out/nats.log" 2>&1 &
  nats_pid=$!
  pids+=($nats_pid)
  wait_http "http://127.0.0.1:$((nats_port + 1))/healthz"
}

start_node() { # N FLAGS...
  local n=$1 port=$((nats_port + 10 + $1))
  shift
  mkdir -p "$dir/node-$n"
  cp "$dir/secret.key" "$dir/node-$n/secret.key"
  taskset -c "$SERVER_CORE" "$KINDLING" serve --listen "127.0.0.1:$port" \
    --data-dir "$dir/node-$n" --cluster "nats://127.0.0.1:$nats_port" --node-name "node-$n" \
    --cluster-heartbeat 500ms "$@" >"$out/node-$n.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/readyz"
}

run() { # MODE ROUND
  local mode=$1 round=$2 flags=()
  rm -rf "$dir"/node-* && head -c 32 /dev/urandom >"$dir/secret.key"
  start_nats
  [ "$mode" = local ] && flags=(--cluster-queue false)
  start_node 1 "${flags[@]}"
  [ "$mode" = cluster2 ] && start_node 2
  local url="http://127.0.0.1:$((nats_port + 11))"
  KINDLING_SERVER=$url KINDLING_DATA_DIR="$dir/node-1" "$KINDLING" deploy counter \
    "$ROOT/test-programs/build/wasi-kv.wasm" --key-value default >/dev/null
  if [ "$mode" = cluster2 ]; then
    for _ in $(seq 1 600); do
      KINDLING_SERVER="http://127.0.0.1:$((nats_port + 12))" KINDLING_DATA_DIR="$dir/node-2" \
        "$KINDLING" inspect counter >/dev/null 2>&1 && break
      sleep 0.05
    done
  fi
  local token
  token=$(cat "$dir/node-1/admin.token")
  for what in warm "$round"; do
    local n=$count
    [ "$what" = warm ] && n=200
    taskset -c "$CLIENT_CORE" "$LOAD" async --server "$url" --token "$token" --count "$n" \
      --concurrency "$concurrency" >"$out/$mode-$what.json"
  done
  cleanup
  pids=()
}

for round in $(seq 1 "$rounds"); do
  for mode in local cluster cluster2; do
    echo "round $round: $mode"
    run "$mode" "$round"
  done
done

python3 - "$out" "$rounds" "$count" "$concurrency" <<'PY'
import json, statistics, sys
out, rounds, count, conc = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [("one node, its own queue.db (--cluster-queue false)", "local"),
        ("one node, the cluster's queue", "cluster"),
        ("two nodes on one core, the cluster's queue", "cluster2")]
runs = {m: [json.load(open(f"{out}/{m}-{r}.json")) for r in range(1, rounds + 1)] for _, m in rows}
base = statistics.median(r["per_second"] for r in runs["local"])
print(f"\n{rounds} rounds of {count} invocations, {conc} in flight; median (min-max)")
print("| queue | invocations/s | / own queue | 202 to done p50 | p99 | max |")
print("| --- | --- | --- | --- | --- | --- |")
for label, m in rows:
    rates = [r["per_second"] for r in runs[m]]
    med = lambda k: statistics.median(r["latency_ms"][k] for r in runs[m])
    print(f"| {label} | {statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) "
          f"| {statistics.median(rates) / base:.2f}x | {med('p50'):.1f} ms | {med('p99'):.1f} ms "
          f"| {med('max'):.1f} ms |")
PY
