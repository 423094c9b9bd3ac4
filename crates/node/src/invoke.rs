//! [`Node::invoke`], the one way into a function. The HTTP gateway, calls between functions
//! (`fn.local`) and every trigger come through here, so that each of them gets the same
//! choreography: find the function, check the call chain, admit, load cold code, invoke,
//! count it in the metrics and the trace. A caller only translates its own protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Body;
use kindling_host::{BoxError, CallChain, Invocation, RequestTrace, ResponseBody};
use kindling_runtime::RequestInfo;
use kindling_telemetry::{SpanKind, TraceContext};
use tracing::Instrument;

use crate::entry::Entry;
use crate::failure::{InvokeFailure, REQUEST_ID_HEADER};
use crate::node::Node;

/// What a way in knows about a request besides the request itself.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The request id; the node makes one when empty.
    pub request_id: Option<Arc<str>>,
    /// The path prefix the function is mounted at (`/hello`), empty when routed otherwise.
    pub script_name: String,
    /// Who called, when the caller is a network client.
    pub remote_addr: Option<SocketAddr>,
    /// The address the request came in on.
    pub local_addr: Option<SocketAddr>,
    /// The caller's span (a client's `traceparent`, or the calling function's client span).
    pub trace_parent: Option<TraceContext>,
    /// The request's place in a chain of calls; `None` for a request from outside, which
    /// starts a chain.
    pub chain: Option<CallChain>,
    /// The request may be passed to a peer with room when this node has none (spill-over):
    /// set for requests from HTTP clients. A peer's request, a call between functions and
    /// queued work stay where they are, so a request travels at most one hop.
    pub may_spill: bool,
}

/// A function's answer through [`Node::invoke`].
#[derive(Debug)]
pub struct Answer {
    /// The response, with `x-request-id`; its body may still be streaming.
    pub response: http::Response<ResponseBody>,
    /// The version that answered.
    pub version: u32,
    /// How long loading the code took, when this request found it cold.
    pub cold_start: Option<Duration>,
}

impl Node {
    /// Invokes the function `name` with `request`, whose URI is what the function sees (the
    /// path after its mount point, and the query).
    pub async fn invoke<B>(
        &self,
        name: &str,
        request: http::Request<B>,
        cx: CallContext,
    ) -> Result<Answer, InvokeFailure>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let arrived = Instant::now();
        let Some(entry) = self.lookup(name) else {
            return Err(InvokeFailure::NotFound(name.to_string()));
        };
        let request_id = cx
            .request_id
            .clone()
            .unwrap_or_else(crate::ids::new_request_id);
        let mut span = self.config.tracer.as_ref().map(|tracer| {
            let mut span = tracer.start(
                format!("{} /{name}", request.method()),
                SpanKind::Server,
                cx.trace_parent,
            );
            span.set("kindling.function", name);
            span.set("kindling.function.version", entry.version.version);
            span.set("http.request.method", request.method().as_str());
            span.set("url.path", request.uri().path());
            span.set("kindling.request_id", request_id.to_string());
            span
        });
        let trace = span
            .as_ref()
            .zip(self.config.tracer.as_ref())
            .map(|(span, tracer)| RequestTrace {
                tracer: tracer.clone(),
                parent: span.context(),
            });

        let outcome = self
            .run(&entry, request, cx, request_id.clone(), trace)
            .await;
        let status = match &outcome {
            Ok((answer, _)) => answer.response.status().as_u16(),
            Err(failure) => failure.status(),
        };
        self.metrics.observe(&entry, status, arrived.elapsed());
        if let Err(failure) = &outcome {
            log_failure(&entry, failure, &request_id);
        }
        if let Some(span) = &mut span {
            span.set("http.response.status_code", status);
            let cold_start = outcome.as_ref().ok().and_then(|(a, _)| a.cold_start);
            span.set("kindling.cold_start", cold_start.is_some());
            if let Some(load) = cold_start {
                span.set("kindling.load_ms", load.as_secs_f64() * 1e3);
            }
            if let Ok((_, instantiate)) = &outcome {
                span.set("kindling.instantiate_ms", instantiate.as_secs_f64() * 1e3);
            }
            if status >= 500 {
                span.fail(status_text(status));
            }
        }
        if let Some(span) = span {
            span.end();
        }
        outcome.map(|(answer, _)| answer)
    }

    /// Everything between finding the function and its answer.
    async fn run<B>(
        &self,
        entry: &Arc<Entry>,
        request: http::Request<B>,
        cx: CallContext,
        request_id: Arc<str>,
        trace: Option<RequestTrace>,
    ) -> Result<(Answer, Duration), InvokeFailure>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let name = &entry.name;
        let chain = cx
            .chain
            .unwrap_or_else(|| CallChain::root(self.config.max_calls_per_request));
        let limit = self.config.max_call_depth;
        if chain.depth() > limit {
            return Err(InvokeFailure::TooDeep {
                name: name.clone(),
                depth: chain.depth(),
                limit,
            });
        }
        if !chain.charge() {
            return Err(InvokeFailure::BudgetSpent {
                name: name.clone(),
                limit: chain.limit(),
            });
        }
        let permit = match self.admit(entry).await {
            Ok(permit) => permit,
            Err(rejection) => {
                self.metrics.rejected(entry, rejection.code());
                if let Some(spill) = self.spill.get().filter(|_| cx.may_spill) {
                    let traceparent = cx.trace_parent.map(|parent| parent.header());
                    let script_name = cx.script_name.clone();
                    let spilled = crate::spill::forward(
                        &**spill,
                        entry,
                        request,
                        &request_id,
                        script_name,
                        traceparent,
                    );
                    if let Some(answer) = spilled.await {
                        return Ok((answer, Duration::ZERO));
                    }
                }
                return Err(InvokeFailure::Rejected {
                    name: name.clone(),
                    rejection,
                });
            }
        };
        let (function, cold_start) = self.warm_timed(entry, true).await.map_err(|err| {
            tracing::error!(function = %name, request_id = %request_id, error = %err, "cold start failed");
            InvokeFailure::Unavailable { name: name.clone() }
        })?;
        let info = RequestInfo {
            invocation: Invocation {
                function: name.clone(),
                namespace: entry.account.namespace.clone(),
                request_id: request_id.clone(),
                log: Some(entry.log.clone()),
                trace,
                chain,
                dispatch: Some(self.dispatch.clone()),
                response_headers: Default::default(),
            },
            script_name: cx.script_name,
            remote_addr: cx.remote_addr,
            local_addr: cx.local_addr,
        };
        let span = tracing::debug_span!(
            "kindling_node.invoke",
            function = %name,
            version = entry.version.version,
            request_id = %request_id
        );
        let invoked = function
            .invoke(request, &info, permit)
            .instrument(span)
            .await
            .map_err(|error| InvokeFailure::Invoke {
                name: name.clone(),
                error,
            })?;
        let mut response = invoked.response;
        // Headers the host claimed: the guest's are dropped, the host's set.
        for (name, value) in info.invocation.response_headers.take() {
            response.headers_mut().remove(&name);
            if let Some(value) = value {
                response.headers_mut().insert(name, value);
            }
        }
        if let Ok(id) = http::HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, id);
        }
        Ok((
            Answer {
                response,
                version: entry.version.version,
                cold_start,
            },
            invoked.instantiate,
        ))
    }
}

fn log_failure(entry: &Entry, failure: &InvokeFailure, request_id: &str) {
    let function = &*entry.name;
    if failure.is_internal() {
        tracing::error!(function, request_id, error = %failure, "internal error");
    } else if matches!(failure, InvokeFailure::Invoke { .. }) {
        tracing::warn!(function, request_id, error = %failure, "invocation failed");
    } else {
        tracing::debug!(function, request_id, error = %failure, "invocation refused");
    }
}

/// `500 Internal Server Error`, as a span's error message.
fn status_text(status: u16) -> String {
    http::StatusCode::from_u16(status).map_or_else(|_| status.to_string(), |s| s.to_string())
}
