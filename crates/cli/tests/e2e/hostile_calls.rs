//! Hostile guests that attack through what they may legitimately use: calls to other functions
//! (`http://{name}.fn.local/`, or the node's own socket) and a WAGI module's CGI output.

use kindling_test_support::{Server, test_program};

use crate::{curl, fresh_server, path_str};

fn get(server: &Server, path: &str) -> String {
    curl(&["-sS", "-w", "\n%{http_code}", &server.url(path)]).expect("curl runs")
}

/// One counter of `kindling_requests_total` for `function`.
fn requests(metrics: &str, function: &str, class: &str) -> u64 {
    let series =
        format!(r#"kindling_requests_total{{class="{class}",function="{function}",version="1"}} "#);
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[test]
fn fn_local_reaches_functions_only_never_the_node_s_own_routes() {
    let (_dir, server) = fresh_server(&[]);
    server
        .cli(&[
            "deploy",
            "victim",
            path_str(&test_program("http-wasip2")),
            "--env",
            "SECRET=s3cret",
        ])
        .ok();
    server
        .cli(&[
            "deploy",
            "attacker",
            path_str(&test_program("hostile-http")),
            "--allow-outbound",
            "http://*.fn.local",
        ])
        .ok();
    // A function is reachable: that is what fn.local is for.
    assert_eq!(
        get(&server, "/attacker/outbound?victim.fn.local/env/SECRET"),
        "status: 200\n\n200"
    );
    // The admin API, metrics, dashboard and probes are not, whatever the path.
    for reserved in [
        "v1.fn.local/functions/victim",
        "v1.fn.local/functions",
        "metrics.fn.local/",
        "dashboard.fn.local/",
        "healthz.fn.local/",
        "readyz.fn.local/",
    ] {
        assert_eq!(
            get(&server, &format!("/attacker/outbound?{reserved}")),
            "status: 404\n\n200",
            "{reserved}"
        );
    }
    let victim = server.cli(&["inspect", "victim", "--json"]).json();
    assert_eq!(victim["name"], "victim", "the victim is still deployed");
}

#[test]
fn a_fan_out_of_calls_is_bounded_by_the_request_s_budget() {
    let (_dir, server) = fresh_server(&[]);
    server
        .cli(&[
            "deploy",
            "fan",
            path_str(&test_program("hostile-http")),
            "--allow-outbound",
            "http://fan.fn.local",
        ])
        .ok();
    // Three calls each, eight deep: 9,841 invocations if nothing stopped it.
    let answer = get(&server, "/fan/fan/3/8?fan.fn.local");
    assert!(answer.ends_with("\n200"), "{answer}");
    let fan = server.cli(&["inspect", "fan", "--json"]).json();
    assert_eq!(
        fan["stats"]["invocations"], 1000,
        "the root and 999 calls ran, as the budget allows: {fan}"
    );
    let metrics = get(&server, "/metrics");
    assert!(
        requests(&metrics, "fan", "5xx") > 0,
        "the rest were refused: {metrics}"
    );
}

#[test]
fn a_loop_through_the_node_s_own_socket_is_stopped_at_the_depth_limit() {
    let (_dir, server) = fresh_server(&[]);
    let port = server.addr().port();
    server
        .cli(&[
            "deploy",
            "sock",
            path_str(&test_program("hostile-http")),
            "--allow-outbound",
            &format!("http://127.0.0.1:{port}"),
        ])
        .ok();
    // Twelve calls deep if nothing stopped it, each over the network to this node.
    let hop = format!("127.0.0.1:{port}/sock/outbound?");
    let path = format!("/sock/outbound?{}", hop.repeat(12));
    assert_eq!(get(&server, &path), "status: 200\n\n200");
    let metrics = get(&server, "/metrics");
    // The ninth call was refused with 508; everyone above it answered.
    assert_eq!(requests(&metrics, "sock", "5xx"), 1, "{metrics}");
    assert_eq!(requests(&metrics, "sock", "2xx"), 9, "{metrics}");
}

#[test]
fn wagi_output_cannot_frame_the_response() {
    let (_dir, server) = fresh_server(&[]);
    server
        .cli(&["deploy", "cgi", path_str(&test_program("hostile-wagi"))])
        .ok();
    // What the module wrote after its headers is the body, whole, framed by the node.
    for (path, body) in [
        (
            "/cgi/smuggle",
            "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
        ),
        ("/cgi/short-length", "much longer than two"),
        ("/cgi/chunked", "not chunked at all"),
    ] {
        let head = curl(&["-sS", "-D", "-", "-o", "/dev/null", &server.url(path)]).unwrap();
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        assert!(
            head.contains(&format!("content-length: {}\r\n", body.len())),
            "{path}: {head}"
        );
        assert!(!head.contains("transfer-encoding"), "{path}: {head}");
        let got = curl(&["-sS", &server.url(path)]).unwrap();
        assert_eq!(got, body, "{path}");
    }
    // One request, one response: the smuggled text never reads as a second one.
    let two = curl(&[
        "-sS",
        "-w",
        "|%{num_connects}|%{http_code}",
        &server.url("/cgi/smuggle"),
        &server.url("/cgi/chunked"),
    ])
    .unwrap();
    assert_eq!(
        two, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled|1|200not chunked at all|0|200",
        "the second request reused the connection and got its own answer"
    );
    for (path, needle) in [
        ("/cgi/many-headers", "header lines"),
        ("/cgi/long-header", "bytes, more than the"),
        (
            "/cgi/fail-after-output",
            "exited with status 3 after writing",
        ),
    ] {
        let answer = get(&server, path);
        assert!(answer.ends_with("\n502"), "{path}: {answer}");
        assert!(answer.contains("bad_cgi_response"), "{path}: {answer}");
        assert!(answer.contains(needle), "{path}: {answer}");
    }
}
