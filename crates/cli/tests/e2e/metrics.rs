//! `/metrics` as Prometheus sees it: the exposition passes `promtool check metrics`, and a
//! real Prometheus server (Debian's `prometheus`, installed by scripts/setup.sh) scrapes the
//! node and answers a query with the number of requests the test sent.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kindling_test_support::{example, repo_root, test_program};

use crate::{curl, eventually, fresh_server, path_str};

fn metrics(server: &kindling_test_support::Server) -> String {
    let url = server.url("/metrics");
    curl(&["-fsS", "-D", "-", &url]).expect("GET /metrics answers")
}

/// The value of the sample line `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn the_exposition_passes_promtool_and_counts_what_happened() {
    let (dir, server) = fresh_server(&["--max-in-flight", "4"]);
    server
        .cli(&["deploy", "hello", path_str(&example("hello"))])
        .ok();
    for _ in 0..5 {
        let status = kindling_test_support::get_status(server.addr(), "/hello/").unwrap();
        assert_eq!(status, 200);
    }
    let status = kindling_test_support::get_status(server.addr(), "/nobody/").unwrap();
    assert_eq!(status, 404);
    // A guest that spins until its deadline runs 20 ms of CPU a request: after one long
    // request on the wall clock and two on the CPU clock it is marked heavy.
    server
        .cli(&[
            "deploy",
            "spinner",
            path_str(&test_program("hostile-http")),
            "--timeout",
            "20ms",
        ])
        .ok();
    for _ in 0..3 {
        let status = kindling_test_support::get_status(server.addr(), "/spinner/loop").unwrap();
        assert_eq!(status, 504);
    }
    // One request holds `slow`'s only slot; with no queue the next is refused.
    server
        .cli(&[
            "deploy",
            "slow",
            path_str(&test_program("http-wstd")),
            "--concurrency",
            "1",
            "--queue",
            "0",
        ])
        .ok();
    let addr = server.addr();
    let holder =
        std::thread::spawn(move || kindling_test_support::get_status(addr, "/slow/sleep/3000"));
    eventually(&server, "slow", "the first request is running", |f| {
        f["stats"]["in_flight"] == 1
    });
    assert_eq!(
        kindling_test_support::get_status(server.addr(), "/slow/").unwrap(),
        429
    );

    let response = metrics(&server);
    let (head, text) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool runs (scripts/setup.sh installs Debian's prometheus)");
    assert!(
        promtool.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );

    let hello = r#"{function="hello",version="1"}"#;
    assert_eq!(
        sample(
            text,
            r#"kindling_requests_total{class="2xx",function="hello",version="1"}"#
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(
            text,
            &format!("kindling_request_duration_seconds_count{hello}")
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(text, &format!("kindling_function_loaded{hello}")),
        Some(1.0)
    );
    assert!(sample(text, &format!("kindling_code_resident_bytes{hello}")).unwrap() > 0.0);
    assert_eq!(
        sample(text, &format!("kindling_function_heavy{hello}")),
        Some(0.0)
    );
    let spinner = r#"{function="spinner",version="1"}"#;
    assert_eq!(
        sample(text, &format!("kindling_function_heavy{spinner}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            text,
            &format!("kindling_function_heavy_marks_total{spinner}")
        ),
        Some(1.0)
    );
    assert_eq!(sample(text, "kindling_functions"), Some(3.0));
    assert!(sample(text, "process_resident_memory_bytes").unwrap() > 0.0);
    assert!(
        !text.contains("nobody"),
        "unknown names add no series: {text}"
    );
    let slow = r#"{function="slow",version="1"}"#;
    assert_eq!(
        sample(text, &format!("kindling_in_flight_requests{slow}")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            text,
            r#"kindling_rejected_requests_total{function="slow",reason="concurrency_limit"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            text,
            r#"kindling_requests_total{class="4xx",function="slow",version="1"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(holder.join().unwrap().unwrap(), 200);

    // Every metric the shipped Grafana dashboard queries is one the node exposes.
    let dashboard =
        std::fs::read_to_string(repo_root().join("deploy/grafana/kindling.json")).unwrap();
    let mut queried: Vec<&str> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("kindling_") || word.starts_with("process_"))
        .collect();
    queried.sort_unstable();
    queried.dedup();
    assert!(queried.len() >= 10, "{queried:?}");
    for name in queried {
        assert!(
            text.lines().any(|line| line.starts_with(name)),
            "the dashboard queries {name}, which /metrics does not expose"
        );
    }
}

/// A Prometheus server scraping `target` every second, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: kindling\n    \
                 static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (scripts/setup.sh installs Debian's prometheus)");
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// The first value of an instant query, once there is one.
    fn query(&self, query: &str) -> Option<f64> {
        let output = curl(&[
            "-fsS",
            "--get",
            &format!("http://127.0.0.1:{}/api/v1/query", self.port),
            "--data-urlencode",
            &format!("query={query}"),
        ])?;
        let answer: serde_json::Value = serde_json::from_str(&output).ok()?;
        answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_node_and_answers_queries() {
    let (_dir, server) = fresh_server(&[]);
    server
        .cli(&["deploy", "hello", path_str(&example("hello"))])
        .ok();
    for _ in 0..7 {
        assert_eq!(
            kindling_test_support::get_status(server.addr(), "/hello/").unwrap(),
            200
        );
    }
    let prometheus = Prometheus::start(&server.addr().to_string());
    let query = r#"sum(kindling_requests_total{job="kindling",function="hello"})"#;
    let started = Instant::now();
    loop {
        if let Some(value) = prometheus.query(query) {
            assert_eq!(value, 7.0, "Prometheus scraped another count");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "Prometheus never scraped the node"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let up = prometheus.query(r#"up{job="kindling"}"#);
    assert_eq!(up, Some(1.0));
}
