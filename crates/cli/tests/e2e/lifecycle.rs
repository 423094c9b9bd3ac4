//! Deploy each example with the CLI, invoke it over HTTP, redeploy, roll back, delete,
//! restart without recompiling, and shut down gracefully.

use bytes::Bytes;
use futures::SinkExt;

use kindling_test_support::{example, test_program};

use crate::{fresh_server, path_str};

#[tokio::test(flavor = "multi_thread")]
async fn examples_deploy_invoke_redeploy_roll_back_delete() {
    let (_dir, server) = fresh_server(&[]);
    let http = reqwest::Client::new();

    let hello = example("hello");
    let out = server.cli(&["deploy", "hello", path_str(&hello)]);
    assert!(
        out.ok().contains("deployed hello version 1 (wasi-http"),
        "{out:?}"
    );
    let body = http
        .get(server.url("/hello/anything?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 200);
    let text = body.text().await.unwrap();
    assert!(text.contains("path: /anything?x=1"), "{text}");

    let wagi = example("wagi-hello");
    server.cli(&["deploy", "wagi", path_str(&wagi)]).ok();
    let response = http
        .post(server.url("/wagi/echo?name=kindling"))
        .body("ping")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("query: name=kindling") && text.contains("body: ping"),
        "{text}"
    );

    let c = example("c-hello");
    server.cli(&["deploy", "c", path_str(&c)]).ok();
    let response = http.get(server.url("/c/")).send().await.unwrap();
    assert_eq!(response.headers()["x-written-in"], "C");
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Hello from C on Kindling!")
    );

    // ls and inspect, as tables and as JSON.
    let table = server.cli(&["ls"]).ok().to_string();
    assert!(table.starts_with("NAME"), "{table}");
    for name in ["hello", "wagi", "c"] {
        assert!(table.contains(name), "{table}");
    }
    let list = server.cli(&["ls", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 3);
    let inspect = server.cli(&["inspect", "wagi", "--json"]).json();
    assert_eq!(inspect["kind"], "wagi");
    assert_eq!(inspect["state"], "warm");

    // Redeploy `hello` as the WAGI module, then roll back.
    server
        .cli(&["deploy", "hello", path_str(&wagi), "--env", "MODE=two"])
        .ok();
    let text = http
        .get(server.url("/hello/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("WAGI"), "{text}");
    let versions = server.cli(&["versions", "hello"]).ok().to_string();
    assert!(
        versions.lines().count() == 3 && versions.contains('*'),
        "{versions}"
    );
    assert!(
        server
            .cli(&["rollback", "hello"])
            .ok()
            .contains("now serves version 1")
    );
    let text = http
        .get(server.url("/hello/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "Hello from Kindling!\n");
    assert!(
        server
            .cli(&["rollback", "hello", "--to", "2"])
            .ok()
            .contains("version 2")
    );

    // invoke through the CLI.
    let out = server.cli(&["invoke", "wagi", "/x", "--data", "hi there"]);
    let text = out.ok();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("body: hi there"), "{text}");
    let json = server.cli(&["invoke", "hello", "--json"]).json();
    assert_eq!(json["status"], 200);

    // Delete.
    assert!(server.cli(&["rm", "c"]).ok().contains("deleted c"));
    let response = http.get(server.url("/c/")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let out = server.cli(&["inspect", "c"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no function named \"c\""), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_serves_at_once_from_the_artifact_cache() {
    let (dir, server) = fresh_server(&[]);
    for (name, file) in [("hello", example("hello")), ("c", example("c-hello"))] {
        let out = server.cli(&["deploy", name, path_str(&file)]);
        assert!(out.ok().contains("compiled in"), "{out:?}");
    }
    let artifacts = dir.path().join("data").join("artifacts");
    let before = modification_times(&artifacts);
    let compiled = before.iter().filter(|(name, _)| name.ends_with(".cwasm"));
    assert_eq!(compiled.count(), 2, "{before:?}");

    let server = server.restart(&[], &[]);
    for name in ["hello", "c"] {
        let function = server.cli(&["inspect", name, "--json"]).json();
        assert_eq!(function["state"], "cold", "loaded on demand: {function}");
        let status =
            kindling_test_support::get_status(server.addr(), &format!("/{name}/")).unwrap();
        assert_eq!(status, 200);
        let function = server.cli(&["inspect", name, "--json"]).json();
        assert_eq!(function["state"], "warm", "{name}: {function}");
        assert_eq!(function["load"]["source"], "cache", "{name}: {function}");
        assert_eq!(function["stats"]["cold_starts"], 1, "{name}: {function}");
    }
    assert_eq!(
        modification_times(&artifacts),
        before,
        "no artifact was rewritten"
    );
    assert!(
        server.log().contains("cold start"),
        "cold starts are logged"
    );
}

fn modification_times(dir: &std::path::Path) -> Vec<(String, std::time::SystemTime)> {
    let mut times: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, entry.metadata().unwrap().modified().unwrap())
        })
        .collect();
    times.sort();
    times
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_in_flight_requests_finish() {
    let (_dir, mut server) = fresh_server(&[]);
    let guest = test_program("http-wasip2");
    server.cli(&["deploy", "echo", path_str(&guest)]).ok();

    // A full-duplex echo: once the first chunk comes back, the request is provably inside
    // the guest. Only then is the server asked to stop; the request must still complete.
    let (mut chunks, mut response) = crate::wasi_http::duplex(server.addr(), "/echo/echo").await;
    chunks.send(Bytes::from_static(b"first ")).await.unwrap();
    assert_eq!(crate::wasi_http::next_data(&mut response).await, "first ");

    server.terminate();
    chunks.send(Bytes::from_static(b"second")).await.unwrap();
    assert_eq!(crate::wasi_http::next_data(&mut response).await, "second");
    drop(chunks);
    assert!(
        crate::wasi_http::next_data_opt(&mut response)
            .await
            .is_none(),
        "body ends cleanly"
    );

    let status = server.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
