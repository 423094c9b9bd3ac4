#!/usr/bin/env bash
# Fuzzes the deploy path (configuration parsing, module validation and compilation), token
# authentication and Rego policies for a bounded time per target, with cargo-fuzz
# (libFuzzer), seeded with the example guests and policies.
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

mkdir -p fuzz/corpus/access_token fuzz/corpus/policy
printf 'Bearer kdl_0123456789abcdef_%064d' 0 > fuzz/corpus/access_token/shape
for policy in examples/policies/*.rego; do
  { cat "$policy"; printf '\0{"method":"POST","path":"/x","function":{"name":"f","size":5}}'; } \
    > "fuzz/corpus/policy/$(basename "$policy" .rego)"
done

for target in deploy_config deploy_module access_token policy; do
  echo "fuzz: $target for ${seconds}s"
  cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=30
done
echo "fuzz: no crashes"
