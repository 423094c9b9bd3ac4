//! Admission and scale-to-zero over a real port: queues drain in arrival order, a critical
//! function keeps answering while a batch function floods the node, idle functions are
//! unloaded and come back with a counted cold start, namespaces are held to their quota, and
//! the autoscaling signal follows the load.

use kindling_test_support::{Server, example, test_program};

use crate::{eventually, kindling, path_str};

fn server(args: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&kindling(), &dir.path().join("data"), args, &[]);
    (dir, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_drains_in_arrival_order() {
    let (_dir, server) = server(&[]);
    let wstd = test_program("http-wstd");
    server
        .cli(&[
            "deploy",
            "one",
            path_str(&wstd),
            "--concurrency",
            "1",
            "--queue",
            "4",
            "--queue-timeout",
            "30s",
        ])
        .ok();
    let http = reqwest::Client::new();
    let mut requests = Vec::new();
    for i in 0..5u64 {
        let (http, url) = (http.clone(), server.url("/one/sleep/200"));
        requests.push(tokio::spawn(async move {
            let response = http.get(url).send().await.unwrap();
            let started: u128 = response.headers()["x-started-at"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            (response.status().as_u16(), started)
        }));
        // The next request arrives only once this one is counted: admitted (running or done)
        // or waiting in the queue.
        let server = &server;
        tokio::task::block_in_place(|| {
            eventually(server, "one", "the request is admitted or queued", |f| {
                let admitted = f["stats"]["invocations"].as_u64().unwrap_or(0);
                let queued = f["stats"]["queued"].as_u64().unwrap_or(0);
                admitted + queued == i + 1
            })
        });
    }
    // A sixth finds the queue full.
    let response = http.get(server.url("/one/sleep/1")).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_full");

    let mut started = Vec::new();
    for request in requests {
        let (status, at) = request.await.unwrap();
        assert_eq!(status, 200);
        started.push(at);
    }
    // The guests say when they started: one after the other, in the order they arrived.
    let mut order: Vec<usize> = (0..started.len()).collect();
    order.sort_by_key(|&i| started[i]);
    assert_eq!(
        order,
        vec![0, 1, 2, 3, 4],
        "first come, first served: {started:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_critical_function_keeps_answering_while_batch_floods_the_node() {
    // Ten node slots: batch work may fill five of them.
    let (_dir, server) = server(&["--max-in-flight", "10"]);
    server
        .cli(&[
            "deploy",
            "bulk",
            path_str(&test_program("http-wstd")),
            "--priority",
            "batch",
        ])
        .ok();
    server
        .cli(&[
            "deploy",
            "vital",
            path_str(&example("hello")),
            "--priority",
            "critical",
        ])
        .ok();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let flood: Vec<_> = (0..40)
        .map(|_| {
            let (http, url) = (http.clone(), server.url("/bulk/sleep/3000"));
            tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    tokio::task::block_in_place(|| {
        eventually(&server, "bulk", "batch fills its share", |f| {
            f["stats"]["in_flight"].as_u64() == Some(5)
        })
    });
    // While the flood runs, every critical request is admitted and answered.
    let critical: Vec<_> = (0..20)
        .map(|_| {
            let (http, url) = (http.clone(), server.url("/vital/"));
            tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    for request in critical {
        assert_eq!(request.await.unwrap(), 200);
    }
    let mut statuses = Vec::new();
    for request in flood {
        statuses.push(request.await.unwrap());
    }
    let shed = statuses.iter().filter(|&&s| s == 503).count();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(shed, 35, "{statuses:?}");
    let bulk = server.cli(&["inspect", "bulk", "--json"]).json();
    assert_eq!(bulk["stats"]["rejected"], 35);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_functions_scale_to_zero_and_come_back_with_a_counted_cold_start() {
    // A keep-alive long enough that the checks right after a request find it still warm,
    // however slow the machine: the unload itself is waited for, not timed.
    let (_dir, server) = server(&["--keep-alive", "3s", "--tick", "100ms"]);
    server
        .cli(&["deploy", "hello", path_str(&example("hello"))])
        .ok();
    let body = reqwest::get(server.url("/hello/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "Hello from Kindling!\n");
    let function = server.cli(&["inspect", "hello", "--json"]).json();
    assert_eq!(function["state"], "warm");
    assert_eq!(function["stats"]["cold_starts"], 0);

    tokio::task::block_in_place(|| {
        eventually(&server, "hello", "the idle function is unloaded", |f| {
            f["state"] == "cold"
        })
    });
    let body = reqwest::get(server.url("/hello/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "Hello from Kindling!\n");
    let function = server.cli(&["inspect", "hello", "--json"]).json();
    assert_eq!(function["state"], "warm");
    assert_eq!(function["stats"]["cold_starts"], 1);
    assert_eq!(function["stats"]["invocations"], 2);
    assert_eq!(function["load"]["source"], "cache");
    assert!(function["stats"]["last_cold_start_ms"].as_f64().unwrap() > 0.0);
    let text = server.cli(&["inspect", "hello"]).ok().to_string();
    assert!(text.contains("1 cold starts"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_are_held_to_their_quota() {
    let (_dir, server) = server(&["--namespace-limit", "team-a=1"]);
    let wstd = test_program("http-wstd");
    server
        .cli(&["deploy", "a1", path_str(&wstd), "--namespace", "team-a"])
        .ok();
    server
        .cli(&["deploy", "a2", path_str(&wstd), "--namespace", "team-a"])
        .ok();
    server
        .cli(&["deploy", "b1", path_str(&wstd), "--namespace", "team-b"])
        .ok();
    let http = reqwest::Client::new();
    let long = {
        let (http, url) = (http.clone(), server.url("/a1/sleep/2000"));
        tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() })
    };
    tokio::task::block_in_place(|| {
        eventually(&server, "a1", "a1 is running", |f| {
            f["stats"]["in_flight"] == 1
        })
    });
    let response = http.get(server.url("/a2/sleep/1")).send().await.unwrap();
    assert_eq!(
        response.status(),
        429,
        "team-a has one request in flight already"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "over_quota");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("team-a")
    );
    assert_eq!(
        http.get(server.url("/b1/sleep/1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(long.await.unwrap(), 200);
    let inspect = server.cli(&["inspect", "a1"]).ok().to_string();
    assert!(
        inspect.contains("namespace:") && inspect.contains("team-a"),
        "{inspect}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_autoscaling_signal_follows_concurrency() {
    let (_dir, server) = server(&[
        "--tick",
        "100ms",
        "--autoscale-target",
        "2",
        "--autoscale-utilization",
        "1",
        "--autoscale-stable-window",
        "2s",
        "--autoscale-panic-window",
        "400ms",
    ]);
    server
        .cli(&["deploy", "busy", path_str(&test_program("http-wstd"))])
        .ok();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    // Ten requests sleeping 3 s: concurrency 10 at a target of 2 per instance.
    let load: Vec<_> = (0..10)
        .map(|_| {
            let (http, url) = (http.clone(), server.url("/busy/sleep/3000"));
            tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let function = tokio::task::block_in_place(|| {
        eventually(
            &server,
            "busy",
            "the autoscaler asks for five instances",
            |f| f["autoscale"]["desired"].as_u64() == Some(5),
        )
    });
    // Five instances at two each means the short window saw more than eight in flight, which
    // is more than twice the supply of the quiet function: the autoscaler is in panic mode.
    assert_eq!(function["autoscale"]["panicking"], true, "{function}");
    for request in load {
        assert_eq!(request.await.unwrap(), 200);
    }
}
