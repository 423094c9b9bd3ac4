//! Asynchronous invocations end to end: accepted means on disk (two `kill -9`s lose nothing
//! that got a 202), retries back off, what finally fails is kept in the dead-letter store,
//! callbacks arrive, idempotency keys deduplicate, and schedules fire once per firing across
//! a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kindling_test_support::{Server, test_program, wait_for_async};
use serde_json::Value;

use crate::{kindling, path_str};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Queues `path` with `Prefer: respond-async`; answers the status and the JSON body.
async fn enqueue(
    http: &reqwest::Client,
    server_url: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Result<(u16, Value, reqwest::header::HeaderMap)> {
    let mut request = http
        .post(format!("{server_url}{path}"))
        .header("prefer", "respond-async");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body, headers))
}

async fn invocation(http: &reqwest::Client, server: &Server, id: &str) -> Value {
    http.get(server.url(&format!("/v1/invocations/{id}")))
        .header("authorization", server.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the invocation is `succeeded` or `dead`.
async fn finished(http: &reqwest::Client, server: &Server, id: &str) -> Value {
    wait_for_async(
        &format!("invocation {id} to finish"),
        Duration::from_millis(50),
        || async {
            let record = invocation(http, server, id).await;
            match record["state"].as_str() {
                Some("succeeded" | "dead") => Ok(record),
                _ => Err(record.to_string()),
            }
        },
    )
    .await
}

async fn waiting(http: &reqwest::Client, server: &Server) -> usize {
    let mut count = 0;
    for state in ["queued", "running"] {
        let list: Value = http
            .get(server.url(&format!("/v1/invocations?state={state}&limit=1000")))
            .header("authorization", server.bearer())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        count += list["invocations"].as_array().map_or(0, Vec::len);
    }
    count
}

/// Submits the counter test's invocations `indices`, 16 at a time, each with its index as
/// its idempotency key (a client resending after a lost answer gets the first one's id); when
/// `kill_after` of them have been accepted, kills the server with SIGKILL. Answers the
/// accepted indices.
async fn submit(
    server: Arc<Mutex<Server>>,
    indices: Vec<usize>,
    kill_after: Option<usize>,
) -> BTreeSet<usize> {
    let http = client();
    let url = server.lock().unwrap().url("");
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let todo = Arc::new(Mutex::new(indices));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, url, accepted, todo, server) = (
            http.clone(),
            url.clone(),
            accepted.clone(),
            todo.clone(),
            server.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(i) = todo.lock().unwrap().pop() else {
                    return;
                };
                let path = format!("/counter/d2/increment/k{i}");
                let key = format!("k{i}");
                // A request the kill interrupts is not accepted: it got no 202.
                let Ok((202, _, _)) =
                    enqueue(&http, &url, &path, &[("idempotency-key", &key)]).await
                else {
                    continue;
                };
                let count = {
                    let mut accepted = accepted.lock().unwrap();
                    accepted.insert(i);
                    accepted.len()
                };
                if Some(count) == kill_after {
                    server.lock().unwrap().kill();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(accepted).unwrap().into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_invocations_survive_two_kill_9s() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&kindling(), &data, &[], &[]);
    let kv = test_program("wasi-kv");
    server
        .cli(&["deploy", "counter", path_str(&kv), "--key-value", "default"])
        .ok();
    let server = Arc::new(Mutex::new(server));
    let http = client();

    let mut accepted = BTreeSet::new();
    // Two rounds end in a SIGKILL while requests are arriving and workers are running them;
    // what a round did not get accepted is sent again in the next.
    for (upto, kill_after) in [(400, Some(200)), (700, Some(250)), (1000, None)] {
        let todo: Vec<usize> = (0..upto).filter(|i| !accepted.contains(i)).collect();
        accepted.extend(submit(server.clone(), todo, kill_after).await);
        if kill_after.is_some() {
            let mut guard = server.lock().unwrap();
            *guard = Server::start(&kindling(), &data, &[], &[]);
        }
    }
    let Ok(server) = Arc::try_unwrap(server) else {
        panic!("the submitters are done");
    };
    let server = server.into_inner().unwrap();
    assert_eq!(
        accepted.len(),
        1000,
        "every request was accepted in the end"
    );

    wait_for_async("the queue to drain", Duration::from_millis(100), || async {
        match waiting(&http, &server).await {
            0 => Ok(()),
            n => Err(format!("{n} waiting")),
        }
    })
    .await;
    // Every accepted invocation ran at least once: its key was incremented.
    let mut duplicates = 0;
    let mut lost = Vec::new();
    for i in &accepted {
        let response = http
            .get(server.url(&format!("/counter/d2/get/k{i}")))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => {
                let count: u64 = response.text().await.unwrap().trim().parse().unwrap();
                duplicates += count - 1;
            }
            _ => lost.push(*i),
        }
    }
    assert!(lost.is_empty(), "accepted but never run: {lost:?}");
    eprintln!(
        "{} accepted across two kill -9s, none lost, {duplicates} ran twice (at least once)",
        accepted.len()
    );
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("kindling_async_attempts_total{function=\"counter\",outcome=\"succeeded\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_back_off_failures_go_to_the_dead_letter_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&kindling(), &dir.path().join("data"), &[], &[]);
    let kv = test_program("wasi-kv");
    let http_guest = test_program("http-wasip2");
    server
        .cli(&[
            "deploy",
            "flaky",
            path_str(&kv),
            "--key-value",
            "default",
            "--retries",
            "5",
            "--backoff",
            "200ms..2s",
        ])
        .ok();
    server
        .cli(&[
            "deploy",
            "failing",
            path_str(&http_guest),
            "--retries",
            "2",
            "--backoff",
            "50ms..100ms",
        ])
        .ok();
    let http = client();
    let url = server.url("");

    // Kindling's own headers come from the node only, on either path.
    let forged = [
        ("kindling-invocation-id", "forged"),
        ("kindling-schedule", "* * * * *"),
    ];
    let mut sync = http.get(format!("{url}/failing/headers"));
    for (name, value) in forged {
        sync = sync.header(name, value);
    }
    let seen = sync.send().await.unwrap().text().await.unwrap();
    assert!(
        !seen.contains("forged") && !seen.contains("kindling-schedule"),
        "{seen}"
    );
    let (_, body, _) = enqueue(&http, &url, "/failing/headers", &forged)
        .await
        .unwrap();
    let queued_id = body["id"].as_str().unwrap().to_string();
    let record = finished(&http, &server, &queued_id).await;
    let seen = record["response"]["body"].as_str().unwrap();
    assert!(
        seen.contains(&format!("kindling-invocation-id: {queued_id}")),
        "{seen}"
    );
    assert!(
        !seen.contains("forged") && !seen.contains("kindling-schedule"),
        "{seen}"
    );

    // Fails three times, then succeeds: four attempts, each later than the last by at least
    // half its nominal delay (200, 400, 800 ms).
    let (status, body, headers) = enqueue(&http, &url, "/flaky/d2/flaky/f1/3", &[])
        .await
        .unwrap();
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!("/v1/invocations/{id}")
    );
    let record = finished(&http, &server, &id).await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["attempts"], 4, "{record}");
    assert_eq!(record["response"]["body"], "ok after 4 attempts\n");
    let history = record["history"].as_array().unwrap();
    let statuses: Vec<u64> = history
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 500, 500, 200]);
    let started: Vec<chrono_ms::Ms> = history
        .iter()
        .map(|a| chrono_ms::parse(a["started_at"].as_str().unwrap()))
        .collect();
    for (n, pair) in started.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let nominal = 200 << n;
        assert!(
            gap >= nominal / 2,
            "retry {} came {gap} ms after the attempt before it, sooner than half of {nominal} ms",
            n + 1
        );
    }

    // Always failing: three attempts (two retries), then the dead-letter store with the
    // last response and the reason.
    let (_, body, _) = enqueue(&http, &url, "/failing/status/503", &[])
        .await
        .unwrap();
    let dead_id = body["id"].as_str().unwrap().to_string();
    let dead = finished(&http, &server, &dead_id).await;
    assert_eq!(dead["state"], "dead", "{dead}");
    assert_eq!(dead["attempts"], 3, "{dead}");
    assert_eq!(dead["response"]["status"], 503);
    assert!(
        dead["reason"]
            .as_str()
            .unwrap()
            .contains("retries (2) are spent"),
        "{dead}"
    );
    // A client error is final at once.
    let (_, body, _) = enqueue(&http, &url, "/failing/status/400", &[])
        .await
        .unwrap();
    let bad = finished(&http, &server, body["id"].as_str().unwrap()).await;
    assert_eq!(bad["state"], "dead");
    assert_eq!(bad["attempts"], 1);
    assert!(
        bad["reason"].as_str().unwrap().contains("only 5xx, 429"),
        "{bad}"
    );

    // The CLI lists the dead-letter store, retries from it and purges it.
    let dead_list = server
        .cli(&["invocations", "ls", "--state", "dead", "--json"])
        .json();
    let ids: BTreeSet<&str> = dead_list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(dead_id.as_str()), "{dead_list}");
    let shown = server
        .cli(&["invocations", "show", &dead_id])
        .ok()
        .to_string();
    assert!(shown.contains("retries (2) are spent"), "{shown}");
    server.cli(&["invocations", "retry", &dead_id]).ok();
    let again = finished(&http, &server, &dead_id).await;
    assert_eq!(again["state"], "dead");
    assert_eq!(again["attempts"], 6, "the history keeps counting: {again}");
    // A succeeded one may run again.
    server.cli(&["invocations", "retry", &id]).ok();
    finished(&http, &server, &id).await;
    let purged = server
        .cli(&["invocations", "purge", "--state", "dead", "--json"])
        .json();
    assert_eq!(purged["purged"], 2, "{purged}");
    let gone = server.cli(&["invocations", "show", &dead_id]);
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("no invocation"), "{}", gone.stderr);
}

/// A callback as the receiver got it: headers and body.
type Delivery = (BTreeMap<String, String>, String);

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_arrive_and_idempotency_keys_deduplicate() {
    // A receiver that refuses the first delivery, so that the callback is retried.
    let received: Arc<Mutex<Vec<Delivery>>> = Default::default();
    let refused = Arc::new(Mutex::new(false));
    let app = {
        let (received, refused) = (received.clone(), refused.clone());
        axum::Router::new().route(
            "/done",
            axum::routing::post(move |headers: http::HeaderMap, body: String| async move {
                let mut first = refused.lock().unwrap();
                if !*first {
                    *first = true;
                    return http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                let headers = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                received.lock().unwrap().push((headers, body));
                http::StatusCode::NO_CONTENT
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/done", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    // Without the flag a loopback receiver is refused when the invocation is queued.
    let strict = Server::start(&kindling(), &dir.path().join("strict"), &[], &[]);
    strict
        .cli(&[
            "deploy",
            "counter",
            path_str(&test_program("wasi-kv")),
            "--key-value",
            "default",
        ])
        .ok();
    let (status, body, _) = enqueue(
        &client(),
        &strict.url(""),
        "/counter/d2/increment/x",
        &[("x-callback-url", &receiver)],
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--callback-allow-private"),
        "{body}"
    );
    drop(strict);

    let server = Server::start(
        &kindling(),
        &dir.path().join("data"),
        &["--callback-allow-private"],
        &[],
    );
    server
        .cli(&[
            "deploy",
            "counter",
            path_str(&test_program("wasi-kv")),
            "--key-value",
            "default",
        ])
        .ok();
    let http = client();
    let url = server.url("");

    let (status, first, _) = enqueue(
        &http,
        &url,
        "/counter/d2/increment/once",
        &[
            ("idempotency-key", "order-17"),
            ("x-callback-url", &receiver),
        ],
    )
    .await
    .unwrap();
    assert_eq!(status, 202);
    assert_eq!(first["duplicate"], false);
    let (status, second, headers) = enqueue(
        &http,
        &url,
        "/counter/d2/increment/once",
        &[("idempotency-key", "order-17")],
    )
    .await
    .unwrap();
    assert_eq!(status, 202);
    assert_eq!(
        second["id"], first["id"],
        "the key finds the first invocation"
    );
    assert_eq!(second["duplicate"], true);
    assert_eq!(headers["kindling-duplicate"], "true");
    let id = first["id"].as_str().unwrap().to_string();
    finished(&http, &server, &id).await;
    let count = http
        .get(server.url("/counter/d2/get/once"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(count, "1", "the function ran once");

    let delivered = wait_for_async("the callback", Duration::from_millis(100), || async {
        let record = invocation(&http, &server, &id).await;
        match record["callback"]["state"].as_str() {
            Some("delivered") => Ok(record),
            _ => Err(record.to_string()),
        }
    })
    .await;
    assert_eq!(delivered["callback"]["attempts"], 2, "{delivered}");
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    // Signed with the node's callback key, over the time, the id and the body.
    let key = std::fs::read_to_string(dir.path().join("data/callback.key")).unwrap();
    let key = hex::decode(key.trim()).unwrap();
    let signed = &headers["kindling-signature"];
    let seconds: u64 = signed
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    let expected = {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{seconds}.{id}.{body}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    assert_eq!(*signed, format!("t={seconds},v1={expected}"));
    assert_eq!(headers["kindling-invocation-id"], id);
    assert_eq!(headers["kindling-invocation-state"], "succeeded");
    assert_eq!(headers["kindling-status"], "200");
    assert_eq!(body, "1\n");

    // What cannot be queued is refused with what to do.
    let (status, body, _) = enqueue(&http, &url, "/nothing/x", &[]).await.unwrap();
    assert_eq!(status, 404, "{body}");
    let (status, body, _) = enqueue(
        &http,
        &url,
        "/counter/d2/increment/x",
        &[("x-callback-url", "http://169.254.169.254/latest/meta-data")],
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("link-local"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_fires_once_per_second_and_not_twice_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&kindling(), &data, &[], &[]);
    server
        .cli(&[
            "deploy",
            "ticker",
            path_str(&test_program("wasi-kv")),
            "--key-value",
            "default",
            "--schedule",
            "* * * * * *",
            "--schedule-path",
            "/d2/increment/ticks",
        ])
        .ok();
    let http = client();
    let fired = |server: &Server| {
        let list = server
            .cli(&[
                "invocations",
                "ls",
                "--function",
                "ticker",
                "--state",
                "succeeded",
                "--limit",
                "1000",
                "--json",
            ])
            .json();
        list.as_array().unwrap().len()
    };
    kindling_test_support::wait_for("three firings", Duration::from_millis(100), || match fired(
        &server,
    ) {
        n if n >= 3 => Ok(()),
        n => Err(format!("{n} fired")),
    });
    let inspect = server.cli(&["inspect", "ticker", "--json"]).json();
    let schedule = &inspect["schedules"][0];
    assert_eq!(schedule["cron"], "* * * * * *", "{inspect}");
    assert!(
        schedule["last_run"].is_string() && schedule["next_run"].is_string(),
        "{inspect}"
    );

    let mut server = server;
    server.stop();
    let server = Server::start(&kindling(), &data, &[], &[]);
    let before = fired(&server);
    kindling_test_support::wait_for(
        "three more firings",
        Duration::from_millis(100),
        || match fired(&server) {
            n if n >= before + 3 => Ok(()),
            n => Err(format!("{n} fired")),
        },
    );
    // Stop the schedule, then count.
    server
        .cli(&[
            "deploy",
            "ticker",
            path_str(&test_program("wasi-kv")),
            "--key-value",
            "default",
        ])
        .ok();
    wait_for_async("the queue to drain", Duration::from_millis(100), || async {
        match waiting(&http, &server).await {
            0 => Ok(()),
            n => Err(format!("{n} waiting")),
        }
    })
    .await;
    let list = server
        .cli(&[
            "invocations",
            "ls",
            "--function",
            "ticker",
            "--limit",
            "1000",
            "--json",
        ])
        .json();
    let mut times: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["source"], "schedule");
            assert_eq!(r["state"], "succeeded", "{r}");
            let key = r["idempotency_key"].as_str().unwrap();
            key.rsplit(':').next().unwrap().parse().unwrap()
        })
        .collect();
    times.sort();
    let distinct: BTreeSet<i64> = times.iter().copied().collect();
    assert_eq!(distinct.len(), times.len(), "a firing ran twice: {times:?}");
    // One firing per second from the first to the last: the restart (under the grace
    // period) lost none and repeated none.
    let span = (times[times.len() - 1] - times[0]) / 1000 + 1;
    assert_eq!(span as usize, times.len(), "{times:?}");
    let ticks = http
        .get(server.url("/ticker/d2/get/ticks"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(ticks.trim().parse::<usize>().unwrap(), times.len());
}

/// RFC 3339 with milliseconds to milliseconds, for gaps between attempts.
mod chrono_ms {
    pub(super) type Ms = i64;

    pub(super) fn parse(text: &str) -> Ms {
        // `2026-12-02T10:00:00.123Z`: the time of day is enough for gaps within a test.
        let time = text.split('T').nth(1).unwrap().trim_end_matches('Z');
        let (hms, millis) = time.split_once('.').unwrap();
        let mut parts = hms.split(':').map(|p| p.parse::<i64>().unwrap());
        let (h, m, s) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        ((h * 60 + m) * 60 + s) * 1000 + millis.parse::<i64>().unwrap()
    }
}
