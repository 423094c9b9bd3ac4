#!/usr/bin/env bash
# One setting against another on the same binary, load and core: `kindling serve` with the
# hello deployed, started once per variant and round (variants alternate, so drift hits them
# alike), under `wrk -t2 -c64 --latency` after a 2-second warm-up. A variant is a label and
# environment assignments, for settings read at start-up such as jemalloc's
# (`_RJEM_MALLOC_CONF`, which overrides the options compiled into the binary).
#   bench/ab-env.sh ROUNDS LABEL[:VAR=VALUE[;VAR=VALUE...]] ...   (BENCH_DURATION=10s)
# e.g. bench/ab-env.sh 3 default 'no-bg:_RJEM_MALLOC_CONF=background_thread:false'
# (a value may hold ':' and ',' but not ';'). Prints req/s as median (min-max) and latency
# medians.
source "$(dirname "$0")/lib.sh"
rounds="${1:?usage: bench/ab-env.sh ROUNDS LABEL[:VAR=VALUE;...] ...}"
shift
[ $# -ge 1 ] || { echo "ab-env: name at least one variant" >&2; exit 2; }
duration="${BENCH_DURATION:-10s}"
build_release
out="$RESULTS/ab-env"
rm -rf "$out" && mkdir -p "$out"
trap stop_server EXIT

run_variant() {
  local label=$1 assignments=$2 round=$3
  local env_args=() assignment
  if [ -n "$assignments" ]; then
    IFS=';' read -r -a env_args <<<"$assignments"
  fi
  # The variant's environment reaches the server only.
  for assignment in "${env_args[@]}"; do export "${assignment?}"; done
  start_kindling 3410
  for assignment in "${env_args[@]}"; do unset "${assignment%%=*}"; done
  "$KINDLING" deploy hello examples/hello.wasm >/dev/null
  local url="$KINDLING_SERVER/hello/"
  taskset -c "$CLIENT_CORE" wrk -t2 -c64 -d2s "$url" >/dev/null
  taskset -c "$CLIENT_CORE" wrk -t2 -c64 -d"$duration" --latency "$url" \
    >"$out/$label-$round.txt"
  stop_server
}

for round in $(seq 1 "$rounds"); do
  for variant in "$@"; do
    label=${variant%%:*}
    assignments=""
    [ "$label" != "$variant" ] && assignments=${variant#*:}
    echo "round $round: $label" >&2
    run_variant "$label" "$assignments" "$round"
  done
done

python3 - "$out" "$rounds" "$@" <<'EOF'
import re, statistics, sys
out, rounds, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def ms(text, pct):
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", text, re.M)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
print(f"{rounds} rounds; req/s as median (min-max), latency medians")
print("| variant | wrk req/s | p50 | p99 | req/s against the first |")
print("| --- | --- | --- | --- | --- |")
first = None
for variant in variants:
    label = variant.split(":", 1)[0]
    runs = [open(f"{out}/{label}-{r}.txt").read() for r in range(1, rounds + 1)]
    rps = [float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)) for t in runs]
    med = statistics.median(rps)
    first = first or med
    p50 = statistics.median(ms(t, 50) for t in runs)
    p99 = statistics.median(ms(t, 99) for t in runs)
    print(f"| {label} | {med:,.0f} ({min(rps):,.0f}-{max(rps):,.0f}) | {p50:.2f} ms | {p99:.2f} ms |"
          f" {med / first:.2f}x |")
EOF
