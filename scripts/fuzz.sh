#!/usr/bin/env bash
# Fuzzes the deploy path (configuration parsing, module validation and compilation) for a
# bounded time per target, with cargo-fuzz (libFuzzer), seeded with the example guests.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
# Crashes are written to fuzz/artifacts/<target>/ and fail the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

scripts/setup.sh
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
scripts/build-guests.sh

# cargo-fuzz asks the compiler for sanitizer flags that stable Rust gates behind nightly;
# this toolchain is stable only, so allow them for the fuzz build alone.
export RUSTC_BOOTSTRAP=1

mkdir -p fuzz/corpus/deploy_module fuzz/corpus/deploy_config
cp examples/*.wasm test-programs/build/*.wasm fuzz/corpus/deploy_module/
printf '%s' '{"env":{"A":"b"},"limits":{"timeout_ms":500,"memory_bytes":1048576},"allowed_outbound_hosts":["https://*.example.com:8443"],"mounts":[{"source":"data","path":"/data"}]}' \
  > fuzz/corpus/deploy_config/full.json

for target in deploy_config deploy_module; do
  echo "fuzz: $target for ${seconds}s"
  cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=30
done
echo "fuzz: no crashes"
