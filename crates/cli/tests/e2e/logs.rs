//! `kindling logs` over a real node: a WAGI function's stderr lines, each with the request
//! that wrote it, filtered by time and count, followed live, and a clear refusal for an unknown
//! function.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kindling_test_support::example;

use crate::{fresh_server, kindling, path_str};

#[test]
fn guest_output_is_kept_per_function_and_followed_live() {
    let (_dir, server) = fresh_server(&[]);
    server
        .cli(&["deploy", "greet", path_str(&example("wagi-hello"))])
        .ok();
    for path in ["/greet/a", "/greet/b"] {
        assert_eq!(
            kindling_test_support::get_status(server.addr(), path).unwrap(),
            200
        );
    }

    let output = server.cli(&["logs", "greet", "--json", "--since", "1h"]);
    let lines: Vec<serde_json::Value> = output
        .ok()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["handled GET /a", "handled GET /b"]);
    assert!(lines.iter().all(|l| l["stream"] == "stderr"));
    assert_ne!(lines[0]["request_id"], lines[1]["request_id"]);

    let newest = server.cli(&["logs", "greet", "--lines", "1"]);
    let newest = newest.ok();
    assert_eq!(newest.lines().count(), 1);
    assert!(
        newest.trim_end().ends_with("stderr handled GET /b"),
        "{newest}"
    );

    // Follow: a line written after the command started shows up.
    let mut follower = Command::new(kindling())
        .args(["logs", "greet", "--follow", "--since", "1s"])
        .env("KINDLING_SERVER", server.url(""))
        .env("KINDLING_TOKEN", server.token().unwrap())
        .env_remove("KINDLING_JSON")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (sender, received) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if sender.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let addr = server.addr();
    let mut seen = false;
    for _ in 0..60 {
        kindling_test_support::get_status(addr, "/greet/live").unwrap();
        if let Ok(line) = received.recv_timeout(Duration::from_secs(1))
            && line.ends_with("handled GET /live")
        {
            seen = true;
            break;
        }
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert!(seen, "--follow never printed the new line");

    let missing = server.cli(&["logs", "nobody"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains("no function named \"nobody\""),
        "{missing:?}"
    );
}
