//! `kindling serve`: validate the configuration, open the node, bind, print the address,
//! serve until SIGINT or SIGTERM, then drain in-flight requests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use kindling_access::{Access, AuthMode};
use kindling_cap_keyvalue::KeyValue;
use kindling_cap_sqlite::Sqlite;
use kindling_cap_variables::Variables;
use kindling_events::EventsConfig;
use kindling_gateway::GatewayConfig;
use kindling_host::Capabilities;
use kindling_node::{Node, NodeConfig};
use kindling_registry::{Catalog, SqliteCatalog};
use kindling_runtime::Limits;
use kindling_scheduler::{AdmissionConfig, AutoscalerConfig, LaneConfig, PolicySpec};
use tokio::net::TcpListener;

use crate::UsageError;
use crate::commands::serve_cluster::{self, ClusterArgs};
use crate::commands::serve_edge::{self, EdgeArgs};
use crate::commands::serve_pool::PoolArgs;
use crate::units::{parse_duration, parse_size};

/// What the capabilities are built from: the node's own settings.
#[derive(Debug, Default)]
pub(crate) struct CapabilitySettings {
    /// `--mount-root`.
    pub(crate) mount_root: Option<PathBuf>,
    /// `--data-dir`.
    pub(crate) data_dir: PathBuf,
    /// `--runtime-config`, parsed.
    pub(crate) runtime_config: Option<toml::Table>,
    /// `--node-name` (or the host name): it stamps this node's writes to synced stores.
    pub(crate) node_name: String,
}

/// The tables a runtime-config file may have.
const RUNTIME_CONFIG_TABLES: &[&str] = &["key_value_store", "sqlite_database"];

/// What guests can reach, in order: the composition root of the capability seam. A new
/// capability is one more `.with(...)` here (`docs/architecture.md`). Building them does no
/// I/O, so `deploy` builds them too, for their flags.
pub(crate) fn capabilities(settings: &CapabilitySettings) -> Result<Capabilities, String> {
    let runtime_config = settings.runtime_config.as_ref();
    Ok(Capabilities::builtin(settings.mount_root.clone())
        .with(KeyValue::new(settings.data_dir.clone(), runtime_config)?.named(&settings.node_name))
        .with(Variables::new(settings.data_dir.clone()))
        .with(Sqlite::new(settings.data_dir.clone(), runtime_config)?))
}

/// Reads the runtime-config file (Spin's `runtime-config.toml` form).
pub(crate) fn read_runtime_config(path: &std::path::Path) -> Result<toml::Table, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        UsageError(format!(
            "cannot read --runtime-config {}: {err}",
            path.display()
        ))
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|err| {
        UsageError(format!(
            "--runtime-config {} is not valid TOML: {}",
            path.display(),
            err.message()
        ))
    })?;
    if let Some(unknown) = table
        .keys()
        .find(|k| !RUNTIME_CONFIG_TABLES.contains(&k.as_str()))
    {
        return Err(UsageError(format!(
            "--runtime-config {}: [{unknown}] is not a table Kindling reads; it reads {}",
            path.display(),
            RUNTIME_CONFIG_TABLES
                .iter()
                .map(|t| format!("[{t}.LABEL]"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(table)
}

#[derive(Debug, Args)]
pub(crate) struct ServeCommand {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    pool: PoolArgs,
    #[command(flatten)]
    edge: EdgeArgs,
    /// Address to listen on; port 0 picks a free port (the bound address is printed)
    #[arg(long, env = "KINDLING_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Directory holding the registry database, modules and compiled artifacts
    #[arg(long, env = "KINDLING_DATA_DIR", default_value = ".kindling")]
    data_dir: PathBuf,
    /// Also route `Host: {function}.{domain}` to functions
    #[arg(long, env = "KINDLING_DOMAIN")]
    domain: Option<String>,
    /// Most function instances running at once on this node
    #[arg(long, env = "KINDLING_MAX_INSTANCES", default_value_t = 1000)]
    max_instances: u32,
    /// Largest memory any function may have; sizes the instance pool's slots
    #[arg(long, env = "KINDLING_MAX_MEMORY", default_value = "4GiB", value_parser = parse_size)]
    max_memory: u64,
    /// Memory limit for functions that set none
    #[arg(long, env = "KINDLING_DEFAULT_MEMORY", default_value = "128MiB", value_parser = parse_size)]
    default_memory: u64,
    /// Threads running guest code, apart from the I/O threads (default: one per core);
    /// 0 runs guests on the I/O threads
    #[arg(long, env = "KINDLING_GUEST_THREADS")]
    guest_threads: Option<usize>,
    /// Meter fuel so that functions can have CPU budgets (--cpu-fuel); costs some speed
    #[arg(long, env = "KINDLING_FUEL")]
    fuel: bool,
    /// Directory whose subdirectories functions may mount read-only; none without it
    #[arg(long, env = "KINDLING_MOUNT_ROOT")]
    mount_root: Option<PathBuf>,
    /// The runtime-config file: which backend keeps each key-value label, in Spin's
    /// runtime-config.toml form ([key_value_store.LABEL] with type = "spin" or "redis")
    #[arg(long, env = "KINDLING_RUNTIME_CONFIG", value_name = "FILE")]
    runtime_config: Option<PathBuf>,
    /// Requests running at once on the node, across functions; more are refused with 503
    #[arg(long, env = "KINDLING_MAX_IN_FLIGHT", default_value_t = 512)]
    max_in_flight: u32,
    /// Share of the in-flight limit normal-priority functions may fill (critical: all of it)
    #[arg(long, env = "KINDLING_NORMAL_SHARE", default_value_t = 0.8)]
    normal_share: f64,
    /// Share of the in-flight limit batch-priority functions may fill
    #[arg(long, env = "KINDLING_BATCH_SHARE", default_value_t = 0.5)]
    batch_share: f64,
    /// Memory the requests running at once may reserve together, each its function's memory
    /// limit (and a WAGI module's buffers); more are refused with 503 (default: 80% of RAM)
    #[arg(long, env = "KINDLING_MEMORY_BUDGET", value_parser = parse_size)]
    memory_budget: Option<u64>,
    /// How long a critical request that finds the node full waits for a slot before it is
    /// refused (normal and batch requests are refused at once)
    #[arg(long, env = "KINDLING_CRITICAL_WAIT", default_value = "250ms", value_parser = parse_duration)]
    critical_wait: Duration,
    /// Queue length for functions with a concurrency limit that set none
    #[arg(long, env = "KINDLING_DEFAULT_QUEUE", default_value_t = 64)]
    default_queue: u32,
    /// How long a queued request may wait, for functions that set none
    #[arg(long, env = "KINDLING_DEFAULT_QUEUE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    default_queue_timeout: Duration,
    /// A namespace's limit of requests in flight, NAMESPACE=N (repeatable); others are unlimited
    #[arg(
        long = "namespace-limit",
        env = "KINDLING_NAMESPACE_LIMITS",
        value_delimiter = ',',
        value_name = "NAMESPACE=N"
    )]
    namespace_limits: Vec<String>,
    /// What stays resident: kindling (default: idle-time windows, with pre-warming),
    /// fixed[:TTL], hybrid, lru or gdsf (these two unload only under --code-memory-budget);
    /// parameters as in `kindling sim`, e.g. kindling:hazard=0.2
    #[arg(long, env = "KINDLING_KEEP_ALIVE_POLICY", default_value = "kindling")]
    keep_alive_policy: String,
    /// How long an idle function's code stays resident under the fixed policy, and under the
    /// default policy while a function has too little history to predict
    #[arg(long, env = "KINDLING_KEEP_ALIVE", default_value = "10m", value_parser = parse_duration)]
    keep_alive: Duration,
    /// Most compiled code resident at once; the policy chooses what to unload to stay under it
    #[arg(long, env = "KINDLING_CODE_MEMORY_BUDGET", value_parser = parse_size)]
    code_memory_budget: Option<u64>,
    /// Load every function at start-up instead of on its first request
    #[arg(long, env = "KINDLING_PRELOAD")]
    preload: bool,
    /// Autoscaler: concurrent requests one instance is meant to take
    #[arg(long, env = "KINDLING_AUTOSCALE_TARGET", default_value_t = 100.0)]
    autoscale_target: f64,
    /// Autoscaler: fraction of the target to aim for
    #[arg(long, env = "KINDLING_AUTOSCALE_UTILIZATION", default_value_t = 0.7)]
    autoscale_utilization: f64,
    /// Autoscaler: the stable averaging window
    #[arg(long, env = "KINDLING_AUTOSCALE_STABLE_WINDOW", default_value = "60s", value_parser = parse_duration)]
    autoscale_stable_window: Duration,
    /// Autoscaler: the panic averaging window
    #[arg(long, env = "KINDLING_AUTOSCALE_PANIC_WINDOW", default_value = "6s", value_parser = parse_duration)]
    autoscale_panic_window: Duration,
    /// Autoscaler: panic when short-window demand reaches this multiple of the supply
    #[arg(
        long,
        env = "KINDLING_AUTOSCALE_PANIC_THRESHOLD",
        default_value_t = 2.0
    )]
    autoscale_panic_threshold: f64,
    /// Autoscaler: how long a lower count must hold before it takes effect
    #[arg(long, env = "KINDLING_AUTOSCALE_SCALE_DOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    autoscale_scale_down_delay: Duration,
    /// Autoscaler: how long demand must be zero before the count drops to zero
    #[arg(long, env = "KINDLING_AUTOSCALE_ZERO_GRACE", default_value = "30s", value_parser = parse_duration)]
    autoscale_zero_grace: Duration,
    /// How often the keep-alive policy and the autoscalers run
    #[arg(long, env = "KINDLING_TICK", default_value = "1s", value_parser = parse_duration)]
    tick: Duration,
    /// Largest module a deploy may upload
    #[arg(long, env = "KINDLING_MAX_MODULE_SIZE", default_value = "64MiB", value_parser = parse_size)]
    max_module_size: u64,
    /// Deadline per request for functions that set none
    #[arg(long, env = "KINDLING_DEFAULT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    default_timeout: Duration,
    /// Largest request body for functions that set none
    #[arg(long, env = "KINDLING_DEFAULT_MAX_REQUEST_BODY", default_value = "16MiB", value_parser = parse_size)]
    default_max_request_body: u64,
    /// Largest WAGI response for functions that set none
    #[arg(long, env = "KINDLING_DEFAULT_MAX_RESPONSE_BODY", default_value = "16MiB", value_parser = parse_size)]
    default_max_response_body: u64,
    /// How long a client may take to send its request headers (slow clients are cut off)
    #[arg(long, env = "KINDLING_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// How long a deploy's upload may take to arrive (slower uploads get 408)
    #[arg(long, env = "KINDLING_UPLOAD_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    upload_timeout: Duration,
    /// Connections served at once (default: what the open-file limit allows); a small reserve
    /// past it serves health checks and the admin API only
    #[arg(long, env = "KINDLING_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// How long in-flight requests may take to finish at shutdown
    #[arg(long, env = "KINDLING_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// Who may use the admin API: `token` (default: a bearer token on every admin route; the
    /// first start writes an admin token to DATA_DIR/admin.token) or `none` (loopback only)
    #[arg(long, env = "KINDLING_AUTH", value_enum, default_value_t = AuthFlag::Token)]
    auth: AuthFlag,
    /// PEM certificate chain to serve TLS with (with --tls-key); SIGHUP reloads it
    #[arg(
        long,
        env = "KINDLING_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(
        long,
        env = "KINDLING_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (behind a proxy that terminates TLS);
    /// without it such a node refuses to start, since tokens would cross the network in clear
    #[arg(long, env = "KINDLING_ALLOW_PLAIN_HTTP")]
    allow_plain_http: bool,
    /// Directory of Rego policies (*.rego, named by file) stored in the registry at start:
    /// `package kindling.admission` (deny) and `package kindling.authz` (allow)
    #[arg(long, env = "KINDLING_POLICY_DIR", value_name = "DIR")]
    policy_dir: Option<PathBuf>,
    /// Asynchronous invocation attempts run at once (admission control still applies)
    #[arg(long, env = "KINDLING_ASYNC_WORKERS", default_value_t = 16)]
    async_workers: usize,
    /// Largest request body an asynchronous invocation may carry
    #[arg(long, env = "KINDLING_ASYNC_MAX_BODY", default_value = "1MiB", value_parser = parse_size)]
    async_max_body: u64,
    /// Most asynchronous invocations waiting at once; past it new ones get 503
    #[arg(long, env = "KINDLING_ASYNC_MAX_QUEUED", default_value_t = 100_000)]
    async_max_queued: u64,
    /// Most asynchronous invocations one namespace may have waiting; past it its new ones get 429
    #[arg(
        long,
        env = "KINDLING_ASYNC_MAX_QUEUED_PER_NAMESPACE",
        default_value_t = 25_000
    )]
    async_max_queued_per_namespace: u64,
    /// How long an Idempotency-Key deduplicates
    #[arg(long, env = "KINDLING_IDEMPOTENCY_WINDOW", default_value = "24h", value_parser = parse_duration)]
    idempotency_window: Duration,
    /// How long succeeded asynchronous invocations are kept
    #[arg(long, env = "KINDLING_ASYNC_RETENTION", default_value = "7d", value_parser = parse_duration)]
    async_retention: Duration,
    /// How long dead invocations (the dead-letter store) are kept unless purged first
    #[arg(long, env = "KINDLING_DEAD_LETTER_RETENTION", default_value = "30d", value_parser = parse_duration)]
    dead_letter_retention: Duration,
    /// NATS server for NATS and JetStream triggers, such as nats://127.0.0.1:4222
    #[arg(long, env = "KINDLING_NATS_URL", value_name = "URL")]
    nats_url: Option<String>,
    /// Redis server for Redis stream triggers, such as redis://127.0.0.1:6379
    #[arg(long, env = "KINDLING_REDIS_URL", value_name = "URL")]
    redis_url: Option<String>,
    /// This node's name as a broker consumer (default: the host name); keep it stable across
    /// restarts, so that the node takes back the entries it was handling
    #[arg(long, env = "KINDLING_NODE_NAME")]
    node_name: Option<String>,
    /// Send X-Callback-Url callbacks to loopback and private addresses too (by default only
    /// to public ones; link-local ones never)
    #[arg(long, env = "KINDLING_CALLBACK_ALLOW_PRIVATE")]
    callback_allow_private: bool,
    /// Log format; the filter comes from KINDLING_LOG (for example `info,kindling=debug`)
    #[arg(long, env = "KINDLING_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuthFlag {
    /// Bearer tokens on every admin route
    Token,
    /// No authentication (loopback only)
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Readable lines
    Human,
    /// One JSON object per line
    Json,
}

impl ServeCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        init_tracing(self.log_format);
        let (mut node_config, mut gateway_config) = self.validate()?;
        self.check_exposure()?;
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let tls = kindling_gateway::TlsConfig::load(cert, key)
                .map_err(|err| UsageError(err.to_string()))?;
            gateway_config.tls = Some(Arc::new(tls));
        }
        node_config.tracer = kindling_telemetry::Tracer::from_env()
            .map_err(|err| UsageError(format!("tracing: {err}")))?;
        let tracer = node_config.tracer.clone();
        let open_files = raise_open_file_limit();
        // Every connection is a descriptor; keep some for the registry, modules, artifacts and
        // the reserve of connections for health checks and the admin API.
        let affordable = usize::try_from(open_files.saturating_sub(512))
            .unwrap_or(usize::MAX)
            .max(16);
        gateway_config.max_connections = match self.max_connections {
            Some(max) if max > affordable => {
                return Err(UsageError(format!(
                    "--max-connections {max} is more than the open-file limit ({open_files}) \
                     allows; raise the limit (ulimit -n) or ask for at most {affordable}"
                ))
                .into());
            }
            Some(max) => max,
            None => affordable.min(100_000),
        };
        std::fs::create_dir_all(&node_config.data_dir).map_err(|err| {
            UsageError(format!(
                "cannot create the data directory {:?}: {err}; pass --data-dir with a writable path",
                node_config.data_dir
            ))
        })?;

        let data_dir = node_config.data_dir.clone();
        let events_config = self.events_config(&data_dir)?;
        let cluster_config = self.cluster.config(&events_config.node_name)?;
        let sync_config = self.edge.config(&events_config.node_name)?;
        let catalog = Arc::new(
            SqliteCatalog::open(&data_dir)
                .await
                .context("cannot open the registry")?,
        );
        let mode = match self.auth {
            AuthFlag::Token => AuthMode::Token,
            AuthFlag::None => AuthMode::None,
        };
        let (cluster, access_store) =
            serve_cluster::connect(cluster_config, &catalog, &data_dir).await?;
        let access = Access::open(access_store, mode, node_config.namespace_limits.clone())
            .await
            .context("cannot load tokens, namespaces and policies from the registry")?;
        if let Some(dir) = &self.policy_dir {
            let stored = access
                .load_policy_dir(dir)
                .await
                .map_err(|err| UsageError(format!("--policy-dir {}: {err}", dir.display())))?;
            tracing::info!(policies = stored.len(), dir = %dir.display(), "policies loaded");
        }
        node_config.quota = Some(access.quota());
        let node_catalog: Arc<dyn Catalog> = match &cluster {
            Some(cluster) => cluster.catalog(),
            None => catalog,
        };
        let node = Node::open_with(node_config, node_catalog)
            .await
            .context("cannot open the node")?;
        let listener = TcpListener::bind(self.listen).await.with_context(|| {
            format!(
                "cannot listen on {}; pass --listen with a free address",
                self.listen
            )
        })?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        gateway_config.local_addr = Some(local_addr);
        // Before the access watch starts: a new node makes its own admin token, whatever the
        // cluster holds.
        let first_token = access
            .bootstrap(&data_dir)
            .await
            .context("cannot create the first admin token")?;
        if let Some(cluster) = cluster {
            serve_cluster::start(&cluster, &node, &access, local_addr, &data_dir).await?;
            announce(format_args!(
                "kindling: cluster node {} ({})",
                cluster.node_name(),
                cluster.link().describe()
            ));
            gateway_config.cluster = Some(cluster);
        }
        gateway_config.access = Some(access);
        serve_edge::start(sync_config, node.capabilities().get::<KeyValue>()).await?;
        let mut events_config = events_config;
        events_config.authority = local_addr.to_string();
        let events = serve_cluster::open_events(
            &node,
            events_config,
            gateway_config.cluster.as_ref(),
            &self.cluster,
        )
        .await?;
        events.start();
        gateway_config.events = Some(events);

        let scheme = if gateway_config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        // A closed stdout must not stop a server: these lines are for a person or a supervisor.
        announce(format_args!(
            "kindling: listening on {scheme}://{local_addr}"
        ));
        announce(format_args!(
            "kindling: admin API {scheme}://{local_addr}/v1/functions, data in {}",
            data_dir.display()
        ));
        match (mode, first_token) {
            (AuthMode::None, _) => announce(format_args!(
                "kindling: --auth none: anyone who can reach {local_addr} may deploy"
            )),
            (_, Some(path)) => announce(format_args!(
                "kindling: created the first admin token in {} (readable by you only); the CLI \
                 on this machine finds it, elsewhere set KINDLING_TOKEN",
                path.display()
            )),
            _ => {}
        }
        if let Some(tls) = gateway_config.tls.clone() {
            tokio::spawn(reload_on_hangup(tls));
        }

        if tracer.is_some() {
            announce(format_args!(
                "kindling: exporting traces over OTLP (OTEL_EXPORTER_OTLP_* variables)"
            ));
        }
        let app = kindling_gateway::app(Arc::clone(&node), gateway_config.clone());
        kindling_gateway::serve(listener, app, &gateway_config, shutdown_signal())
            .await
            .context("the server failed")?;
        if let Some(events) = &gateway_config.events {
            events.shutdown(gateway_config.shutdown_grace).await;
        }
        node.checkpoint()
            .await
            .context("cannot make the registry durable at shutdown")?;
        if let Some(tracer) = &tracer {
            tracer.flush().await;
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// The invocation queue's settings.
    fn events_config(&self, data_dir: &std::path::Path) -> Result<EventsConfig, UsageError> {
        if self.async_workers == 0 {
            return Err(UsageError("--async-workers must be at least 1".into()));
        }
        let mut config = EventsConfig::new(data_dir.join("queue.db"));
        config.workers = self.async_workers;
        config.max_body_bytes = usize::try_from(self.async_max_body)
            .map_err(|_| UsageError("--async-max-body is too large".into()))?;
        config.max_waiting = self.async_max_queued;
        config.max_waiting_per_namespace = self.async_max_queued_per_namespace;
        config.idempotency_window = self.idempotency_window;
        config.retain_succeeded = self.async_retention;
        config.retain_dead = self.dead_letter_retention;
        if let Some(url) = &self.nats_url
            && !(url.starts_with("nats://") || url.starts_with("tls://"))
        {
            return Err(UsageError(format!(
                "--nats-url {url:?} must start with nats:// or tls://"
            )));
        }
        if let Some(url) = &self.redis_url
            && let Err(err) = redis_url_ok(url)
        {
            return Err(UsageError(format!("--redis-url {url:?}: {err}")));
        }
        config.callback_allow_private = self.callback_allow_private;
        config.nats_url = self.nats_url.clone();
        config.redis_url = self.redis_url.clone();
        config.node_name = serve_edge::node_name(self.node_name.as_deref())?;
        Ok(config)
    }

    /// Refuses to expose an open node, or tokens in clear, beyond this machine.
    fn check_exposure(&self) -> Result<(), UsageError> {
        let loopback = self.listen.ip().is_loopback();
        if loopback {
            return Ok(());
        }
        if self.auth == AuthFlag::None {
            return Err(UsageError(format!(
                "--auth none is allowed on loopback only, and --listen {} is reachable from \
                 other machines: anyone there could deploy and delete functions. Drop --auth \
                 none (tokens are on by default), or listen on 127.0.0.1",
                self.listen
            )));
        }
        if self.tls_cert.is_none() && !self.allow_plain_http {
            return Err(UsageError(format!(
                "--listen {} is reachable from other machines, and without TLS API tokens \
                 would cross the network in clear: pass --tls-cert and --tls-key, or \
                 --allow-plain-http when a proxy in front terminates TLS",
                self.listen
            )));
        }
        Ok(())
    }

    /// Checks everything before a port is bound.
    fn validate(&self) -> Result<(NodeConfig, GatewayConfig), UsageError> {
        if self.max_instances == 0 {
            return Err(UsageError("--max-instances must be at least 1".into()));
        }
        if let Some(domain) = &self.domain
            && (domain.is_empty() || domain.starts_with('.') || domain.contains(['/', ':', ' ']))
        {
            return Err(UsageError(format!(
                "--domain {domain:?} must be a bare domain such as fn.example.com"
            )));
        }
        if self.default_timeout.is_zero() {
            return Err(UsageError(
                "--default-timeout must be longer than zero".into(),
            ));
        }
        if self.default_memory > self.max_memory {
            return Err(UsageError(format!(
                "--default-memory ({}) is above --max-memory ({})",
                self.default_memory, self.max_memory
            )));
        }
        if self.max_memory > 4 << 30 {
            return Err(UsageError(
                "--max-memory is at most 4GiB, all a 32-bit WebAssembly memory can address".into(),
            ));
        }
        if let Some(root) = &self.mount_root
            && !root.is_dir()
        {
            return Err(UsageError(format!(
                "--mount-root {} is not a directory",
                root.display()
            )));
        }
        if self.max_in_flight == 0 || self.max_in_flight > self.max_instances {
            return Err(UsageError(format!(
                "--max-in-flight ({}) must be between 1 and --max-instances ({})",
                self.max_in_flight, self.max_instances
            )));
        }
        for (flag, share) in [
            ("--normal-share", self.normal_share),
            ("--batch-share", self.batch_share),
        ] {
            if !(share > 0.0 && share <= 1.0) {
                return Err(UsageError(format!("{flag} must be in (0, 1], got {share}")));
            }
        }
        if self.tick.is_zero() {
            return Err(UsageError("--tick must be longer than zero".into()));
        }
        let keep_alive_policy =
            PolicySpec::parse(&self.keep_alive_policy, self.keep_alive.as_millis() as u64)
                .map_err(|e| UsageError(format!("--keep-alive-policy: {e}")))?;
        if keep_alive_policy.needs_budget() && self.code_memory_budget.is_none() {
            return Err(UsageError(format!(
                "--keep-alive-policy {}: this policy unloads only under a memory budget; \
                 set --code-memory-budget too",
                self.keep_alive_policy
            )));
        }
        let namespace_limits = self
            .namespace_limits
            .iter()
            .map(|pair| {
                let (namespace, limit) = pair.split_once('=').ok_or_else(|| {
                    UsageError(format!("--namespace-limit {pair:?} must be NAMESPACE=N"))
                })?;
                let limit: u32 = limit.parse().map_err(|_| {
                    UsageError(format!(
                        "--namespace-limit {pair:?}: {limit:?} is not a number"
                    ))
                })?;
                Ok((namespace.to_string(), limit))
            })
            .collect::<Result<Vec<_>, UsageError>>()?;
        let ms = |d: Duration| d.as_millis() as u64;
        let mut node = NodeConfig::new(self.data_dir.clone());
        node.runtime.max_instances = self.max_instances;
        let memory_budget = self
            .memory_budget
            .or_else(|| physical_memory().map(|ram| ram / 5 * 4));
        if let Some(budget) = memory_budget
            && budget < self.default_memory
        {
            return Err(UsageError(format!(
                "--memory-budget ({budget} bytes) is below --default-memory ({} bytes): no \
                 request with the default limit could ever run",
                self.default_memory
            )));
        }
        node.admission = AdmissionConfig {
            max_in_flight: self.max_in_flight,
            normal_share: self.normal_share,
            batch_share: self.batch_share,
            memory_budget_bytes: memory_budget,
            critical_wait: self.critical_wait,
        };
        node.default_lane = LaneConfig {
            queue_len: self.default_queue,
            queue_timeout: self.default_queue_timeout,
            ..LaneConfig::default()
        };
        node.namespace_limits = namespace_limits;
        node.keep_alive_policy = keep_alive_policy;
        node.code_memory_budget = self.code_memory_budget;
        node.preload = self.preload;
        node.tick = self.tick;
        node.autoscaler = AutoscalerConfig {
            target_concurrency: self.autoscale_target,
            target_utilization: self.autoscale_utilization,
            stable_window: ms(self.autoscale_stable_window),
            panic_window: ms(self.autoscale_panic_window),
            panic_threshold: self.autoscale_panic_threshold,
            scale_down_delay: ms(self.autoscale_scale_down_delay),
            scale_to_zero_grace: ms(self.autoscale_zero_grace),
        };
        node.runtime.max_memory_bytes = self.max_memory;
        self.pool.apply(&mut node.runtime)?;
        node.runtime.fuel = self.fuel;
        if let Some(threads) = self.guest_threads {
            node.runtime.guest_threads = threads;
        }
        let runtime_config = self
            .runtime_config
            .as_deref()
            .map(read_runtime_config)
            .transpose()?;
        node.capabilities = capabilities(&CapabilitySettings {
            mount_root: self.mount_root.clone(),
            data_dir: self.data_dir.clone(),
            runtime_config,
            node_name: serve_edge::node_name(self.node_name.as_deref())?,
        })
        .map_err(|err| UsageError(format!("--runtime-config: {err}")))?;
        node.default_limits = Limits {
            memory_bytes: self.default_memory,
            timeout: self.default_timeout,
            max_request_body_bytes: self.default_max_request_body,
            max_response_body_bytes: self.default_max_response_body,
            cpu_fuel: None,
        };
        let gateway = GatewayConfig {
            domain: self.domain.clone(),
            max_module_bytes: usize::try_from(self.max_module_size)
                .map_err(|_| UsageError("--max-module-size is too large".into()))?,
            shutdown_grace: self.shutdown_grace,
            header_read_timeout: self.header_read_timeout,
            upload_timeout: self.upload_timeout,
            ..GatewayConfig::default()
        };
        Ok((node, gateway))
    }
}

/// Whether a Redis URL has a scheme Redis clients take.
fn redis_url_ok(url: &str) -> Result<(), &'static str> {
    if ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        Ok(())
    } else {
        Err("write redis://HOST:PORT")
    }
}

/// One line on stdout, flushed; a closed stdout is ignored.
pub(crate) fn announce(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

/// The machine's memory, or the cgroup's limit when the node runs in a smaller one.
fn physical_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
        });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    match (total, cgroup) {
        (Some(total), Some(limit)) => Some(total.min(limit)),
        (total, limit) => total.or(limit),
    }
}

/// Every connection is a file descriptor: lift the soft limit to the hard one so that many
/// idle clients cannot starve the node of descriptors at the default of 1024. Returns the
/// limit now in force.
fn raise_open_file_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(err) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %err, "cannot raise the open-file limit");
        }
    }
    let current = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    tracing::debug!(open_files = current, "open-file limit");
    current
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KINDLING_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Reloads the TLS certificate and key on every SIGHUP; a bad pair keeps the old one serving.
async fn reload_on_hangup(tls: Arc<kindling_gateway::TlsConfig>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot install the SIGHUP handler: TLS reload is off");
            return;
        };
        while hangup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate and key reloaded"),
                Err(err) => {
                    tracing::error!(error = %err, "TLS reload failed; still serving the old certificate")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tls;
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("install the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown requested");
}
