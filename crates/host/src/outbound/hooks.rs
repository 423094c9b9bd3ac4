//! The `wasi:http` hooks of one instance: every outgoing request goes through the function's
//! allow-list, becomes a client span when the request is traced, and carries the call chain;
//! a request to `http://{name}.fn.local/` is handed to the node in process.

use std::fmt;
use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::policy::{OutboundPolicy, Scheme};
use super::{CALL_BUDGET_HEADER, CALL_DEPTH_HEADER, LOCAL_SUFFIX};
use crate::invocation::{CallChain, Dispatch, LocalBodyError, LocalCall, RequestTrace};

/// The future `send_request` returns.
pub(crate) type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

/// The outbound capability's per-instance state.
pub struct OutboundHooks {
    pub(crate) policy: Arc<OutboundPolicy>,
    pub(crate) function: Arc<str>,
    pub(crate) namespace: Arc<str>,
    pub(crate) request_id: Arc<str>,
    pub(crate) trace: Option<RequestTrace>,
    pub(crate) dispatch: Option<Arc<dyn Dispatch>>,
    pub(crate) chain: CallChain,
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let scheme = match uri.scheme_str() {
            Some("https") => Some(Scheme::Https),
            Some("http") => Some(Scheme::Http),
            _ => None,
        };
        let host = uri.host().unwrap_or_default().to_string();
        let allowed = scheme.is_some_and(|scheme| {
            let port = uri.port_u16().unwrap_or(scheme.default_port());
            self.policy.allows(scheme, &host, port)
        });
        if !allowed {
            tracing::warn!(
                function = %self.function,
                request_id = %self.request_id,
                destination = %Destination(uri),
                "outbound HTTP request denied: the destination is not in the function's \
                 allowed_outbound_hosts"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        drop(fut);
        let span = self.trace.as_ref().map(|trace| {
            let mut span = trace.tracer.start(
                format!("{} {host}", request.method()),
                kindling_telemetry::SpanKind::Client,
                Some(trace.parent),
            );
            span.set("http.request.method", request.method().as_str());
            span.set("server.address", host.as_str());
            if let Some(port) = uri.port_u16() {
                span.set("server.port", port);
            }
            span.set("url.full", format!("{}", Destination(uri)) + uri.path());
            span
        });
        if let Some(span) = &span
            && let Ok(value) = http::HeaderValue::from_str(&span.context().header())
        {
            request.headers_mut().insert("traceparent", value);
        }
        let local = host
            .strip_suffix(LOCAL_SUFFIX)
            .filter(|name| !name.is_empty() && !name.contains('.'))
            .map(str::to_string);
        let chain = self.chain.child();
        let route = match (local, self.dispatch.clone()) {
            (Some(function), Some(dispatch)) => {
                let call = LocalCall {
                    function,
                    caller_namespace: self.namespace.clone(),
                    request: request.map(|body| {
                        body.map_err(|err| LocalBodyError(Box::new(err)))
                            .boxed_unsync()
                    }),
                    chain,
                    trace: span.as_ref().map(|span| span.context()),
                };
                Route::Local(dispatch, call)
            }
            (Some(_), None) => Route::Unreachable,
            (None, _) => {
                // A call that comes back to a node over the network resumes the chain there.
                let headers = request.headers_mut();
                headers.insert(CALL_DEPTH_HEADER, chain.depth().into());
                headers.insert(CALL_BUDGET_HEADER, chain.remaining().into());
                Route::Network(request, options)
            }
        };
        Box::new(async move {
            let result = match route {
                Route::Local(dispatch, call) => {
                    let response = dispatch.dispatch(call).await;
                    let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                        Box::new(async { Ok(()) });
                    let response = response.map(|body| {
                        body.map_err(|err| HttpError::InternalError(Some(err.to_string())))
                            .boxed_unsync()
                    });
                    Ok((response, done))
                }
                Route::Unreachable => Err(HttpError::DestinationNotFound),
                Route::Network(request, options) => {
                    wasmtime_wasi_http::default_send_request(request, options)
                        .await
                        .map(|(response, io)| {
                            let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                                Box::new(io);
                            (response.map(BodyExt::boxed_unsync), io)
                        })
                }
            };
            if let Some(mut span) = span {
                match &result {
                    Ok((response, _)) => {
                        span.set("http.response.status_code", response.status().as_u16());
                        if response.status().is_server_error() {
                            span.fail(response.status().to_string());
                        }
                    }
                    Err(err) => span.fail(format!("{err:?}")),
                }
                span.end();
            }
            result
        })
    }
}

/// Where an allowed request goes.
enum Route {
    Local(Arc<dyn Dispatch>, LocalCall),
    Unreachable,
    Network(http::Request<WasiBody>, Option<RequestOptions>),
}

/// Shows scheme, host and port of a URI, never its path or query (which may hold secrets).
struct Destination<'a>(&'a http::Uri);

impl fmt::Display for Destination<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.0;
        write!(
            f,
            "{}://{}",
            uri.scheme_str().unwrap_or("?"),
            uri.authority().map(|a| a.as_str()).unwrap_or("?")
        )
    }
}
