#!/usr/bin/env bash
# Replays an Azure Functions trace through every keep-alive policy with a release build and
# writes the figures of docs/keep-alive.md: the table (stdout), the plot
# (docs/keep-alive-tradeoff.svg) and the JSON (bench/results/sim.json).
#   bench/sim-azure.sh TRACE        (an Azure 2019 directory such as azure2019-sample-1350)
trace="$(realpath "${1:?usage: bench/sim-azure.sh TRACE (an Azure 2019 directory or 2021 file)}")"
source "$(dirname "$0")/lib.sh"
cargo build --quiet --release --locked -p kindling-cli
started=$(date +%s%N)
"$KINDLING" sim "$trace" --plot docs/keep-alive-tradeoff.svg
echo "replayed in $(( ($(date +%s%N) - started) / 1000000 )) ms"
"$KINDLING" sim "$trace" --json >"$RESULTS/sim.json"
