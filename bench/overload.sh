#!/usr/bin/env bash
# Overload: measure the node's capacity for a CPU-bound function (about 10 ms a request), then
# offer 20 times that, open loop, for 60 s, and check that the node stays up, peak RSS stays
# under 256 MiB, goodput stays at 90% of capacity or more, admitted latency stays bounded and
# rejections are answered in under a millisecond.   bench/overload.sh [SECONDS]
source "$(dirname "$0")/lib.sh"
seconds="${1:-60}"
work="${BENCH_WORK:-10000}"   # thousands of hashing rounds per request
build_release
start_kindling 3301 --max-in-flight 16
trap stop_server EXIT
"$KINDLING" deploy work test-programs/build/http-wasip2.wasm >/dev/null
url="$KINDLING_SERVER/work/work/$work"

client_bench "$url" --connections 4 --duration 3s >/dev/null
client_bench "$url" --connections 8 --duration 20s --json >"$RESULTS/capacity.json"
capacity=$(python3 -c "import json;print(json.load(open('$RESULTS/capacity.json'))[0]['achieved_rate'])")
offered=$(python3 -c "print(round(20*$capacity))")
echo "capacity: $capacity req/s; offering $offered req/s for ${seconds}s"
client_bench "$url" --rate "$offered" --connections 512 --duration "${seconds}s" \
  --timeout 30s --pid "$SERVER_PID" --json >"$RESULTS/overload.json"
kill -0 "$SERVER_PID" || { echo "overload: the server died" >&2; exit 1; }
python3 - "$RESULTS/overload.json" "$capacity" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))[0]
capacity = float(sys.argv[2])
ok = p["latency"].get("2xx", {}); rejected = p["service"].get("5xx", {})
goodput = ok.get("count", 0) / p["duration_s"]
rss = p["server"]["peak_rss_kib"] / 1024
checks = [
    ("server up", True, "yes"),
    ("peak RSS < 256 MiB", rss < 256, f"{rss:.1f} MiB"),
    ("goodput >= 90% of capacity", goodput >= 0.9 * capacity,
     f"{goodput:.1f} req/s = {100*goodput/capacity:.0f}% of {capacity:.1f}"),
    ("admitted p99 bounded", ok.get("p99_us", 0) < 5_000_000, f"{ok.get('p99_us',0)/1000:.1f} ms"),
    ("rejections p99 < 1 ms (service time)", rejected.get("p99_us", 0) < 1000,
     f"{rejected.get('p99_us',0)/1000:.3f} ms over {rejected.get('count',0)} rejections"),
]
print(f"offered {p['offered_rate']:.0f} req/s, answered {p['achieved_rate']:.0f} req/s, "
      f"statuses {p['statuses']}, errors {p['errors']}, backlog {p['backlog']}")
scheduled = p["latency"].get("5xx", {})
print(f"rejections from their scheduled time (includes waiting for a busy client connection): "
      f"p50 {scheduled.get('p50_us',0)/1000:.3f} ms, p99 {scheduled.get('p99_us',0)/1000:.3f} ms; "
      f"admitted: p50 {ok.get('p50_us',0)/1000:.1f} ms, p99.9 {ok.get('p999_us',0)/1000:.1f} ms; "
      f"server CPU {p['server']['cpu_percent']:.0f}% of one core")
for name, passed, value in checks:
    print(f"{'PASS' if passed else 'FAIL'}  {name}: {value}")
sys.exit(0 if all(c[1] for c in checks) else 1)
PY
