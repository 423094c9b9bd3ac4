//! Cluster mode end to end: three real `nats-server` processes clustered with JetStream (R3)
//! and three Kindling nodes on loopback, started here. A deploy on one node serves on the
//! others, a rollback anywhere reaches all, two concurrent deploys of one name leave exactly
//! one winner and a conflict error, a node killed mid-deploy leaves no half version, a NATS
//! server killed mid-traffic loses no request, and a node started while NATS is down serves
//! its local copy and catches up when NATS returns.

use std::time::Duration;

use kindling_test_support::{NatsCluster, Server, example, wait_for_async};

use crate::{kindling, path_str};

/// What `/f/x` answers on a node: the hello example says `path:`, the WAGI one `query:`.
async fn body(node: &Server, function: &str) -> Result<String, String> {
    let response = reqwest::get(node.url(&format!("/{function}/x?q=1")))
        .await
        .map_err(|err| err.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|err| err.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {text}"));
    }
    Ok(text)
}

async fn serves(node: &Server, function: &str, marker: &str) {
    wait_for_async(
        &format!("{} to serve {function} with {marker:?}", node.url("")),
        Duration::from_millis(25),
        || async {
            match body(node, function).await {
                Ok(text) if text.contains(marker) => Ok(()),
                Ok(text) => Err(text),
                Err(err) => Err(err),
            }
        },
    )
    .await;
}

fn active_version(node: &Server, function: &str) -> Option<u64> {
    let out = node.cli(&["inspect", function, "--json"]);
    (out.code == 0).then(|| out.json()["active_version"].as_u64().unwrap())
}

fn start_node(
    dir: &std::path::Path,
    nats: &NatsCluster,
    name: &str,
    envs: &[(&str, &str)],
) -> Server {
    let args = node_args(nats, name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The nodes of a cluster share one secret.key (for secrets, shared code, access records).
    std::fs::create_dir_all(dir.join(name)).unwrap();
    std::fs::write(dir.join(name).join("secret.key"), [3u8; 32]).unwrap();
    Server::start(&kindling(), &dir.join(name), &args, envs)
}

fn node_args(nats: &NatsCluster, name: &str) -> Vec<String> {
    [
        "--cluster",
        &nats.urls(),
        "--node-name",
        name,
        "--cluster-heartbeat",
        "500ms",
    ]
    .map(str::to_string)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_share_one_registry_and_survive_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsCluster::start(dir.path(), 3);
    let hello = example("hello");
    let wagi = example("wagi-hello");
    // Nodes 1 and 2 hold every deploy just before its commit, so that two deploys started
    // together overlap for certain; node 3 parks there for ever, to be killed mid-deploy.
    let hold = [("KINDLING_FAILPOINT", "deploy-before-commit@1500")];
    let n1 = start_node(dir.path(), &nats, "n1", &hold);
    let n2 = start_node(dir.path(), &nats, "n2", &hold);
    let park = [("KINDLING_FAILPOINT", "deploy-before-commit")];
    let mut n3 = start_node(dir.path(), &nats, "n3", &park);

    // Deploy on node 1, invoke on nodes 2 and 3.
    let out = n1.cli(&["deploy", "f", path_str(&hello)]);
    assert!(out.ok().contains("version 1"), "{out:?}");
    serves(&n2, "f", "path:").await;
    serves(&n3, "f", "path:").await;

    // A second version from node 2 reaches the others; a rollback on node 3 reaches all.
    n2.cli(&["deploy", "f", path_str(&wagi)]).ok();
    serves(&n1, "f", "query:").await;
    serves(&n3, "f", "query:").await;
    n3.cli(&["rollback", "f"]).ok();
    for node in [&n1, &n2, &n3] {
        serves(node, "f", "path:").await;
        assert_eq!(active_version(node, "f"), Some(1));
    }

    // Every node is listed, up.
    let listed = n1.cli(&["nodes", "--json"]).json();
    let names: Vec<&str> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "n1", "the answering node first: {listed}");
    kindling_test_support::wait_for(
        "all three nodes listed as up",
        Duration::from_millis(100),
        || {
            let listed = n2.cli(&["nodes", "--json"]).json();
            let up = listed["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["state"] == "up")
                .count();
            if up == 3 {
                Ok(())
            } else {
                Err(listed.to_string())
            }
        },
    );

    // Two deploys of one new name, from two nodes at once: exactly one wins.
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| n1.cli(&["deploy", "g", path_str(&hello)]));
        let b = scope.spawn(|| n2.cli(&["deploy", "g", path_str(&wagi)]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (winner, loser, marker) = match (a.code, b.code) {
        (0, code) if code != 0 => (&a, &b, "path:"),
        (code, 0) if code != 0 => (&b, &a, "query:"),
        _ => panic!("exactly one deploy must win: {a:?} {b:?}"),
    };
    assert!(winner.stdout.contains("version 1"), "{winner:?}");
    assert!(
        loser.stderr.contains("was changed on another node")
            && loser.stderr.contains("nothing was recorded"),
        "the loser is told why: {loser:?}"
    );
    for node in [&n1, &n2, &n3] {
        serves(node, "g", marker).await;
        assert_eq!(
            active_version(node, "g"),
            Some(1),
            "no second version anywhere"
        );
    }

    // Node 3 killed mid-deploy (its module uploaded, its record not written): no node ever
    // sees the function, and the others keep serving.
    let deploy = std::thread::scope(|scope| {
        let deploying = scope.spawn(|| n3.cli(&["deploy", "h", path_str(&hello)]));
        kindling_test_support::wait_for(
            "node 3 to park mid-deploy",
            Duration::from_millis(20),
            || {
                if n3.log().contains("failpoint reached") {
                    Ok(())
                } else {
                    Err("not yet".into())
                }
            },
        );
        // SIGKILL by pid: the deploying thread still borrows the server.
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &n3.pid().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        deploying.join().unwrap()
    });
    n3.kill();
    assert_ne!(deploy.code, 0, "{deploy:?}");
    for node in [&n1, &n2] {
        assert_eq!(active_version(node, "h"), None, "no half version");
        serves(node, "f", "path:").await;
    }

    // A NATS server killed mid-traffic: every request to the nodes still succeeds, and a
    // deploy with two of three servers up reaches every node.
    let traffic = tokio::spawn({
        let (u1, u2) = (n1.url("/f/x"), n2.url("/f/x"));
        async move {
            let client = reqwest::Client::new();
            let mut failures = Vec::new();
            for i in 0..400 {
                let url = if i % 2 == 0 { &u1 } else { &u2 };
                match client.get(url).send().await {
                    Ok(r) if r.status() == 200 => {}
                    Ok(r) => failures.push(r.status().to_string()),
                    Err(err) => failures.push(err.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.kill(0);
    let failures = traffic.await.unwrap();
    assert!(failures.is_empty(), "requests failed: {failures:?}");
    kindling_test_support::wait_for(
        "a deploy with one NATS server down",
        Duration::from_millis(200),
        || {
            let out = n1.cli(&["deploy", "k", path_str(&wagi)]);
            if out.code == 0 {
                Ok(())
            } else {
                Err(out.stderr)
            }
        },
    );
    serves(&n2, "k", "query:").await;
    nats.restart(0);

    // While node 3 is down: a deploy it misses. Then all of NATS goes down, node 3 starts on
    // its local copy (ready, saying so; changes refused with why), and catches up when NATS
    // returns.
    n1.cli(&["deploy", "m", path_str(&hello)]).ok();
    serves(&n2, "m", "path:").await;
    nats.kill_all();
    let args = node_args(&nats, "n3");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut n3 = n3.restart(&args, &[]);
    let ready = reqwest::get(n3.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let text = ready.text().await.unwrap();
    assert!(text.contains("serving the local copy"), "{text}");
    serves(&n3, "f", "path:").await;
    assert_eq!(active_version(&n3, "m"), None, "it has not heard of m yet");
    let refused = n3.cli(&["deploy", "z", path_str(&hello)]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("cannot be reached"), "{refused:?}");
    nats.restart_all();
    serves(&n3, "m", "path:").await;
    serves(&n3, "k", "query:").await;
    assert_eq!(
        active_version(&n3, "z"),
        None,
        "the refused deploy left nothing"
    );
    // The cluster's invocation queue works again after the whole of NATS restarted: one
    // accepted on node 2 runs, and node 3 shows it. Until JetStream has settled (elections on
    // a loaded machine take a while) node 2 may find the cluster's queue unavailable and keep
    // the invocation in its own queue instead: it still runs, node 2 shows it, node 3 cannot.
    // Then another is sent, until one goes through the cluster.
    let http = reqwest::Client::new();
    let current = std::cell::RefCell::new(None::<String>);
    let json = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.map_err(|err| err.to_string())?;
        response
            .json::<serde_json::Value>()
            .await
            .map_err(|err| err.to_string())
    };
    let state_on = |node: &Server, id: String| {
        json(
            http.get(node.url(&format!("/v1/invocations/{id}")))
                .header("authorization", node.bearer()),
        )
    };
    wait_for_async(
        "an invocation accepted after the restart to run through the cluster's queue",
        Duration::from_millis(50),
        || async {
            let existing = current.borrow().clone();
            let id = match existing {
                Some(id) => id,
                None => {
                    let accepted = json(
                        http.post(n2.url("/m/after-restart"))
                            .header("prefer", "respond-async"),
                    )
                    .await?;
                    let id = accepted["id"]
                        .as_str()
                        .expect("an invocation id")
                        .to_string();
                    *current.borrow_mut() = Some(id.clone());
                    id
                }
            };
            let here = state_on(&n2, id.clone()).await?;
            if here["state"] != "succeeded" {
                return Err(format!("on node 2: {here}"));
            }
            let there = state_on(&n3, id).await?;
            if there["state"] == "succeeded" {
                return Ok(());
            }
            if there["error"]["code"] == "invocation_not_found" {
                // Node 2 kept it: it ran there. Send another.
                *current.borrow_mut() = None;
            }
            Err(format!("on node 3: {there}"))
        },
    )
    .await;
    n3.kill();
}

fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Spill-over: a node with no room passes requests to a peer with room, bodies and all, and
/// answers 503 only when the peer has no room either. One NATS server (the buckets fall back
/// to one replica).
#[tokio::test(flavor = "multi_thread")]
async fn a_full_node_passes_requests_to_a_peer_with_room() {
    let dir = tempfile::tempdir().unwrap();
    let nats = kindling_test_support::NatsServer::start(&dir.path().join("nats"));
    let url = nats.url();
    let args = |name: &'static str| {
        vec![
            "--cluster",
            url.as_str(),
            "--node-name",
            name,
            "--cluster-heartbeat",
            "300ms",
            "--max-in-flight",
            "2",
            "--normal-share",
            "1",
        ]
    };
    let n1 = Server::start(&kindling(), &dir.path().join("n1"), &args("n1"), &[]);
    let n2 = Server::start(&kindling(), &dir.path().join("n2"), &args("n2"), &[]);
    let slow = kindling_test_support::test_program("http-wstd");
    n1.cli(&["deploy", "slow", path_str(&slow)]).ok();
    serves(&n2, "slow", "").await;
    kindling_test_support::wait_for("node 1 to see node 2", Duration::from_millis(50), || {
        let listed = n1.cli(&["nodes", "--json"]).json();
        let seen = listed["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "n2" && n["state"] == "up");
        if seen {
            Ok(())
        } else {
            Err(listed.to_string())
        }
    });

    // Eight slow requests at once to node 1, which runs two: node 2 runs two more, and the
    // rest are answered 503 because neither has room.
    let client = reqwest::Client::new();
    let sends = (0..8).map(|_| {
        let client = client.clone();
        let url = n1.url("/slow/sleep/1500");
        async move {
            let response = client.get(url).send().await.unwrap();
            let by = response
                .headers()
                .get("kindling-served-by")
                .map(|v| v.to_str().unwrap().to_string());
            (response.status().as_u16(), by)
        }
    });
    let answers = futures::future::join_all(sends).await;
    let ok_here = answers
        .iter()
        .filter(|(s, by)| *s == 200 && by.is_none())
        .count();
    let ok_there = answers
        .iter()
        .filter(|(s, by)| *s == 200 && by.as_deref() == Some("n2"))
        .count();
    let refused = answers.iter().filter(|(s, _)| *s == 503).count();
    assert_eq!(ok_here + ok_there + refused, 8, "{answers:?}");
    assert_eq!(ok_here, 2, "node 1 runs what it has room for: {answers:?}");
    assert_eq!(ok_there, 2, "node 2 runs what it has room for: {answers:?}");

    // A body travels both ways while node 1 is full.
    let fill: Vec<_> = (0..2)
        .map(|_| tokio::spawn(client.get(n1.url("/slow/sleep/2000")).send()))
        .collect();
    kindling_test_support::wait_for_async(
        "node 1 to be full",
        Duration::from_millis(20),
        || async {
            let text = reqwest::get(n1.url("/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            match counter(
                &text,
                "kindling_in_flight_requests{function=\"slow\",version=\"1\"}",
            ) {
                2 => Ok(()),
                n => Err(n.to_string()),
            }
        },
    )
    .await;
    let echoed = client
        .post(n1.url("/slow/echo"))
        .body("a body that crossed to a peer")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), 200);
    assert_eq!(echoed.headers()["kindling-served-by"], "n2");
    assert_eq!(
        echoed.text().await.unwrap(),
        "a body that crossed to a peer"
    );
    // Larger than a NATS message, both ways: it travels in parts.
    let large: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let echoed = client
        .post(n1.url("/slow/echo"))
        .body(large.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), 200);
    assert_eq!(echoed.headers()["kindling-served-by"], "n2");
    assert!(
        echoed.bytes().await.unwrap() == large,
        "the 3 MiB body came back whole"
    );
    for request in fill {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }

    let m1 = reqwest::get(n1.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let m2 = reqwest::get(n2.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        counter(
            &m1,
            "kindling_spilled_requests_total{outcome=\"forwarded\"}"
        ),
        4,
        "{m1}"
    );
    assert!(
        counter(&m1, "kindling_spilled_requests_total{outcome=\"no_peer\"}") >= 4,
        "{m1}"
    );
    assert_eq!(
        counter(&m2, "kindling_spill_received_total{outcome=\"served\"}"),
        4,
        "{m2}"
    );

    // A schedule fires on one node of the cluster, not on each.
    let hello = example("hello");
    n2.cli(&[
        "deploy",
        "tick",
        path_str(&hello),
        "--schedule",
        "* * * * * *",
    ])
    .ok();
    let fired = |node: &Server| {
        let node = node.url("/metrics");
        async move {
            let text = reqwest::get(node).await.unwrap().text().await.unwrap();
            counter(
                &text,
                "kindling_schedule_firings_total{function=\"tick\",outcome=\"fired\"}",
            )
        }
    };
    wait_for_async("three firings", Duration::from_millis(100), || async {
        match fired(&n1).await + fired(&n2).await {
            n if n >= 3 => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await;
    let (f1, f2) = (fired(&n1).await, fired(&n2).await);
    assert!(f1 == 0 || f2 == 0, "one node fires: {f1} and {f2}");
}

async fn metrics(node: &Server) -> String {
    reqwest::get(node.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Tokens, namespaces and policies are the cluster's, and a module is compiled once: two
/// nodes sharing one `secret.key` take each other's compiled code; a third with its own key
/// refuses it (it cannot check its tag) and compiles the module itself. A revocation made
/// while NATS is down holds on its node and reaches the others when NATS returns.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_quotas_policies_and_compiled_code_are_shared() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = kindling_test_support::NatsServer::start(&dir.path().join("nats"));
    let url = nats.url();
    let args = |name: &'static str| vec!["--cluster", url.as_str(), "--node-name", name];
    let key = [7u8; 32];
    for name in ["n1", "n2"] {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        std::fs::write(dir.path().join(name).join("secret.key"), key).unwrap();
    }
    let n1 = Server::start(&kindling(), &dir.path().join("n1"), &args("n1"), &[]);
    let n2 = Server::start(&kindling(), &dir.path().join("n2"), &args("n2"), &[]);
    let n3 = Server::start(&kindling(), &dir.path().join("n3"), &args("n3"), &[]);
    let hello = example("hello");

    // Compiled on node 1, published before the commit; node 2 maps it, node 3 compiles.
    let out = n1.cli(&["deploy", "f", path_str(&hello)]);
    assert!(out.ok().contains("compiled in"), "{out:?}");
    serves(&n2, "f", "path:").await;
    serves(&n3, "f", "path:").await;
    let code = |m: &str, outcome: &str| {
        counter(
            m,
            &format!("kindling_cluster_code_total{{outcome=\"{outcome}\"}}"),
        )
    };
    let (m1, m2, m3) = (metrics(&n1).await, metrics(&n2).await, metrics(&n3).await);
    assert_eq!(code(&m1, "published"), 1, "{m1}");
    assert_eq!(code(&m2, "fetched"), 1, "{m2}");
    assert_eq!(code(&m2, "published"), 0, "node 2 compiled nothing: {m2}");
    assert_eq!(code(&m3, "refused"), 1, "{m3}");
    assert_eq!(code(&m3, "fetched"), 0, "{m3}");

    // A token made on node 1 works on node 2; revoked on node 2, it stops on node 1.
    let made = n1.cli(&[
        "token", "create", "ci", "--scope", "deploy", "--scope", "read",
    ]);
    let token = made.ok().trim().to_string();
    let as_ci = [("KINDLING_TOKEN", token.as_str())];
    kindling_test_support::wait_for(
        "node 2 to know the token",
        Duration::from_millis(25),
        || {
            let out = n2.cli_with(&["ls"], &as_ci);
            if out.code == 0 {
                Ok(())
            } else {
                Err(out.stderr)
            }
        },
    );
    n2.cli(&["token", "revoke", "ci"]).ok();
    kindling_test_support::wait_for(
        "node 1 to refuse the token",
        Duration::from_millis(25),
        || {
            let out = n1.cli_with(&["ls"], &as_ci);
            if out.code != 0 && out.stderr.contains("was revoked") {
                Ok(())
            } else {
                Err(format!("{out:?}"))
            }
        },
    );
    let listed = n2.cli(&["token", "ls", "--json"]).json();
    let admins = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "admin")
        .count();
    assert_eq!(
        admins, 2,
        "the first admin tokens of the nodes that share the key are the cluster's: {listed}"
    );
    let admin_of = |node: &Server| node.token().unwrap();
    let (n2_admin, n3_admin) = (admin_of(&n2), admin_of(&n3));
    n1.cli_with(&["ls"], &[("KINDLING_TOKEN", n2_admin.as_str())])
        .ok();
    let other_key = n1.cli_with(&["ls"], &[("KINDLING_TOKEN", n3_admin.as_str())]);
    assert!(
        other_key.code != 0 && other_key.stderr.contains("401"),
        "a node with another secret.key is outside the cluster's access: {other_key:?}"
    );

    // A token written straight into the bucket by someone who can write to NATS but has no
    // secret.key is not taken: it has no tag.
    let forged = format!("kdl_{}_{}", "ab".repeat(8), "cd".repeat(32));
    let record = serde_json::json!({
        "record": {"id": "ab".repeat(8), "name": "forged", "scopes": ["admin"],
                   "created_at": "2026-12-02T00:00:00Z"},
        "hash": hex::encode(kindling_access::hash_token(&forged)),
    });
    let client = async_nats::connect(url.as_str()).await.unwrap();
    let access = async_nats::jetstream::new(client)
        .get_key_value("kindling-access")
        .await
        .unwrap();
    access
        .put(
            format!("token.{}", "ab".repeat(8)),
            serde_json::to_vec(&record).unwrap().into(),
        )
        .await
        .unwrap();
    // A real change after it: once node 2 has that, it has seen the forged one too.
    let after = n1.cli(&["token", "create", "after", "--scope", "read"]);
    let after = after.ok().trim().to_string();
    kindling_test_support::wait_for(
        "node 2 to know the token made after",
        Duration::from_millis(25),
        || {
            let out = n2.cli_with(&["ls"], &[("KINDLING_TOKEN", after.as_str())]);
            if out.code == 0 {
                Ok(())
            } else {
                Err(out.stderr)
            }
        },
    );
    let refused = n2.cli_with(&["ls"], &[("KINDLING_TOKEN", forged.as_str())]);
    assert!(
        refused.code != 0 && refused.stderr.contains("401"),
        "{refused:?}"
    );
    assert!(
        n2.log().contains("ignoring an access record"),
        "the forgery is logged"
    );

    // The dashboard lists the nodes (with a read token in the address).
    let viewer = n1.cli(&["token", "create", "viewer", "--scope", "read"]);
    let viewer = viewer.ok().trim().to_string();
    let dom = crate::dashboard::dump_dom(&format!("{}#token={viewer}", n1.url("/dashboard")), 3000);
    for name in ["n1", "n2", "n3"] {
        assert!(
            dom.contains(&format!(r#"data-node="{name}" data-state="up""#)),
            "{name} listed as up: {dom}"
        );
    }

    // A quota set on node 1 holds on node 2.
    n1.cli(&["ns", "create", "team", "--functions", "1"]).ok();
    kindling_test_support::wait_for(
        "node 2 to know the quota",
        Duration::from_millis(25),
        || {
            let listed = n2.cli(&["ns", "ls", "--json"]).json();
            if listed.to_string().contains("\"team\"") {
                Ok(())
            } else {
                Err(listed.to_string())
            }
        },
    );
    n2.cli(&["deploy", "--namespace", "team", "a", path_str(&hello)])
        .ok();
    let over = n2.cli(&["deploy", "--namespace", "team", "b", path_str(&hello)]);
    assert!(
        over.code != 0 && over.stderr.contains("functions = 1"),
        "{over:?}"
    );

    // A policy added on node 2 refuses deploys on node 1; removed on node 1, it is gone on 2.
    let rego = dir.path().join("no-forbidden.rego");
    std::fs::write(
        &rego,
        "package kindling.admission\nimport rego.v1\ndeny contains msg if {\n  \
         input.function.name == \"forbidden\"\n  msg := \"no function may be named forbidden\"\n}\n",
    )
    .unwrap();
    n2.cli(&["policy", "add", path_str(&rego)]).ok();
    let policies = |node: &Server| node.cli(&["policy", "ls", "--json"]).json().to_string();
    kindling_test_support::wait_for(
        "node 1 to have the policy",
        Duration::from_millis(25),
        || {
            let listed = policies(&n1);
            if listed.contains("no-forbidden") {
                Ok(())
            } else {
                Err(listed)
            }
        },
    );
    let refused = n1.cli(&["deploy", "forbidden", path_str(&hello)]);
    assert!(
        refused.code != 0
            && refused
                .stderr
                .contains("no function may be named forbidden"),
        "{refused:?}"
    );
    n1.cli(&["policy", "rm", "no-forbidden"]).ok();
    kindling_test_support::wait_for(
        "node 2 to drop the policy",
        Duration::from_millis(25),
        || {
            let listed = policies(&n2);
            if listed.contains("no-forbidden") {
                Err(listed)
            } else {
                Ok(())
            }
        },
    );
    n2.cli(&["deploy", "forbidden", path_str(&hello)]).ok();

    // Cut off from NATS, a revocation holds on its node at once; the others, which cannot hear
    // of it, learn it when NATS returns.
    let made = n1.cli(&["token", "create", "ops", "--scope", "read"]);
    let ops = made.ok().trim().to_string();
    let as_ops = [("KINDLING_TOKEN", ops.as_str())];
    kindling_test_support::wait_for("node 2 to know ops", Duration::from_millis(25), || {
        let out = n2.cli_with(&["ls"], &as_ops);
        if out.code == 0 {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });
    nats.kill();
    n1.cli(&["token", "revoke", "ops"]).ok();
    let refused = n1.cli_with(&["ls"], &as_ops);
    assert!(
        refused.code != 0 && refused.stderr.contains("was revoked"),
        "{refused:?}"
    );
    n2.cli_with(&["ls"], &as_ops).ok();
    nats.restart();
    kindling_test_support::wait_for("node 2 to refuse ops", Duration::from_millis(50), || {
        let out = n2.cli_with(&["ls"], &as_ops);
        if out.code != 0 && out.stderr.contains("was revoked") {
            Ok(())
        } else {
            Err(format!("{out:?}"))
        }
    });
}
