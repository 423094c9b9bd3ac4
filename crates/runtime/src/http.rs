//! Invoking a WASI 0.2 `wasi:http/proxy` component: a fresh instance per request from the
//! pre-linked `ProxyPre`, the request handed over as an `incoming-request` and the response
//! taken from its `response-outparam`. Limits, the guest task and the client's answer are
//! shared with WASI 0.3 in `exchange.rs`.

use bytes::Bytes;
use http_body::Body;
use kindling_host::{BoxError, ComponentCtx, HostState};
use tracing::Instrument;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::error::{InvokeError, chain};
use crate::exchange::Exchange;
use crate::function::Inner;
use crate::invocation::{Invoked, RequestInfo};

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
    let exchange = Exchange::new(function.settings.limits);
    let request = exchange.limit_request(request);
    let mut store = exchange.component_store(function, pre.engine(), info)?;

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
                    let proxy = pre.instantiate_async(&mut store).await?;
                    side.instantiated(started);
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, incoming, outparam)
                        .await
                })
                .await;
            side.finish(store, ran, &weight, &capabilities, &task_info)
        }
        .in_current_span(),
    );

    // The guest dropped the response outparam without setting it when the channel closes:
    // it returned, trapped or ran out of time.
    let received = receiver.await.map(|answer| {
        answer.map_err(|code| {
            InvokeError::Guest(format!("the function answered with error code {code:?}"))
        })
    });
    exchange.answer(received, guest, info).await
}
