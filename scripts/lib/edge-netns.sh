# Shared by scripts/edge.sh, tests/netns/edge-partition.sh and bench/edge.sh: a hub and N
# edge sites, each in its own network namespace, as separate hosts on one machine (root only).
#
#   hub namespace:   nats-server (JetStream domain "hub", leaf port 7422 on 10.200.255.1)
#                    kindling hub-1 (--cluster, --sync-role hub) on 127.0.0.1:3000
#   edge i:          nats-server, a leaf node (JetStream domain site-i)
#                    kindling site-i (--cluster-domain hub, --sync) on 127.0.0.1:3000
#   uplink i:        a veth pair, 10.200.i.2 (edge) <-> 10.200.i.1 (hub): cut it with
#                    edge_cut i; make it lossy and slow with edge_link i DELAY_MS LOSS_PERCENT
#
# Callers set: kindling (the binary), wasm (learning-progress.wasm), dir (state), and may set
# EDGE_ID (a short unique prefix for namespace and link names) and EDGE_DELAY=1 (each site's
# leaf connection goes through scripts/lib/delay-relay.py, so that edge_link can delay it:
# this kernel may lack netem). Everything made is removed by edge_teardown (call it from an
# EXIT trap).

EDGE_ID="${EDGE_ID:-k$(printf %x $$)}" # the whole process id: runs never share names
EDGE_ID="${EDGE_ID:0:8}"               # link names are at most 15 characters
edge_pids=()
edge_count=0
declare -A edge_kindling_pid=()

ns_of() { # hub | i
  if [ "$1" = hub ]; then echo "$EDGE_ID-hub"; else echo "$EDGE_ID-e$1"; fi
}
in_ns() { # hub|i CMD...
  local ns
  ns=$(ns_of "$1")
  shift
  ip netns exec "$ns" "$@"
}
name_of() { if [ "$1" = hub ]; then echo hub-1; else echo "site-$1"; fi; }

# GET or POST on a node's own port, from inside its namespace: works while its uplink is cut.
edge_curl() { # hub|i CURL-ARGS...
  local who=$1
  shift
  in_ns "$who" curl -sS -m 10 "$@"
}

# The example's routes, from inside a node's namespace.
edge_record() { # hub|i CLASS STUDENT LESSON PERCENT -> prints the status (000: no answer)
  edge_curl "$1" -o /dev/null -w '%{http_code}' -X POST --data-binary "$5" \
    "http://127.0.0.1:3000/learning-progress/progress/$2/$3/$4" || echo 000
}
edge_class() { edge_curl "$1" "http://127.0.0.1:3000/learning-progress/classes/$2"; }
edge_student() { edge_curl "$1" "http://127.0.0.1:3000/learning-progress/progress/$2"; }

# Waits until CLASS at a node counts STUDENTS students and COMPLETED completed lessons.
edge_converged() { # hub|i CLASS STUDENTS COMPLETED SECONDS
  edge_wait "every record at $(name_of "$1")" $(($5 * 10)) \
    sh -c "ip netns exec $(ns_of "$1") curl -s http://127.0.0.1:3000/learning-progress/classes/$2 | grep -q '\"students\":$3,\"completed_lessons\":$4'"
}

edge_wait() { # WHAT TRIES CMD... (every 0.1 s)
  local what=$1 tries=$2
  shift 2
  for _ in $(seq 1 "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "edge: $what did not happen; the logs end:" >&2
  for log in "$dir"/*.log; do echo "== $log" && tail -15 "$log"; done >&2
  return 1
}

edge_nats() { # hub|i
  local who=$1 conf="$dir/$(name_of "$1")-nats.conf"
  if [ "$who" = hub ]; then
    cat >"$conf" <<CONF
listen: 127.0.0.1:4222
http: 127.0.0.1:8222
server_name: hub
jetstream { store_dir: "$dir/hub-js", domain: hub }
leafnodes { listen: 10.200.255.1:7422, advertise: "10.200.255.1:7422" }
CONF
  else
    local uplink=10.200.255.1:7422
    if [ "${EDGE_DELAY:-}" = 1 ]; then
      ip netns exec "$(ns_of "$who")" python3 scripts/lib/delay-relay.py 7423 "$uplink" \
        "$dir/site-$who.delay" 2>"$dir/site-$who-relay.log" &
      edge_pids+=($!)
      uplink=127.0.0.1:7423
    fi
    cat >"$conf" <<CONF
listen: 127.0.0.1:4222
http: 127.0.0.1:8222
server_name: site-$who
jetstream { store_dir: "$dir/site-$who-js", domain: site-$who }
leafnodes { remotes: [ { url: "nats-leaf://$uplink" } ] }
CONF
  fi
  # Not through in_ns: $! must be the server itself, not a subshell.
  ip netns exec "$(ns_of "$who")" nats-server -c "$conf" 2>"${conf%.conf}.log" &
  edge_pids+=($!)
  edge_wait "nats-server of $(name_of "$who")" 300 in_ns "$who" curl -fsS http://127.0.0.1:8222/healthz
}

edge_kindling() { # hub|i: starts (or starts again) the node
  local who=$1 name
  name=$(name_of "$1")
  mkdir -p "$dir/$name"
  cp "$dir/secret.key" "$dir/$name/secret.key" 2>/dev/null || true
  local args=(serve --listen 127.0.0.1:3000 --data-dir "$dir/$name" --node-name "$name"
    --runtime-config "$dir/runtime-config.toml" --cluster nats://127.0.0.1:4222
    --cluster-replicas 1 --sync nats://127.0.0.1:4222 --sync-heartbeat 500ms)
  if [ "$who" = hub ]; then
    args+=(--sync-role hub)
  else
    args+=(--cluster-domain hub --cluster-spill false --cluster-queue false --zone "$name")
  fi
  ip netns exec "$(ns_of "$who")" env -u RUST_BACKTRACE KINDLING_LOG=info "$kindling" "${args[@]}" \
    >>"$dir/$name.log" 2>&1 &
  edge_kindling_pid[$name]=$!
  edge_pids+=($!)
  edge_wait "kindling $name" 300 edge_curl "$who" -f http://127.0.0.1:3000/readyz
}

edge_kill() { # i: kill -9 the site's kindling
  local pid=${edge_kindling_pid[$(name_of "$1")]}
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

edge_cut() { in_ns hub ip link set "$EDGE_ID-h$1" down; }
edge_restore() { in_ns hub ip link set "$EDGE_ID-h$1" up; }
# Site i's uplink drops LOSS_PERCENT of its packets each way (nftables, in the kernel) and,
# with EDGE_DELAY=1, its leaf connection waits DELAY_MS each way; 0 0 makes it clean again.
edge_link() { # i DELAY_MS LOSS_PERCENT
  local who
  for who in hub "$1"; do
    in_ns "$who" nft delete table inet kindling_loss 2>/dev/null || true
    [ "$3" -gt 0 ] || continue
    local dev="$EDGE_ID-h$1"
    [ "$who" = hub ] || dev="$EDGE_ID-u$1"
    in_ns "$who" nft add table inet kindling_loss
    in_ns "$who" nft add chain inet kindling_loss in "{ type filter hook input priority 0; }"
    in_ns "$who" nft add rule inet kindling_loss in iifname "$dev" numgen random mod 100 "<" "$3" drop
  done
  if [ "$2" -gt 0 ] && [ "${EDGE_DELAY:-}" != 1 ]; then
    echo "edge: a delay needs EDGE_DELAY=1 before edge_setup" >&2
    return 1
  fi
  echo "$2" >"$dir/site-$1.delay"
}

# Namespaces, links, servers; the example deployed once at the hub and served at every site.
edge_setup() { # N
  edge_count=$1
  mkdir -p "$dir"
  [ -f "$dir/secret.key" ] || head -c 32 /dev/urandom >"$dir/secret.key"
  chmod 600 "$dir/secret.key"
  printf '[key_value_store.progress]\ntype = "spin"\nsync = "hub"\n' >"$dir/runtime-config.toml"
  ip netns add "$(ns_of hub)"
  in_ns hub ip link set lo up
  in_ns hub ip addr add 10.200.255.1/32 dev lo
  for i in $(seq 1 "$edge_count"); do
    ip netns add "$(ns_of "$i")"
    in_ns "$i" ip link set lo up
    ip link add "$EDGE_ID-h$i" type veth peer name "$EDGE_ID-u$i"
    ip link set "$EDGE_ID-h$i" netns "$(ns_of hub)"
    ip link set "$EDGE_ID-u$i" netns "$(ns_of "$i")"
    in_ns hub ip addr add "10.200.$i.1/24" dev "$EDGE_ID-h$i"
    in_ns hub ip link set "$EDGE_ID-h$i" up
    in_ns "$i" ip addr add "10.200.$i.2/24" dev "$EDGE_ID-u$i"
    in_ns "$i" ip link set "$EDGE_ID-u$i" up
    in_ns "$i" ip route add 10.200.255.1/32 via "10.200.$i.1"
  done
  edge_nats hub
  edge_kindling hub
  for i in $(seq 1 "$edge_count"); do
    edge_nats "$i"
    edge_kindling "$i"
  done
  in_ns hub env KINDLING_SERVER=http://127.0.0.1:3000 KINDLING_DATA_DIR="$dir/hub-1" \
    "$kindling" deploy learning-progress "$wasm" --key-value progress >/dev/null
  for i in $(seq 1 "$edge_count"); do
    edge_wait "the example serving at site-$i" 600 \
      edge_curl "$i" -f http://127.0.0.1:3000/learning-progress/classes/setup
  done
}

edge_teardown() {
  # The shell's own "Killed" notices for the servers go to /dev/null too.
  {
    kill -9 "${edge_pids[@]}" 2>/dev/null || true
    local ns
    for ns in "$(ns_of hub)" $(for i in $(seq 1 "$edge_count"); do ns_of "$i"; done); do
      # Whatever still runs in the namespace, then the namespace.
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns del "$ns" 2>/dev/null || true
    done
    wait 2>/dev/null || true
  } 2>/dev/null
}
