//! Serving the application on a listener: HTTP/1.1 and HTTP/2, in plain text or over TLS,
//! bounded in every dimension a client controls, and graceful shutdown.
//!
//! - A client must send its first byte, and then its request head, within the header read
//!   timeout; a connection with no request for that long is closed (HTTP/1.1 and HTTP/2
//!   alike: the HTTP/2 connection gets a GOAWAY, and streams already open finish).
//! - At most `max_connections` connections are served at once. Past that, a small reserve is
//!   kept for the node's own traffic: a connection whose first request is for `/healthz`,
//!   `/readyz`, `/metrics` or the admin API is still served, anything else is answered 503
//!   and closed, so that a flood of idle connections can never lock out health checks or an
//!   operator.
//! - At shutdown the listener closes, every connection is asked to finish its requests and
//!   close, and the server waits for them up to the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::GatewayConfig;

/// Connections past `max_connections` that may still be served for the node's own routes.
const RESERVED_CONNECTIONS: usize = 64;

/// Request prefixes served from the reserve.
const RESERVED_ROUTES: &[&[u8]] = &[
    b"GET /healthz",
    b"GET /readyz",
    b"GET /metrics",
    b"GET /v1/",
    b"POST /v1/",
    b"DELETE /v1/",
];

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
    let open = Arc::new(AtomicUsize::new(0));
    let (stop, stopping) = watch::channel(false);
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
                let slot = Slot::take(&open);
                let connection = Connection {
                    app: app.clone(),
                    tls: config.tls.as_ref().map(|tls| tls.acceptor()),
                    builder: builder.clone(),
                    remote,
                    idle_timeout: config.header_read_timeout,
                    stopping: stopping.clone(),
                    over_limit: slot.count > config.max_connections,
                    beyond_reserve: slot.count > config.max_connections + RESERVED_CONNECTIONS,
                };
                tokio::spawn(async move {
                    let _slot = slot;
                    connection.run(stream).await;
                });
            }
            () = &mut shutdown => break,
        }
    }

    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    let _ = stop.send(true);
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while open.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            grace = ?config.shutdown_grace,
            "in-flight requests did not finish within the grace period"
        );
    }
    Ok(())
}

/// One open connection, counted while it lives.
struct Slot {
    open: Arc<AtomicUsize>,
    count: usize,
}

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Self {
        let count = open.fetch_add(1, Ordering::AcqRel) + 1;
        Self {
            open: open.clone(),
            count,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Connection {
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    remote: SocketAddr,
    idle_timeout: Duration,
    stopping: watch::Receiver<bool>,
    over_limit: bool,
    beyond_reserve: bool,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let Some(tls) = self.tls.clone() else {
            return self.run_plain(stream).await;
        };
        if self.beyond_reserve {
            // Past the reserve too: not even a handshake's worth of work.
            return;
        }
        // The handshake, like a plain connection's first bytes, must come within the header
        // read timeout.
        let mut stream = match tokio::time::timeout(self.idle_timeout, tls.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                tracing::debug!(remote = %self.remote, error = %err, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        };
        if !self.over_limit {
            return self.serve(stream).await;
        }
        // Over the limit: read the request's first bytes to see whether the reserve serves it,
        // then hand them back in front of the stream.
        let mut first = [0u8; 16];
        let mut seen = 0;
        while seen < 8 {
            match tokio::time::timeout(self.idle_timeout, stream.read(&mut first[seen..])).await {
                Ok(Ok(n)) if n > 0 => seen += n,
                _ => return,
            }
        }
        if !reserved(&first[..seen]) {
            return refuse(stream).await;
        }
        self.serve(Prefixed::new(first[..seen].to_vec(), stream))
            .await;
    }

    async fn run_plain(self, stream: TcpStream) {
        // hyper's header timer starts with the first byte, and protocol detection waits for it
        // with no timer at all: a client that connects and says nothing would hold its
        // descriptor forever. Require the first bytes within the header read timeout.
        let mut first = [0u8; 16];
        let seen = match tokio::time::timeout(self.idle_timeout, stream.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        if self.over_limit && (self.beyond_reserve || !reserved(&first[..seen])) {
            refuse(stream).await;
            return;
        }
        self.serve(stream).await;
    }

    async fn serve<I>(mut self, stream: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let remote = self.remote;
        let activity = Arc::new(Activity::default());
        let counted = activity.clone();
        let service = self
            .app
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(remote));
                request
            })
            .map_future(move |response| {
                let busy = counted.begin();
                async move {
                    let response = response.await;
                    drop(busy);
                    response
                }
            });
        let connection = self
            .builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        tokio::pin!(connection);
        let mut closing = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(%remote, error = %err, "connection ended with an error");
                    }
                    return;
                }
                () = activity.idle(self.idle_timeout), if !closing => {
                    tracing::debug!(%remote, "closing an idle connection");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                changed = self.stopping.changed(), if !closing => {
                    if changed.is_err() || *self.stopping.borrow() {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// Whether a connection's first bytes ask for one of the routes served from the reserve.
fn reserved(first: &[u8]) -> bool {
    RESERVED_ROUTES
        .iter()
        .any(|route| first.starts_with(&route[..route.len().min(first.len())]) && first.len() >= 8)
}

/// Answers 503 to a connection over the limit and closes it.
async fn refuse<S: tokio::io::AsyncWrite + Unpin>(mut stream: S) {
    let body = r#"{"error":{"code":"too_many_connections","message":"the node has as many connections open as it serves; retry shortly"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A stream with bytes already read from it put back in front.
struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let rest = &this.prefix[this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// When a connection last started or finished a request, and how many it has running.
#[derive(Default)]
struct Activity {
    running: AtomicUsize,
    /// Milliseconds after `EPOCH` of the last start or finish.
    last: AtomicU64,
}

impl Activity {
    fn now() -> u64 {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.running.fetch_add(1, Ordering::AcqRel);
        self.last.store(Self::now(), Ordering::Release);
        Busy(self.clone())
    }

    /// Resolves once the connection has had no request running for `timeout`.
    async fn idle(&self, timeout: Duration) {
        let timeout_ms = timeout.as_millis() as u64;
        if self.last.load(Ordering::Acquire) == 0 {
            self.last.store(Self::now().max(1), Ordering::Release);
        }
        loop {
            let quiet = Self::now().saturating_sub(self.last.load(Ordering::Acquire));
            if self.running.load(Ordering::Acquire) == 0 && quiet >= timeout_ms {
                return;
            }
            let wait = timeout_ms.saturating_sub(quiet).max(timeout_ms / 10).max(1);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// A request running on a connection.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.last.store(Activity::now().max(1), Ordering::Release);
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_serves_health_and_admin_only() {
        assert!(reserved(b"GET /healthz HTT"));
        assert!(reserved(b"POST /v1/functio"));
        assert!(!reserved(b"GET /hello/ HTTP"));
        assert!(!reserved(b"PRI * HTTP/2.0\r\n"));
        assert!(!reserved(b"GET"), "too little to tell");
    }
}
