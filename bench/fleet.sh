#!/usr/bin/env bash
# The cold-start and density scenarios of `kindling bench --fleet`, with the server pinned to
# one core and the client to the other:
# - cold start: 200 distinct copies of the hello component are deployed, the server restarts,
#   and one request goes to each (each a cold start from the artifact cache), then a warm one;
# - density: 1,000 and 10,000 distinct copies of the C WAGI hello: the server's memory with all
#   of them loaded (after the deploys) and with none (after a restart), and the cold and warm
#   latency of a random sample of 1,000.
#   bench/fleet.sh [DENSITY_N ...]      (default: 1000 10000)
source "$(dirname "$0")/lib.sh"
build_release

# fleet LABEL MODULE N: deploy, measure, restart, measure again.
fleet() {
  local label=$1 module=$2 n=$3
  BENCH_DATA=$(mktemp -d)
  export BENCH_DATA
  start_kindling 3400
  client_bench "$KINDLING_SERVER" --fleet "$n" --module "$module" --sample 1000 \
    --pid "$SERVER_PID" --json >"$RESULTS/fleet-$label-deployed.json"
  stop_server
  start_kindling 3400
  client_bench "$KINDLING_SERVER" --fleet "$n" --sample 1000 --pid "$SERVER_PID" \
    --json >"$RESULTS/fleet-$label-restarted.json"
  stop_server
  rm -rf "$BENCH_DATA"
  unset BENCH_DATA
}

fleet cold-start-200 examples/hello.wasm 200
labels=(cold-start-200)
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
for n in "${sizes[@]}"; do
  fleet "density-$n" examples/c-hello.wasm "$n"
  labels+=("density-$n")
done

python3 - "$RESULTS" "${labels[@]}" <<'PY'
import json, sys
results, labels = sys.argv[1], sys.argv[2:]
ms = lambda us: f"{us / 1000:.2f}"
mib = lambda kib: "-" if kib is None else f"{kib / 1024:.0f}"
print("| scenario | functions | deploys/s | RSS all loaded (MiB) | RSS after restart (MiB) | sample | cold p50 / p99 (ms) | cold starts counted | warm p50 / p99 (ms) | peak RSS (MiB) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for label in labels:
    d = json.load(open(f"{results}/fleet-{label}-deployed.json"))
    r = json.load(open(f"{results}/fleet-{label}-restarted.json"))
    print(f"| {label} | {d['functions']:,} | {d['deploy']['per_second']:.1f} | {mib(d['rss_before_kib'])} "
          f"| {mib(r['rss_before_kib'])} | {r['sample']:,} | {ms(r['first']['p50_us'])} / {ms(r['first']['p99_us'])} "
          f"| {r['cold_starts']:,} | {ms(r['warm']['p50_us'])} / {ms(r['warm']['p99_us'])} | {mib(r['peak_rss_kib'])} |")
PY
