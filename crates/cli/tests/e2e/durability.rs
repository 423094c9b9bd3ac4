//! What survives: a lost write-ahead log, a damaged database, a damaged compiled artifact, a
//! second node on the same data directory, a full disk, and a backup restored elsewhere.

use std::path::Path;
use std::time::Duration;

use kindling_test_support::{Server, example, get_status};

use crate::{kindling, path_str};

fn deploy_two(server: &Server) {
    for (name, file) in [("hello", "hello"), ("wagi", "wagi-hello")] {
        server.cli(&["deploy", name, path_str(&example(file))]).ok();
    }
}

fn serves_both(server: &Server) {
    assert_eq!(get_status(server.addr(), "/hello/").unwrap(), 200);
    assert_eq!(get_status(server.addr(), "/wagi/").unwrap(), 200);
    let functions = server.cli(&["ls", "--json"]).json();
    assert_eq!(functions.as_array().unwrap().len(), 2, "{functions}");
}

/// `kindling serve` on `data`, expected to refuse to start: its exit code and stderr.
fn refused_start(data: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(kindling())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn losing_the_write_ahead_log_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&kindling(), &data, &[], &[]);
    deploy_two(&server);
    // A crash, not a clean stop: whatever is only in the log is lost with it.
    server.kill();
    for file in ["registry.db-wal", "registry.db-shm"] {
        let _ = std::fs::remove_file(data.join(file));
    }
    let server = Server::start(&kindling(), &data, &[], &[]);
    serves_both(&server);
    let modules = std::fs::read_dir(data.join("modules")).unwrap().count();
    assert_eq!(modules, 2, "no module file was swept");
}

#[test]
fn a_clean_stop_leaves_a_complete_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&kindling(), &data, &[], &[]);
    deploy_two(&server);
    server.stop();
    let wal = std::fs::metadata(data.join("registry.db-wal")).map_or(0, |m| m.len());
    assert_eq!(
        wal, 0,
        "the log is checkpointed into registry.db at shutdown"
    );
    // The database file alone is a usable copy.
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(copy.join("modules")).unwrap();
    std::fs::copy(data.join("registry.db"), copy.join("registry.db")).unwrap();
    for entry in std::fs::read_dir(data.join("modules")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join("modules").join(entry.file_name())).unwrap();
    }
    // The admin keeps its token; the registry knows it.
    std::fs::copy(data.join("admin.token"), copy.join("admin.token")).unwrap();
    let server = Server::start(&kindling(), &copy, &[], &[]);
    serves_both(&server);
}

#[test]
fn a_damaged_database_is_refused_with_what_to_do_and_nothing_is_swept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&kindling(), &data, &[], &[]);
    deploy_two(&server);
    server.stop();
    let db = data.join("registry.db");
    let mut bytes = std::fs::read(&db).unwrap();
    for byte in &mut bytes[..100] {
        *byte = !*byte;
    }
    std::fs::write(&db, &bytes).unwrap();
    let (code, stderr) = refused_start(&data);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert!(stderr.contains("kindling restore"), "{stderr}");
    assert_eq!(
        stderr.matches("is damaged").count(),
        1,
        "the cause is said once: {stderr}"
    );
    assert_eq!(
        std::fs::read_dir(data.join("modules")).unwrap().count(),
        2,
        "the module files are untouched"
    );
}

#[test]
fn a_backup_taken_while_serving_restores_into_a_new_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&kindling(), &data, &[], &[]);
    deploy_two(&server);
    let backup = dir.path().join("backup");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(kindling())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = run(&["backup", path_str(&backup), "--data-dir", path_str(&data)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2 functions and 2 modules"), "{out}");

    // A restore refuses a data directory a node is serving from.
    let (code, out) = run(&["restore", path_str(&backup), "--data-dir", path_str(&data)]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("in use"), "{out}");
    server.stop();

    let elsewhere = dir.path().join("elsewhere");
    let (code, out) = run(&[
        "restore",
        path_str(&backup),
        "--data-dir",
        path_str(&elsewhere),
    ]);
    assert_eq!(code, Some(0), "{out}");
    // Tokens come back with the registry; the admin brings its own copy of the token file.
    std::fs::copy(data.join("admin.token"), elsewhere.join("admin.token")).unwrap();
    let server = Server::start(&kindling(), &elsewhere, &[], &[]);
    serves_both(&server);

    // A backup missing a module is refused whole.
    let module = std::fs::read_dir(backup.join("modules"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(module).unwrap();
    let empty = dir.path().join("empty");
    let (code, out) = run(&["restore", path_str(&backup), "--data-dir", path_str(&empty)]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("missing or damaged"), "{out}");
    assert!(!empty.join("registry.db").exists(), "nothing was replaced");
}

#[test]
fn a_backup_carries_function_state_and_leaves_the_secret_key_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&kindling(), &data, &[], &[]);
    let spin_kv = kindling_test_support::test_program("spin-kv");
    server
        .cli(&[
            "deploy",
            "app",
            path_str(&spin_kv),
            "--key-value",
            "default",
            "--secret",
            "token=t0ken",
        ])
        .ok();
    let put = crate::curl(&[
        "-sS",
        "-X",
        "PUT",
        "--data",
        "kept",
        &server.url("/app/set/note"),
    ]);
    assert!(put.is_some());
    // An invocation in the dead-letter store (a 404 is final) travels with the backup.
    crate::curl(&[
        "-sS",
        "-X",
        "POST",
        "-H",
        "prefer: respond-async",
        &server.url("/app/get/missing"),
    ])
    .unwrap();
    // The first admin token's file is not backed up; its hash is, so it keeps working.
    let token = server.token().expect("an admin token");
    let dead = |server: &Server| {
        server
            .cli_with(
                &["invocations", "ls", "--state", "dead", "--json"],
                &[("KINDLING_TOKEN", token.as_str())],
            )
            .json()
            .as_array()
            .unwrap()
            .len()
    };
    kindling_test_support::wait_for("a dead letter", Duration::from_millis(50), || {
        match dead(&server) {
            1 => Ok(()),
            n => Err(format!("{n}")),
        }
    });
    let backup = dir.path().join("backup");
    let out = server.cli(&["backup", path_str(&backup), "--data-dir", path_str(&data)]);
    let text = out.ok().to_string();
    assert!(
        text.contains("the invocation queue: 0 queued, 1 dead letters"),
        "{text}"
    );
    assert!(
        text.contains("key-value: label default: 1 store (1 key) copied"),
        "{text}"
    );
    assert!(text.contains("backups leave out"), "{text}");
    assert!(!backup.join("secret.key").exists() && !backup.join("variables").exists());
    // A write after the backup is not in it.
    crate::curl(&[
        "-sS",
        "-X",
        "PUT",
        "--data",
        "later",
        &server.url("/app/set/note"),
    ])
    .unwrap();
    server.stop();

    let elsewhere = dir.path().join("elsewhere");
    let restore = |target: &Path| {
        std::process::Command::new(kindling())
            .args(["restore", path_str(&backup), "--data-dir", path_str(target)])
            .output()
            .unwrap()
    };
    let out = restore(&elsewhere);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("label default of namespace default restored"),
        "{text}"
    );
    assert!(text.contains("no secret key at"), "{text}");
    std::fs::copy(data.join("secret.key"), elsewhere.join("secret.key")).unwrap();
    let server = Server::start(&kindling(), &elsewhere, &[], &[]);
    let get = |path: &str| crate::curl(&["-sS", &server.url(path)]).unwrap();
    assert_eq!(get("/app/get/note"), "kept");
    assert_eq!(get("/app/var/token"), "t0ken");
    assert_eq!(dead(&server), 1, "the dead-letter store was restored");
    drop(server);

    // A damaged store in the backup is refused before the registry is replaced.
    std::fs::write(
        backup.join("key-value/default/default.db"),
        b"not a database",
    )
    .unwrap();
    let empty = dir.path().join("empty");
    let out = restore(&empty);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("default.db is damaged"), "{text}");
    assert!(!empty.join("registry.db").exists(), "nothing was replaced");
}

#[test]
fn a_second_node_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _server = Server::start(&kindling(), &data, &[], &[]);
    let (code, stderr) = refused_start(&data);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is in use by another"), "{stderr}");
}

#[test]
fn a_damaged_compiled_artifact_is_recompiled_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&kindling(), &data, &[], &[]);
    deploy_two(&server);
    server.stop();
    // Flip bits in the middle of every artifact: its machine code.
    for entry in std::fs::read_dir(data.join("artifacts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            for byte in &mut bytes[middle..middle + 4] {
                *byte = !*byte;
            }
            std::fs::write(&path, &bytes).unwrap();
        }
    }
    let server = Server::start(&kindling(), &data, &[], &[]);
    serves_both(&server);
    for name in ["hello", "wagi"] {
        let function = server.cli(&["inspect", name, "--json"]).json();
        assert_eq!(function["load"]["source"], "compiled", "{function}");
    }
    assert!(
        server.log().contains("failed its integrity check"),
        "the damage is logged"
    );
}

#[test]
fn a_full_disk_refuses_the_deploy_with_507_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&mount, "4m") else {
        // Mounting needs root, which CI has; a developer's unprivileged run cannot fill a disk.
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let data = mount.join("data");
    let server = Server::start(&kindling(), &data, &[], &[]);
    server
        .cli(&["deploy", "hello", path_str(&example("hello"))])
        .ok();
    // Fill what is left.
    let filler = mount.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output();
    let output = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", "-H"])
        .arg(format!("Authorization: {}", server.bearer()))
        .arg("--data-binary")
        .arg(format!("@{}", example("wagi-hello").display()))
        .arg(server.url("/v1/functions/wagi/versions"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_lowercase();
    assert!(text.starts_with("http/1.1 507"), "{text}");
    assert!(text.contains("x-request-id: "), "{text}");
    assert!(text.contains("insufficient_storage"), "{text}");
    assert!(text.contains("--data-dir"), "{text}");
    assert!(!text.contains("\"request_id\":null"), "{text}");
    assert_eq!(get_status(server.addr(), "/hello/").unwrap(), 200);
    std::fs::remove_file(&filler).unwrap();
    let functions = server.cli(&["ls", "--json"]).json();
    assert_eq!(
        functions.as_array().unwrap().len(),
        1,
        "the refused deploy left nothing"
    );
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .ok()?;
        status.success().then(|| Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// `hello` with a custom section naming `i`: the same code, its own sha256.
fn variant(i: u32) -> Vec<u8> {
    let mut bytes = std::fs::read(example("hello")).unwrap();
    let payload = format!("kindling-test-{i}");
    bytes.extend_from_slice(&[0, (2 + payload.len()) as u8, 1, b'x']);
    bytes.extend_from_slice(payload.as_bytes());
    bytes
}

#[tokio::test(flavor = "multi_thread")]
async fn deploys_racing_deletes_keep_every_version_s_module() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&kindling(), &data, &[], &[]);
    let http = admin_client(&server);
    let deploy = |name: &str, module: Vec<u8>| {
        http.post(server.url(&format!("/v1/functions/{name}/versions")))
            .body(module)
            .send()
    };
    let churn = {
        let (http, base) = (http.clone(), server.url(""));
        tokio::spawn(async move {
            for _ in 0..30 {
                let url = format!("{base}/v1/functions/churn/versions");
                let status = http
                    .post(&url)
                    .body(variant(1000))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert!(status.is_success(), "{status}");
                let url = format!("{base}/v1/functions/churn");
                assert_eq!(http.delete(&url).send().await.unwrap().status(), 204);
            }
        })
    };
    for i in 0..30 {
        // Half of them share the churning function's module.
        let module = if i % 2 == 0 {
            variant(1000)
        } else {
            variant(i)
        };
        let response = deploy("kept", module).await.unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
    churn.await.unwrap();
    let versions = server.cli(&["versions", "kept", "--json"]).json();
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 30);
    for version in versions {
        let sha = version["sha256"].as_str().unwrap();
        assert!(
            data.join("modules").join(format!("{sha}.wasm")).exists(),
            "version {} lost its module",
            version["version"]
        );
    }
    // Every version can still be rolled back to after its compiled code is gone.
    for entry in std::fs::read_dir(data.join("artifacts")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for version in [1, 2, 29] {
        let out = server.cli(&["rollback", "kept", "--to", &version.to_string()]);
        out.ok();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_identical_deploys_at_once_make_one_version() {
    let (_dir, server) = crate::fresh_server(&[]);
    let http = admin_client(&server);
    let module = std::fs::read(example("hello")).unwrap();
    let deploys: Vec<_> = (0..10)
        .map(|_| {
            let (http, url, module) = (
                http.clone(),
                server.url("/v1/functions/same/versions"),
                module.clone(),
            );
            tokio::spawn(async move { http.post(url).body(module).send().await.unwrap().status() })
        })
        .collect();
    let mut created = 0;
    for deploy in deploys {
        let status = deploy.await.unwrap();
        assert!(status == 201 || status == 200, "{status}");
        created += usize::from(status == 201);
    }
    assert_eq!(created, 1, "one made the version; the rest changed nothing");
    let versions = server.cli(&["versions", "same", "--json"]).json();
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
}

/// An HTTP client that presents the node's admin token.
fn admin_client(server: &Server) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        server.bearer().parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}
