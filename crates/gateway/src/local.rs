//! In-process calls between functions: a guest's request to `http://{name}.fn.local/path` is
//! served by this node's own router as `/{name}/path`, with admission, limits, metrics, logs
//! and tracing as for any request, without a socket or a network hop. (The function's
//! `allowed_outbound_hosts` must still list the host: the runtime checks before it gets here.)

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use kindling_runtime::{LocalCall, LocalFunctions};
use tower::ServiceExt;
use wasmtime_wasi_http::Error as HttpError;

/// The router, set once it is built. It holds the state that holds this: the cycle lives as
/// long as the node, which is the whole process.
#[derive(Default)]
pub(crate) struct LocalRouter {
    router: OnceLock<Router>,
}

impl std::fmt::Debug for LocalRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRouter").finish_non_exhaustive()
    }
}

impl LocalRouter {
    pub(crate) fn install(&self, router: Router) {
        let _ = self.router.set(router);
    }
}

impl LocalFunctions for LocalRouter {
    fn call(
        &self,
        function: &str,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> LocalCall {
        let Some(router) = self.router.get().cloned() else {
            return Box::pin(async { Err(HttpError::DestinationNotFound) });
        };
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let uri = format!("/{function}{path}");
        Box::pin(async move {
            parts.uri = uri.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;
            let request = http::Request::from_parts(parts, Body::new(body));
            let Ok(response) = router.oneshot(request).await;
            Ok(response.map(|body| {
                body.map_err(|err| HttpError::InternalError(Some(err.to_string())))
                    .boxed_unsync()
            }))
        })
    }
}
