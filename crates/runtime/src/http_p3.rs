//! Invoking a WASI 0.3 HTTP component (one exporting `wasi:http/handler@0.3`, as spin-sdk 6
//! and 7 build): a fresh instance per request from the pre-linked `ServicePre`, with the same
//! limits, streaming and accounting as the WASI 0.2 path in `http.rs`.
//!
//! WASI 0.3 is component-model async: the guest's handler is an async export that returns the
//! response while its body (and the request's) are still streams, and it may keep tasks of its
//! own running to write them. So the guest task drives the store's event loop
//! (`run_concurrent`) past the handler's return until no guest task is left, while the client
//! reads the body the loop is filling; the deadline bounds the whole of it.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;
use kindling_host::{BoxError, ComponentCtx, HostState, InstanceKind};
use tokio::time::Instant;
use tracing::Instrument;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::p3::{Request, Response};
use wasmtime_wasi_http::{FieldMap, WasiHttpView};

use crate::error::InvokeError;
use crate::function::Inner;
use crate::http::{GuardedBody, check_declared_length, limit_request_body};
use crate::invocation::{Invoked, RequestInfo, classify};
use crate::store::{StoreParts, finish};

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
    let limits = function.settings.limits;
    let deadline = Instant::now() + limits.timeout;
    let body_too_large = Arc::new(AtomicBool::new(false));
    let request = with_authority(limit_request_body(
        request,
        limits.max_request_body_bytes,
        &body_too_large,
    ));
    let too_large = || InvokeError::RequestBodyTooLarge {
        limit: limits.max_request_body_bytes,
    };

    let parts = StoreParts {
        engine: pre.engine(),
        capabilities: &function.shared.capabilities,
        settings: &function.settings,
        info,
        deadline,
        fuel: function.fuel(),
    };
    let mut store = parts.build(
        InstanceKind::Component,
        |_, env| env,
        |wasi| ComponentCtx::new(wasi.build()),
    )?;

    // The handler's answer: the response head with its body still streaming, or the error
    // code it returned instead. Dropped unsent when the guest traps or runs out of time.
    let (sender, receiver) = tokio::sync::oneshot::channel::<Result<HostResponse, InvokeError>>();
    let failure: Arc<OnceLock<InvokeError>> = Arc::default();
    let instantiate_us = Arc::new(AtomicU64::new(0));
    let task_failure = failure.clone();
    let task_instantiate = instantiate_us.clone();
    let pre = pre.clone();
    let task_info = info.clone();
    let task_weight = function.weight.clone();
    let capabilities = function.shared.capabilities.clone();
    let guest = function.shared.executor.spawn(
        function.weight.is_heavy(),
        async move {
            let _hold = hold;
            let run = async {
                let instantiating = std::time::Instant::now();
                let service = pre.instantiate_async(&mut store).await?;
                task_instantiate.store(
                    instantiating.elapsed().as_micros() as u64,
                    Ordering::Release,
                );
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
                        match service.handle(accessor, request).await? {
                            Ok(response) => {
                                let response = accessor.with(|mut access| {
                                    Response::into_http(response, &mut access, request_io)
                                })?;
                                let _ = sender.send(Ok(response));
                            }
                            Err(code) => {
                                let _ = sender.send(Err(InvokeError::Guest(format!(
                                    "the function answered with error code {code:?}"
                                ))));
                            }
                        }
                        // The body streams from guest tasks that may outlive the handler's
                        // return: keep the event loop turning until they are done.
                        poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                        Ok(())
                    })
                    .await?
            };
            let mut busy = task_weight.start();
            let result =
                tokio::time::timeout_at(deadline, crate::executor::busy_timed(run, &mut busy))
                    .await;
            finish(&mut store, &capabilities, &task_info);
            let outcome = match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(classify(
                    &err,
                    &limits,
                    store.data().limiter.memory_refused(),
                )),
                Err(_elapsed) => Err(InvokeError::Timeout(limits.timeout)),
            };
            if let Err(err) = &outcome {
                let _ = task_failure.set(err.clone());
            }
            task_weight.record(busy);
            drop(store);
            outcome
        }
        .in_current_span(),
    );
    let instantiate = || Duration::from_micros(instantiate_us.load(Ordering::Acquire));

    match receiver.await {
        Ok(Ok(response)) => {
            if body_too_large.load(Ordering::Relaxed) {
                return Err(too_large());
            }
            check_declared_length(&response, limits.max_response_body_bytes)?;
            let response = response.map(|body| {
                GuardedBody::new(
                    body.map_err(|err| Box::new(err) as BoxError).boxed_unsync(),
                    limits.max_response_body_bytes,
                    failure,
                    info.clone(),
                )
                .boxed_unsync()
            });
            Ok(Invoked {
                response,
                instantiate: instantiate(),
            })
        }
        Ok(Err(err)) => {
            if body_too_large.load(Ordering::Relaxed) {
                return Err(too_large());
            }
            Err(err)
        }
        // The handler never answered: it trapped, ran out of time or out of memory. The
        // task's result says which.
        Err(_) => {
            let outcome = match guest.await {
                Ok(Ok(())) => Err(InvokeError::NoResponse),
                Ok(Err(err)) => Err(err),
                Err(join) => Err(InvokeError::Internal(format!("guest task failed: {join}"))),
            };
            if body_too_large.load(Ordering::Relaxed) {
                return Err(too_large());
            }
            outcome
        }
    }
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
