//! Running one phase of load against a target.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::report::{Latency, PhaseReport, ServerUsage};
use crate::spec::{Load, Phase, Target};

/// Live counters a caller can show while a phase runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Responses received, any status.
    pub completed: AtomicU64,
    /// Transport errors and timeouts.
    pub errors: AtomicU64,
    /// Requests sent: the next one's number.
    pub sent: AtomicU64,
}

/// Everything one connection worker saw.
struct WorkerStats {
    /// Latency from the scheduled time (open loop) or the send (closed loop), by class.
    latency: BTreeMap<&'static str, Histogram<u64>>,
    /// Latency from the moment the request was actually sent, by class.
    service: BTreeMap<&'static str, Histogram<u64>>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    sent: u64,
    backlog: u64,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour at 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl WorkerStats {
    fn new() -> Self {
        Self {
            latency: BTreeMap::new(),
            service: BTreeMap::new(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            sent: 0,
            backlog: 0,
        }
    }

    fn record(&mut self, class: &'static str, latency: Duration, service: Duration) {
        let micros = |d: Duration| (d.as_micros() as u64).clamp(1, 3_600_000_000);
        for key in ["all", class] {
            self.latency
                .entry(key)
                .or_insert_with(histogram)
                .saturating_record(micros(latency));
            self.service
                .entry(key)
                .or_insert_with(histogram)
                .saturating_record(micros(service));
        }
    }

    fn merge(&mut self, other: WorkerStats) {
        for (class, theirs) in other.latency {
            self.latency
                .entry(class)
                .or_insert_with(histogram)
                .add(&theirs)
                .expect("histograms with equal bounds merge");
        }
        for (class, theirs) in other.service {
            self.service
                .entry(class)
                .or_insert_with(histogram)
                .add(&theirs)
                .expect("histograms with equal bounds merge");
        }
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.sent += other.sent;
        self.backlog += other.backlog;
    }
}

/// Runs one phase and reports what happened. `server_pid`, when given, is sampled for CPU
/// and memory during the phase.
pub async fn run_phase(
    target: &Target,
    phase: &Phase,
    progress: Arc<Progress>,
    server_pid: Option<u32>,
) -> PhaseReport {
    let sampler = server_pid.map(crate::process::ProcessSampler::start);
    let started = Instant::now();
    let end = started + phase.duration;
    let connections = phase.load.connections().max(1);
    let target = Arc::new(target.clone());

    let mut workers = Vec::with_capacity(connections);
    let mut schedule = Vec::new();
    for _ in 0..connections {
        let target = target.clone();
        let progress = progress.clone();
        match phase.load {
            Load::Open { .. } => {
                let (sender, receiver) = mpsc::unbounded_channel::<Instant>();
                schedule.push(sender);
                workers.push(tokio::spawn(open_worker(target, receiver, end, progress)));
            }
            Load::Closed { .. } => {
                workers.push(tokio::spawn(closed_worker(target, end, progress)));
            }
        }
    }
    let scheduled = if schedule.is_empty() {
        None
    } else {
        let load = phase.load;
        let duration = phase.duration;
        let start = started.into_std();
        Some(std::thread::spawn(move || {
            schedule_requests(load, duration, start, schedule)
        }))
    };

    let mut total = WorkerStats::new();
    for worker in workers {
        if let Ok(stats) = worker.await {
            total.merge(stats);
        }
    }
    let scheduled = scheduled.map(|thread| thread.join().unwrap_or(0));
    let elapsed = phase.duration.as_secs_f64();
    let server = sampler.map(|s| s.finish()).map(|u| ServerUsage {
        cpu_percent: u.cpu_percent,
        peak_rss_kib: u.peak_rss_kib,
    });

    let completed: u64 = total.statuses.values().sum();
    PhaseReport {
        name: phase.name.clone(),
        load: phase.load,
        duration_s: elapsed,
        offered_rate: scheduled.map(|n| n as f64 / elapsed),
        scheduled,
        sent: total.sent,
        completed,
        backlog: total.backlog,
        achieved_rate: completed as f64 / elapsed,
        statuses: total.statuses,
        errors: total.errors,
        latency: total
            .latency
            .iter()
            .map(|(class, h)| (class.to_string(), Latency::from(h)))
            .collect(),
        service: total
            .service
            .iter()
            .map(|(class, h)| (class.to_string(), Latency::from(h)))
            .collect(),
        server,
    }
}

/// The timer thread of an open-loop phase: sleeps until each request is due (a thread
/// sleeps far more precisely than Tokio's millisecond timer wheel) and hands the due time to
/// the next connection. Returns how many requests were scheduled.
fn schedule_requests(
    load: Load,
    duration: Duration,
    start: std::time::Instant,
    connections: Vec<mpsc::UnboundedSender<Instant>>,
) -> u64 {
    let seconds = duration.as_secs_f64();
    let mut i: u64 = 0;
    loop {
        let at = load.due(i, seconds);
        if !at.is_finite() || at >= seconds {
            return i;
        }
        let due = start + Duration::from_secs_f64(at);
        let now = std::time::Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let connection = &connections[(i % connections.len() as u64) as usize];
        let _ = connection.send(Instant::from_std(due));
        i += 1;
    }
}

async fn open_worker(
    target: Arc<Target>,
    mut due: mpsc::UnboundedReceiver<Instant>,
    end: Instant,
    progress: Arc<Progress>,
) -> WorkerStats {
    let mut stats = WorkerStats::new();
    let mut connection = None;
    // Requests due within the phase are still sent after it ends, for as long as one request
    // may take; what is still queued after that never left the client and is reported as
    // backlog rather than silently dropped.
    let give_up = end + target.timeout;
    while let Some(scheduled) = due.recv().await {
        if Instant::now() > give_up {
            stats.backlog += 1;
            continue;
        }
        exchange(&target, &mut connection, scheduled, &mut stats, &progress).await;
    }
    stats
}

async fn closed_worker(target: Arc<Target>, end: Instant, progress: Arc<Progress>) -> WorkerStats {
    let mut stats = WorkerStats::new();
    let mut connection = None;
    while Instant::now() < end {
        exchange(
            &target,
            &mut connection,
            Instant::now(),
            &mut stats,
            &progress,
        )
        .await;
    }
    stats
}

/// Sends one request on the worker's connection (opening one if needed) and records it.
async fn exchange(
    target: &Target,
    connection: &mut Option<SendRequest<Full<Bytes>>>,
    scheduled: Instant,
    stats: &mut WorkerStats,
    progress: &Progress,
) {
    let sent_at = Instant::now();
    stats.sent += 1;
    let number = progress.sent.fetch_add(1, Ordering::Relaxed);
    let outcome = tokio::time::timeout(target.timeout, send(target, number, connection)).await;
    let done = Instant::now();
    match outcome {
        Ok(Ok(status)) => {
            *stats.statuses.entry(status).or_default() += 1;
            let class = match status {
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            };
            stats.record(class, done - scheduled, done - sent_at);
            progress.completed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Err(kind)) => {
            *connection = None;
            *stats.errors.entry(kind).or_default() += 1;
            progress.errors.fetch_add(1, Ordering::Relaxed);
        }
        Err(_elapsed) => {
            *connection = None;
            *stats.errors.entry("timeout".into()).or_default() += 1;
            progress.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn send(
    target: &Target,
    number: u64,
    connection: &mut Option<SendRequest<Full<Bytes>>>,
) -> Result<u16, String> {
    if connection.as_ref().is_none_or(|c| c.is_closed()) {
        *connection = Some(connect(target).await?);
    }
    let sender = connection.as_mut().expect("connected above");
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let numbered =
        (target.numbered_path.as_ref()).map(|path| path.replace("{n}", &number.to_string()));
    let path = match &numbered {
        Some(path) => path.as_str(),
        None => target.url.path_and_query().map_or("/", |p| p.as_str()),
    };
    let mut request = http::Request::builder()
        .method(target.method.clone())
        .uri(path)
        .header(
            http::header::HOST,
            target.url.authority().map_or("localhost", |a| a.as_str()),
        )
        .body(Full::new(target.body.clone()))
        .map_err(|e| format!("request: {e}"))?;
    request.headers_mut().extend(target.headers.clone());
    let response = sender.send_request(request).await.map_err(|e| {
        if e.is_incomplete_message() {
            "connection closed".into()
        } else {
            format!("send: {e}")
        }
    })?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
    let host = target.url.host().unwrap_or("127.0.0.1");
    let port = target.url.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}
