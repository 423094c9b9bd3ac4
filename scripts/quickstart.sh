#!/usr/bin/env bash
# Kindling's main job on a fresh machine: set up, build Kindling and the example functions,
# start a node on the embedded SQLite registry (./.kindling), deploy the examples, print the
# URLs to try, and keep serving until Ctrl-C.
#
#   KINDLING_LISTEN    address to serve on (default 127.0.0.1:3000)
#   KINDLING_DATA_DIR  where the registry lives (default ./.kindling)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-guests.sh
cargo build --release --locked -p kindling-cli
kindling="${CARGO_TARGET_DIR:-$PWD/target}/release/kindling"

listen="${KINDLING_LISTEN:-127.0.0.1:3000}"
export KINDLING_SERVER="http://$listen"
unset RUST_BACKTRACE

"$kindling" serve --listen "$listen" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null' EXIT
trap 'exit 130' INT TERM

# Wait until the node answers and has loaded what it already had.
for _ in $(seq 1 600); do
  if curl -fsS "$KINDLING_SERVER/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "quickstart: kindling serve exited; see the messages above" >&2
    exit 1
  fi
  sleep 0.1
done

"$kindling" deploy hello examples/hello.wasm
"$kindling" deploy hello-p3 examples/hello-p3.wasm
"$kindling" deploy wagi-hello examples/wagi-hello.wasm
"$kindling" deploy c-hello examples/c-hello.wasm --env GREETING=hi
echo
"$kindling" ls
cat <<TXT

Kindling is serving. Try:
  curl $KINDLING_SERVER/hello/
  curl $KINDLING_SERVER/hello/anything?x=1 -H 'x-demo: yes'
  curl $KINDLING_SERVER/hello-p3/
  curl -d 'some body' $KINDLING_SERVER/wagi-hello/echo?q=1
  curl $KINDLING_SERVER/c-hello/
  $kindling inspect hello
  curl $KINDLING_SERVER/v1/openapi.json
  $kindling logs wagi-hello --follow
  curl $KINDLING_SERVER/metrics
  open $KINDLING_SERVER/dashboard in a browser for the live view (a function's page asks
    for a token: \`$kindling token create viewer --scope read\`)
The admin API needs a token; the CLI here uses ${KINDLING_DATA_DIR:-.kindling}/admin.token.
Ctrl-C stops the server; the functions stay deployed in ${KINDLING_DATA_DIR:-.kindling}.
TXT
wait "$server"
