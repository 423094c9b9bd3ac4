//! What both generations of `wasi:http` share for one request: the request-body limit, the
//! guest task's deadline and accounting, and turning what the guest answered into the
//! client's response, with a body guarded by the response limit and the guest's fate.
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
use kindling_host::{BoxError, Capabilities, ComponentCtx, HostState, InstanceKind, ResponseBody};
use tokio::time::Instant;
use wasmtime::Store;

use crate::config::Limits;
use crate::error::InvokeError;
use crate::executor::{Busy, Weight};
use crate::function::Inner;
use crate::invocation::{Invoked, RequestInfo, classify};
use crate::store::{StoreParts, finish};

/// One request's state, shared by the caller (which answers the client) and the guest task.
pub(crate) struct Exchange {
    pub(crate) limits: Limits,
    pub(crate) deadline: Instant,
    /// Set when the request body went over its limit: the client is answered 413 unless the
    /// guest already sent its response head.
    body_too_large: Arc<AtomicBool>,
    /// Set by the guest task, before it drops the store, when the guest fails. Dropping the
    /// store ends the response body as if the guest had finished it; the body wrapper checks
    /// this at the end so that a cut-off response ends in an error, not a clean end.
    failure: Arc<OnceLock<InvokeError>>,
    /// Written by the guest task before the guest can answer, read once it has.
    instantiate_us: Arc<AtomicU64>,
}

/// The guest task's side of an [`Exchange`].
pub(crate) struct GuestSide {
    limits: Limits,
    deadline: Instant,
    failure: Arc<OnceLock<InvokeError>>,
    instantiate_us: Arc<AtomicU64>,
}

impl Exchange {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            deadline: Instant::now() + limits.timeout,
            body_too_large: Arc::default(),
            failure: Arc::default(),
            instantiate_us: Arc::default(),
        }
    }

    /// Caps the request body at the limit; going over marks the exchange (for the 413) and
    /// ends the guest's stream with the body-size error.
    pub(crate) fn limit_request<B>(
        &self,
        request: http::Request<B>,
    ) -> http::Request<impl Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let flag = self.body_too_large.clone();
        let limit = self.limits.max_request_body_bytes;
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

    /// A component instance's store for this request: every capability's state, armed with
    /// the deadline, the memory limiter and the fuel budget.
    pub(crate) fn component_store(
        &self,
        function: &Inner,
        engine: &wasmtime::Engine,
        info: &RequestInfo,
    ) -> Result<Store<HostState<ComponentCtx>>, InvokeError> {
        StoreParts {
            engine,
            capabilities: &function.shared.capabilities,
            settings: &function.settings,
            info,
            deadline: self.deadline,
            fuel: function.fuel(),
        }
        .build(
            InstanceKind::Component,
            |_, env| env,
            |wasi| ComponentCtx::new(wasi.build()),
        )
    }

    /// What the guest task needs.
    pub(crate) fn guest_side(&self) -> GuestSide {
        GuestSide {
            limits: self.limits,
            deadline: self.deadline,
            failure: self.failure.clone(),
            instantiate_us: self.instantiate_us.clone(),
        }
    }

    /// The client's answer from what the guest sent: its response (the head, the body still
    /// streaming), the error it answered with, or nothing (`received` is a closed channel),
    /// in which case the guest task's result says why.
    pub(crate) async fn answer<B>(
        self,
        received: Result<
            Result<http::Response<B>, InvokeError>,
            tokio::sync::oneshot::error::RecvError,
        >,
        guest: tokio::task::JoinHandle<Result<(), InvokeError>>,
        info: &RequestInfo,
    ) -> Result<Invoked, InvokeError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // A request body over its limit is the client's 413, whatever the guest made of it,
        // unless the guest's head was sent already.
        let too_large = InvokeError::RequestBodyTooLarge {
            limit: self.limits.max_request_body_bytes,
        };
        let over = || self.body_too_large.load(Ordering::Relaxed);
        let response = match received {
            Ok(Ok(_)) if over() => return Err(too_large),
            Ok(Ok(response)) => response,
            Ok(Err(_)) if over() => return Err(too_large),
            Ok(Err(err)) => return Err(err),
            // The guest never answered: it returned, trapped or ran out of time.
            Err(_) => {
                let outcome = match guest.await {
                    Ok(Ok(())) => InvokeError::NoResponse,
                    Ok(Err(err)) => err,
                    Err(join) => InvokeError::Internal(format!("guest task failed: {join}")),
                };
                return Err(if over() { too_large } else { outcome });
            }
        };
        let limit = self.limits.max_response_body_bytes;
        check_declared_length(&response, limit)?;
        let failure = self.failure.clone();
        let response = response.map(|body| {
            GuardedBody::new(
                body.map_err(Into::into).boxed_unsync(),
                limit,
                failure,
                info.clone(),
            )
            .boxed_unsync()
        });
        Ok(Invoked {
            response,
            instantiate: Duration::from_micros(self.instantiate_us.load(Ordering::Acquire)),
        })
    }
}

impl GuestSide {
    /// Records how long instantiating took, from `started`.
    pub(crate) fn instantiated(&self, started: std::time::Instant) {
        self.instantiate_us
            .store(started.elapsed().as_micros() as u64, Ordering::Release);
    }

    /// Runs the guest (`run`: instantiate and call it) until it ends or the deadline passes,
    /// timing its own CPU for `weight`.
    pub(crate) async fn bounded(
        &self,
        weight: &Weight,
        run: impl Future<Output = wasmtime::Result<()>>,
    ) -> (
        Result<wasmtime::Result<()>, tokio::time::error::Elapsed>,
        Busy,
    ) {
        let mut busy = weight.start();
        let result =
            tokio::time::timeout_at(self.deadline, crate::executor::busy_timed(run, &mut busy))
                .await;
        (result, busy)
    }

    /// After the guest: the capabilities finish, the outcome is named (and left for the
    /// response body to report if the head was sent), the weight recorded, the store dropped.
    pub(crate) fn finish<W>(
        self,
        mut store: Store<HostState<W>>,
        (result, busy): (
            Result<wasmtime::Result<()>, tokio::time::error::Elapsed>,
            Busy,
        ),
        weight: &Weight,
        capabilities: &Capabilities,
        info: &RequestInfo,
    ) -> Result<(), InvokeError> {
        finish(&mut store, capabilities, info);
        let outcome = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(classify(
                &err,
                &self.limits,
                store.data().limiter.memory_refused(),
            )),
            Err(_elapsed) => Err(InvokeError::Timeout(self.limits.timeout)),
        };
        if let Err(err) = &outcome {
            let _ = self.failure.set(err.clone());
        }
        weight.record(busy);
        drop(store);
        outcome
    }
}

/// Refuses a response whose declared `Content-Length` is over the limit before its head is
/// sent, so that the client gets a clean error instead of a cut-off body.
fn check_declared_length<B>(response: &http::Response<B>, limit: u64) -> Result<(), InvokeError> {
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
struct GuardedBody {
    inner: ResponseBody,
    remaining: u64,
    limit: u64,
    failure: Arc<OnceLock<InvokeError>>,
    info: RequestInfo,
}

impl GuardedBody {
    /// Guards `inner`: at most `limit` bytes, and the end of the stream reports the guest's
    /// `failure` if it failed after sending the head.
    fn new(
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
