//! `/dashboard` in a real browser: headless Chromium (Debian's `chromium`, installed by
//! scripts/setup.sh) loads the page while load runs; the numbers it shows move, agree with
//! `/metrics`, and a function's page shows its versions, limits and logs.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kindling_test_support::{Server, example};

use crate::{fresh_server, kindling, path_str};

/// The page's DOM after Chromium has run it for `budget_ms` of virtual time. Virtual time
/// stands still while requests are in flight, so every timer tick really fetched `/metrics`.
fn dump_dom(url: &str, budget_ms: u64) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--virtual-time-budget={budget_ms}"),
            "--dump-dom",
            url,
        ])
        .stderr(Stdio::null())
        .output()
        .expect("chromium runs (scripts/setup.sh installs Debian's chromium)");
    assert!(output.status.success(), "chromium failed: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The value of `attribute` on the first tag that has `marker` in it.
fn attribute(dom: &str, marker: &str, attribute: &str) -> Option<String> {
    let start = dom.find(marker)?;
    let tag_start = dom[..=start].rfind('<')?;
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>')?];
    let key = format!("{attribute}=\"");
    let at = tag.find(&key)? + key.len();
    Some(tag[at..at + tag[at..].find('"')?].to_string())
}

fn scrape(server: &Server) -> (f64, f64) {
    let text = String::from_utf8(
        Command::new("curl")
            .args(["-fsS", &server.url("/metrics")])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .filter_map(|line| line.strip_prefix(series))
            .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        value("kindling_uptime_seconds"),
        value(r#"kindling_requests_total{class="2xx",function="hello""#),
    )
}

struct Load(Child);

impl Load {
    fn start(url: &str) -> Self {
        Self(
            Command::new(kindling())
                .args([
                    "bench",
                    url,
                    "--rate",
                    "100",
                    "--duration",
                    "300s",
                    "--json",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_dashboard_shows_live_numbers_that_match_the_metrics() {
    let (_dir, server) = fresh_server(&[]);
    server
        .cli(&["deploy", "hello", path_str(&example("hello"))])
        .ok();
    server
        .cli(&["deploy", "greet", path_str(&example("wagi-hello"))])
        .ok();
    let _load = Load::start(&server.url("/hello/"));
    let _logs = Load::start(&server.url("/greet/from-the-test"));
    let started = Instant::now();
    while scrape(&server).1 < 50.0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no load arrived"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let before = scrape(&server);
    let dom = dump_dom(&server.url("/dashboard"), 6000);
    let after = scrape(&server);
    let samples: u32 = attribute(&dom, "<body", "data-samples")
        .expect("the page ran")
        .parse()
        .unwrap();
    assert!(samples >= 3, "the page sampled /metrics {samples} times");
    let row = r#"data-function="hello""#;
    let rps: f64 = attribute(&dom, row, "data-rps").unwrap().parse().unwrap();
    let total: f64 = attribute(&dom, row, "data-total").unwrap().parse().unwrap();
    // The numbers moved, and agree with what /metrics said around the same time.
    assert!(rps > 0.0, "{dom}");
    assert!(
        (before.1..=after.1).contains(&total),
        "the page's count {total} is not between the scrapes around it ({} and {})",
        before.1,
        after.1
    );
    let measured = (after.1 - before.1) / (after.0 - before.0);
    assert!(
        rps > measured / 2.0 && rps < measured * 2.0,
        "the page shows {rps} req/s, /metrics {measured}"
    );
    assert!(dom.contains(r#"data-function="greet""#));

    // A function's own page: versions, limits, logs.
    let dom = dump_dom(&server.url("/dashboard#/fn/greet"), 4000);
    assert!(dom.contains(r#"<h1 id="fn-name">greet</h1>"#), "{dom}");
    assert!(dom.contains("<td>v1</td>"), "{dom}");
    assert!(dom.contains("<dt>memory</dt>"), "{dom}");
    assert!(dom.contains("handled GET /from-the-test"), "{dom}");
}
