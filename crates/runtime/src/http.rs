//! Invoking a `wasi:http/proxy` component: a fresh instance per request from the pre-linked
//! `ProxyPre`, request and response bodies streamed both ways.
//!
//! The guest runs in its own task so that it can keep writing the response body after it has
//! sent the response head; the task owns the store and ends, dropping the instance, when the
//! guest returns or the deadline passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;
use tracing::Instrument;
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::config::FunctionSettings;
use crate::error::{InvokeError, chain};
use crate::invocation::{BoxError, RequestInfo, ResponseBody, classify, log_guest_output};
use crate::output::{OutputCapture, WhenFull};
use crate::store::{HttpState, arm_deadline};

/// How much of a guest's stdout and stderr is kept per request.
pub(crate) const LOG_CAPTURE_BYTES: usize = 64 * 1024;

pub(crate) async fn invoke<B>(
    pre: &ProxyPre<HttpState>,
    settings: &FunctionSettings,
    request: http::Request<B>,
    info: &RequestInfo,
) -> Result<http::Response<ResponseBody>, InvokeError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limits = settings.limits;
    let deadline = Instant::now() + limits.timeout;

    // Bound the request body. The guest sees an over-long body as a stream error; the client
    // is answered 413 unless the guest already sent its response head.
    let body_too_large = Arc::new(AtomicBool::new(false));
    let request = {
        let flag = body_too_large.clone();
        let limit = limits.max_request_body_bytes;
        request.map(move |body| {
            Limited::new(body, limit as usize).map_err(move |err: BoxError| {
                if err.is::<http_body_util::LengthLimitError>() {
                    flag.store(true, Ordering::Relaxed);
                    wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit))
                } else {
                    wasmtime_wasi_http::Error::InternalError(Some(err.to_string()))
                }
            })
        })
    };

    let stdout = OutputCapture::new(LOG_CAPTURE_BYTES, WhenFull::Truncate);
    let stderr = OutputCapture::new(LOG_CAPTURE_BYTES, WhenFull::Truncate);
    let wasi = WasiCtxBuilder::new()
        .envs(&settings.env)
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .build();
    let mut store = Store::new(
        pre.engine(),
        HttpState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
        },
    );
    arm_deadline(&mut store, deadline);

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

    let pre = pre.clone();
    let task_info = info.clone();
    let guest = tokio::spawn(
        async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            };
            let result = tokio::time::timeout_at(deadline, run).await;
            let (out, out_dropped) = stdout.take();
            let (err, err_dropped) = stderr.take();
            log_guest_output(&task_info, "stdout", &out, out_dropped);
            log_guest_output(&task_info, "stderr", &err, err_dropped);
            match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(classify(&err, limits.timeout)),
                Err(_elapsed) => Err(InvokeError::Timeout(limits.timeout)),
            }
        }
        .in_current_span(),
    );

    match receiver.await {
        Ok(Ok(response)) => {
            if body_too_large.load(Ordering::Relaxed) {
                return Err(InvokeError::RequestBodyTooLarge {
                    limit: limits.max_request_body_bytes,
                });
            }
            Ok(response.map(|body| body.map_err(|err| Box::new(err) as BoxError).boxed_unsync()))
        }
        Ok(Err(code)) => {
            if body_too_large.load(Ordering::Relaxed) {
                return Err(InvokeError::RequestBodyTooLarge {
                    limit: limits.max_request_body_bytes,
                });
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
                return Err(InvokeError::RequestBodyTooLarge {
                    limit: limits.max_request_body_bytes,
                });
            }
            outcome
        }
    }
}
