#!/usr/bin/env bash
# State for guests over HTTP: key-value get and set, SQLite insert and query, from the Spin SDK
# 5 guest (test-programs/spin-kv) and key-value get from the spin-sdk 7 guest
# (test-programs/spin7, WASI 0.3), with the store on each backend: SQLite (the default) and a
# local redis-server. The hello component beside them is the cost of the HTTP path alone. The
# node is pinned to one core, wrk to the other; backends alternate round by round.
#   bench/state.sh [ROUNDS]       (default 3; BENCH_DURATION=10s per run)
source "$(dirname "$0")/lib.sh"
rounds="${1:-3}"
duration="${BENCH_DURATION:-10s}"
build_release
ensure_packages redis-server
out="$RESULTS/state"
rm -rf "$out" && mkdir -p "$out"

redis_dir=$(mktemp -d)
redis-server --port 6391 --bind 127.0.0.1 --save "" --appendonly no --dir "$redis_dir" \
  >"$out/redis.log" 2>&1 &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null || true; stop_server' EXIT
for _ in $(seq 1 200); do
  redis-cli -p 6391 ping 2>/dev/null | grep -q PONG && break
  sleep 0.05
done

lua() { # METHOD BODY: a wrk script sending that method and body
  printf 'wrk.method = "%s"\nwrk.body = "%s"\n' "$1" "$2" >"$out/$1-$3.lua"
  echo "$out/$1-$3.lua"
}
set_lua=$(lua PUT value set)
insert_lua=$(lua POST note insert)
query_lua=$(lua POST "SELECT body FROM notes WHERE id = 1" query)

start() { # BACKEND
  local config="$out/$1.toml"
  case "$1" in
    sqlite) printf '[key_value_store.default]\ntype = "spin"\n' >"$config" ;;
    redis) printf '[key_value_store.default]\ntype = "redis"\nurl = "redis://127.0.0.1:6391"\n' \
      >"$config" ;;
  esac
  start_kindling 3420 --runtime-config "$config"
  "$KINDLING" deploy hello "$ROOT/examples/hello.wasm" >/dev/null
  "$KINDLING" deploy kv "$ROOT/test-programs/build/spin-kv.wasm" --key-value default \
    --sqlite default >/dev/null
  "$KINDLING" deploy kv7 "$ROOT/test-programs/build/spin7.wasm" --key-value default >/dev/null
  curl -fsS -X PUT --data-binary value "$KINDLING_SERVER/kv/set/key" >/dev/null
  curl -fsS -X POST --data-binary "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)" \
    "$KINDLING_SERVER/kv/sql2/default" >/dev/null
  curl -fsS -X POST --data-binary first "$KINDLING_SERVER/kv/sql2/default/insert" >/dev/null
}

run() { # NAME URL [wrk args]
  local name=$1 url=$2
  shift 2
  taskset -c "$CLIENT_CORE" wrk -t2 -c64 -d2s "$@" "$url" >/dev/null
  taskset -c "$CLIENT_CORE" wrk -t2 -c64 -d"$duration" --latency "$@" "$url" >"$out/$name.wrk"
}

for round in $(seq 1 "$rounds"); do
  for backend in sqlite redis; do
    echo "round $round: $backend"
    start "$backend"
    run "$backend-hello-$round" "$KINDLING_SERVER/hello/"
    run "$backend-kv-get-$round" "$KINDLING_SERVER/kv/get/key"
    run "$backend-kv-set-$round" "$KINDLING_SERVER/kv/set/key" -s "$set_lua"
    run "$backend-kv7-get-$round" "$KINDLING_SERVER/kv7/kv/get/key"
    if [ "$backend" = sqlite ]; then
      run "$backend-sql-insert-$round" "$KINDLING_SERVER/kv/sql2/default/insert" -s "$insert_lua"
      run "$backend-sql-query-$round" "$KINDLING_SERVER/kv/sql2/default" -s "$query_lua"
    fi
    stop_server
  done
done

python3 - "$out" "$rounds" <<'PY'
import os, re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def wrk(path):
    text = open(path).read()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", text)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    return rate, pct(50), pct(99), int(errors.group(1)) if errors else 0
rows = [
    ("hello component (no state)", "hello"),
    ("key-value get, Spin SDK 5", "kv-get"),
    ("key-value set, Spin SDK 5", "kv-set"),
    ("key-value get, spin-sdk 7 (WASI 0.3)", "kv7-get"),
    ("SQLite insert (bound parameter), Spin SDK 5", "sql-insert"),
    ("SQLite query by primary key, Spin SDK 5", "sql-query"),
]
print(f"\n{rounds} rounds; req/s median (min-max), latency medians; 64 connections")
print("| request | backend | req/s | p50 | p99 | / hello |")
print("| --- | --- | --- | --- | --- | --- |")
for label, key in rows:
    for backend in ["sqlite", "redis"]:
        files = [f"{out}/{backend}-{key}-{r}.wrk" for r in range(1, rounds + 1)]
        if not all(os.path.exists(f) for f in files):
            continue
        w = [wrk(f) for f in files]
        hello = statistics.median(wrk(f"{out}/{backend}-hello-{r}.wrk")[0] for r in range(1, rounds + 1))
        rates = [x[0] for x in w]
        bad = sum(x[3] for x in w)
        note = f" ({bad} non-2xx)" if bad else ""
        print(f"| {label} | {backend} | {statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f}){note} "
              f"| {statistics.median(x[1] for x in w):.2f} ms | {statistics.median(x[2] for x in w):.2f} ms "
              f"| {statistics.median(rates) / hello:.2f}x |")
PY
