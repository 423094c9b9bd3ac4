//! `wasi:http/proxy` behaviour over a real socket: bodies streaming both ways at once,
//! trailers both ways, status codes, headers, and async guests that sleep without holding a
//! thread (100 concurrent sleeping requests finish together, not one after another).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use kindling_test_support::http::{TestBody, send};
use kindling_test_support::test_program;

use crate::{fresh_server, path_str};

/// Starts a request whose body is fed chunk by chunk through the returned sender.
pub(crate) async fn duplex(
    addr: SocketAddr,
    path: &str,
) -> (mpsc::Sender<Bytes>, http::Response<Incoming>) {
    let (sender, receiver) = mpsc::channel::<Bytes>(1);
    let frames = receiver.map(|chunk| Ok::<_, std::io::Error>(Frame::data(chunk)));
    let body: TestBody = BodyExt::boxed(StreamBody::new(frames));
    let request = http::Request::post(path)
        .header("host", addr.to_string())
        .body(body)
        .unwrap();
    let response = send(addr, request).await;
    assert_eq!(response.status(), 200);
    (sender, response)
}

/// The next data frame of a response body, as text.
pub(crate) async fn next_data(response: &mut http::Response<Incoming>) -> String {
    next_data_opt(response).await.expect("another body chunk")
}

/// The next data frame, or `None` at the end of the body.
pub(crate) async fn next_data_opt(response: &mut http::Response<Incoming>) -> Option<String> {
    loop {
        let frame = response.body_mut().frame().await?.expect("body frame");
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            return Some(String::from_utf8(data.to_vec()).unwrap());
        }
    }
}

fn empty() -> TestBody {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed()
}

async fn get(addr: SocketAddr, path: &str) -> http::Response<Incoming> {
    let request = http::Request::get(path)
        .header("host", addr.to_string())
        .body(empty())
        .unwrap();
    send(addr, request).await
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_stream_both_ways_at_once() {
    let (_dir, server) = fresh_server(&[]);
    server
        .cli(&["deploy", "p2", path_str(&test_program("http-wasip2"))])
        .ok();

    let (mut chunks, mut response) = duplex(server.addr(), "/p2/echo").await;
    for i in 0..5 {
        let chunk = format!("chunk {i};");
        chunks.send(Bytes::from(chunk.clone())).await.unwrap();
        // Each chunk comes back before the next is sent: neither side buffers the whole body.
        assert_eq!(next_data(&mut response).await, chunk);
    }
    drop(chunks);
    assert_eq!(next_data_opt(&mut response).await, None);

    // A response written line by line arrives whole and in order.
    let response = get(server.addr(), "/p2/stream/50").await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let expected: String = (0..50).map(|i| format!("line {i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&body), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn trailers_status_codes_and_headers_pass_through() {
    let (_dir, server) = fresh_server(&[]);
    server
        .cli(&["deploy", "p2", path_str(&test_program("http-wasip2"))])
        .ok();
    let addr = server.addr();

    // Response trailers (HTTP/1.1 sends them only to clients that accept them).
    let request = http::Request::get("/p2/trailers")
        .header("host", addr.to_string())
        .header("te", "trailers")
        .body(empty())
        .unwrap();
    let response = send(addr, request).await;
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc123");
    assert_eq!(collected.to_bytes(), "body before trailers\n");

    // Request trailers reach the guest.
    let frames = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"12345"))),
        Ok(Frame::trailers({
            let mut trailers = http::HeaderMap::new();
            trailers.insert("x-digest", "d1g3st".parse().unwrap());
            trailers
        })),
    ]);
    let request = http::Request::post("/p2/request-trailers")
        .header("host", addr.to_string())
        .header("trailer", "x-digest")
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .unwrap();
    let body = send(addr, request)
        .await
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("body bytes: 5"), "{text}");
    assert!(text.contains("trailer x-digest: d1g3st"), "{text}");

    // Status codes, including ones without a body.
    for code in [200u16, 201, 204, 301, 404, 418, 500, 503] {
        let response = get(addr, &format!("/p2/status/{code}")).await;
        assert_eq!(response.status().as_u16(), code);
    }

    // Request headers reach the guest, repeated ones included; the method and the path
    // relative to the function's mount are what the guest sees.
    let request = http::Request::put("/p2/request?a=1")
        .header("host", addr.to_string())
        .body(
            Full::new(Bytes::new())
                .map_err(|never: Infallible| match never {})
                .boxed(),
        )
        .unwrap();
    let body = send(addr, request)
        .await
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("method: Method::Put"), "{text}");
    assert!(text.contains("path: /request?a=1"), "{text}");
    assert!(text.contains(&format!("authority: {addr}")), "{text}");

    let request = http::Request::get("/p2/headers")
        .header("host", addr.to_string())
        .header("x-one", "1")
        .header("x-many", "a")
        .header("x-many", "b")
        .body(empty())
        .unwrap();
    let body = send(addr, request)
        .await
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("x-one: 1"), "{text}");
    assert!(
        text.contains("x-many: a") && text.contains("x-many: b"),
        "{text}"
    );
}

/// A guest sleeping on `wasi:clocks` must not hold a thread: 100 requests that each sleep
/// one second complete together. Serialised they would take 100 s; the bound below is loose
/// enough for any machine and still proves the requests overlapped.
#[tokio::test(flavor = "multi_thread")]
async fn sleeping_guests_do_not_block_each_other() {
    let (_dir, server) = fresh_server(&[]);
    server
        .cli(&["deploy", "wstd", path_str(&test_program("http-wstd"))])
        .ok();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let requests: Vec<_> = (0..100)
        .map(|_| {
            let client = client.clone();
            let url = server.url("/wstd/sleep/5000");
            tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() })
        })
        .collect();
    // All hundred sleep at once on a node with a couple of threads: a waiting guest holds none.
    tokio::task::block_in_place(|| {
        crate::eventually(&server, "wstd", "100 guests sleep at once", |f| {
            f["stats"]["in_flight"] == 100
        })
    });
    for request in requests {
        assert_eq!(request.await.unwrap(), "slept 5000 ms\n");
    }

    // The wstd guest also echoes and greets.
    let response = reqwest::Client::new()
        .post(server.url("/wstd/echo"))
        .body("echo me")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "echo me");
}
