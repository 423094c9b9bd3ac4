//! Broker triggers against real brokers, Debian's `nats-server` and `redis-server` started
//! here: messages published while the node is down are processed after it starts, an entry a
//! killed node was handling is taken back, nothing is acknowledged before the function
//! answered 2xx, replies are published, and what keeps failing ends in the dead-letter store.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt as _;
use kindling_test_support::{NatsServer, RedisServer, Server, test_program, wait_for_async};
use serde_json::Value;

use crate::{kindling, path_str};

async fn counter(server: &Server, key: &str) -> u64 {
    let response = reqwest::get(server.url(&format!("/counter/d2/get/{key}")))
        .await
        .unwrap();
    match response.status().as_u16() {
        200 => response.text().await.unwrap().trim().parse().unwrap(),
        _ => 0,
    }
}

async fn counter_reaches(server: &Server, key: &str, at_least: u64) -> u64 {
    wait_for_async(
        &format!("counter {key} to reach {at_least}"),
        Duration::from_millis(50),
        || async {
            match counter(server, key).await {
                n if n >= at_least => Ok(n),
                n => Err(format!("{n}")),
            }
        },
    )
    .await
}

fn dead_letters(server: &Server, function: &str) -> Vec<Value> {
    let list = server
        .cli(&[
            "invocations",
            "ls",
            "--function",
            function,
            "--state",
            "dead",
            "--json",
        ])
        .json();
    list.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn jetstream_messages_are_acked_after_the_function_answered_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["events.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut replies = client.subscribe("done.events").await.unwrap();

    let data = dir.path().join("data");
    let args = ["--nats-url", &nats.url()];
    let server = Server::start(&kindling(), &data, &args, &[]);
    server
        .cli(&[
            "deploy",
            "counter",
            path_str(&test_program("wasi-kv")),
            "--key-value",
            "default",
            "--trigger",
            "jetstream:EVENTS?subject=events.good&path=/d2/increment/js&reply=done.events",
            // One at a time and no queue: most messages find no room at first.
            "--concurrency",
            "1",
            "--queue",
            "0",
        ])
        .ok();
    server
        .cli(&[
            "deploy",
            "failing",
            path_str(&test_program("http-wasip2")),
            "--trigger",
            "jetstream:EVENTS?subject=events.bad&path=/status/500",
            "--retries",
            "1",
            "--backoff",
            "50ms..100ms",
        ])
        .ok();
    let inspect = server.cli(&["inspect", "counter"]).ok().to_string();
    assert!(
        inspect.contains("jetstream:EVENTS as kindling-counter"),
        "{inspect}"
    );

    for i in 0..20 {
        js.publish("events.good", format!("event {i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    counter_reaches(&server, "js", 20).await;

    // Published while the node is down: JetStream keeps them for the durable consumer.
    let mut server = server;
    server.stop();
    for i in 20..50 {
        js.publish("events.good", format!("event {i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    js.publish("events.bad", "poison".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let server = Server::start(&kindling(), &data, &args, &[]);
    assert_eq!(counter_reaches(&server, "js", 50).await, 50, "none twice");

    // Every message was acknowledged, and each success published its reply.
    let mut stream = js.get_stream("EVENTS").await.unwrap();
    let settled = wait_for_async("the consumers to settle", Duration::from_millis(50), || {
        let stream = stream.clone();
        async move {
            let counter = stream
                .consumer_info("kindling-counter")
                .await
                .map_err(|e| e.to_string())?;
            let failing = stream
                .consumer_info("kindling-failing")
                .await
                .map_err(|e| e.to_string())?;
            let open = counter.num_ack_pending
                + counter.num_pending as usize
                + failing.num_ack_pending
                + failing.num_pending as usize;
            if open == 0 {
                Ok(())
            } else {
                Err(format!("{open} open"))
            }
        }
    })
    .await;
    let () = settled;
    // A message admission control turned away waited for room instead of being sent back:
    // none was delivered twice.
    let counter = stream.consumer_info("kindling-counter").await.unwrap();
    assert_eq!(counter.num_redelivered, 0, "{counter:?}");
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let turned_away: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("kindling_rejected_requests_total{function=\"counter\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(turned_away > 0.0, "admission turned some away: {metrics}");
    let _ = stream.info().await.unwrap();
    let mut bodies = Vec::new();
    while bodies.len() < 50 {
        let reply = tokio::time::timeout(Duration::from_secs(10), replies.next())
            .await
            .expect("a reply for every message")
            .unwrap();
        let status = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Kindling-Status"))
            .map(|v| v.as_str().to_string());
        assert_eq!(status.as_deref(), Some("200"));
        bodies.push(String::from_utf8_lossy(&reply.payload).trim().to_string());
    }
    assert!(bodies.contains(&"50".to_string()), "{bodies:?}");

    // The poison message: two deliveries (one retry), then the dead-letter store.
    let dead = dead_letters(&server, "failing");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["source"], "jetstream");
    assert_eq!(dead[0]["attempts"], 2);
    assert_eq!(dead[0]["response"]["status"], 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn core_nats_requests_are_answered_and_events_are_queued() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let client = async_nats::connect(nats.url()).await.unwrap();
    let server = Server::start(
        &kindling(),
        &dir.path().join("data"),
        &["--nats-url", &nats.url()],
        &[],
    );
    server
        .cli(&[
            "deploy",
            "counter",
            path_str(&test_program("wasi-kv")),
            "--key-value",
            "default",
            "--trigger",
            "nats:tick.*?path=/d2/increment/core",
        ])
        .ok();
    // Requests are answered once the subscription is up; each answered one ran once.
    let answer = wait_for_async(
        "the NATS trigger to subscribe",
        Duration::from_millis(50),
        || {
            let client = client.clone();
            async move {
                match client.request("tick.now", "hello".into()).await {
                    Ok(answer) => Ok(answer),
                    Err(err) => Err(err.to_string()),
                }
            }
        },
    )
    .await;
    let status = answer
        .headers
        .as_ref()
        .and_then(|h| h.get("Kindling-Status"));
    assert_eq!(status.map(|v| v.as_str()), Some("200"));
    assert_eq!(String::from_utf8_lossy(&answer.payload), "1\n");
    // Events (no reply subject) go through the durable queue.
    for _ in 0..5 {
        client.publish("tick.later", "e".into()).await.unwrap();
    }
    client.flush().await.unwrap();
    assert_eq!(counter_reaches(&server, "core", 6).await, 6);
    let queued = server
        .cli(&["invocations", "ls", "--function", "counter", "--json"])
        .json();
    let sources: Vec<&str> = queued
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["nats"; 5], "{queued}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_stream_entries_survive_a_stopped_and_a_killed_node() {
    let dir = tempfile::tempdir().unwrap();
    let redis_server = RedisServer::start(dir.path());
    let redis = redis::Client::open(redis_server.url()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let data = dir.path().join("data");
    let args = ["--redis-url", &redis_server.url(), "--node-name", "edge-1"];
    let server = Server::start(&kindling(), &data, &args, &[]);
    server
        .cli(&[
            "deploy",
            "counter",
            path_str(&test_program("wasi-kv")),
            "--key-value",
            "default",
            "--trigger",
            "redis:events?path=/d2/increment/rs&reply=events-done",
        ])
        .ok();
    // The consumer group starts at the stream's end: wait for it.
    wait_for_async("the consumer group", Duration::from_millis(50), || {
        let mut conn = conn.clone();
        async move {
            let groups: Result<Vec<redis::Value>, _> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg("events")
                .query_async(&mut conn)
                .await;
            match groups {
                Ok(groups) if !groups.is_empty() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    let add = |conn: &mut redis::aio::MultiplexedConnection, n: usize| {
        let mut conn = conn.clone();
        async move {
            for i in 0..n {
                let _: String = redis::cmd("XADD")
                    .arg("events")
                    .arg("*")
                    .arg("body")
                    .arg(format!("entry {i}"))
                    .arg("student")
                    .arg("s-17")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        }
    };
    add(&mut conn, 20).await;
    counter_reaches(&server, "rs", 20).await;

    // Added while the node is stopped: read after it starts.
    let mut server = server;
    server.stop();
    add(&mut conn, 30).await;
    let mut server = Server::start(&kindling(), &data, &args, &[]);
    assert_eq!(counter_reaches(&server, "rs", 50).await, 50);

    // Killed while handling entries: the same consumer takes back what it left pending.
    add(&mut conn, 30).await;
    server.kill();
    let server = Server::start(&kindling(), &data, &args, &[]);
    let count = counter_reaches(&server, "rs", 80).await;
    wait_for_async("nothing pending", Duration::from_millis(50), || {
        let mut conn = conn.clone();
        async move {
            let summary: (u64, Option<String>, Option<String>, redis::Value) =
                redis::cmd("XPENDING")
                    .arg("events")
                    .arg("kindling-counter")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
            if summary.0 == 0 {
                Ok(())
            } else {
                Err(format!("{} pending", summary.0))
            }
        }
    })
    .await;
    let replies: u64 = redis::cmd("XLEN")
        .arg("events-done")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(replies >= 80, "{replies} replies");
    eprintln!("redis: 80 entries, {} ran twice after the kill", count - 80);
}
