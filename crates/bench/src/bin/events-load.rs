//! Load for the ways into a function that do not wait for it: asynchronous invocations,
//! JetStream and Redis Streams triggers, and the same function over plain HTTP beside them.
//!
//! ```text
//! events-load MODE --server URL [--token T] [--count N] [--concurrency C]
//!             [--nats URL] [--redis URL]
//! ```
//!
//! MODE is `http` (a request, waited for), `async` (`Prefer: respond-async`, then the
//! invocation's record), `jetstream` (publish to stream `BENCH`, subject `bench.in`; the function
//! replies on `bench.done`) or `redis` (`XADD bench`; the function replies into `bench-done`).
//! The function behind them is the same. Prints one JSON line: messages per second from the
//! first send to the last completion, and latency percentiles from "accepted" (the 202, the
//! publish acknowledgement, the `XADD`) to "done" (the record's `finished_at`, the reply).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use hdrhistogram::Histogram;

struct Args {
    mode: String,
    server: String,
    token: Option<String>,
    count: usize,
    concurrency: usize,
    nats: String,
    redis: String,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mode = args
        .next()
        .ok_or("usage: events-load MODE --server URL ...")?;
    let mut parsed = Args {
        mode,
        server: "http://127.0.0.1:3000".into(),
        token: None,
        count: 10_000,
        concurrency: 64,
        nats: "nats://127.0.0.1:4222".into(),
        redis: "redis://127.0.0.1:6379".into(),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--server" => parsed.server = value,
            "--token" => parsed.token = Some(value),
            "--count" => parsed.count = value.parse().map_err(|_| "--count is a number")?,
            "--concurrency" => {
                parsed.concurrency = value.parse().map_err(|_| "--concurrency is a number")?
            }
            "--nats" => parsed.nats = value,
            "--redis" => parsed.redis = value,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(parsed)
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// The shared result: per-message latency in microseconds, and when the last one was done.
struct Tally {
    latency: Histogram<u64>,
    last_done_ms: f64,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: Histogram::new(3).expect("a histogram"),
            last_done_ms: 0.0,
        }
    }

    fn record(&mut self, accepted_ms: f64, done_ms: f64) {
        let micros = ((done_ms - accepted_ms).max(0.0) * 1e3) as u64;
        let _ = self.latency.record(micros.max(1));
        self.last_done_ms = self.last_done_ms.max(done_ms);
    }
}

#[tokio::main]
async fn main() {
    let args = match parse() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("events-load: {err}");
            std::process::exit(2);
        }
    };
    let started_ms = epoch_ms();
    let tally = match args.mode.as_str() {
        "http" => http(&args).await,
        "async" => queued(&args).await,
        "jetstream" => jetstream(&args).await,
        "redis" => redis_streams(&args).await,
        other => {
            eprintln!("events-load: unknown mode {other:?}; use http, async, jetstream or redis");
            std::process::exit(2);
        }
    };
    let tally = match tally {
        Ok(tally) => tally,
        Err(err) => {
            eprintln!("events-load {}: {err}", args.mode);
            std::process::exit(1);
        }
    };
    let seconds = (tally.last_done_ms - started_ms) / 1e3;
    let ms = |q: f64| tally.latency.value_at_quantile(q) as f64 / 1e3;
    println!(
        "{}",
        serde_json::json!({
            "mode": args.mode,
            "count": tally.latency.len(),
            "seconds": seconds,
            "per_second": tally.latency.len() as f64 / seconds,
            "latency_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": ms(1.0) },
        })
    );
}

fn client(args: &Args) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = &args.token
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .expect("an HTTP client")
}

/// Runs `count` jobs on `concurrency` tasks; `job(i)` for each.
async fn fan_out<F, Fut>(count: usize, concurrency: usize, job: F) -> Result<(), String>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (job, next) = (job.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<(), String>(());
                }
                job(i).await?;
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

async fn http(args: &Args) -> Result<Tally, String> {
    let http = client(args);
    let url = format!("{}/counter/d2/increment/http", args.server);
    let tally = Arc::new(Mutex::new(Tally::new()));
    let t = tally.clone();
    fan_out(args.count, args.concurrency, move |_| {
        let (http, url, tally) = (http.clone(), url.clone(), t.clone());
        async move {
            let sent = epoch_ms();
            let response = http.post(&url).send().await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("{url} answered {}", response.status()));
            }
            let _ = response.bytes().await;
            tally.lock().unwrap().record(sent, epoch_ms());
            Ok(())
        }
    })
    .await?;
    Ok(Arc::try_unwrap(tally)
        .ok()
        .expect("tasks done")
        .into_inner()
        .unwrap())
}

async fn queued(args: &Args) -> Result<Tally, String> {
    let http = client(args);
    let url = format!("{}/counter/d2/increment/async", args.server);
    let accepted: Arc<Mutex<Vec<(String, f64)>>> = Default::default();
    let a = accepted.clone();
    let h = http.clone();
    fan_out(args.count, args.concurrency, move |_| {
        let (http, url, accepted) = (h.clone(), url.clone(), a.clone());
        async move {
            let response = http
                .post(&url)
                .header("prefer", "respond-async")
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if response.status().as_u16() != 202 {
                return Err(format!("{url} answered {}", response.status()));
            }
            let at = epoch_ms();
            let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
            let id = body["id"].as_str().ok_or("no id in the 202")?.to_string();
            accepted.lock().unwrap().push((id, at));
            Ok(())
        }
    })
    .await?;
    // Wait for the queue to drain, then read each record's finish time (not timed).
    let accepted = std::mem::take(&mut *accepted.lock().unwrap());
    let waiting = format!("{}/metrics", args.server);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let text = http
            .get(&waiting)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let depth: f64 = text
            .lines()
            // In a cluster, what waits in the cluster's queue too.
            .filter(|l| {
                l.starts_with("kindling_async_queue_depth{")
                    || l.starts_with("kindling_async_cluster_queue_pending ")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if depth == 0.0 {
            break;
        }
        if Instant::now() > deadline {
            return Err("the queue did not drain in 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tally = Arc::new(Mutex::new(Tally::new()));
    let accepted = Arc::new(accepted);
    let (t, acc, server) = (tally.clone(), accepted.clone(), args.server.clone());
    fan_out(accepted.len(), 16, move |i| {
        let (http, tally, accepted, server) =
            (http.clone(), t.clone(), acc.clone(), server.clone());
        async move {
            let (id, at) = &accepted[i];
            let record: serde_json::Value = http
                .get(format!("{server}/v1/invocations/{id}"))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            if record["state"] != "succeeded" {
                return Err(format!("invocation {id} is {}", record["state"]));
            }
            let finished = record["finished_at"].as_str().ok_or("no finished_at")?;
            let done = chrono::DateTime::parse_from_rfc3339(finished)
                .map_err(|e| e.to_string())?
                .timestamp_millis() as f64;
            tally.lock().unwrap().record(*at, done);
            Ok(())
        }
    })
    .await?;
    Ok(Arc::try_unwrap(tally)
        .ok()
        .expect("tasks done")
        .into_inner()
        .unwrap())
}

async fn jetstream(args: &Args) -> Result<Tally, String> {
    use async_nats::jetstream;
    let client = async_nats::connect(args.nats.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let js = jetstream::new(client.clone());
    js.get_or_create_stream(jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.in".into()],
        ..Default::default()
    })
    .await
    .map_err(|e| format!("stream BENCH: {e}"))?;
    let mut replies = client
        .subscribe("bench.done")
        .await
        .map_err(|e| e.to_string())?;
    let published: Arc<Mutex<HashMap<u64, f64>>> = Default::default();
    let count = args.count;
    let collector = tokio::spawn(async move {
        let mut done: Vec<(u64, f64)> = Vec::with_capacity(count);
        while done.len() < count {
            let Ok(Some(reply)) =
                tokio::time::timeout(Duration::from_secs(60), replies.next()).await
            else {
                return Err(format!("{} of {count} replies arrived", done.len()));
            };
            let at = epoch_ms();
            if let Some(seq) = reply
                .headers
                .as_ref()
                .and_then(|h| h.get("Kindling-Message-Id"))
                .and_then(|v| v.as_str().parse::<u64>().ok())
            {
                done.push((seq, at));
            }
        }
        Ok(done)
    });
    let js2 = js.clone();
    let p = published.clone();
    fan_out(args.count, args.concurrency, move |i| {
        let (js, published) = (js2.clone(), p.clone());
        async move {
            let ack = js
                .publish("bench.in", format!("message {i}").into())
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            published.lock().unwrap().insert(ack.sequence, epoch_ms());
            Ok(())
        }
    })
    .await?;
    let done = collector.await.map_err(|e| e.to_string())??;
    Ok(pair(&published.lock().unwrap(), done))
}

/// Matches completions to when each message was accepted.
fn pair<K: std::hash::Hash + Eq>(accepted: &HashMap<K, f64>, done: Vec<(K, f64)>) -> Tally {
    let mut tally = Tally::new();
    for (key, at) in done {
        if let Some(accepted) = accepted.get(&key) {
            tally.record(*accepted, at);
        }
    }
    tally
}

async fn redis_streams(args: &Args) -> Result<Tally, String> {
    let redis = redis::Client::open(args.redis.as_str()).map_err(|e| e.to_string())?;
    let writer = redis
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let mut reader = redis
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let start: Vec<redis::Value> = redis::cmd("XREVRANGE")
        .arg("bench-done")
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut reader)
        .await
        .map_err(|e| e.to_string())?;
    let mut last = match start.first() {
        Some(redis::Value::Array(entry)) => match entry.first() {
            Some(id) => redis::from_redis_value_ref::<String>(id).map_err(|e| e.to_string())?,
            None => "0".into(),
        },
        _ => "0".into(),
    };
    let added: Arc<Mutex<HashMap<String, f64>>> = Default::default();
    let count = args.count;
    let collector = tokio::spawn(async move {
        let mut done: Vec<(String, f64)> = Vec::with_capacity(count);
        while done.len() < count {
            let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1000)
                .arg("BLOCK")
                .arg(60_000)
                .arg("STREAMS")
                .arg("bench-done")
                .arg(&last)
                .query_async(&mut reader)
                .await
                .map_err(|e| e.to_string())?;
            let Some(reply) = reply else {
                return Err(format!("{} of {count} replies arrived", done.len()));
            };
            let at = epoch_ms();
            for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                last = entry.id.clone();
                if let Some(id) = entry.map.get("id") {
                    let id: String = redis::from_redis_value_ref(id).map_err(|e| e.to_string())?;
                    done.push((id, at));
                }
            }
        }
        Ok(done)
    });
    let a = added.clone();
    fan_out(args.count, args.concurrency, move |i| {
        let (mut conn, added) = (writer.clone(), a.clone());
        async move {
            let id: String = redis::cmd("XADD")
                .arg("bench")
                .arg("*")
                .arg("body")
                .arg(format!("entry {i}"))
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            added.lock().unwrap().insert(id, epoch_ms());
            Ok(())
        }
    })
    .await?;
    let done = collector.await.map_err(|e| e.to_string())??;
    Ok(pair(&added.lock().unwrap(), done))
}
