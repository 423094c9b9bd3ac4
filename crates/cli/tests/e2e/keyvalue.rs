//! Key-value stores for guests, against both backends: the Spin SDK's own key-value calls and
//! `wasi:keyvalue` (both drafts) from components built from source, grants, namespaces,
//! atomic counters under concurrency, limits, and data that survives `kill -9`.

use futures::StreamExt;
use kindling_test_support::{RedisServer, Server, test_program};

use crate::{kindling, path_str};

/// The node's data directory, and a runtime config keeping `default` on `backend`.
enum Backend {
    Sqlite,
    Redis(RedisServer),
}

impl Backend {
    fn runtime_config(&self, extra: &str) -> String {
        match self {
            Self::Sqlite => format!("[key_value_store.default]\ntype = \"spin\"\n{extra}"),
            Self::Redis(redis) => format!(
                "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n{extra}",
                redis.url()
            ),
        }
    }
}

fn backends(dir: &std::path::Path) -> Vec<(&'static str, Backend)> {
    let redis = dir.join("redis");
    std::fs::create_dir_all(&redis).unwrap();
    vec![
        ("sqlite", Backend::Sqlite),
        ("redis", Backend::Redis(RedisServer::start(&redis))),
    ]
}

fn start(dir: &std::path::Path, name: &str, config: &str) -> (std::path::PathBuf, Server) {
    let file = dir.join(format!("{name}-runtime-config.toml"));
    std::fs::write(&file, config).unwrap();
    let data = dir.join(format!("{name}-data"));
    let server = Server::start(
        &kindling(),
        &data,
        &["--runtime-config", path_str(&file)],
        &[],
    );
    (file, server)
}

fn request(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let mut args = vec!["-sS", "-X", method, "-w", "\n%{http_code}"];
    if let Some(body) = body {
        args.extend(["--data-binary", body]);
    }
    args.push(url);
    let out = crate::curl(&args).expect("curl runs");
    let (body, status) = out.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_string())
}

#[test]
fn spin_sdk_key_value_calls_work_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    for (name, backend) in backends(dir.path()) {
        let (config, mut server) = start(dir.path(), name, &backend.runtime_config(""));
        let kv = test_program("spin-kv");
        for (function, namespace) in [("app", "team-a"), ("peer", "team-a"), ("other", "team-b")] {
            server
                .cli(&[
                    "deploy",
                    function,
                    path_str(&kv),
                    "--key-value",
                    "default",
                    "--namespace",
                    namespace,
                ])
                .ok();
        }
        let url = |path: &str| server.url(path);
        assert_eq!(
            request("GET", &url("/app/get/greeting"), None).0,
            404,
            "{name}"
        );
        assert_eq!(
            request("PUT", &url("/app/set/greeting"), Some("hello")),
            (200, "set\n".into())
        );
        assert_eq!(
            request("GET", &url("/app/get/greeting"), None),
            (200, "hello".into()),
            "{name}"
        );
        assert_eq!(
            request("GET", &url("/app/exists/greeting"), None).1,
            "true\n"
        );
        request("PUT", &url("/app/set/second"), Some("2"));
        assert_eq!(
            request("GET", &url("/app/keys"), None).1,
            "greeting\nsecond\n",
            "{name}"
        );
        // Functions of one namespace granted the same label share it; another namespace does not.
        assert_eq!(
            request("GET", &url("/peer/get/greeting"), None),
            (200, "hello".into()),
            "{name}"
        );
        assert_eq!(
            request("GET", &url("/other/get/greeting"), None).0,
            404,
            "{name}"
        );
        // Only granted labels open.
        assert_eq!(
            request("GET", &url("/app/open/secret"), None),
            (403, "access denied\n".into())
        );
        request("DELETE", &url("/app/delete/second"), None);
        assert_eq!(
            request("GET", &url("/app/exists/second"), None).1,
            "false\n",
            "{name}"
        );

        // A crash loses nothing a guest saw written.
        server.kill();
        let server = Server::start(
            &kindling(),
            &dir.path().join(format!("{name}-data")),
            &["--runtime-config", path_str(&config)],
            &[],
        );
        assert_eq!(
            request("GET", &server.url("/app/get/greeting"), None),
            (200, "hello".into()),
            "{name} after kill -9"
        );
    }
}

#[test]
fn wasi_keyvalue_drafts_increment_swap_batch_and_page() {
    let dir = tempfile::tempdir().unwrap();
    for (name, backend) in backends(dir.path()) {
        let (_config, server) = start(dir.path(), name, &backend.runtime_config(""));
        server
            .cli(&[
                "deploy",
                "w",
                path_str(&test_program("wasi-kv")),
                "--key-value",
                "default",
            ])
            .ok();
        let call = |method: &str, path: &str, body: Option<&str>| {
            request(method, &server.url(&format!("/w{path}")), body)
        };
        assert_eq!(call("GET", "/d2/increment/n", None).1, "1\n", "{name}");
        assert_eq!(call("GET", "/d2/increment/n", None).1, "2\n", "{name}");
        assert_eq!(
            call("GET", "/d1/increment/n", None).1,
            "3\n",
            "{name}: one counter, two drafts"
        );
        assert_eq!(
            call("GET", "/d2/get/n", None).1,
            "3",
            "{name}: counters are decimal text"
        );
        call("PUT", "/d2/set/word", Some("old"));
        assert_eq!(
            call("GET", "/d2/cas/word/new", None),
            (200, "swapped\n".into()),
            "{name}"
        );
        assert_eq!(call("GET", "/d2/get/word", None).1, "new");
        assert_eq!(
            call("GET", "/d2/batch", None).1,
            "a=1\nb=2\nc unset\n",
            "{name}"
        );
        assert_eq!(
            call("GET", "/d1/batch", None).1,
            "a=1\nb=2\nunset\n",
            "{name}"
        );
        // More keys than one page: both cursors walk them all.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let http = reqwest::Client::new();
            let sets = futures::stream::iter(0..1_205).map(|i| {
                let url = server.url(&format!("/w/d2/set/k{i:04}"));
                let http = http.clone();
                async move { http.put(url).body("x").send().await.unwrap().status() }
            });
            let statuses: Vec<_> = futures::StreamExt::buffer_unordered(sets, 32)
                .collect()
                .await;
            assert!(statuses.iter().all(|s| s.is_success()), "{name}");
        });
        for draft in ["d2", "d1"] {
            let (status, keys) = call("GET", &format!("/{draft}/list"), None);
            assert_eq!(status, 200, "{name} {draft}");
            assert_eq!(
                keys.lines().count(),
                1_205 + 4,
                "{name} {draft}: a, b, n, word and k*"
            );
        }
        assert_eq!(call("GET", "/d2/open/nope", None).0, 403, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_counter_incremented_by_a_thousand_concurrent_requests_ends_at_a_thousand() {
    let dir = tempfile::tempdir().unwrap();
    for (name, backend) in backends(dir.path()) {
        let (_config, server) = start(dir.path(), name, &backend.runtime_config(""));
        server
            .cli(&[
                "deploy",
                "w",
                path_str(&test_program("wasi-kv")),
                "--key-value",
                "default",
            ])
            .ok();
        let http = reqwest::Client::new();
        let url = server.url("/w/d2/increment/visits");
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(50));
        let calls: Vec<_> = (0..1000)
            .map(|_| {
                let (http, url, limit) = (http.clone(), url.clone(), limit.clone());
                tokio::spawn(async move {
                    let _slot = limit.acquire().await.unwrap();
                    http.get(url).send().await.unwrap().status().as_u16()
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), 200, "{name}");
        }
        let value = http
            .get(server.url("/w/d2/get/visits"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(value, "1000", "{name}: no increment lost");
    }
}

#[test]
fn limits_and_configuration_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (name, backend) in backends(dir.path()) {
        let config = backend.runtime_config("max_value_bytes = 8\nmax_keys = 2\n");
        let (_config, server) = start(dir.path(), name, &config);
        server
            .cli(&[
                "deploy",
                "app",
                path_str(&test_program("spin-kv")),
                "--key-value",
                "default",
            ])
            .ok();
        let url = |path: &str| server.url(&format!("/app{path}"));
        let (status, body) = request("PUT", &url("/set/big"), Some("123456789"));
        assert_eq!(status, 507, "{name}: {body}");
        assert!(body.contains("at most 8 bytes"), "{name}: {body}");
        request("PUT", &url("/set/one"), Some("1"));
        request("PUT", &url("/set/two"), Some("2"));
        let (status, body) = request("PUT", &url("/set/three"), Some("3"));
        assert_eq!(status, 507, "{name}: {body}");
        assert!(body.contains("most keys (2)"), "{name}: {body}");
        assert_eq!(
            request("PUT", &url("/set/one"), Some("11")).0,
            200,
            "{name}: overwriting fits"
        );
    }
    // A label the node does not have is refused at deploy, naming where to define it.
    let (_dir, server) = crate::fresh_server(&[]);
    let out = server.cli(&[
        "deploy",
        "app",
        path_str(&test_program("spin-kv")),
        "--key-value",
        "cache",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("[key_value_store.cache]"), "{out:?}");
    // A runtime config with a mistake stops the node before it binds.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[key_value_store.x]\ntype = \"mongodb\"\n").unwrap();
    let out = std::process::Command::new(kindling())
        .args(["serve", "--listen", "127.0.0.1:0", "--runtime-config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"spin\" (SQLite) or \"redis\""));
}

#[test]
fn kindling_kv_reads_and_writes_what_guests_see_and_metrics_count_it() {
    let (_dir, server) = crate::fresh_server(&[]);
    server
        .cli(&[
            "deploy",
            "app",
            path_str(&test_program("spin-kv")),
            "--key-value",
            "default",
        ])
        .ok();
    server
        .cli(&["kv", "set", "app", "greeting", "hi from the CLI"])
        .ok();
    assert_eq!(
        request("GET", &server.url("/app/get/greeting"), None),
        (200, "hi from the CLI".into()),
        "the guest sees what the CLI wrote"
    );
    request("PUT", &server.url("/app/set/other"), Some("from the guest"));
    assert_eq!(
        server.cli(&["kv", "get", "app", "other"]).ok(),
        "from the guest"
    );
    assert_eq!(
        server.cli(&["kv", "get", "default/default", "other"]).ok(),
        "from the guest",
        "NAMESPACE/LABEL names the same store"
    );
    assert_eq!(server.cli(&["kv", "ls", "app"]).ok(), "greeting\nother\n");
    let table = server.cli(&["kv", "ls"]).ok().to_string();
    assert!(
        table.contains("default/default") && table.contains(" 2 "),
        "{table}"
    );
    server.cli(&["kv", "rm", "app", "greeting"]).ok();
    assert_eq!(
        request("GET", &server.url("/app/get/greeting"), None).0,
        404
    );
    let out = server.cli(&["kv", "get", "app", "greeting"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("has no key \"greeting\""), "{out:?}");
    let out = server.cli(&["kv", "ls", "app", "--label", "cache"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("was not granted the key-value store \"cache\""),
        "{out:?}"
    );

    let metrics = crate::curl(&["-sS", &server.url("/metrics")]).unwrap();
    let series = |line: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(line))
            .map(str::to_string)
    };
    assert_eq!(
        series(r#"kindling_kv_keys{label="default",namespace="default"}"#).as_deref(),
        Some(r#"kindling_kv_keys{label="default",namespace="default"} 1"#),
        "{metrics}"
    );
    let gets = series(
        r#"kindling_kv_operations_total{label="default",namespace="default",operation="get"}"#,
    )
    .expect("get operations are counted");
    assert!(!gets.ends_with(" 0"), "{gets}");
}

#[test]
fn an_append_only_label_takes_each_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_file, server) = start(
        dir.path(),
        "events",
        "[key_value_store.events]\ntype = \"spin\"\nsync = \"hub\"\nappend_only = true\n",
    );
    server
        .cli(&["kv", "set", "default/events", "lesson/1", "done"])
        .ok();
    for refused in [
        server.cli(&["kv", "set", "default/events", "lesson/1", "again"]),
        server.cli(&["kv", "rm", "default/events", "lesson/1"]),
    ] {
        assert_ne!(refused.code, 0, "{refused:?}");
        assert!(
            refused.stderr.contains("append-only (append_only = true")
                && refused.stderr.contains("409"),
            "{refused:?}"
        );
    }
    assert_eq!(
        server
            .cli(&["kv", "get", "default/events", "lesson/1"])
            .ok(),
        "done"
    );
}
