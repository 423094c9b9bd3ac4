#!/usr/bin/env bash
# Where an HTTP request's CPU goes, hop by hop: `kindling serve` pinned to one core serves the
# hello component under wrk's closed-loop load on the other core while `perf record` samples
# the server on the software `cpu-clock` event (hardware counters are not offered on every
# VM; callgrind cannot run the pooling allocator). Each sample goes to one hop: the innermost
# frame of its stack that names one (bench/hops.py holds the rules). Prints the table and the
# microseconds per request each hop costs, from the server's CPU time over the requests served.
#   bench/profile-http.sh [SECONDS] [p2|p3]   (default 10 p2; BENCH_PROFILE_HZ=999)
source "$(dirname "$0")/lib.sh"
seconds="${1:-10}"
generation="${2:-p2}"
hz="${BENCH_PROFILE_HZ:-999}"
case "$generation" in
  p2) component="$ROOT/examples/hello.wasm" ;;
  p3) component="$ROOT/examples/hello-p3.wasm" ;;
  *) echo "profile: the second argument is p2 or p3, not $generation" >&2; exit 2 ;;
esac
build_release
ensure_packages linux-perf
out="$RESULTS/profile-$generation"
rm -rf "$out" && mkdir -p "$out"

start_kindling 3409
trap stop_server EXIT
"$KINDLING" deploy hello "$component" >/dev/null
url="$KINDLING_SERVER/hello/"
taskset -c "$CLIENT_CORE" wrk -t2 -c64 -d2s "$url" >/dev/null

# The server's CPU time (utime + stime, in clock ticks) around the measured run.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }
before=$(cpu_ticks)
taskset -c "$CLIENT_CORE" perf record -q -e cpu-clock -F "$hz" --call-graph dwarf,32768 \
  -p "$SERVER_PID" -o "$out/perf.data" -- sleep "$seconds" &
perf_pid=$!
taskset -c "$CLIENT_CORE" wrk -t2 -c64 -d"${seconds}s" --latency "$url" >"$out/wrk.txt"
after=$(cpu_ticks)
wait "$perf_pid"
requests=$(awk '/requests in/ { print $1 }' "$out/wrk.txt")
ticks_per_s=$(getconf CLK_TCK)

perf script -i "$out/perf.data" --no-inline -F comm,tid,ip,sym,dso 2>/dev/null >"$out/stacks.txt"
python3 bench/hops.py "$out/stacks.txt" "$requests" \
  "$(python3 -c "print(($after - $before) / $ticks_per_s)")" | tee "$out/hops.md"
