#!/usr/bin/env bash
# Cluster mode, measured on this machine: three nats-server (JetStream R3) and up to three
# Kindling nodes, all on loopback.
#   1. deploy to serving everywhere: 50 deploys on node 1 (a new configuration of a resident
#      module each time), and for each the time until nodes 2 and 3 serve it (p50/p99);
#   1b. a new module each time (20 deploys): node 2 shares node 1's secret.key and maps the
#      code node 1 compiled, node 3 has its own key, refuses it and compiles, so the two
#      columns are shared code against compiling, in the same run;
#   2. the cost of a spilled request: node 1's slots held by long requests, so that every
#      request to it is passed to node 2, against the same requests sent to node 2 directly;
#   3. cluster goodput with spill-over: an open-loop load three times one node's capacity, all
#      sent to node 1, with 1, 2 and 3 nodes in the cluster.
# Two cores only: the Kindling nodes share core 0, NATS and the load generator core 1. The
# function of 3 sleeps 20 ms on wasi:clocks (capacity is slots, not CPU), so what grows with
# the nodes is what spill-over adds, not CPU the machine does not have.
#   bench/cluster.sh [SECONDS]
source "$(dirname "$0")/lib.sh"
seconds="${1:-10}"
build_release
ensure_packages nats-server
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

base=4700
routes="nats://127.0.0.1:$((base + 10)),nats://127.0.0.1:$((base + 11)),nats://127.0.0.1:$((base + 12))"
urls="nats://127.0.0.1:$base,nats://127.0.0.1:$((base + 1)),nats://127.0.0.1:$((base + 2))"
for i in 0 1 2; do
  taskset -c "$CLIENT_CORE" nats-server -js -a 127.0.0.1 -p $((base + i)) -m $((base + 20 + i)) \
    -n "nats-$i" --cluster_name bench --cluster "nats://127.0.0.1:$((base + 10 + i))" \
    --routes "$routes" -sd "$dir/nats-$i" 2>"$RESULTS/nats-$i.log" &
  pids+=($!)
done
for i in 0 1 2; do wait_http "http://127.0.0.1:$((base + 20 + i))/healthz"; done

node_pids=()
start_node() { # N
  local n=$1 port=$((base + 30 + $1))
  mkdir -p "$dir/node-$n"
  taskset -c "$SERVER_CORE" "$KINDLING" serve --listen "127.0.0.1:$port" --data-dir "$dir/node-$n" \
    --cluster "$urls" --node-name "node-$n" --cluster-heartbeat 500ms \
    --max-in-flight 8 --normal-share 1 >"$RESULTS/cluster-node-$n.log" 2>&1 &
  node_pids[$n]=$!
  pids+=($!)
  wait_http "http://127.0.0.1:$port/readyz"
}
node_url() { echo "http://127.0.0.1:$((base + 30 + $1))"; }
as_node() { KINDLING_SERVER=$(node_url "$1") KINDLING_DATA_DIR="$dir/node-$1" "$KINDLING" "${@:2}"; }
# Nodes 1 and 2 share a secret key (and so each other's compiled code); node 3 makes its own.
mkdir -p "$dir/node-1" "$dir/node-2"
head -c 32 /dev/urandom >"$dir/node-1/secret.key"
cp "$dir/node-1/secret.key" "$dir/node-2/secret.key"
chmod 600 "$dir"/node-*/secret.key
for n in 1 2 3; do start_node "$n"; done

echo "== 1. deploy to serving on every node, 50 deploys"
as_node 1 deploy cfg examples/c-hello.wasm --env GREETING=v0 >/dev/null
python3 - "$KINDLING" "$(node_url 1)" "$dir/node-1" "$(node_url 2)" "$(node_url 3)" \
  >"$RESULTS/cluster-deploys.txt" <<'PY'
import os, subprocess, sys, threading, time, urllib.request
kindling, url1, data1, others = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
env = dict(os.environ, KINDLING_SERVER=url1, KINDLING_DATA_DIR=data1)
def serves(url, marker):
    try:
        return marker in urllib.request.urlopen(url + "/cfg/", timeout=5).read().decode()
    except Exception:
        return False
committed, everywhere = [], []
for i in range(1, 51):
    marker = f"GREETING (set at deploy): v{i}\n"
    sent = time.perf_counter()
    subprocess.run([kindling, "deploy", "cfg", "examples/c-hello.wasm", "--env", f"GREETING=v{i}"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    answered = time.perf_counter()
    seen = {}
    def watch(url):
        while not serves(url, marker):
            time.sleep(0.0005)
        seen[url] = time.perf_counter()
    threads = [threading.Thread(target=watch, args=(u,)) for u in others]
    for t in threads: t.start()
    for t in threads: t.join(30)
    committed.append((answered - sent) * 1e3)
    everywhere.append((max(seen.values()) - answered) * 1e3)
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]
print(f"deploy answered on node 1: p50 {pct(committed,50):.1f} ms, p99 {pct(committed,99):.1f} ms")
print(f"then serving on nodes 2 and 3: p50 {pct(everywhere,50):.1f} ms, p99 {pct(everywhere,99):.1f} ms, max {max(everywhere):.1f} ms")
PY
cat "$RESULTS/cluster-deploys.txt"

echo "== 1b. a new module each time: shared code (node 2) against compiling (node 3), 20 deploys"
python3 - "$KINDLING" "$(node_url 1)" "$dir/node-1" "$(node_url 2)" "$(node_url 3)" "$dir" \
  >"$RESULTS/cluster-new-modules.txt" <<'PY'
import os, subprocess, sys, threading, time, urllib.request
kindling, url1, data1, url2, url3, work = sys.argv[1:7]
env = dict(os.environ, KINDLING_SERVER=url1, KINDLING_DATA_DIR=data1)
hello = open("examples/hello.wasm", "rb").read()
def leb(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n: return bytes(out)
def fresh(i):
    # The same component with one more custom section: other bytes, so another module to compile.
    name = f"kindling-bench-{i}-{time.time_ns()}".encode()
    body = leb(len(name)) + name
    return hello + b"\x00" + leb(len(body)) + body
def serves(url, fn):
    try:
        return urllib.request.urlopen(f"{url}/{fn}/", timeout=5).status == 200
    except Exception:
        return False
answered_ms, after = [], {url2: [], url3: []}
for i in range(20):
    path = os.path.join(work, f"fresh-{i}.wasm")
    open(path, "wb").write(fresh(i))
    sent = time.perf_counter()
    subprocess.run([kindling, "deploy", f"fresh-{i}", path], env=env, check=True, stdout=subprocess.DEVNULL)
    answered = time.perf_counter()
    seen = {}
    def watch(url):
        while not serves(url, f"fresh-{i}"):
            time.sleep(0.0005)
        seen[url] = time.perf_counter()
    threads = [threading.Thread(target=watch, args=(u,)) for u in (url2, url3)]
    for t in threads: t.start()
    for t in threads: t.join(60)
    answered_ms.append((answered - sent) * 1e3)
    for u in (url2, url3):
        after[u].append((seen[u] - answered) * 1e3)
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]
def row(xs): return f"p50 {pct(xs,50):.1f} ms, p99 {pct(xs,99):.1f} ms"
print(f"deploy of a new module answered on node 1 (it compiles, publishes, commits): {row(answered_ms)}")
print(f"then serving on node 2 (maps node 1's code): {row(after[url2])}")
print(f"then serving on node 3 (compiles itself): {row(after[url3])}")
print(f"node 3 / node 2 at p50: {pct(after[url3],50)/pct(after[url2],50):.2f}x")
PY
cat "$RESULTS/cluster-new-modules.txt"
for n in 1 2 3; do
  echo "   node $n: $(curl -s "$(node_url "$n")/metrics" | grep -E '^kindling_cluster_code_total' | tr '\n' ' ')"
done

echo "== 2. a spilled request against a local one"
as_node 1 deploy slow test-programs/build/http-wstd.wasm >/dev/null
for n in 2 3; do wait_http "$(node_url "$n")/slow/"; done
client_bench "$(node_url 2)/slow/" --connections 1 --duration 2s >/dev/null
client_bench "$(node_url 2)/slow/" --connections 1 --duration "${seconds}s" --json >"$RESULTS/cluster-local.json"
# Hold node 1's eight slots for the whole run, and wait for them to be free again after it.
holders=()
for _ in $(seq 1 8); do
  curl -s -o /dev/null "$(node_url 1)/slow/sleep/$(( (seconds + 2) * 1000 ))" &
  holders+=($!)
done
until curl -s "$(node_url 1)/metrics" | grep -q '^kindling_in_flight_requests{function="slow",version="1"} 8$'; do
  sleep 0.02
done
client_bench "$(node_url 1)/slow/" --connections 1 --duration "${seconds}s" --json >"$RESULTS/cluster-spilled.json"
wait "${holders[@]}"
python3 - "$RESULTS/cluster-local.json" "$RESULTS/cluster-spilled.json" <<'PY'
import json, sys
local, spilled = (json.load(open(f))[0] for f in sys.argv[1:3])
l, s = local["latency"]["2xx"], spilled["latency"].get("2xx", {})
print(f"local (node 2 directly): {local['achieved_rate']:.0f} req/s, p50 {l['p50_us']/1000:.2f} ms, p99 {l['p99_us']/1000:.2f} ms")
print(f"spilled (node 1 full -> node 2): {spilled['achieved_rate']:.0f} req/s, p50 {s.get('p50_us',0)/1000:.2f} ms, "
      f"p99 {s.get('p99_us',0)/1000:.2f} ms, statuses {spilled['statuses']}")
print(f"cost of the hop: p50 +{(s.get('p50_us',0)-l['p50_us'])/1000:.2f} ms ({s.get('p50_us',0)/l['p50_us']:.2f}x), "
      f"p99 +{(s.get('p99_us',0)-l['p99_us'])/1000:.2f} ms")
PY

echo "== 3. goodput with 1, 2 and 3 nodes, load 3x one node's capacity, all to node 1"
# Eight slots of a 20 ms function: about 400 req/s per node.
for nodes in 3 2 1; do
  client_bench "$(node_url 1)/slow/sleep/20" --rate 1200 --connections 256 --duration "${seconds}s" \
    --timeout 10s --json >"$RESULTS/cluster-goodput-$nodes.json"
  python3 - "$RESULTS/cluster-goodput-$nodes.json" "$nodes" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))[0]
ok = p["latency"].get("2xx", {})
print(f"{sys.argv[2]} node(s): offered {p['offered_rate']:.0f} req/s, goodput {ok.get('count',0)/p['duration_s']:.0f} req/s, "
      f"admitted p50 {ok.get('p50_us',0)/1000:.1f} ms p99 {ok.get('p99_us',0)/1000:.1f} ms, statuses {p['statuses']}")
PY
  for n in $(seq 1 "$nodes"); do
    echo "   node $n: $(curl -s "$(node_url "$n")/metrics" | grep -E '^kindling_(spilled_requests|spill_received)_total' | tr '\n' ' ')"
  done
  # Take the highest-numbered node out for the next row; its heartbeat goes stale.
  if [ "$nodes" -gt 1 ]; then
    kill "${node_pids[$nodes]}"; wait "${node_pids[$nodes]}" 2>/dev/null || true
    for _ in $(seq 1 200); do
      as_node 1 nodes --json | python3 -c "import json,sys; d=json.load(sys.stdin); sys.exit(any(n['name']=='node-$nodes' and n['state']=='up' for n in d['nodes']))" && break
      sleep 0.05
    done
  fi
done
