#!/usr/bin/env bash
# Work that does not wait for its function: asynchronous invocations (`Prefer: respond-async`),
# a JetStream trigger and a Redis Streams trigger, each against the same function over plain
# HTTP in the same run. The function is the wasi-kv test guest incrementing a counter in its
# SQLite key-value store (a durable write per message). The node is pinned to one core; the
# load generator (events-load), nats-server and redis-server share the other. Modes alternate
# round by round.
#   bench/events.sh [ROUNDS]       (default 3; BENCH_COUNT=5000 messages per run,
#                                   BENCH_CONCURRENCY=64 in flight)
source "$(dirname "$0")/lib.sh"
rounds="${1:-3}"
count="${BENCH_COUNT:-5000}"
concurrency="${BENCH_CONCURRENCY:-64}"
build_release
ensure_packages redis-server nats-server
out="$RESULTS/events"
rm -rf "$out" && mkdir -p "$out"
LOAD="$TARGET/release/events-load"

brokers=$(mktemp -d)
taskset -c "$CLIENT_CORE" nats-server -js -a 127.0.0.1 -p 4299 -sd "$brokers/nats" \
  >"$out/nats.log" 2>&1 &
nats_pid=$!
taskset -c "$CLIENT_CORE" redis-server --port 6392 --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$brokers" >"$out/redis.log" 2>&1 &
redis_pid=$!
trap 'stop_server; kill $nats_pid $redis_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  redis-cli -p 6392 ping 2>/dev/null | grep -q PONG && break
  sleep 0.05
done
for _ in $(seq 1 200); do
  (exec 3<>/dev/tcp/127.0.0.1/4299) 2>/dev/null && break
  sleep 0.05
done

start() {
  start_kindling 3430 --nats-url nats://127.0.0.1:4299 --redis-url redis://127.0.0.1:6392
  # The stream exists before the trigger's consumer is made (events-load makes it).
  "$LOAD" jetstream --nats nats://127.0.0.1:4299 --count 0 >/dev/null
  "$KINDLING" deploy counter "$ROOT/test-programs/build/wasi-kv.wasm" --key-value default \
    --trigger 'jetstream:BENCH?path=/d2/increment/js&reply=bench.done' \
    --trigger 'redis:bench?path=/d2/increment/rs&reply=bench-done' >/dev/null
  # The Redis consumer group starts at the stream's end: wait until it exists.
  for _ in $(seq 1 200); do
    redis-cli -p 6392 XINFO GROUPS bench 2>/dev/null | grep -q kindling-counter && break
    sleep 0.05
  done
}

load() { # MODE ROUND
  taskset -c "$CLIENT_CORE" "$LOAD" "$1" --server "$KINDLING_SERVER" \
    --token "$(cat "$KINDLING_DATA_DIR/admin.token")" --count "$count" \
    --concurrency "$concurrency" --nats nats://127.0.0.1:4299 --redis redis://127.0.0.1:6392 \
    >"$out/$1-$2.json"
}

for round in $(seq 1 "$rounds"); do
  echo "round $round"
  start
  # A short warm-up of each path, then the measured runs.
  count_saved=$count
  count=200
  for mode in http async jetstream redis; do load "$mode" warm; done
  count=$count_saved
  for mode in http async jetstream redis; do load "$mode" "$round"; done
  stop_server
done

python3 - "$out" "$rounds" "$count" "$concurrency" <<'PY'
import json, statistics, sys
out, rounds, count, conc = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [("plain HTTP, waited for", "http"), ("asynchronous invocation (202, then done)", "async"),
        ("JetStream trigger (publish ack to reply)", "jetstream"),
        ("Redis Streams trigger (XADD to reply)", "redis")]
runs = {m: [json.load(open(f"{out}/{m}-{r}.json")) for r in range(1, rounds + 1)] for _, m in rows}
http = statistics.median(r["per_second"] for r in runs["http"])
print(f"\n{rounds} rounds of {count} messages, {conc} in flight; median (min-max)")
print("| way in | messages/s | / plain HTTP | p50 | p99 | max |")
print("| --- | --- | --- | --- | --- | --- |")
for label, m in rows:
    rates = [r["per_second"] for r in runs[m]]
    med = lambda k: statistics.median(r["latency_ms"][k] for r in runs[m])
    print(f"| {label} | {statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) "
          f"| {statistics.median(rates) / http:.2f}x | {med('p50'):.1f} ms | {med('p99'):.1f} ms "
          f"| {med('max'):.1f} ms |")
PY
