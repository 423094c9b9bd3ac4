//! The edge fault test on separate network stacks: `tests/netns/edge-partition.sh` makes a
//! hub and three sites in network namespaces linked by veth pairs, cuts one site's uplink for
//! 60 s while both sides write, kills that site's node while it is offline, and checks that
//! every write reaches every node, the counter is exact and the conflicting key has one
//! winner. Namespaces need root, as CI runs; elsewhere the test says it did not run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kindling_test_support::{example, repo_root};

use crate::kindling;

/// The script's own bound: setup, the 60 s cut, convergence, teardown.
const LIMIT: Duration = Duration::from_secs(300);

#[test]
fn a_site_cut_off_for_a_minute_loses_nothing_on_separate_network_stacks() {
    let root = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        eprintln!("edge_netns: not run: network namespaces need root (CI runs as root)");
        return;
    }
    let out = tempfile::NamedTempFile::new().unwrap();
    // One open file for both streams, so that they append to each other.
    let file = out.reopen().unwrap();
    let mut child = Command::new("bash")
        .arg(repo_root().join("tests/netns/edge-partition.sh"))
        .env("kindling", kindling())
        .env("wasm", example("learning-progress"))
        .env("EDGE_ID", format!("t{}", std::process::id() % 100_000))
        .env("EDGE_CUT_SECONDS", "60")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .expect("run bash");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            // TERM lets the script's trap remove its namespaces.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(out.path()).unwrap_or_default();
    eprintln!("{log}");
    assert!(
        status.is_some_and(|s| s.success()) && log.contains("edge-partition: ok"),
        "the edge fault test failed (or ran past {LIMIT:?}): {log}"
    );
}
