//! `/metrics` in the Prometheus text format.
//!
//! What happens per request (answers by status class, time to the response head, refusals by
//! reason) is counted on the request path into label families; what a function *is* right now
//! (requests in flight and queued, whether its code is loaded and how big it is, its cold
//! starts and pre-warms, the time spent loading) is read from the node's own counters when
//! Prometheus scrapes, so nothing is counted twice and nothing drifts. Process metrics
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...) follow the standard
//! names and are read from `/proc/self`. Only deployed functions get series, created on their
//! first request: a request for an unknown name adds no label, and a function never called
//! costs no memory here. A function's series are resolved once per version, so the request
//! path counts without looking labels up.

use std::sync::OnceLock;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use kindling_telemetry::{Pid, ProcessStats};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::entry::Entry;
use crate::node::Node;

/// The metrics counted per request, kept for the node's life (a deleted function's series stay
/// until the node restarts, as counters should).
pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    rejected: IntCounterVec,
    started: Instant,
}

/// One function version's request series, resolved on its first request.
#[derive(Default)]
pub(crate) struct FunctionSeries {
    resolved: OnceLock<Resolved>,
}

struct Resolved {
    /// Answers by status class, 1xx to 5xx.
    requests: [IntCounter; 5],
    duration: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "kindling_requests_total",
                "Requests to a function answered, by status class",
            ),
            &["function", "version", "class"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "kindling_request_duration_seconds",
                "Time from a request's arrival to its response head, queueing and cold starts included",
            )
            .buckets(prometheus::exponential_buckets(0.000_05, 2.0, 18).expect("valid buckets")),
            &["function", "version"],
        )
        .expect("valid metric");
        let rejected = IntCounterVec::new(
            Opts::new(
                "kindling_rejected_requests_total",
                "Requests refused by admission control, by reason",
            ),
            &["function", "reason"],
        )
        .expect("valid metric");
        let registry = Registry::new();
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(duration.clone()))
            .expect("registered once");
        registry
            .register(Box::new(rejected.clone()))
            .expect("registered once");
        Self {
            registry,
            requests,
            duration,
            rejected,
            started: Instant::now(),
        }
    }

    /// Counts an answer of a deployed function.
    pub(crate) fn observe(&self, entry: &Entry, status: u16, took: Duration) {
        let series = entry.series.resolved.get_or_init(|| {
            let version = entry.version.version.to_string();
            let class = |class: &str| {
                self.requests
                    .with_label_values(&[&*entry.name, &version, class])
            };
            Resolved {
                requests: [
                    class("1xx"),
                    class("2xx"),
                    class("3xx"),
                    class("4xx"),
                    class("5xx"),
                ],
                duration: self
                    .duration
                    .with_label_values(&[&*entry.name, version.as_str()]),
            }
        });
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        series.requests[class].inc();
        series.duration.observe(took.as_secs_f64());
    }

    /// Counts a refusal by admission control.
    pub(crate) fn rejected(&self, entry: &Entry, reason: &str) {
        self.rejected
            .with_label_values(&[&*entry.name, reason])
            .inc();
    }

    /// The whole exposition: the kept metrics and a snapshot of the node. Reads `/proc` and
    /// file sizes: call it from a blocking thread.
    pub(crate) fn render(&self, node: &Node, catalog_bytes: u64) -> String {
        let mut families = self.registry.gather();
        families.extend(snapshot(node, self.started.elapsed(), catalog_bytes).gather());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("text encoding into memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// A registry of gauges and counters read from the node now.
fn snapshot(node: &Node, uptime: Duration, catalog_bytes: u64) -> Registry {
    let registry = Registry::new();
    let labels = &["function", "version"];
    let gauge = |name: &str, help: &str| {
        let gauge = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        registry
            .register(Box::new(gauge.clone()))
            .expect("unique name");
        gauge
    };
    let in_flight = gauge("kindling_in_flight_requests", "Requests running now");
    let queued = gauge(
        "kindling_queued_requests",
        "Requests waiting in the function's queue now",
    );
    let desired = gauge(
        "kindling_desired_instances",
        "Instances the autoscaler asks for (what KEDA's prometheus scaler reads); on one node an \
         instance is created per request, so this sizes a cluster, not this process",
    );
    let loaded = gauge(
        "kindling_function_loaded",
        "1 when the function's code is resident (warm), 0 when it is not (cold)",
    );
    let resident = gauge(
        "kindling_code_resident_bytes",
        "Memory held by the function's resident code",
    );
    let heavy = gauge(
        "kindling_function_heavy",
        "1 when the function's guests ran a millisecond or more of CPU on their recent requests \
         and its requests run on the lower-priority guest pool, 0 when they run inline",
    );
    let heavy_marks = IntCounterVec::new(
        Opts::new(
            "kindling_function_heavy_marks_total",
            "Times the function was marked heavy since its code was loaded",
        ),
        labels,
    )
    .expect("valid metric");
    registry
        .register(Box::new(heavy_marks.clone()))
        .expect("unique name");
    let loads = IntCounterVec::new(
        Opts::new(
            "kindling_code_loads_total",
            "Loads of a function's code: cold starts (a request waited) and pre-warms (ahead of requests)",
        ),
        &["function", "version", "kind"],
    )
    .expect("valid metric");
    let load_seconds = prometheus::CounterVec::new(
        Opts::new(
            "kindling_code_load_seconds_total",
            "Time spent loading the function's code, cold starts and pre-warms together",
        ),
        labels,
    )
    .expect("valid metric");
    registry
        .register(Box::new(loads.clone()))
        .expect("unique name");
    registry
        .register(Box::new(load_seconds.clone()))
        .expect("unique name");

    let entries = node.entries();
    for entry in &entries {
        let version = entry.version.version.to_string();
        let values = [entry.name.as_ref(), version.as_str()];
        let lane_in_flight = i64::from(entry.lane.in_flight());
        in_flight.with_label_values(&values).set(lane_in_flight);
        if let Some(scale) = entry.scale() {
            desired
                .with_label_values(&values)
                .set(i64::from(scale.desired));
        }
        queued
            .with_label_values(&values)
            .set(entry.lane.queued() as i64);
        let code = entry.code();
        loaded
            .with_label_values(&values)
            .set(i64::from(code.is_some()));
        resident
            .with_label_values(&values)
            .set(code.as_ref().map_or(0, |c| c.code_bytes as i64));
        let placement = code.map(|c| c.function.placement()).unwrap_or_default();
        heavy
            .with_label_values(&values)
            .set(i64::from(placement.heavy));
        heavy_marks
            .with_label_values(&values)
            .inc_by(placement.marked_heavy);
        let usage = &entry.usage;
        loads
            .with_label_values(&[values[0], values[1], "cold_start"])
            .inc_by(usage.cold_starts.load(Relaxed));
        loads
            .with_label_values(&[values[0], values[1], "prewarm"])
            .inc_by(usage.prewarms.load(Relaxed));
        load_seconds
            .with_label_values(&values)
            .inc_by(usage.load_us_total.load(Relaxed) as f64 / 1e6);
    }

    let single = |name: &str, help: &str, value: i64| {
        let gauge = IntGauge::new(name, help).expect("valid metric");
        gauge.set(value);
        registry.register(Box::new(gauge)).expect("unique name");
    };
    single(
        "kindling_functions",
        "Functions deployed on the node",
        entries.len() as i64,
    );
    single(
        "kindling_functions_loaded",
        "Functions whose code is resident",
        entries.iter().filter(|e| e.code().is_some()).count() as i64,
    );
    single(
        "kindling_registry_database_bytes",
        "Size of the registry database on disk",
        catalog_bytes as i64,
    );
    let admission = node.admission();
    single(
        "kindling_node_in_flight_requests",
        "Requests running now on the whole node",
        i64::from(admission.in_flight()),
    );
    single(
        "kindling_node_reserved_memory_bytes",
        "Memory reserved by the requests running now (their functions' limits and buffers)",
        admission.reserved_bytes() as i64,
    );
    if let Some(budget) = admission.config().memory_budget_bytes {
        single(
            "kindling_node_memory_budget_bytes",
            "Memory the requests running at once may reserve together",
            budget as i64,
        );
    }
    let process = ProcessStats::read(Pid::This);
    let float = |name: &str, help: &str, value: Option<f64>, counter: bool| {
        let Some(value) = value else { return };
        if counter {
            let metric = prometheus::Counter::new(name, help).expect("valid metric");
            metric.inc_by(value);
            registry.register(Box::new(metric)).expect("unique name");
        } else {
            let metric = Gauge::new(name, help).expect("valid metric");
            metric.set(value);
            registry.register(Box::new(metric)).expect("unique name");
        }
    };
    float(
        "process_cpu_seconds_total",
        "User and system CPU time spent, in seconds",
        process.cpu_seconds,
        true,
    );
    float(
        "process_resident_memory_bytes",
        "Resident memory size in bytes",
        process.resident_bytes.map(|b| b as f64),
        false,
    );
    float(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch, in seconds",
        process.start_time_seconds,
        false,
    );
    float(
        "process_threads",
        "Number of OS threads in the process",
        process.threads.map(|t| t as f64),
        false,
    );
    float(
        "process_open_fds",
        "Number of open file descriptors",
        process.open_fds.map(|f| f as f64),
        false,
    );
    for metric in node.capabilities().metrics() {
        capability_metric(&registry, metric);
    }
    let uptime_gauge =
        Gauge::new("kindling_uptime_seconds", "Time since the node started").expect("valid metric");
    uptime_gauge.set(uptime.as_secs_f64());
    registry
        .register(Box::new(uptime_gauge))
        .expect("unique name");
    let build = IntGaugeVec::new(
        Opts::new(
            "kindling_build_info",
            "Always 1; the label says which Kindling runs",
        ),
        &["version"],
    )
    .expect("valid metric");
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    registry.register(Box::new(build)).expect("unique name");
    registry
}

/// A capability's metric, as a family of the snapshot.
fn capability_metric(registry: &Registry, metric: kindling_host::Metric) {
    let opts = Opts::new(metric.name, metric.help);
    let registered = if metric.counter {
        prometheus::CounterVec::new(opts, metric.labels).map(|family| {
            for (labels, value) in &metric.samples {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                family.with_label_values(&labels).inc_by(*value);
            }
            registry.register(Box::new(family))
        })
    } else {
        prometheus::GaugeVec::new(opts, metric.labels).map(|family| {
            for (labels, value) in &metric.samples {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                family.with_label_values(&labels).set(*value);
            }
            registry.register(Box::new(family))
        })
    };
    match registered {
        Ok(Ok(())) => {}
        Ok(Err(err)) | Err(err) => {
            tracing::warn!(metric = metric.name, error = %err, "a capability's metric was refused");
        }
    }
}
