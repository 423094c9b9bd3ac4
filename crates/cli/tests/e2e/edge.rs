//! Edge autonomy on loopback: a hub node and two edge sites, each edge on its own NATS leaf
//! node (its own JetStream domain) whose uplink the test cuts. Cut off, an edge answers every
//! request and keeps every write; back online, every node holds every write, counters are
//! exact, and a key written on both sides holds the same winner everywhere, also after the
//! edge was killed (`kill -9`) while offline.

use std::time::Duration;

use kindling_test_support::{EdgeNats, Server, test_program, wait_for};

use crate::{kindling, path_str};

const RUNTIME_CONFIG: &str = "[key_value_store.default]\ntype = \"spin\"\nsync = \"hub\"\n";

/// Status and body of a request.
fn call(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let mut args = vec!["-sS", "-m", "10", "-X", method, "-w", "\n%{http_code}"];
    if let Some(body) = body {
        args.extend(["--data-binary", body]);
    }
    args.push(url);
    let out = crate::curl(&args).expect("curl runs");
    let (body, status) = out.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.trim().to_string())
}

/// The `kindling-stale` header of a GET's response (seconds without the hub), if any.
fn stale(node: &Server, path: &str) -> Option<u64> {
    let head = crate::curl(&[
        "-sS",
        "-m",
        "10",
        "-o",
        "/dev/null",
        "-D",
        "-",
        &node.url(path),
    ])
    .expect("curl runs");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.eq_ignore_ascii_case(kindling_cap_keyvalue::STALE_HEADER))
            .then(|| value.trim().parse().expect("seconds"))
    })
}

fn set(node: &Server, key: &str, value: &str) {
    let (status, body) = call("PUT", &node.url(&format!("/kv/d2/set/{key}")), Some(value));
    assert_eq!(status, 200, "set {key} on a node: {body}");
}

fn increment(node: &Server, key: &str) {
    let (status, body) = call("GET", &node.url(&format!("/kv/d2/increment/{key}")), None);
    assert_eq!(status, 200, "increment {key}: {body}");
}

fn get(node: &Server, key: &str) -> Option<String> {
    match call("GET", &node.url(&format!("/kv/d2/get/{key}")), None) {
        (200, body) => Some(body),
        (404, _) => None,
        (status, body) => panic!("get {key}: {status} {body}"),
    }
}

/// Waits until every node holds `expected` for `key`.
fn converged(nodes: &[&Server], key: &str, expected: &str) {
    wait_for(
        &format!("every node holds {key} = {expected}"),
        Duration::from_millis(100),
        || {
            let seen: Vec<Option<String>> = nodes.iter().map(|node| get(node, key)).collect();
            if seen.iter().all(|v| v.as_deref() == Some(expected)) {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        },
    );
}

fn start(dir: &std::path::Path, name: &str, sync: &[&str]) -> Server {
    let config = dir.join("runtime-config.toml");
    std::fs::write(&config, RUNTIME_CONFIG).unwrap();
    let mut args = vec![
        "--runtime-config",
        path_str(&config),
        "--node-name",
        name,
        "--sync-heartbeat",
        "300ms",
    ];
    args.extend_from_slice(sync);
    let node = Server::start(&kindling(), &dir.join(format!("{name}-data")), &args, &[]);
    node.cli(&[
        "deploy",
        "kv",
        path_str(&test_program("wasi-kv")),
        "--key-value",
        "default",
    ])
    .ok();
    node
}

fn metric(node: &Server, line_start: &str) -> Option<f64> {
    let text = crate::curl(&["-sS", &node.url("/metrics")])?;
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|value| value.trim().parse().ok())
}

/// Waits until the edge reports its link to the hub up or down.
fn wait_link(edge: &Server, up: bool) {
    let want = if up { 1.0 } else { 0.0 };
    wait_for(
        &format!("the edge reports its link up = {up}"),
        Duration::from_millis(100),
        || match metric(edge, "kindling_sync_link_up{peer=\"hub\"} ") {
            Some(v) if (v - want).abs() < f64::EPSILON => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

/// Waits until `kindling nodes` at the hub shows `peer`'s sync link `state` (`up`, `down`).
fn hub_shows_link(hub: &Server, peer: &str, state: &str) {
    wait_for(
        &format!("kindling nodes at the hub showing {peer}'s link {state}"),
        Duration::from_millis(100),
        || {
            let out = hub.cli(&["nodes"]);
            let row = out.stdout.lines().find(|line| {
                let mut cells = line.split_whitespace();
                cells.next() == Some(peer) && cells.next().is_some_and(|c| c == "up" || c == "down")
            });
            match row {
                Some(row) if row.split_whitespace().nth(1) == Some(state) => Ok(()),
                _ => Err(out.stdout.clone()),
            }
        },
    );
}

#[test]
fn an_edge_cut_off_serves_and_writes_and_every_write_reaches_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = EdgeNats::start(dir.path(), &["e1", "e2"]);
    let hub_url = nats.hub_url();
    let hub = start(
        dir.path(),
        "hub1",
        &["--sync", &hub_url, "--sync-role", "hub"],
    );
    let (e1_url, e2_url) = (nats.edge_url(0), nats.edge_url(1));
    let mut e1 = start(dir.path(), "e1", &["--sync", &e1_url]);
    let e2 = start(dir.path(), "e2", &["--sync", &e2_url]);

    // Online: a write anywhere reaches everyone.
    set(&e1, "greeting", "from e1");
    converged(&[&hub, &e1, &e2], "greeting", "from e1");
    increment(&hub, "lessons");
    converged(&[&hub, &e1, &e2], "lessons", "1");

    // e1's uplink fails. Both sides keep serving and writing: the same key, keys of their
    // own, and the same counter.
    nats.link(0).cut();
    wait_link(&e1, false);
    hub_shows_link(&hub, "e1", "down");
    hub_shows_link(&hub, "e2", "up");
    set(&hub, "conflict", "hub's");
    for i in 0..20 {
        increment(&e1, "lessons");
        increment(&e2, "lessons");
        increment(&hub, "lessons");
        set(&e1, &format!("e1-{i}"), &i.to_string());
    }
    set(&hub, "hub-only", "h");
    // e1 writes the conflicting key last, by the clock.
    set(&e1, "conflict", "e1's");
    // While offline, e1 still answers, and has only its own writes and what came before.
    assert_eq!(get(&e1, "hub-only"), None);
    assert_eq!(get(&e1, "e1-19").as_deref(), Some("19"));
    // e2 and the hub see each other's writes, not e1's.
    converged(&[&hub, &e2], "hub-only", "h");
    assert_eq!(get(&hub, "e1-0"), None);

    // e1 dies while offline, and its leaf node too; neither loses what was written.
    e1.kill();
    nats.restart_edge(0);
    e1 = e1.restart(
        &[
            "--runtime-config",
            path_str(&dir.path().join("runtime-config.toml")),
            "--node-name",
            "e1",
            "--sync-heartbeat",
            "300ms",
            "--sync",
            &e1_url,
        ],
        &[],
    );
    assert_eq!(get(&e1, "e1-19").as_deref(), Some("19"));
    set(&e1, "after-restart", "yes");

    // The link comes back: everything meets.
    nats.link(0).restore();
    nats.wait_linked(0);
    let all = [&hub, &e1, &e2];
    converged(&all, "after-restart", "yes");
    converged(&all, "hub-only", "h");
    for i in 0..20 {
        converged(&all, &format!("e1-{i}"), &i.to_string());
    }
    // 1 before the cut, 20 on each of three nodes during it: none lost, none twice.
    converged(&all, "lessons", "61");
    converged(&all, "conflict", "e1's");
    wait_link(&e1, true);
    hub_shows_link(&hub, "e1", "up");
    assert_eq!(metric(&e1, BACKLOG), Some(0.0));
    let hub_metrics = crate::curl(&["-sS", &hub.url("/metrics")]).unwrap();
    assert!(
        hub_metrics.contains("kindling_sync_link_up{peer=\"e1\"}")
            && hub_metrics.contains("kindling_sync_link_up{peer=\"e2\"}"),
        "the hub lists both edges: {hub_metrics}"
    );

    // The streams keep one change per key and writer: e2 rewriting a key 30 times, each write
    // sent on its own, leaves one more change in the hub's stream and in e1's mirror of it.
    let (hub_before, e1_before) = (stream_messages(&hub), stream_messages(&e1));
    for i in 0..30 {
        set(&e2, "rewritten", &i.to_string());
        wait_for(
            "e2 sending its write",
            Duration::from_millis(20),
            || match metric(&e2, BACKLOG) {
                Some(0.0) => Ok(()),
                other => Err(format!("{other:?} changes in the outbox")),
            },
        );
    }
    converged(&all, "rewritten", "29");
    assert_eq!(stream_messages(&hub), hub_before + 1.0);
    assert_eq!(stream_messages(&e1), e1_before + 1.0);
}

const BACKLOG: &str = "kindling_kv_sync_backlog{label=\"default\",namespace=\"default\"} ";

/// The size of the stream `node` applies from, once two of its reports agree.
fn stream_messages(node: &Server) -> f64 {
    let mut last = None;
    // Reports come every heartbeat (300 ms).
    wait_for("a steady stream size", Duration::from_millis(700), || {
        let now = metric(node, "kindling_sync_stream_messages ");
        match now {
            Some(messages) if last == now => Ok(messages),
            _ => {
                last = now;
                Err(format!("{now:?}"))
            }
        }
    })
}

#[test]
fn sync_flags_and_config_mistakes_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rc.toml");
    std::fs::write(&config, "[key_value_store.default]\ntype = \"spin\"\n").unwrap();
    let refuse = |args: &[&str], expect: &str| {
        let out = std::process::Command::new(kindling())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    };
    refuse(&["--sync", "http://x"], "must be a nats://");
    refuse(
        &[
            "--sync",
            "nats://127.0.0.1:1",
            "--sync-role",
            "hub",
            "--sync-replicas",
            "2",
        ],
        "--sync-replicas 2 is not a JetStream replica count",
    );
    refuse(
        &["--sync", "nats://127.0.0.1:1", "--sync-replicas", "3"],
        "is for the hub's nodes",
    );
    refuse(
        &["--sync", "nats://127.0.0.1:1", "--node-name", "a.b"],
        "letters, digits",
    );
    refuse(
        &["--sync", "nats://127.0.0.1:1", "--node-name", "hub"],
        "like the hub's domain",
    );
    refuse(
        &[
            "--sync",
            "nats://127.0.0.1:1",
            "--node-name",
            "e1",
            "--runtime-config",
            path_str(&config),
        ],
        "no key-value label is marked sync",
    );
    std::fs::write(
        &config,
        "[key_value_store.default]\ntype = \"spin\"\nsync = \"hub\"\nmax_value_bytes = 1048576\n",
    )
    .unwrap();
    refuse(
        &["--runtime-config", path_str(&config)],
        "max_value_bytes must be at most 524288",
    );
}

/// The function's active version on a node, from its local copy.
fn active_version(node: &Server, function: &str) -> Option<u64> {
    let out = node.cli(&["inspect", function, "--json"]);
    (out.code == 0).then(|| out.json()["active_version"].as_u64().unwrap_or(0))
}

/// Waits until the node's local copy has `version` active.
fn wait_version(node: &Server, function: &str, version: u64) {
    wait_for(
        &format!("{function} version {version} active on the node"),
        Duration::from_millis(100),
        || match active_version(node, function) {
            Some(v) if v == version => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

fn json(node: &Server, path: &str) -> serde_json::Value {
    let (status, body) = call("GET", &node.url(path), None);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|err| panic!("{path}: {err}: {body}"))
}

fn record(node: &Server, class: &str, student: &str, lesson: &str, percent: &str) {
    let path = format!("/learning-progress/progress/{class}/{student}/{lesson}");
    let (status, body) = call("POST", &node.url(&path), Some(percent));
    assert_eq!(status, 200, "{path}: {body}");
}

#[test]
fn the_example_deployed_once_at_the_hub_serves_at_every_edge_online_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let nats = EdgeNats::start(dir.path(), &["site-1", "site-2"]);
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        "[key_value_store.progress]\ntype = \"spin\"\nsync = \"hub\"\nstale_after_seconds = 1\n",
    )
    .unwrap();
    let node = |name: &str, args: &[&str]| {
        let mut all = vec![
            "--runtime-config",
            path_str(&config),
            "--node-name",
            name,
            "--sync-heartbeat",
            "300ms",
            "--cluster-heartbeat",
            "300ms",
            "--cluster-replicas",
            "1",
        ];
        all.extend_from_slice(args);
        Server::start(&kindling(), &dir.path().join(name), &all, &[])
    };
    let hub_url = nats.hub_url();
    let hub = node(
        "hub-1",
        &[
            "--cluster",
            &hub_url,
            "--sync",
            &hub_url,
            "--sync-role",
            "hub",
        ],
    );
    let edge = |i: usize, name: &str| {
        let leaf = nats.edge_url(i);
        let args = [
            "--cluster",
            leaf.as_str(),
            "--cluster-domain",
            "hub",
            "--cluster-spill",
            "false",
            "--cluster-queue",
            "false",
            "--zone",
            name,
            "--sync",
            leaf.as_str(),
        ];
        node(name, &args)
    };
    let (site1, site2) = (edge(0, "site-1"), edge(1, "site-2"));

    // Deployed once, at the hub.
    let wasm = kindling_test_support::example("learning-progress");
    hub.cli(&[
        "deploy",
        "learning-progress",
        path_str(&wasm),
        "--key-value",
        "progress",
    ])
    .ok();
    for site in [&site1, &site2] {
        wait_for(
            "the hub's deploy serves at the site",
            Duration::from_millis(100),
            || match call("GET", &site.url("/learning-progress/classes/c1"), None) {
                (200, _) => Ok(()),
                (status, body) => Err(format!("{status} {body}")),
            },
        );
    }
    record(&site1, "c1", "ana", "fractions", "100");
    record(&site2, "c1", "ben", "fractions", "40");
    record(&site2, "c1", "ben", "fractions", "100");
    wait_for(
        "the hub sums both sites",
        Duration::from_millis(100),
        || {
            let class = json(&hub, "/learning-progress/classes/c1");
            if class["students"] == 2 && class["completed_lessons"] == 2 {
                Ok(())
            } else {
                Err(class.to_string())
            }
        },
    );

    assert_eq!(
        stale(&site1, "/learning-progress/progress/ana"),
        None,
        "online"
    );

    // Site 1 goes offline: it keeps serving the version it has, and recording.
    nats.link(0).cut();
    wait_link(&site1, false);
    record(&site1, "c1", "cleo", "fractions", "100");
    // Past the label's stale_after_seconds (1) without the hub, reads say so; the site that
    // is still linked does not.
    wait_for(
        "site 1 saying its progress data is stale",
        Duration::from_millis(200),
        || match stale(&site1, "/learning-progress/progress/ana") {
            Some(seconds) if seconds >= 1 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(stale(&site2, "/learning-progress/progress/ana"), None);
    let ana = json(&site1, "/learning-progress/progress/ana");
    assert_eq!(ana["lessons"]["fractions"], 100, "{ana}");
    hub.cli(&[
        "deploy",
        "learning-progress",
        path_str(&wasm),
        "--key-value",
        "progress",
        "--env",
        "RELEASE=2",
    ])
    .ok();
    wait_version(&site2, "learning-progress", 2);
    assert_eq!(active_version(&site1, "learning-progress"), Some(1));
    let offline = json(&site1, "/learning-progress/classes/c1");
    assert_eq!(offline["completed_lessons"], 3, "{offline}");

    // Back online: the new version and every record meet.
    nats.link(0).restore();
    nats.wait_linked(0);
    wait_version(&site1, "learning-progress", 2);
    wait_for(
        "site 1's data fresh again",
        Duration::from_millis(100),
        || match stale(&site1, "/learning-progress/progress/ana") {
            None => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    for node in [&hub, &site1, &site2] {
        wait_for(
            "every node sums all three",
            Duration::from_millis(100),
            || {
                let class = json(node, "/learning-progress/classes/c1");
                if class["students"] == 3 && class["completed_lessons"] == 3 {
                    Ok(())
                } else {
                    Err(class.to_string())
                }
            },
        );
    }
    wait_for(
        "the hub lists both sites",
        Duration::from_millis(100),
        || {
            let listed = hub.cli(&["nodes", "--json"]).json();
            let up_zones: Vec<&str> = listed["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["state"] == "up" && n["spill"] == false)
                .filter_map(|n| n["zone"].as_str())
                .collect();
            if up_zones.contains(&"site-1") && up_zones.contains(&"site-2") {
                Ok(())
            } else {
                Err(listed.to_string())
            }
        },
    );
}

#[test]
fn a_hub_on_three_nats_servers_keeps_every_change_on_three_and_through_the_loss_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = kindling_test_support::NatsCluster::start(dir.path(), 3);
    let url = nats.url(0);
    let hub = start(
        dir.path(),
        "hub",
        &["--sync", &url, "--sync-role", "hub", "--sync-replicas", "3"],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let placed = || {
        runtime.block_on(async {
            let client = async_nats::connect(url.as_str()).await.ok()?;
            let js = async_nats::jetstream::new(client);
            let mut stream = js.get_stream("KINDLING_STATE").await.ok()?;
            let info = stream.info().await.ok()?;
            let peers = info.cluster.as_ref().map_or(0, |c| c.replicas.len());
            Some((info.config.num_replicas, peers))
        })
    };
    wait_for(
        "the hub's stream on three NATS servers",
        Duration::from_millis(100),
        || match placed() {
            Some((3, 2)) => Ok(()),
            other => Err(format!("(replicas, other peers) = {other:?}")),
        },
    );
    let held = |n: f64| {
        wait_for(
            &format!("the hub's stream holding {n} changes"),
            Duration::from_millis(100),
            || match metric(&hub, "kindling_sync_stream_messages ") {
                Some(now) if now == n => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
    };
    set(&hub, "before", "1");
    held(1.0);
    // One of the three goes: two of three replicas still take every change.
    nats.kill(2);
    set(&hub, "after", "2");
    held(2.0);
    assert_eq!(get(&hub, "after").as_deref(), Some("2"));
}

#[test]
fn an_edge_put_back_from_a_backup_takes_back_what_it_wrote_since_and_counts_on() {
    let dir = tempfile::tempdir().unwrap();
    let nats = EdgeNats::start(dir.path(), &["e1"]);
    let hub_url = nats.hub_url();
    let hub = start(
        dir.path(),
        "hub",
        &["--sync", &hub_url, "--sync-role", "hub"],
    );
    let e1_url = nats.edge_url(0);
    let mut e1 = start(dir.path(), "e1", &["--sync", &e1_url]);
    set(&e1, "k", "before");
    increment(&e1, "n");
    increment(&e1, "n");
    converged(&[&hub, &e1], "n", "2");

    let kindling_cmd = |args: &[&str]| {
        let out = std::process::Command::new(kindling())
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {text}");
    };
    let (config, data, backup) = (
        dir.path().join("runtime-config.toml"),
        dir.path().join("e1-data"),
        dir.path().join("backup"),
    );
    let (config, data, backup) = (path_str(&config), path_str(&data), path_str(&backup));
    kindling_cmd(&[
        "backup",
        backup,
        "--data-dir",
        data,
        "--runtime-config",
        config,
    ]);
    // Written after the backup, and sent.
    set(&e1, "k", "after");
    for _ in 0..3 {
        increment(&e1, "n");
    }
    converged(&[&hub, &e1], "n", "5");
    converged(&[&hub, &e1], "k", "after");

    e1.stop();
    kindling_cmd(&[
        "restore",
        backup,
        "--data-dir",
        data,
        "--runtime-config",
        config,
    ]);
    // Started without its NATS first, it counts on from the backup's 2: that increment is a
    // share of its own, which the share it sent before (5) must not hide.
    let mut e1 = start(dir.path(), "e1", &[]);
    increment(&e1, "n");
    assert_eq!(get(&e1, "n").as_deref(), Some("3"));
    e1.stop();
    let e1 = start(dir.path(), "e1", &["--sync", &e1_url]);
    // The site reads its own later writes back from the stream, and every increment counts.
    converged(&[&hub, &e1], "k", "after");
    converged(&[&hub, &e1], "n", "6");
    increment(&e1, "n");
    converged(&[&hub, &e1], "n", "7");
}
