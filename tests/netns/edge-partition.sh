#!/usr/bin/env bash
# The edge fault test, on separate network stacks (root only; run by the e2e suite):
# a hub and three sites, each in its own network namespace linked by a veth pair.
# 1. Online, a record at any site reaches every node.
# 2. Site 1's uplink is cut for EDGE_CUT_SECONDS (60): meanwhile site 1, site 2 and the hub
#    record lessons (different students, the same class counter, and the same student's quiz:
#    a conflict), site 1 answers every request, and site 1's node is killed (kill -9) and
#    started again while offline.
# 3. The link comes back: within EDGE_CONVERGE_SECONDS every node holds every record, the
#    class counter is exact, and the quiz holds the same value everywhere.
# Prints what it measured; exits non-zero on the first broken promise.
#
#   kindling, wasm: the binary and examples/learning-progress.wasm (defaults: the release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
kindling="${kindling:-${CARGO_TARGET_DIR:-$PWD/target}/release/kindling}"
wasm="${wasm:-$PWD/examples/learning-progress.wasm}"
cut_seconds="${EDGE_CUT_SECONDS:-60}"
converge_seconds="${EDGE_CONVERGE_SECONDS:-120}"
dir=$(mktemp -d)
# shellcheck source=../../scripts/lib/edge-netns.sh
. scripts/lib/edge-netns.sh
trap 'edge_teardown; rm -rf "$dir"' EXIT

fail() { echo "edge-partition: FAIL: $*" >&2; for f in "$dir"/*.log; do echo "== $f"; tail -20 "$f"; done >&2; exit 1; }
record() { edge_record "$@"; }
student() { edge_student "$@"; }

edge_setup 3
echo "edge-partition: hub and 3 sites up, the example serving everywhere"

[ "$(record 1 online ana l1 100)" = 200 ] || fail "record at site 1"
for who in hub 2 3; do
  edge_wait "site 1's record at $who" 300 \
    sh -c "ip netns exec $(ns_of "$who") curl -s http://127.0.0.1:3000/learning-progress/classes/online | grep -q '\"completed_lessons\":1'" \
    || fail "online sync"
done

edge_cut 1
echo "edge-partition: site 1 cut off for ${cut_seconds}s"
start=$(date +%s)
n=0 failures=0 killed=no
site1=0 hub=0 site2=0
while [ $(($(date +%s) - start)) -lt "$cut_seconds" ]; do
  n=$((n + 1))
  [ "$(record 1 c s1-$n l1 100)" = 200 ] && site1=$((site1 + 1)) || failures=$((failures + 1))
  [ "$(record hub c hub-$n l1 100)" = 200 ] && hub=$((hub + 1)) || fail "the hub refused a record"
  [ "$(record 2 c s2-$n l1 100)" = 200 ] && site2=$((site2 + 1)) || fail "site 2 refused a record"
  # The same key on both sides of the cut; site 1 writes it last.
  [ "$(record hub c quiz l1 $((n % 90)))" = 200 ] || fail "hub quiz"
  [ "$(record 1 c quiz l1 $((n % 90 + 1)))" = 200 ] || failures=$((failures + 1))
  if [ "$killed" = no ] && [ $(($(date +%s) - start)) -ge $((cut_seconds / 2)) ]; then
    edge_kill 1
    edge_kindling 1
    killed=yes
    echo "edge-partition: site 1 killed (kill -9) and started again while offline"
  fi
  sleep 0.2
done
[ "$failures" -eq 0 ] || fail "site 1 failed $failures requests while cut off"
echo "edge-partition: during the cut: site 1 $site1 records + $n quiz writes (0 failed), hub $hub, site 2 $site2"
quiz_hub=$(student hub quiz)
quiz_1=$(student 1 quiz)
[ "$quiz_hub" != "$quiz_1" ] || fail "the quiz agreed while cut off: the link was not cut"

restored=$(date +%s%N)
edge_restore 1
expected=$((site1 + hub + site2))
students=$((expected + 1)) # and the quiz
for who in hub 1 2 3; do
  edge_converged "$who" c "$students" "$expected" "$converge_seconds" \
    || fail "$(name_of "$who") holds $(edge_class "$who" c), expected $students students and $expected completed"
done
converged_ms=$((($(date +%s%N) - restored) / 1000000))
winner=$(student hub quiz)
for who in 1 2 3; do
  [ "$(student "$who" quiz)" = "$winner" ] || fail "the quiz differs at site $who: $(student "$who" quiz) vs $winner"
done
echo "edge-partition: converged ${converged_ms} ms after the link came back: $expected completions and $students students on all 4 nodes; the quiz is $winner everywhere"
echo "edge-partition: ok"
