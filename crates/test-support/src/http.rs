//! A raw HTTP/1.1 client for tests that need what high-level clients hide: trailers, and
//! request and response bodies streaming at the same time on one connection.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// The body type requests are sent with.
pub type TestBody = BoxBody<Bytes, std::io::Error>;

/// Opens a connection, sends one request and returns the response as soon as its head
/// arrives; the body streams from then on.
pub async fn send(addr: SocketAddr, request: http::Request<TestBody>) -> http::Response<Incoming> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to kindling");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    sender.send_request(request).await.expect("send request")
}
