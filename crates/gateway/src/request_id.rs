//! Request ids: the client's `x-request-id` when it sent a sane one, otherwise a fresh id from
//! the node.

use std::sync::Arc;

/// The header carrying the request id, both ways.
pub(crate) use kindling_node::REQUEST_ID_HEADER as REQUEST_ID;

/// The client's `x-request-id` when it is sane, otherwise a fresh one.
pub(crate) fn request_id(headers: &http::HeaderMap) -> Arc<str> {
    if let Some(id) = headers.get(&REQUEST_ID).and_then(|v| v.to_str().ok())
        && !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_graphic())
    {
        return id.into();
    }
    kindling_node::new_request_id()
}

tokio::task_local! {
    /// The id of the request being handled, set by [`layer`] around every handler.
    static CURRENT: Arc<str>;
}

/// The id of the request this task is handling; a fresh one outside any request.
pub(crate) fn current_request_id() -> Arc<str> {
    CURRENT
        .try_with(Arc::clone)
        .unwrap_or_else(|_| kindling_node::new_request_id())
}

/// Runs `work` (a task of its own) as part of the request `id`: its errors and logs carry it.
pub(crate) async fn scoped<F: std::future::Future>(id: Arc<str>, work: F) -> F::Output {
    CURRENT.scope(id, work).await
}

/// Middleware: every request gets an id (the client's when sane) that every error body and
/// every response's `x-request-id` carries, whatever route answered.
pub(crate) async fn layer(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = request_id(request.headers());
    if let Ok(value) = http::HeaderValue::from_str(&id) {
        request.headers_mut().insert(REQUEST_ID, value);
    }
    let mut response = CURRENT.scope(id.clone(), next.run(request)).await;
    if !response.headers().contains_key(REQUEST_ID)
        && let Ok(value) = http::HeaderValue::from_str(&id)
    {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honours_sane_client_ids_and_makes_unique_ones() {
        let mut headers = http::HeaderMap::new();
        headers.insert(REQUEST_ID, "abc-123".parse().unwrap());
        assert_eq!(&*request_id(&headers), "abc-123");
        headers.insert(REQUEST_ID, "has space".parse().unwrap());
        let a = request_id(&headers);
        let b = request_id(&http::HeaderMap::new());
        assert_ne!(&*a, "has space");
        assert_ne!(a, b);
    }
}
