//! Spill-over: a request this node has no room for, passed to a peer that has, instead of a
//! 503. The node only decides when (admission turned the request away, and it did not come
//! from a peer already, so it travels at most one hop) and buffers the request; the [`Spill`]
//! (cluster mode's, over NATS request-reply) finds the peer and carries it there and back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt as _, Full, Limited};
use kindling_host::BoxError;

use crate::entry::Entry;
use crate::invoke::Answer;

/// A request on its way to a peer, whole.
#[derive(Debug, Clone)]
pub struct Spilled {
    /// The function.
    pub function: String,
    /// The method.
    pub method: http::Method,
    /// What the function sees of the URI: the path after its mount point, and the query.
    pub uri: http::Uri,
    /// Where the function is mounted (`/hello`), empty when routed by host.
    pub script_name: String,
    /// The request's headers.
    pub headers: http::HeaderMap,
    /// The request's body.
    pub body: Bytes,
    /// The request id, kept across the hop.
    pub request_id: Arc<str>,
    /// The caller's span, as a `traceparent` value.
    pub traceparent: Option<String>,
    /// How long the peer has: the function's deadline.
    pub deadline: Duration,
}

/// Where spilled requests go.
#[async_trait]
pub trait Spill: Send + Sync + 'static {
    /// The largest request body worth carrying; a larger request is answered 503 here.
    fn max_body_bytes(&self) -> usize;

    /// Runs the request on a peer with room and returns its answer, or `None` when no peer
    /// had room (or none answered): the caller then answers 503 as it would have.
    async fn forward(&self, request: Spilled) -> Option<http::Response<Bytes>>;
}

/// Buffers `request` and hands it to `spill`; `None` when it cannot travel or nobody took it.
pub(crate) async fn forward<B>(
    spill: &dyn Spill,
    entry: &Entry,
    request: http::Request<B>,
    request_id: &Arc<str>,
    script_name: String,
    traceparent: Option<String>,
) -> Option<Answer>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let max = spill.max_body_bytes();
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return None;
    }
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, max).collect().await.ok()?.to_bytes();
    let spilled = Spilled {
        function: entry.name.to_string(),
        method: parts.method,
        uri: parts.uri,
        script_name,
        headers: parts.headers,
        body,
        request_id: request_id.clone(),
        traceparent,
        deadline: entry.settings.limits.timeout,
    };
    let response = spill.forward(spilled).await?;
    Some(Answer {
        response: response.map(|body| {
            Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync()
        }),
        version: entry.version.version,
        cold_start: None,
    })
}
