//! The hostile-guest suite. One node serves a well-behaved function, probed continuously in
//! the background, next to guests that attack the sandbox; every attack must be stopped with
//! the right status and a message naming the limit that fired, the good function must keep
//! answering, and afterwards nothing the attacks took is still held: no request in flight,
//! no memory reserved. (What memory the process keeps is a benchmark's figure, not a test's.)
//! `hostile_calls.rs` has the attacks through calls between functions and through WAGI output.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kindling_test_support::{Server, example, test_program};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{eventually, kindling, path_str};

/// Keeps calling the good function and counts the answers that were not right.
struct Prober {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    bad: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let bad = Arc::new(AtomicUsize::new(0));
        let (s, o, b) = (stop.clone(), ok.clone(), bad.clone());
        let task = tokio::spawn(async move {
            let client = client();
            while !s.load(Ordering::Relaxed) {
                let answer = client
                    .get(&url)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let right = match answer {
                    Ok(response) if response.status() == 200 => response
                        .text()
                        .await
                        .is_ok_and(|t| t == "Hello from Kindling!\n"),
                    _ => false,
                };
                if right { &o } else { &b }.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self {
            stop,
            ok,
            bad,
            task,
        }
    }

    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.bad.load(Ordering::Relaxed),
        )
    }
}

/// A client that drops idle connections before the node does (this node closes them after
/// its 1 s header read timeout); otherwise a request can race the node's close.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// A tiny HTTP server that answers 200 and counts the connections it accepted.
async fn counting_http_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, count)
}

/// The value of an unlabelled metric in `/metrics`.
async fn metric(http: &reqwest::Client, server: &Server, name: &str) -> f64 {
    let text = http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} is not in /metrics"))
}

struct Case<'a> {
    http: &'a reqwest::Client,
    server: &'a Server,
}

impl Case<'_> {
    /// Calls `path` and returns status, error code (when the body is a Kindling error) and text.
    async fn call(&self, path: &str) -> (u16, String, String) {
        let response = self.http.get(self.server.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let code = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        (status, code, text)
    }

    async fn expect(&self, path: &str, status: u16, code: &str, needle: &str) {
        let (got, got_code, text) = self.call(path).await;
        assert_eq!(got, status, "{path}: {text}");
        assert_eq!(got_code, code, "{path}: {text}");
        assert!(text.contains(needle), "{path}: {needle:?} not in {text}");
        self.good_still_answers(path).await;
    }

    async fn good_still_answers(&self, after: &str) {
        let response = self
            .http
            .get(self.server.url("/good/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "after {after}");
        assert_eq!(
            response.text().await.unwrap(),
            "Hello from Kindling!\n",
            "after {after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_guests_and_clients_are_contained() {
    let dir = tempfile::tempdir().unwrap();
    let mount_root = dir.path().join("mounts");
    std::fs::create_dir_all(mount_root.join("data")).unwrap();
    std::fs::write(mount_root.join("data").join("hello.txt"), "mounted file\n").unwrap();
    let server = Server::start(
        &kindling(),
        &dir.path().join("data"),
        &[
            "--header-read-timeout",
            "1s",
            "--mount-root",
            path_str(&mount_root),
        ],
        &[("KINDLING_TEST_HOST_SECRET", "must-not-leak")],
    );
    let (allowed, allowed_hits) = counting_http_server().await;
    let (forbidden, forbidden_hits) = counting_http_server().await;

    server
        .cli(&["deploy", "good", path_str(&example("hello"))])
        .ok();
    let allow = format!("http://{allowed}");
    server
        .cli(&[
            "deploy",
            "evil",
            path_str(&test_program("hostile-http")),
            "--timeout",
            "1s",
            "--memory",
            "32MiB",
            "--max-response-body",
            "1MiB",
            "--allow-outbound",
            &allow,
            "--mount",
            "data:/data",
            "--env",
            "VISIBLE=yes",
        ])
        .ok();
    server
        .cli(&[
            "deploy",
            "evilwagi",
            path_str(&test_program("hostile-wagi")),
            "--timeout",
            "1s",
            "--memory",
            "32MiB",
            "--max-response-body",
            "1MiB",
            "--max-request-body",
            "1MiB",
        ])
        .ok();
    let inspect = server.cli(&["inspect", "evil"]).ok().to_string();
    assert!(
        inspect.contains("32.0 MiB") && inspect.contains("1000 ms"),
        "{inspect}"
    );
    assert!(
        inspect.contains(&allow) && inspect.contains("data:/data (read-only)"),
        "{inspect}"
    );

    let http = client();
    let case = Case {
        http: &http,
        server: &server,
    };
    // Warm up every function once, then take the reference RSS.
    for _ in 0..50 {
        case.good_still_answers("warm-up").await;
    }
    assert_eq!(case.call("/evil/ok").await.0, 200);
    assert_eq!(case.call("/evilwagi/").await.0, 200);
    let prober = Prober::start(server.url("/good/"));

    // Compute and memory.
    case.expect("/evil/loop", 504, "deadline_exceeded", "deadline of 1s")
        .await;
    case.expect(
        "/evil/recurse",
        500,
        "function_failed",
        "call stack exhausted",
    )
    .await;
    case.expect(
        "/evil/memory-bomb",
        500,
        "memory_limit_exceeded",
        "memory limit of 32 MiB",
    )
    .await;
    case.expect("/evil/allocate/24", 200, "", "allocated 24 MiB")
        .await;
    case.expect("/evil/panic", 500, "function_failed", "unreachable")
        .await;
    case.expect("/evil/unreachable", 500, "function_failed", "unreachable")
        .await;
    case.expect(
        "/evilwagi/stdin-forever",
        504,
        "deadline_exceeded",
        "deadline of 1s",
    )
    .await;

    // Responses that are too big or never end: the head is already sent, so the stream is
    // cut and the log names the limit.
    let response = http
        .get(server.url("/evil/huge-response/64"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.is_err(),
        "a cut-off body must not look complete"
    );
    assert!(
        server
            .log()
            .contains("response exceeds the function's limit of 1048576 bytes")
    );
    case.good_still_answers("huge-response").await;
    let response = http.get(server.url("/evil/endless")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.is_err(),
        "an endless body is cut off at the deadline"
    );
    case.good_still_answers("endless").await;
    case.expect(
        "/evilwagi/huge/4",
        502,
        "response_too_large",
        "limit of 1048576 bytes",
    )
    .await;
    case.expect(
        "/evilwagi/no-headers",
        502,
        "bad_cgi_response",
        "no blank line",
    )
    .await;
    // A body declared too large is refused from its Content-Length, before it is read.
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(b"POST /evilwagi/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("limit of 1048576 bytes"), "{answer}");

    // No ambient authority.
    for path in [
        "/evil/read-file?/etc/passwd",
        "/evilwagi/read-file?/etc/passwd",
    ] {
        let (status, _, text) = case.call(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            text.starts_with("error:") && !text.contains("root:"),
            "{path}: {text}"
        );
    }
    let (_, _, text) = case.call("/evil/list-dir?/").await;
    assert!(text.starts_with("error:"), "listing / must fail: {text}");
    let (_, _, text) = case.call("/evil/read-file?/data/hello.txt").await;
    assert!(
        text.contains("mounted file"),
        "the declared mount is readable: {text}"
    );
    let (_, _, text) = case.call("/evil/write-file?/data/new.txt").await;
    assert!(text.starts_with("error:"), "mounts are read-only: {text}");
    assert!(!mount_root.join("data").join("new.txt").exists());
    for path in ["/evil/env", "/evilwagi/env"] {
        let (_, _, text) = case.call(path).await;
        assert!(
            !text.contains("must-not-leak"),
            "{path} sees the host's environment: {text}"
        );
        assert!(
            !text.contains("HOME=") && !text.contains("PATH=/"),
            "{path}: {text}"
        );
    }
    let (_, _, text) = case.call("/evil/env").await;
    assert_eq!(text, "VISIBLE=yes\n", "exactly the deployed environment");
    let (_, _, text) = case.call(&format!("/evil/socket?{forbidden}")).await;
    assert!(text.starts_with("error:"), "sockets are denied: {text}");
    let (_, _, text) = case.call(&format!("/evil/outbound?{forbidden}")).await;
    assert!(text.contains("HttpRequestDenied"), "{text}");
    assert!(server.log().contains("outbound HTTP request denied"));
    assert_eq!(
        forbidden_hits.load(Ordering::Relaxed),
        0,
        "nothing reached the forbidden host"
    );
    let (_, _, text) = case.call(&format!("/evil/outbound?{allowed}")).await;
    assert_eq!(text, "status: 200\n");
    assert_eq!(allowed_hits.load(Ordering::Relaxed), 1);
    case.good_still_answers("sandbox escapes").await;

    // Bad clients.
    slowloris(server.addr()).await;
    case.good_still_answers("slowloris").await;
    body_that_stops(server.addr()).await;
    case.good_still_answers("a body that stops").await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "malformed HTTP: {answer:?}"
    );
    let many_headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_header = format!("X-Big: {}\r\n", "a".repeat(70_000));
    for extra in [many_headers, huge_header] {
        let head = format!("GET /good/ HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        let answer = raw_exchange(server.addr(), head.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "oversized head: {answer:?}"
        );
    }
    case.good_still_answers("oversized heads").await;
    idle_connections(&server, &case, 10_000).await;

    let (ok, bad) = prober.finish().await;
    assert_eq!(
        bad,
        0,
        "the good function failed {bad} of {} probes",
        ok + bad
    );
    assert!(ok > 0);

    // Nothing the attacks took is still held: every request has given back its slot and its
    // memory reservation.
    let (http, server) = (&http, &server);
    kindling_test_support::wait_for_async(
        "the attacks' holds released",
        Duration::from_millis(100),
        || async move {
            let in_flight = metric(http, server, "kindling_node_in_flight_requests").await;
            let reserved = metric(http, server, "kindling_node_reserved_memory_bytes").await;
            if in_flight == 0.0 && reserved == 0.0 {
                Ok(())
            } else {
                Err(format!("{in_flight} requests and {reserved} bytes held"))
            }
        },
    )
    .await;
}

/// Sends raw bytes and returns the first chunk of the answer.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).await.unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// Sends the request head one header at a time, slower than the header read timeout allows.
async fn slowloris(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /good/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut closed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
            closed = true;
            break;
        }
        let mut buffer = [0u8; 64];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buffer)).await
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a client trickling its headers must be disconnected"
    );
}

/// Promises a 1000-byte body, sends 10 bytes and stops: the function's deadline answers it.
async fn body_that_stops(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /evilwagi/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut answer))
        .await
        .expect("the server answers a stalled body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("deadline"), "{answer}");
}

/// Opens `count` connections that never send anything; the node keeps serving, then closes
/// them all at its header read timeout.
async fn idle_connections(server: &Server, case: &Case<'_>, count: usize) {
    let mut idle = Vec::with_capacity(count);
    for _ in 0..count {
        idle.push(TcpStream::connect(server.addr()).await.unwrap());
    }
    case.good_still_answers("idle connections opened").await;
    let mut closed = 0;
    for stream in &mut idle {
        let mut buffer = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer)).await
        {
            closed += 1;
        }
    }
    assert_eq!(
        closed, count,
        "every idle connection is closed by the server"
    );
    drop(idle);
    case.good_still_answers("idle connections closed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_caps_hold_per_function_and_per_node() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &kindling(),
        &dir.path().join("data"),
        &["--max-in-flight", "3"],
        &[],
    );
    let wstd = test_program("http-wstd");
    server
        .cli(&[
            "deploy",
            "capped",
            path_str(&wstd),
            "--concurrency",
            "2",
            "--queue",
            "0",
        ])
        .ok();
    server.cli(&["deploy", "free", path_str(&wstd)]).ok();
    let http = reqwest::Client::new();

    let statuses = burst(&http, &server.url("/capped/sleep/1000"), 5).await;
    assert_eq!(count(&statuses, 200), 2, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 3, "{statuses:?}");
    let response = burst_one_rejected(&http, &server.url("/capped/sleep/1000"), 3).await;
    assert_eq!(response.0, 429);
    assert_eq!(response.1.as_deref(), Some("1"), "Retry-After");
    assert!(
        response.2.contains("concurrency limit of 2"),
        "{}",
        response.2
    );

    // The node runs 3 requests in all. A request holds its place until its instance is gone,
    // a moment after the client has the whole response.
    eventually(&server, "capped", "capped drains", |f| {
        f["stats"]["in_flight"].as_u64() == Some(0)
    });
    let statuses = burst(&http, &server.url("/free/sleep/1000"), 5).await;
    assert_eq!(count(&statuses, 200), 3, "{statuses:?}");
    assert_eq!(count(&statuses, 503), 2, "{statuses:?}");
}

async fn burst(http: &reqwest::Client, url: &str, n: usize) -> Vec<u16> {
    let requests = (0..n).map(|_| async { http.get(url).send().await.unwrap().status().as_u16() });
    futures::future::join_all(requests).await
}

async fn burst_one_rejected(
    http: &reqwest::Client,
    url: &str,
    n: usize,
) -> (u16, Option<String>, String) {
    let requests = (0..n).map(|_| async {
        let response = http.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (status, retry, response.text().await.unwrap())
    });
    futures::future::join_all(requests)
        .await
        .into_iter()
        .find(|(status, _, _)| *status != 200)
        .expect("one request over the limit")
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_budgets_stop_busy_guests_when_fuel_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&kindling(), &dir.path().join("data"), &["--fuel"], &[]);
    let guest = test_program("hostile-http");
    server
        .cli(&[
            "deploy",
            "busy",
            path_str(&guest),
            "--cpu-fuel",
            "10000000",
            "--timeout",
            "60s",
        ])
        .ok();
    let response = reqwest::get(server.url("/busy/loop")).await.unwrap();
    assert_eq!(response.status(), 504);
    let text = response.text().await.unwrap();
    assert!(text.contains("CPU budget of 10000000 fuel units"), "{text}");
    assert_eq!(
        reqwest::get(server.url("/busy/ok")).await.unwrap().status(),
        200
    );

    // A node without fuel refuses a budget instead of ignoring it.
    let plain = tempfile::tempdir().unwrap();
    let server = Server::start(&kindling(), &plain.path().join("data"), &[], &[]);
    let out = server.cli(&["deploy", "busy", path_str(&guest), "--cpu-fuel", "1000"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--fuel"), "{out:?}");
}
