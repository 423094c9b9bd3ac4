#!/usr/bin/env bash
# Edge figures on separate network stacks (root: network namespaces), with the harness of
# scripts/lib/edge-netns.sh: a hub and three sites, the learning-progress example deployed at
# the hub and served everywhere, site 1's node pinned to one core and the load generator
# (kindling bench, open loop) to the other.
# 1. Latency at site 1 with its uplink up, lossy (100 ms delay and 5 % packet loss each way:
#    the loss by nftables, the delay by scripts/lib/delay-relay.py on the leaf connection, for
#    kernels without netem) and down: recording a lesson (a new student per request, so every request writes and
#    sends) and reading a student's progress, at BENCH_RATE requests per second (200) for
#    BENCH_DURATION each; then the most records per second the site takes in that state
#    (closed loop, 16 connections, 10 s). The seed's 200,000 QPS over 300 sites would be 670
#    per site, on 4 cores of its own; here a hub, three sites and four NATS servers share 2.
# 2. Convergence against backlog: site 2 is cut off, records BENCH_BACKLOGS lessons (each a
#    new student: three changes to send, plus the class counter's share), the link comes back;
#    the time until the hub holds the last of them, and the hub's apply rate meanwhile; once
#    more with BENCH_LOSSY_BACKLOG (5000) lessons over the lossy link.
#   bench/edge.sh        (results in bench/results/edge/)
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "bench/edge.sh: network namespaces need root" >&2; exit 2; }
rate="${BENCH_RATE:-200}"
duration="${BENCH_DURATION:-20s}"
backlogs="${BENCH_BACKLOGS:-1000 5000 20000}"
build_release
ensure_packages iproute2 nftables python3 nats-server
out="$RESULTS/edge"
rm -rf "$out" && mkdir -p "$out"
kindling="$KINDLING"
wasm="$ROOT/examples/learning-progress.wasm"
dir=$(mktemp -d)
EDGE_DELAY=1
# shellcheck source=../scripts/lib/edge-netns.sh
. scripts/lib/edge-netns.sh
trap 'edge_teardown; rm -rf "$dir"' EXIT
edge_setup 3
taskset -acp "$SERVER_CORE" "${edge_kindling_pid[site-1]}" >/dev/null
url=http://127.0.0.1:3000/learning-progress

metric() { # hub|i NAME{LABELS}: the value
  in_ns "$1" curl -s http://127.0.0.1:3000/metrics | awk -v m="$2" '$1 == m { print $2 }'
}
load() { # i STATE WHAT METHOD PATH [DATA]
  local args=(bench "$url$5" -X "$4" --rate "$rate" -c 16 -d "$duration" --json
    --pid "${edge_kindling_pid[site-$1]}")
  [ -n "${6:-}" ] && args+=(--data "$6")
  in_ns "$1" taskset -c "$CLIENT_CORE" "$kindling" "${args[@]}" >"$out/$2-$3.json"
  metric "$1" 'kindling_kv_keys{label="progress",namespace="default"}' >"$out/$2-$3.keys"
}
for state in up lossy down; do
  case $state in
    lossy) edge_link 1 100 5 ;;
    down) edge_link 1 0 0 && edge_cut 1 ;;
  esac
  echo "bench/edge: site 1, link $state: $rate req/s for $duration"
  load 1 "$state" record POST "/progress/bench/$state-{n}/l1" 100
  load 1 "$state" read GET "/progress/$state-{n}"
  in_ns 1 taskset -c "$CLIENT_CORE" "$kindling" bench "$url/progress/bench/$state-max-{n}/l1" \
    -X POST --data 100 -c 16 -d 10s --json >"$out/$state-capacity.json"
done
edge_restore 1

# The class counter, read through the admin API: cheap, where the class summary lists every
# key. It is the last change a site's outbox holds, so when the hub has it, it has the rest.
counter() { # hub|i CLASS
  in_ns "$1" env KINDLING_SERVER=http://127.0.0.1:3000 KINDLING_DATA_DIR="$dir/$(name_of "$1")" \
    "$kindling" kv get default/progress "class-done/$2" 2>>"$out/kv-get.log" || echo 0
}
: >"$out/converge.txt"
converge() { # BACKLOG LINK (clean | lossy)
  local backlog=$1 link=$2 recorded queued before start first now applied end
  [ "$link" = lossy ] && edge_link 2 100 5
  edge_cut 2
  in_ns 2 "$kindling" bench "$url/progress/b$backlog-$link/b$backlog-$link-s{n}/l1" -X POST --data 100 \
    --rate 1000 -c 16 -d "$(awk "BEGIN { print $backlog / 1000 }")s" --json >"$out/fill-$backlog-$link.json"
  recorded=$(counter 2 "b$backlog-$link")
  # What the outbox still holds (the relay moves it into the site's own stream even offline).
  queued=$(metric 2 'kindling_kv_sync_backlog{label="progress",namespace="default"}')
  before=$(metric hub 'kindling_kv_sync_changes_total{direction="applied"}')
  start=$(date +%s%N) first=""
  edge_restore 2
  # Every 0.1 s: the hub's applied changes (the first that moves starts the apply window)
  # and the class counter.
  while :; do
    now=$(date +%s%N)
    applied=$(metric hub 'kindling_kv_sync_changes_total{direction="applied"}')
    [ -z "$first" ] && [ "$applied" != "$before" ] && first=$now
    [ "$(counter hub "b$backlog-$link")" = "$recorded" ] && break
    [ $(((now - start) / 1000000000)) -lt 300 ] || { echo "bench/edge: the hub never got site 2's $recorded records" >&2; exit 1; }
    sleep 0.1
  done
  end=$(date +%s%N)
  applied=$(metric hub 'kindling_kv_sync_changes_total{direction="applied"}')
  echo "$recorded $queued $link $(((end - start) / 1000000)) $(((end - ${first:-$start}) / 1000000)) $before $applied" >>"$out/converge.txt"
  echo "bench/edge: $recorded records offline at site 2 ($queued changes still in its outbox): the hub had them $(((end - start) / 1000000)) ms after the $link link came back"
  edge_link 2 0 0
}
for backlog in $backlogs; do converge "$backlog" clean; done
converge "${BENCH_LOSSY_BACKLOG:-5000}" lossy

python3 - "$out" "$rate" <<'PY'
import json, sys
out, rate = sys.argv[1], sys.argv[2]
def ms(us): return f"{us / 1000:.1f}"
print(f"| link at site 1 | request | achieved req/s (of {rate}) | p50 ms | p99 ms | p99.9 ms | max ms | failed | site CPU % | keys in the store after |")
print("|---|---|---|---|---|---|---|---|---|---|")
for state, name in [("up", "up"), ("lossy", "lossy: 100 ms, 5 % loss"), ("down", "down")]:
    for what, label in [("record", "POST record a lesson"), ("read", "GET a student's progress")]:
        report = json.load(open(f"{out}/{state}-{what}.json"))
        phase = report[0] if isinstance(report, list) else report["phases"][0]
        lat = phase["latency"].get("all", {})
        failed = phase["sent"] - phase["statuses"].get("200", 0)
        print(f"| {name} | {label} | {phase['achieved_rate']:.0f} | {ms(lat.get('p50_us', 0))} | "
              f"{ms(lat.get('p99_us', 0))} | {ms(lat.get('p999_us', 0))} | {ms(lat.get('max_us', 0))} | {failed} | "
              f"{(phase.get('server') or {}).get('cpu_percent') or 0:.0f} | "
              f"{open(f'{out}/{state}-{what}.keys').read().strip()} |")
print()
print("| link at site 1 | most records per second (closed loop, 16 connections) | p50 ms | p99 ms |")
print("|---|---|---|---|")
for state, name in [("up", "up"), ("lossy", "lossy: 100 ms, 5 % loss"), ("down", "down")]:
    phase = json.load(open(f"{out}/{state}-capacity.json"))[0]
    lat = phase["latency"]["all"]
    print(f"| {name} | {phase['achieved_rate']:.0f} | {ms(lat['p50_us'])} | {ms(lat['p99_us'])} |")
print()
print("| records offline at site 2 | changes the hub applied | link when back | at the hub after (ms) | of which applying (ms) | hub apply rate (changes/s) |")
print("|---|---|---|---|---|---|")
for line in open(f"{out}/converge.txt"):
    recorded, queued, link, total, applying, before, after = line.split()
    applied = float(after) - float(before)
    rate = applied / max(int(applying), 100) * 1000
    link = "lossy: 100 ms, 5 % loss" if link == "lossy" else "clean"
    print(f"| {recorded} | {applied:.0f} | {link} | {total} | {applying} | {rate:.0f} |")
PY
