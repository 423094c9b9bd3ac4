//! `/dashboard` in a real browser: headless Chromium (Debian's `chromium`, installed by
//! scripts/setup.sh) loads the page while load runs; the numbers it shows move, agree with
//! `/metrics`, and a function's page shows its versions, limits and logs.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kindling_test_support::{Server, example, test_program};

use crate::{curl, fresh_server, kindling, path_str};

/// The page's DOM after Chromium has run it for `budget_ms` of virtual time. Virtual time
/// stands still while requests are in flight, so every timer tick really fetched `/metrics`.
pub(crate) fn dump_dom(url: &str, budget_ms: u64) -> String {
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
    let text = curl(&["-fsS", &server.url("/metrics")]).expect("GET /metrics answers");
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
        .cli(&[
            "deploy",
            "greet",
            path_str(&example("wagi-hello")),
            "--schedule",
            "0 0 1 1 *",
            "--schedule-tz",
            "Europe/Paris",
        ])
        .ok();
    server
        .cli(&[
            "deploy",
            "state",
            path_str(&test_program("spin-kv")),
            "--key-value",
            "default",
            "--sqlite",
            "default",
        ])
        .ok();
    curl(&[
        "-fsS",
        "-X",
        "PUT",
        "--data-binary",
        "v",
        &server.url("/state/set/k"),
    ])
    .unwrap();
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
    let number = |name: &str| -> f64 { attribute(&dom, row, name).unwrap().parse().unwrap() };
    let (rps, total) = (number("data-rps"), number("data-total"));
    let (from, to, from_total) = (
        number("data-from"),
        number("data-to"),
        number("data-from-total"),
    );
    // The numbers moved: requests arrived during the page's window.
    assert!(rps > 0.0 && total > from_total, "{dom}");
    // They agree with /metrics: the counts the page read lie between the test's own scrapes
    // around it, at uptimes between theirs, and the rate shown is exactly those counts over
    // that time.
    assert!(
        before.1 <= from_total && total <= after.1,
        "the page's counts {from_total}..{total} are not between the scrapes around it ({} and {})",
        before.1,
        after.1
    );
    assert!(
        before.0 <= from && to <= after.0,
        "{from}..{to} vs {before:?}..{after:?}"
    );
    let expected = (total - from_total) / (to - from);
    assert!(
        (rps - expected).abs() < 1e-6 * expected.max(1.0),
        "the page shows {rps} req/s; its samples say {expected}"
    );
    assert!(dom.contains(r#"data-function="greet""#));
    // The guests' stores and databases, with their sizes.
    let kv = dom
        .split(r#"data-store="key-value default/default""#)
        .nth(1)
        .expect("the key-value store is listed");
    assert!(
        kv.starts_with("><td>key-value</td><td>default/default</td><td>1</td>"),
        "{kv}"
    );
    assert!(
        dom.contains(r#"data-store="SQLite default/default""#),
        "the SQLite database is listed: {dom}"
    );

    // A function's page needs the admin API: without a token it asks for one.
    let dom = dump_dom(&server.url("/dashboard#/fn/greet"), 3000);
    assert!(
        dom.contains(r#"<form id="token-prompt">"#),
        "the prompt shows: {dom}"
    );
    assert!(dom.contains("needs an API token"), "{dom}");
    assert!(!dom.contains("<td>v1</td>"), "{dom}");
    // With a read token in the address: versions, limits, logs.
    let made = server
        .cli(&["token", "create", "viewer", "--scope", "read", "--json"])
        .json();
    let token = made["token"].as_str().unwrap();
    let dom = dump_dom(
        &format!("{}&token={token}", server.url("/dashboard#/fn/greet")),
        4000,
    );
    assert!(dom.contains(r#"<form id="token-prompt" hidden"#), "{dom}");
    assert!(dom.contains(r#"<h1 id="fn-name">greet</h1>"#), "{dom}");
    assert!(dom.contains("<td>v1</td>"), "{dom}");
    assert!(dom.contains("<dt>memory</dt>"), "{dom}");
    // Its schedule, with the next run (midnight on New Year's Day in Paris, in UTC).
    assert!(
        dom.contains("<dt>schedule 0 0 1 1 * (Europe/Paris)</dt>"),
        "{dom}"
    );
    assert!(dom.contains("-12-31T23:00:00.000Z"), "{dom}");
    assert!(dom.contains("handled GET /from-the-test"), "{dom}");
}
