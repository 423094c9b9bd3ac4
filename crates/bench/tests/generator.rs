//! The generator against a real HTTP server on a real port: every scheduled request is sent
//! and counted, statuses are tallied, and a server that stops answering shows up as timeouts
//! and backlog rather than as missing requests.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kindling_bench::{Load, Phase, Progress, Target, run_phase};

/// Serves `/ok` with 200, `/teapot` with 418 and `/stall` never; counts requests.
async fn server() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let (addr, seen, _) = recording_server().await;
    (addr, seen)
}

/// [`server`], also keeping every path and query it was sent.
async fn recording_server() -> (
    std::net::SocketAddr,
    Arc<AtomicU64>,
    Arc<Mutex<Vec<String>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let paths = Arc::new(Mutex::new(Vec::new()));
    let (counter, recorded) = (seen.clone(), paths.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (counter, recorded) = (counter.clone(), recorded.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let path = request.uri().path_and_query().map(|p| p.to_string());
                    recorded.lock().unwrap().extend(path);
                    async move {
                        match request.uri().path() {
                            "/stall" => std::future::pending::<()>().await,
                            "/teapot" => {
                                return Ok::<_, Infallible>(
                                    http::Response::builder()
                                        .status(418)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap(),
                                );
                            }
                            _ => {}
                        }
                        Ok(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen, paths)
}

fn target(addr: std::net::SocketAddr, path: &str, timeout: Duration) -> Target {
    let mut target = Target::get(format!("http://{addr}{path}").parse().unwrap());
    target.timeout = timeout;
    target
}

#[tokio::test(flavor = "multi_thread")]
async fn open_loop_sends_every_scheduled_request() {
    let (addr, seen) = server().await;
    let phase = Phase {
        name: "open".into(),
        load: Load::Open {
            from: 200.0,
            to: 200.0,
            connections: 8,
        },
        duration: Duration::from_secs(1),
    };
    let progress = Arc::new(Progress::default());
    let report = run_phase(
        &target(addr, "/ok", Duration::from_secs(5)),
        &phase,
        progress.clone(),
        None,
    )
    .await;
    assert_eq!(report.scheduled, Some(200));
    assert_eq!(report.sent, 200);
    assert_eq!(report.completed, 200);
    assert_eq!(report.statuses.get(&200), Some(&200));
    assert_eq!(seen.load(Ordering::Relaxed), 200);
    assert_eq!(progress.completed.load(Ordering::Relaxed), 200);
    assert_eq!(report.latency["2xx"].count, 200);
    assert_eq!(report.failed(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_loop_counts_statuses_by_class() {
    let (addr, seen) = server().await;
    let phase = Phase {
        name: "closed".into(),
        load: Load::Closed { connections: 4 },
        duration: Duration::from_millis(300),
    };
    let report = run_phase(
        &target(addr, "/teapot", Duration::from_secs(5)),
        &phase,
        Arc::new(Progress::default()),
        Some(std::process::id()),
    )
    .await;
    assert!(report.completed > 0);
    assert_eq!(report.statuses.get(&418), Some(&report.completed));
    assert_eq!(report.latency["4xx"].count, report.completed);
    assert!(!report.latency.contains_key("2xx"));
    assert_eq!(seen.load(Ordering::Relaxed), report.sent);
    assert!(report.server.unwrap().peak_rss_kib.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_server_shows_as_timeouts_and_backlog() {
    let (addr, _) = server().await;
    // One connection, 20 requests due in 200 ms, each waiting forever for an answer: the
    // first times out, and the rest are past the give-up point before they can be sent.
    let phase = Phase {
        name: "stall".into(),
        load: Load::Open {
            from: 100.0,
            to: 100.0,
            connections: 1,
        },
        duration: Duration::from_millis(200),
    };
    let report = run_phase(
        &target(addr, "/stall", Duration::from_millis(300)),
        &phase,
        Arc::new(Progress::default()),
        None,
    )
    .await;
    assert_eq!(report.scheduled, Some(20));
    assert_eq!(report.completed, 0);
    let timeouts = report.errors.get("timeout").copied().unwrap_or(0);
    assert!(timeouts >= 1, "{report:?}");
    assert_eq!(
        timeouts + report.backlog,
        20,
        "every scheduled request is accounted for"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_numbered_path_names_every_request_once() {
    let (addr, _, paths) = recording_server().await;
    let mut target = target(addr, "/ok/0?x=0", Duration::from_secs(5));
    target.numbered_path = Some("/ok/{n}?x={n}".into());
    let phase = Phase {
        name: "numbered".into(),
        load: Load::Open {
            from: 100.0,
            to: 100.0,
            connections: 4,
        },
        duration: Duration::from_millis(500),
    };
    let report = run_phase(&target, &phase, Arc::new(Progress::default()), None).await;
    assert_eq!(report.completed, 50);
    let mut paths = paths.lock().unwrap().clone();
    paths.sort_by_key(|p| p[4..p.find('?').unwrap()].parse::<u64>().unwrap());
    let expected: Vec<String> = (0..50).map(|n| format!("/ok/{n}?x={n}")).collect();
    assert_eq!(paths, expected);
}
