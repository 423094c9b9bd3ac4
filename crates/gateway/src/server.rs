//! Serving the application on a listener: HTTP/1.1 and HTTP/2, a header read timeout against
//! clients that trickle their headers, and graceful shutdown that stops accepting, lets
//! in-flight requests finish within a grace period, then returns.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::GatewayConfig;

/// Serves `app` until `shutdown` resolves, then drains connections for up to the grace
/// period in `config`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &GatewayConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_headers(config.max_headers)
        .max_buf_size(config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = app.clone().map_request(move |mut request: axum::extract::Request<_>| {
                    request.extensions_mut().insert(ConnectInfo::<SocketAddr>(remote));
                    request
                });
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let first_byte_timeout = config.header_read_timeout;
                tokio::spawn(async move {
                    // hyper's header timer starts with the first byte, and protocol detection
                    // waits for it with no timer at all: a client that connects and says
                    // nothing would hold its descriptor forever. Require that first byte within
                    // the header read timeout.
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(first_byte_timeout, stream.peek(&mut first)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return,
                    }
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                        .into_owned();
                    if let Err(err) = watcher.watch(connection).await {
                        tracing::debug!(%remote, error = %err, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }

    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?config.shutdown_grace,
            "in-flight requests did not finish within the grace period"
        );
    }
    Ok(())
}
