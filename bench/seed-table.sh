#!/usr/bin/env bash
# Re-runs the seed report's table on this machine: a burst at 1000 req/s and a sustained
# 500 req/s against the hello component, with the server pinned to one core, reporting
# achieved QPS, p50/p99/p99.9 and the server's CPU.   bench/seed-table.sh
source "$(dirname "$0")/lib.sh"
build_release
start_kindling 3300
trap stop_server EXIT
"$KINDLING" deploy hello examples/hello.wasm >/dev/null
client_bench "$KINDLING_SERVER/hello/" --scenario bench/scenarios/seed.toml --pid "$SERVER_PID" \
  --json >"$RESULTS/seed.json"
client_bench "$KINDLING_SERVER/hello/" --scenario bench/scenarios/seed.toml --pid "$SERVER_PID"
python3 - "$RESULTS/seed.json" <<'PY'
import json, sys
phases = {p["name"]: p for p in json.load(open(sys.argv[1]))}
seed = {"burst": (982, "68 ms", "82%"), "sustained": (500, "23 ms", "45%")}
print("\n| load | seed QPS | seed latency | seed CPU | Kindling QPS | p50 | p99 | p99.9 | Kindling CPU (1 core) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for name, (qps, lat, cpu) in seed.items():
    p = phases[name]; l = p["latency"]["all"]
    print(f"| {name} {p['offered_rate']:.0f} req/s | {qps} | {lat} | {cpu} | {p['achieved_rate']:.1f} "
          f"| {l['p50_us']/1000:.2f} ms | {l['p99_us']/1000:.2f} ms | {l['p999_us']/1000:.2f} ms "
          f"| {p['server']['cpu_percent']:.0f}% |")
PY
