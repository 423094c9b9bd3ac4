#!/usr/bin/env bash
# Edge mode on this machine: a hub and three edge sites, each in its own network namespace (a
# separate host with its own network stack), each site's NATS a leaf node of the hub's, the
# learning-progress example deployed once at the hub and served at every site. Runs until
# Ctrl-C, then removes the namespaces. Needs root (ip netns). State in a temporary directory.
#
# While it runs, from another shell (NS names are printed):
#   ip netns exec NS curl -X POST --data 100 127.0.0.1:3000/learning-progress/progress/c1/ana/l1
#   ip netns exec NS curl 127.0.0.1:3000/learning-progress/classes/c1
#   ip netns exec HUB-NS ip link set LINK down     # cut a site's uplink; `up` restores it
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "edge: network namespaces need root" >&2; exit 2; }
scripts/setup.sh --test
scripts/build-guests.sh
cargo build --release --locked -p kindling-cli
kindling="${CARGO_TARGET_DIR:-$PWD/target}/release/kindling"
wasm="$PWD/examples/learning-progress.wasm"
dir=$(mktemp -d)
# shellcheck source=lib/edge-netns.sh
. scripts/lib/edge-netns.sh
trap 'edge_teardown; rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM
edge_setup 3
echo "edge: hub in namespace $(ns_of hub); sites in $(ns_of 1) $(ns_of 2) $(ns_of 3)"
for i in 1 2 3; do echo "edge: site-$i's uplink is $EDGE_ID-h$i (in $(ns_of hub))"; done
echo "edge: every node serves http://127.0.0.1:3000/learning-progress/ in its namespace; logs in $dir"
echo "edge: Ctrl-C stops everything"
while :; do sleep 3600; done
