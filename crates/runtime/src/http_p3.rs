//! Invoking a WASI 0.3 HTTP component (one exporting `wasi:http/handler@0.3`, as spin-sdk 6
//! and 7 build): a fresh instance per request from the pre-linked `ServicePre`, with the same
//! limits, streaming and accounting as the WASI 0.2 path in `http.rs` (both in
//! `exchange.rs`).
//!
//! WASI 0.3 is component-model async: the guest's handler is an async export that returns the
//! response while its body (and the request's) are still streams, and it may keep tasks of its
//! own running to write them. So the guest task drives the store's event loop
//! (`run_concurrent`) past the handler's return until no guest task is left, while the client
//! reads the body the loop is filling; the deadline bounds the whole of it.

use std::future::poll_fn;

use bytes::Bytes;
use http_body::Body;
use kindling_host::{BoxError, ComponentCtx, HostState};
use tracing::Instrument;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::p3::{Request, Response};
use wasmtime_wasi_http::{FieldMap, WasiHttpView};

use crate::error::InvokeError;
use crate::exchange::Exchange;
use crate::function::Inner;
use crate::invocation::{Invoked, RequestInfo};

type HostResponse =
    http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>>;

pub(crate) async fn invoke<B>(
    function: &Inner,
    pre: &ServicePre<HostState<ComponentCtx>>,
    hold: impl Send + 'static,
    request: http::Request<B>,
    info: &RequestInfo,
) -> Result<Invoked, InvokeError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let exchange = Exchange::new(function.settings.limits);
    let request = with_authority(exchange.limit_request(request));
    let mut store = exchange.component_store(function, pre.engine(), info)?;

    // The handler's answer: the response head with its body still streaming, or the error
    // code it returned instead. Dropped unsent when the guest traps or runs out of time.
    let (sender, receiver) = tokio::sync::oneshot::channel::<Result<HostResponse, InvokeError>>();
    let side = exchange.guest_side();
    let pre = pre.clone();
    let task_info = info.clone();
    let weight = function.weight.clone();
    let capabilities = function.shared.capabilities.clone();
    let guest = function.shared.executor.spawn(
        function.weight.is_heavy(),
        async move {
            let _hold = hold;
            let ran = side
                .bounded(&weight, async {
                    let started = std::time::Instant::now();
                    let service = pre.instantiate_async(&mut store).await?;
                    side.instantiated(started);
                    store
                        .run_concurrent(async move |accessor| -> wasmtime::Result<()> {
                            let (head, body) = request.into_parts();
                            // Forbidden headers (hop-by-hop ones) are dropped on the way in.
                            let headers = accessor.with(|mut access| {
                                FieldMap::new_immutable(access.get().http().hooks, head.headers)
                            });
                            let uri = head.uri.into_parts();
                            let (request, request_io) = Request::new(
                                head.method,
                                uri.scheme,
                                uri.authority,
                                uri.path_and_query,
                                headers,
                                None,
                                body,
                            );
                            let answer = match service.handle(accessor, request).await? {
                                Ok(response) => Ok(accessor.with(|mut access| {
                                    Response::into_http(response, &mut access, request_io)
                                })?),
                                Err(code) => Err(InvokeError::Guest(format!(
                                    "the function answered with error code {code:?}"
                                ))),
                            };
                            let _ = sender.send(answer);
                            // The body streams from guest tasks that may outlive the handler's
                            // return: keep the event loop turning until they are done.
                            poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                            Ok(())
                        })
                        .await?
                })
                .await;
            side.finish(store, ran, &weight, &capabilities, &task_info)
        }
        .in_current_span(),
    );
    exchange.answer(receiver.await, guest, info).await
}

/// A server receives only the path; WASI 0.3 hands the guest the scheme and authority from
/// the request itself, so fill them in from the `Host` header as WASI 0.2's incoming request
/// does.
fn with_authority<B>(request: http::Request<B>) -> http::Request<B> {
    let (mut head, body) = request.into_parts();
    if head.uri.authority().is_none() {
        let authority = head
            .headers
            .get(http::header::HOST)
            .and_then(|host| host.to_str().ok())
            .filter(|host| !host.contains('@'))
            .and_then(|host| host.parse::<http::uri::Authority>().ok());
        if let Some(authority) = authority {
            let mut uri = head.uri.clone().into_parts();
            uri.scheme = Some(http::uri::Scheme::HTTP);
            uri.authority = Some(authority);
            if uri.path_and_query.is_none() {
                uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
            }
            if let Ok(full) = http::Uri::from_parts(uri) {
                head.uri = full;
            }
        }
    }
    http::Request::from_parts(head, body)
}
