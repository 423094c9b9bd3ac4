//! Node-wide limits a client or a tenant can push on: idle HTTP/1.1 and HTTP/2 connections,
//! slow uploads, the connection cap with its reserve for health and admin traffic, the memory
//! budget of requests in flight, and readiness when a function cannot load.

use std::time::Duration;

use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kindling_test_support::{Server, example, get_status, test_program, wait_for_async};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{eventually, fresh_server, kindling, path_str};

#[tokio::test(flavor = "multi_thread")]
async fn idle_http2_connections_are_closed_like_http1_ones() {
    let (_dir, server) = fresh_server(&["--header-read-timeout", "1s"]);
    server
        .cli(&["deploy", "hello", path_str(&example("hello"))])
        .ok();
    let mut closed = Vec::new();
    for _ in 0..5 {
        let stream = TcpStream::connect(server.addr()).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        let (done, ended) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = connection.await;
            let _ = done.send(());
        });
        let request = http::Request::get(server.url("/hello/"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), http::Version::HTTP_2);
        closed.push((sender, ended));
    }
    // Idle now, with the client still holding them open: the node closes every one.
    for (_sender, ended) in closed {
        tokio::time::timeout(kindling_test_support::PATIENCE, ended)
            .await
            .expect("the node closes an idle HTTP/2 connection")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_that_never_finishes_is_answered_408() {
    let (_dir, server) = fresh_server(&["--upload-timeout", "1s"]);
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /v1/functions/slow/versions HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Content-Type: application/wasm\r\nContent-Length: 100000\r\n\r\n\0asm",
        server.bearer()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(kindling_test_support::PATIENCE, stream.read(&mut answer))
        .await
        .expect("the node answers a stalled upload")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("upload_timeout"), "{answer}");
    assert!(answer.contains("--upload-timeout"), "{answer}");
    let functions = server.cli(&["ls", "--json"]).json();
    assert_eq!(functions.as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_connection_cap_only_health_and_admin_are_served() {
    let (_dir, server) = fresh_server(&["--max-connections", "16", "--header-read-timeout", "30s"]);
    server
        .cli(&["deploy", "hello", path_str(&example("hello"))])
        .ok();
    // Sixteen connections that say nothing fill the cap.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(TcpStream::connect(server.addr()).await.unwrap());
    }
    let addr = server.addr();
    wait_for_async(
        "the cap is reached",
        Duration::from_millis(50),
        || async move {
            match raw_get(addr, "/hello/").await {
                answer if answer.starts_with("HTTP/1.1 503") => Ok(answer),
                answer => Err(answer),
            }
        },
    )
    .await;
    let refused = raw_get(addr, "/hello/").await;
    assert!(refused.contains("too_many_connections"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    for path in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"] {
        let answer = raw_get(addr, path).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
    }
    drop(idle);
    wait_for_async("the cap frees", Duration::from_millis(50), || async move {
        match raw_get(addr, "/hello/").await {
            answer if answer.starts_with("HTTP/1.1 200") => Ok(()),
            answer => Err(answer),
        }
    })
    .await;
}

async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_past_the_memory_budget_are_shed() {
    // Room for one request of a 128 MiB function at a time.
    let (_dir, server) = fresh_server(&["--memory-budget", "200MiB", "--default-memory", "64MiB"]);
    server
        .cli(&[
            "deploy",
            "big",
            path_str(&test_program("http-wstd")),
            "--memory",
            "128MiB",
        ])
        .ok();
    let first = {
        let url = server.url("/big/sleep/3000");
        tokio::spawn(async move { reqwest::get(url).await.unwrap().status().as_u16() })
    };
    tokio::task::block_in_place(|| {
        eventually(&server, "big", "the first request runs", |f| {
            f["stats"]["in_flight"] == 1
        })
    });
    let response = reqwest::get(server.url("/big/sleep/1")).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "node_memory_full", "{body}");
    assert_eq!(first.await.unwrap(), 200);
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kindling_node_memory_budget_bytes 209715200"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"kindling_rejected_requests_total{function="big",reason="node_memory_full"} 1"#
        ),
        "{metrics}"
    );
}

#[test]
fn readiness_says_which_function_cannot_load() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&kindling(), &data, &[], &[]);
    server
        .cli(&["deploy", "hello", path_str(&example("hello"))])
        .ok();
    server.stop();
    // The module and its compiled code are gone: the function cannot load.
    for sub in ["modules", "artifacts"] {
        for entry in std::fs::read_dir(data.join(sub)).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
    }
    let server = Server::spawn(&kindling(), &data, &["--preload"], &[]);
    let addr = server.addr();
    kindling_test_support::wait_for("the node answers", Duration::from_millis(20), || {
        get_status(addr, "/healthz").map_err(|err| err.to_string())
    });
    let body = crate::curl(&["-sS", "-w", "\n%{http_code}", &server.url("/readyz")]).unwrap();
    assert!(body.ends_with("\n503"), "{body}");
    assert!(body.contains("hello: "), "{body}");
    assert!(body.contains("cannot be read"), "{body}");
}
