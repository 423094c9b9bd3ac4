#!/usr/bin/env bash
# Installs what building and testing Kindling needs on a Debian machine with rustup:
#   - the wasm32-wasip1 and wasm32-wasip2 Rust targets (guest builds)
#   - clang, lld, wasi-libc and compiler-rt for wasm32 (the C example)
#   - curl (readiness checks in scripts)
# and with --test, what the test suite also runs:
#   - prometheus (promtool and a real Prometheus server for the metrics tests)
#   - chromium (the dashboard test drives the page headless)
#   - redis-server (the Redis key-value backend and the Redis Streams trigger are tested
#     against a real server)
#   - nats-server (the NATS and JetStream triggers are tested against a real server)
#   - schemathesis from PyPI (the admin API is checked against its OpenAPI document)
#   - kubernetes-validate from PyPI (deploy/kubernetes's manifests, against the API schemas)
#   - KEDA's ScaledObject schema from the npm registry (@kubernetes-models/keda, with js-yaml),
#     into KINDLING_TOOLS (default ~/.cache/kindling/tools), for deploy/keda's manifests
# Safe to run repeatedly: it installs only what is missing.
#   scripts/setup.sh [--test]
set -euo pipefail

if ! command -v cargo >/dev/null || ! command -v rustup >/dev/null; then
  echo "setup: Kindling needs Rust through rustup (https://rustup.rs); install it first" >&2
  exit 1
fi

missing_targets=()
installed_targets=$(rustup target list --installed)
for target in wasm32-wasip1 wasm32-wasip2; do
  grep -qx "$target" <<<"$installed_targets" || missing_targets+=("$target")
done
if [ ${#missing_targets[@]} -gt 0 ]; then
  echo "setup: adding Rust targets ${missing_targets[*]}"
  rustup target add "${missing_targets[@]}"
fi

packages=(clang lld wasi-libc libclang-rt-14-dev-wasm32 curl)
if [ "${1:-}" = "--test" ]; then
  packages+=(prometheus chromium redis-server nats-server iproute2)
  command -v npm >/dev/null || packages+=(nodejs npm)
elif [ $# -gt 0 ]; then
  echo "setup: unknown argument $1; usage: scripts/setup.sh [--test]" >&2
  exit 2
fi
missing_packages=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing_packages+=("$package")
done
if [ ${#missing_packages[@]} -gt 0 ]; then
  echo "setup: installing Debian packages ${missing_packages[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "setup: run as root or install sudo to install: ${missing_packages[*]}" >&2
    exit 1
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing_packages[@]}"
fi

if [ "${1:-}" = "--test" ]; then
  schemathesis_version=4.32.5
  if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$schemathesis_version')" 2>/dev/null; then
    echo "setup: installing schemathesis $schemathesis_version (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
  fi
  kubernetes_validate_version=1.31.0
  if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('kubernetes-validate') != '$kubernetes_validate_version')" 2>/dev/null; then
    echo "setup: installing kubernetes-validate $kubernetes_validate_version (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$kubernetes_validate_version"
  fi
  tools="${KINDLING_TOOLS:-$HOME/.cache/kindling/tools}"
  if ! [ -f "$tools/node_modules/@kubernetes-models/keda/package.json" ] \
    || ! [ -f "$tools/node_modules/js-yaml/package.json" ]; then
    echo "setup: installing KEDA's schema (@kubernetes-models/keda, npm) into $tools"
    mkdir -p "$tools"
    npm install --silent --no-audit --no-fund --prefix "$tools" \
      @kubernetes-models/keda@0.4.2 js-yaml@4.1.0
  fi
fi
