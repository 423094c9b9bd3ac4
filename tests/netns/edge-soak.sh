#!/usr/bin/env bash
# The edge soak, on separate network stacks (root only): a hub and EDGE_SITES sites (20), each
# in its own network namespace with its own NATS leaf node. For EDGE_SOAK_SECONDS (120) every
# node records lessons (each write a new student of one class, so every write is countable,
# and one lesson every node rewrites: a conflict), while links flap at random: every
# EDGE_FLAP_MS (500) one site's uplink goes down, or comes back.
# Then every link comes back, and within EDGE_CONVERGE_SECONDS (180) every node must hold
# every write it or any other node acknowledged, the class's counter must be exact, and the
# conflicting lesson must hold one value everywhere. Every request must have been answered
# (a site serves offline).
# Prints what it measured, the convergence time after the last reconnect among it; exits
# non-zero on the first broken promise.
#
#   kindling, wasm: the binary and examples/learning-progress.wasm (defaults: the release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
kindling="${kindling:-${CARGO_TARGET_DIR:-$PWD/target}/release/kindling}"
wasm="${wasm:-$PWD/examples/learning-progress.wasm}"
sites="${EDGE_SITES:-20}"
soak_seconds="${EDGE_SOAK_SECONDS:-120}"
flap_ms="${EDGE_FLAP_MS:-500}"
converge_seconds="${EDGE_CONVERGE_SECONDS:-180}"
dir=$(mktemp -d)
# shellcheck source=../../scripts/lib/edge-netns.sh
. scripts/lib/edge-netns.sh
writers=()
# Writers stop first (they stop on their own once the directory is gone, too).
# Under set -e a failing command in the trap would become the script's status: each is allowed
# to fail (the writers may have stopped already).
trap 'touch "$dir/stop" 2>/dev/null || true; kill "${writers[@]}" 2>/dev/null || true; edge_teardown; rm -rf "$dir"' EXIT

fail() { echo "edge-soak: FAIL: $*" >&2; exit 1; }
nodes=(hub $(seq 1 "$sites"))

started=$(date +%s)
edge_setup "$sites"
echo "edge-soak: hub and $sites sites up in $(($(date +%s) - started)) s, the example serving everywhere"

# One writer per node: a new student per write (never a conflict), and every tenth write the
# shared quiz (a conflict; below 100 %, so it never counts as completed). Counts what was
# acknowledged and what was not answered.
writer() { # hub|i
  local who=$1 n=0 ok=0 failed=0
  while [ -d "$dir" ] && [ ! -e "$dir/stop" ]; do
    n=$((n + 1))
    if [ "$(edge_record "$who" soak "w$who-$n" l1 100)" = 200 ]; then
      ok=$((ok + 1))
    else
      failed=$((failed + 1))
    fi
    if [ $((n % 10)) -eq 0 ]; then
      [ "$(edge_record "$who" soak quiz l1 $((RANDOM % 99 + 1)))" = 200 ] || failed=$((failed + 1))
    fi
    sleep 0.3
  done
  echo "$ok $failed" >"$dir/writer-$who"
}
for who in "${nodes[@]}"; do
  writer "$who" &
  writers+=($!)
done

# Links flap at random: a site picked at random changes state, every flap_ms.
declare -A down=()
flaps=0 cuts=0
end=$(($(date +%s) + soak_seconds))
while [ "$(date +%s)" -lt "$end" ]; do
  i=$((RANDOM % sites + 1))
  if [ -n "${down[$i]:-}" ]; then
    edge_restore "$i"
    unset "down[$i]"
  else
    edge_cut "$i"
    down[$i]=1
    cuts=$((cuts + 1))
  fi
  flaps=$((flaps + 1))
  sleep "$(awk "BEGIN { print $flap_ms / 1000 }")"
done
echo "edge-soak: ${soak_seconds} s of writes with $flaps flaps ($cuts cuts); ${#down[@]} links down at the end"

touch "$dir/stop"
wait "${writers[@]}"
acknowledged=0 unanswered=0
for who in "${nodes[@]}"; do
  read -r ok failed <"$dir/writer-$who"
  acknowledged=$((acknowledged + ok))
  unanswered=$((unanswered + failed))
done
[ "$unanswered" -eq 0 ] || fail "$unanswered requests were not answered during the soak"

restored=$(date +%s%N)
for i in "${!down[@]}"; do edge_restore "$i"; done
students=$((acknowledged + 1)) # and the quiz
for who in "${nodes[@]}"; do
  edge_converged "$who" soak "$students" "$acknowledged" "$converge_seconds" \
    || fail "$(name_of "$who") holds $(edge_class "$who" soak), expected $students students and $acknowledged completed"
done
converged_ms=$((($(date +%s%N) - restored) / 1000000))
winner=$(edge_student hub quiz | grep -o '"l1":[0-9]*')
for i in $(seq 1 "$sites"); do
  [ "$(edge_student "$i" quiz | grep -o '"l1":[0-9]*')" = "$winner" ] \
    || fail "the quiz differs at site $i: $(edge_student "$i" quiz) vs $winner"
done
echo "edge-soak: $acknowledged acknowledged writes, 0 lost, 0 unanswered; all $((sites + 1)) nodes converged ${converged_ms} ms after the last reconnect; the quiz holds {$winner} everywhere"
# The streams keep one change per key, kind and writer, not one per write.
stream_size() { # hub|i
  in_ns "$1" curl -s http://127.0.0.1:3000/metrics | awk '$1 == "kindling_sync_stream_messages" { print $2 }'
}
echo "edge-soak: the hub's stream holds $(stream_size hub || true) changes, site 1's mirror of it $(stream_size 1 || true)"
# What the nodes and their NATS servers hold in memory, per node, after the soak.
ps -o comm=,rss= -p "$(IFS=,; echo "${edge_pids[*]}")" 2>/dev/null \
  | awk -v n=$((sites + 1)) '{ rss[$1] += $2 } END { for (c in rss) printf "edge-soak: %s: %.0f MiB per node\n", c, rss[c] / 1024 / n }' || true
echo "edge-soak: ok"
