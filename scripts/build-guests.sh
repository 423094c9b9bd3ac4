#!/usr/bin/env bash
# Builds every WebAssembly guest from source: the examples users deploy and the programs the
# integration tests deploy. Outputs:
#   examples/hello.wasm        wasi:http/proxy component (Rust, wasm32-wasip2)
#   examples/hello-p3.wasm     WASI 0.3 wasi:http component (Rust, spin-sdk 7, wasm32-wasip2)
#   examples/learning-progress.wasm  wasi:http component with wasi:keyvalue (Rust, wasm32-wasip2)
#   examples/wagi-hello.wasm   WAGI module (Rust, wasm32-wasip1)
#   examples/c-hello.wasm      WAGI module (C, clang + wasi-libc)
#   test-programs/build/*.wasm test guests
# Needs the wasm32 Rust targets, clang, lld and wasi-libc: scripts/setup.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

# Guests get their own target directory so that host and guest builds never fight over
# one lock; CARGO_TARGET_DIR, when set, moves both out of the source tree.
target_dir="${CARGO_TARGET_DIR:-$PWD/target}/guests"
release() { echo "$target_dir/$1/release"; }

cargo build --quiet --release --locked --manifest-path examples/Cargo.toml \
  --target-dir "$target_dir" --target wasm32-wasip2 -p hello -p hello-p3 -p learning-progress
cargo build --quiet --release --locked --manifest-path examples/Cargo.toml \
  --target-dir "$target_dir" --target wasm32-wasip1 -p wagi-hello
cp "$(release wasm32-wasip2)/hello.wasm" examples/hello.wasm
cp "$(release wasm32-wasip2)/hello_p3.wasm" examples/hello-p3.wasm
cp "$(release wasm32-wasip2)/learning_progress.wasm" examples/learning-progress.wasm
cp "$(release wasm32-wasip1)/wagi-hello.wasm" examples/wagi-hello.wasm
clang --target=wasm32-wasi -O2 -s -Wall -Werror -o examples/c-hello.wasm examples/c-hello/hello.c

mkdir -p test-programs/build
cargo build --quiet --release --locked --manifest-path test-programs/Cargo.toml \
  --target-dir "$target_dir" --target wasm32-wasip2 \
  -p http-wasip2 -p http-wstd -p cli-command -p hostile-http -p spin-kv -p spin7 -p unsupported-imports -p wasi-kv
cargo build --quiet --release --locked --manifest-path test-programs/Cargo.toml \
  --target-dir "$target_dir" --target wasm32-wasip1 -p core-library -p hostile-wagi
cp "$(release wasm32-wasip2)/http_wasip2.wasm" test-programs/build/http-wasip2.wasm
cp "$(release wasm32-wasip2)/http-wstd.wasm" test-programs/build/http-wstd.wasm
cp "$(release wasm32-wasip2)/cli-command.wasm" test-programs/build/cli-command.wasm
cp "$(release wasm32-wasip1)/core_library.wasm" test-programs/build/core-library.wasm
cp "$(release wasm32-wasip2)/hostile_http.wasm" test-programs/build/hostile-http.wasm
cp "$(release wasm32-wasip1)/hostile-wagi.wasm" test-programs/build/hostile-wagi.wasm
cp "$(release wasm32-wasip2)/spin_kv.wasm" test-programs/build/spin-kv.wasm
cp "$(release wasm32-wasip2)/wasi_kv.wasm" test-programs/build/wasi-kv.wasm
cp "$(release wasm32-wasip2)/spin7.wasm" test-programs/build/spin7.wasm
cp "$(release wasm32-wasip2)/unsupported_imports.wasm" test-programs/build/unsupported-imports.wasm

echo "guests built: examples/*.wasm, test-programs/build/*.wasm"
