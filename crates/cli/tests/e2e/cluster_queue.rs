//! The cluster's invocation queue end to end, on one real `nats-server` and two Kindling
//! nodes: work accepted on one node is shared out to both, any node shows any invocation, an
//! idempotency key is one invocation whichever node it reaches, and invocations held by a
//! node killed with SIGKILL are run by the other.

use std::collections::BTreeSet;
use std::time::Duration;

use kindling_test_support::{NatsServer, Server, test_program, wait_for_async};
use serde_json::Value;

use crate::{kindling, path_str};

fn start(dir: &std::path::Path, url: &str, name: &str) -> Server {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    std::fs::write(dir.join(name).join("secret.key"), [5u8; 32]).unwrap();
    let args = [
        "--cluster",
        url,
        "--node-name",
        name,
        "--cluster-heartbeat",
        "300ms",
        "--cluster-queue-ack-wait",
        "2s",
        // Four attempts at once: each node holds at most sixteen, so both take work.
        "--async-workers",
        "4",
    ];
    Server::start(&kindling(), &dir.join(name), &args, &[])
}

async fn enqueue(http: &reqwest::Client, node: &Server, path: &str, key: Option<&str>) -> Value {
    let mut request = http.post(node.url(path)).header("prefer", "respond-async");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    response.json().await.unwrap()
}

async fn record(http: &reqwest::Client, node: &Server, id: &str) -> (u16, Value) {
    let response = http
        .get(node.url(&format!("/v1/invocations/{id}")))
        .header("authorization", node.bearer())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until every invocation in `ids` has succeeded as `node` shows it; answers the nodes
/// that ran them.
async fn all_succeed(http: &reqwest::Client, node: &Server, ids: &[String]) -> BTreeSet<String> {
    let mut ran = BTreeSet::new();
    for id in ids {
        let found = wait_for_async(
            &format!("invocation {id} to succeed"),
            Duration::from_millis(50),
            || async {
                match record(http, node, id).await {
                    (200, found) if found["state"] == "succeeded" => Ok(found),
                    (status, found) => Err(format!("{status}: {found}")),
                }
            },
        )
        .await;
        if let Some(name) = found["node"].as_str() {
            ran.insert(name.to_string());
        }
    }
    ran
}

/// What a node logged about its queue, for a failure's message.
fn queue_lines(node: &Server) -> String {
    node.log()
        .lines()
        .filter(|line| line.contains("queue"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_queue_shares_work_and_outlives_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let url = nats.url();
    let mut n1 = start(dir.path(), &url, "n1");
    let n2 = start(dir.path(), &url, "n2");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let slow = test_program("http-wstd");
    n1.cli(&["deploy", "slow", path_str(&slow)]).ok();
    wait_for_async(
        "node 2 to serve slow",
        Duration::from_millis(25),
        || async {
            match http.get(n2.url("/slow/sleep/1")).send().await {
                Ok(response) if response.status() == 200 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // Accepted on node 1, run by both, and shown by node 2 whichever ran them.
    let mut ids = Vec::new();
    for _ in 0..48 {
        let accepted = enqueue(&http, &n1, "/slow/sleep/150", None).await;
        ids.push(accepted["id"].as_str().unwrap().to_string());
    }
    let ran = all_succeed(&http, &n2, &ids).await;
    assert_eq!(
        ran,
        BTreeSet::from(["n1".to_string(), "n2".to_string()]),
        "both nodes took their share; node 2 said:\n{}",
        queue_lines(&n2)
    );

    // One idempotency key is one invocation on whichever node it arrives.
    let first = enqueue(&http, &n1, "/slow/sleep/1", Some("once")).await;
    let again = enqueue(&http, &n2, "/slow/sleep/1", Some("once")).await;
    assert_eq!(first["id"], again["id"]);
    assert_eq!(
        (first["duplicate"].clone(), again["duplicate"].clone()),
        (false.into(), true.into())
    );
    assert_eq!(
        record(&http, &n1, "inv_00000000000000000000000000000000")
            .await
            .0,
        404
    );

    // Node 1 takes work and is killed holding it: node 2 runs all of it.
    let mut held = Vec::new();
    for _ in 0..8 {
        let accepted = enqueue(&http, &n1, "/slow/sleep/1500", None).await;
        held.push(accepted["id"].as_str().unwrap().to_string());
    }
    wait_for_async("node 1 to hold some", Duration::from_millis(20), || async {
        for id in &held {
            if record(&http, &n2, id).await.1["node"] == "n1" {
                return Ok(());
            }
        }
        Err("none held by n1 yet".to_string())
    })
    .await;
    n1.kill();
    let ran = all_succeed(&http, &n2, &held).await;
    assert!(ran.contains("n2"), "node 2 ran what node 1 held: {ran:?}");
    let metrics = http
        .get(n2.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kindling_async_cluster_queue_pending 0"),
        "the cluster's queue is empty: {}",
        metrics
            .lines()
            .filter(|l| l.contains("queue"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_node_queued_alone_while_nats_was_down_the_others_show_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(&dir.path().join("nats"));
    let url = nats.url();
    let n1 = start(dir.path(), &url, "n1");
    let n2 = start(dir.path(), &url, "n2");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    n1.cli(&["deploy", "slow", path_str(&test_program("http-wstd"))])
        .ok();

    nats.kill();
    // Accepted and run by node 1 on its own.
    let accepted = enqueue(&http, &n1, "/slow/sleep/1", None).await;
    let id = accepted["id"].as_str().unwrap().to_string();
    let ran = all_succeed(&http, &n1, std::slice::from_ref(&id)).await;
    assert_eq!(ran, BTreeSet::from(["n1".to_string()]));
    assert_eq!(
        record(&http, &n2, &id).await.0,
        503,
        "node 2 cannot say yet"
    );

    // Back: node 2 shows it as node 1 ran it.
    nats.restart();
    let seen = all_succeed(&http, &n2, std::slice::from_ref(&id)).await;
    assert_eq!(
        seen,
        BTreeSet::from(["n1".to_string()]),
        "node 1 said:\n{}",
        queue_lines(&n1)
    );
}
