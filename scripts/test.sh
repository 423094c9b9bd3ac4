#!/usr/bin/env bash
# The whole test suite: set up, build the guests from source, check formatting and lints,
# run every test. This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test
scripts/build-guests.sh

# Benchmarks and production run without it; tests should see the same Wasmtime behaviour.
unset RUST_BACKTRACE

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# --no-fail-fast: one failing test binary must not hide the others' results; nor may the
# first run hide the second's.
status=0
cargo test --workspace --locked --no-fail-fast || status=$?
# The fault tests on network namespaces start up to 21 nodes: they run alone, after the rest,
# one at a time (they are #[ignore]d in the run above).
cargo test --workspace --locked --test e2e edge_netns -- --ignored --test-threads=1 || status=$?
exit "$status"

