//! End-to-end tests: the real `kindling` binary serving on a real port, driven over HTTP and
//! through its own CLI, with guests built from source.

mod advise;
mod api_contract;
mod async_invocations;
mod bad_input;
mod cluster;
mod cluster_queue;
mod crash;
mod dashboard;
mod durability;
mod edge;
mod edge_netns;
mod fleet;
mod hostile;
mod hostile_calls;
mod imports;
mod keda;
mod keyvalue;
mod kubernetes;
mod lifecycle;
mod limits;
mod logs;
mod metrics;
mod scheduling;
mod security;
mod sim;
mod sqlite;
mod traces;
mod triggers;
mod variables;
mod wasi_http;
mod wasi_p3;

use std::path::PathBuf;
use std::time::Duration;

use kindling_test_support::Server;

/// The binary under test.
fn kindling() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kindling"))
}

/// A fresh server with its own data directory, which lives as long as the returned guard.
fn fresh_server(args: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&kindling(), &dir.path().join("data"), args, &[]);
    (dir, server)
}

fn path_str(path: &std::path::Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Polls `inspect --json` until `condition` holds on it.
fn eventually(
    server: &Server,
    name: &str,
    what: &str,
    condition: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    kindling_test_support::wait_for(what, Duration::from_millis(50), || {
        let function = server.cli(&["inspect", name, "--json"]).json();
        if condition(&function) {
            Ok(function)
        } else {
            Err(function.to_string())
        }
    })
}

/// What `curl` with `args` printed; `None` when it failed (with `-f`, HTTP errors too).
fn curl(args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("curl")
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}
