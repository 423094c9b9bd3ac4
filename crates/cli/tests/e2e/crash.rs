//! Crash safety: a server killed with SIGKILL in the middle of a deploy comes back serving the
//! previous version, with nothing of the interrupted deploy visible.

use kindling_test_support::{Server, example, get_status};

use crate::{kindling, path_str};

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_deploy_the_previous_version_serves_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let server = Server::start(&kindling(), &data, &[], &[]);
    server
        .cli(&["deploy", "hello", path_str(&example("hello"))])
        .ok();
    // Restart as a node whose deploys park after storing the module, before the commit.
    let mut server = server.restart(&[], &[("KINDLING_FAILPOINT", "deploy-before-commit")]);

    // Deploy version 2 in the background; it parks at the failpoint.
    let url = server.url("");
    let wagi = example("wagi-hello");
    let binary = kindling();
    let token = server.token().expect("the node made an admin token");
    let deploy = std::thread::spawn(move || {
        std::process::Command::new(binary)
            .args(["deploy", "hello", wagi.to_str().unwrap(), "--server", &url])
            .env("KINDLING_TOKEN", token)
            .output()
            .unwrap()
    });
    // The module file appears just before the failpoint: wait for it, then kill -9.
    let modules = data.join("modules");
    let wagi_bytes = std::fs::read(example("wagi-hello")).unwrap();
    let wagi_sha = sha256_hex(&wagi_bytes);
    wait_for(|| modules.join(format!("{wagi_sha}.wasm")).exists());
    server.kill();
    let output = deploy.join().unwrap();
    assert!(
        !output.status.success(),
        "the interrupted deploy must not report success"
    );

    let server = Server::start(&kindling(), &data, &[], &[]);
    assert_eq!(get_status(server.addr(), "/hello/").unwrap(), 200);
    let body = reqwest::get(server.url("/hello/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "Hello from Kindling!\n", "version 1 still serves");
    let versions = server.cli(&["versions", "hello", "--json"]).json();
    assert_eq!(
        versions.as_array().unwrap().len(),
        1,
        "no trace of version 2: {versions}"
    );
    assert!(
        !modules.join(format!("{wagi_sha}.wasm")).exists(),
        "the orphaned module file is collected at start-up"
    );
}

/// Kills the server at many different moments of a stream of deploys; after every restart the
/// registry is readable, the function serves one complete version, and versions are dense.
#[tokio::test(flavor = "multi_thread")]
async fn kills_at_random_moments_never_corrupt_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let modules = [example("hello"), example("wagi-hello"), example("c-hello")];
    let mut server = Server::start(&kindling(), &data, &[], &[]);
    server.cli(&["deploy", "f", path_str(&modules[0])]).ok();

    for round in 0..8u64 {
        let url = server.url("");
        let file = modules[(round as usize + 1) % modules.len()].clone();
        let binary = kindling();
        let token = server.token().expect("the node made an admin token");
        let deploy = std::thread::spawn(move || {
            std::process::Command::new(binary)
                .args(["deploy", "f", file.to_str().unwrap(), "--server", &url])
                .env("KINDLING_TOKEN", token)
                .output()
                .unwrap()
        });
        // Kill at a different point of the deploy each round (0–70 ms into it).
        std::thread::sleep(std::time::Duration::from_millis(round * 10));
        server.kill();
        let _ = deploy.join();

        server = Server::start(&kindling(), &data, &[], &[]);
        let status = get_status(server.addr(), "/f/").unwrap();
        assert_eq!(
            status, 200,
            "round {round}: the function must serve after a crash"
        );
        let versions = server.cli(&["versions", "f", "--json"]).json();
        let numbers: Vec<u64> = versions
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = (1..=numbers.len() as u64).rev().collect();
        assert_eq!(numbers, expected, "round {round}: versions stay dense");
    }
}

fn wait_for(condition: impl Fn() -> bool) {
    kindling_test_support::wait_for("the condition", std::time::Duration::from_millis(5), || {
        if condition() {
            Ok(())
        } else {
            Err("false".into())
        }
    });
}

fn sha256_hex(bytes: &[u8]) -> String {
    kindling_registry::sha256_hex(bytes)
}
