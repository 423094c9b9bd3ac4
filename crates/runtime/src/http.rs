//! Invoking a `wasi:http/proxy` component: a fresh instance per request from the pre-linked
//! `ProxyPre`, request and response bodies streamed both ways, every limit applied.
//!
//! The guest runs in its own task so that it can keep writing the response body after it has
//! sent the response head; the task owns the store (and the function's concurrency permit)
//! and ends, dropping the instance, when the guest returns or the deadline passes.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Limited};
use kindling_host::{BoxError, ComponentCtx, HostState, InstanceKind, ResponseBody};
use tokio::time::Instant;
use tracing::Instrument;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::error::{InvokeError, chain};
use crate::function::Inner;
use crate::invocation::{Invoked, RequestInfo, classify};
use crate::store::{StoreParts, finish};

pub(crate) async fn invoke<B>(
    function: &Inner,
    pre: &ProxyPre<HostState<ComponentCtx>>,
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

    // Bound the request body. The guest sees an over-long body as a stream error; the client
    // is answered 413 unless the guest already sent its response head.
    let body_too_large = Arc::new(AtomicBool::new(false));
    let request = limit_request_body(request, limits.max_request_body_bytes, &body_too_large);
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

    let (sender, receiver) = tokio::sync::oneshot::channel();
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .map_err(|err| InvokeError::Internal(chain(&err)))?;
    let outparam = store
        .data_mut()
        .http()
        .new_response_outparam(sender)
        .map_err(|err| InvokeError::Internal(chain(&err)))?;

    // Set by the guest task, before it drops the store, when the guest fails. Dropping the
    // store ends the response body as if the guest had finished it; the body wrapper checks
    // this at the end so that a cut-off response ends in an error, not a clean end.
    let failure: Arc<OnceLock<InvokeError>> = Arc::default();
    // Written by the guest task before the guest can answer, read once it has.
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
                let proxy = pre.instantiate_async(&mut store).await?;
                task_instantiate.store(
                    instantiating.elapsed().as_micros() as u64,
                    Ordering::Release,
                );
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
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
        Ok(Err(code)) => {
            if body_too_large.load(Ordering::Relaxed) {
                return Err(too_large());
            }
            Err(InvokeError::Guest(format!(
                "the function answered with error code {code:?}"
            )))
        }
        // The guest dropped the response outparam without setting it: it returned, trapped
        // or ran out of time. The task's result says which.
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

/// Caps a request body at `limit` bytes; going over sets `too_large` (so that the client can
/// be answered 413) and ends the guest's stream with the body-size error.
pub(crate) fn limit_request_body<B>(
    request: http::Request<B>,
    limit: u64,
    too_large: &Arc<AtomicBool>,
) -> http::Request<impl Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let flag = too_large.clone();
    request.map(move |body| {
        Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).map_err(
            move |err: BoxError| {
                if err.is::<http_body_util::LengthLimitError>() {
                    flag.store(true, Ordering::Relaxed);
                    wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit))
                } else {
                    wasmtime_wasi_http::Error::InternalError(Some(err.to_string()))
                }
            },
        )
    })
}

/// Refuses a response whose declared `Content-Length` is over the limit before its head is
/// sent, so that the client gets a clean error instead of a cut-off body.
pub(crate) fn check_declared_length<B>(
    response: &http::Response<B>,
    limit: u64,
) -> Result<(), InvokeError> {
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > limit => Err(InvokeError::ResponseTooLarge { limit }),
        _ => Ok(()),
    }
}

/// The response body as the client sees it. The head is already on its way when the body
/// streams, so a limit that fires now (the response limit, the deadline, memory, a trap) can
/// only end the stream with an error: the client sees an incomplete response rather than a
/// truncated one that looks whole, and the host logs which limit fired.
pub(crate) struct GuardedBody {
    inner: ResponseBody,
    remaining: u64,
    limit: u64,
    failure: Arc<OnceLock<InvokeError>>,
    info: RequestInfo,
}

impl GuardedBody {
    /// Guards `inner`: at most `limit` bytes, and the end of the stream reports the guest's
    /// `failure` if it failed after sending the head.
    pub(crate) fn new(
        inner: ResponseBody,
        limit: u64,
        failure: Arc<OnceLock<InvokeError>>,
        info: RequestInfo,
    ) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            failure,
            info,
        }
    }

    fn fail(&mut self, err: InvokeError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        tracing::warn!(
            function = %self.info.invocation.function,
            request_id = %self.info.invocation.request_id,
            "{err}; the response was cut off"
        );
        self.remaining = 0;
        Poll::Ready(Some(Err(Box::new(err))))
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(None) => {
                return match self.failure.get().cloned() {
                    Some(err) => self.fail(err),
                    None => Poll::Ready(None),
                };
            }
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > self.remaining {
                let limit = self.limit;
                return self.fail(InvokeError::ResponseTooLarge { limit });
            }
            self.remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
