//! Gateway settings: host-name routing, upload size, connection timeouts, access and TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kindling_access::Access;

/// How the gateway routes and guards its connections.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// When set, `Host: {function}.{domain}` routes to the function, with the whole path.
    pub domain: Option<String>,
    /// Largest module a deploy may upload.
    pub max_module_bytes: usize,
    /// How long a client may take to send its request headers; also how long a connection
    /// with no request is kept open.
    pub header_read_timeout: Duration,
    /// How long a deploy's upload may take to arrive.
    pub upload_timeout: Duration,
    /// Connections served at once (a small reserve past it serves health checks and the
    /// admin API only).
    pub max_connections: usize,
    /// Most request headers a client may send (more is answered 431).
    pub max_headers: usize,
    /// Largest request head (request line and headers) in bytes (more is answered 431).
    pub max_header_bytes: usize,
    /// How long in-flight requests get to finish after shutdown is asked for.
    pub shutdown_grace: Duration,
    /// The address the server listens on, reported to WAGI functions as the server port.
    pub local_addr: Option<SocketAddr>,
    /// Tokens, namespaces and policies; `None` serves everyone (in-process use, `--auth none`
    /// without quotas or policies).
    pub access: Option<Arc<Access>>,
    /// Serve TLS with this certificate and key instead of plain HTTP.
    pub tls: Option<Arc<crate::tls::TlsConfig>>,
    /// The invocation queue; `None` ignores `Prefer: respond-async` (in-process use).
    pub events: Option<Arc<kindling_events::Events>>,
    /// Cluster mode; `None` on a node of its own.
    pub cluster: Option<Arc<kindling_cluster::Cluster>>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            domain: None,
            max_module_bytes: 64 << 20,
            header_read_timeout: Duration::from_secs(10),
            upload_timeout: Duration::from_secs(120),
            max_connections: 10_000,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(30),
            local_addr: None,
            access: None,
            tls: None,
            events: None,
            cluster: None,
        }
    }
}
