//! SQLite databases for guests: Spin's `fermyon:spin/sqlite@2.0.0`, `spin:sqlite@3.0.0` (spin-sdk
//! 5) and `@3.1.0`'s async forms (spin-sdk 7) on one namespace's database, grants, namespaces,
//! the size cap, the deadline, `kindling sqlite`, metrics, and data that survives `kill -9`.

use kindling_test_support::{Server, test_program};

use crate::{curl, kindling, path_str};

fn sql(server: &Server, path: &str, body: &str) -> (u16, String) {
    let out = curl(&[
        "-sS",
        "-X",
        "POST",
        "--data-binary",
        body,
        "-w",
        "\n%{http_code}",
        &server.url(path),
    ])
    .expect("curl runs");
    let (body, status) = out.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_string())
}

#[test]
fn guests_share_a_namespaces_database_through_every_interface_version() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        "[sqlite_database.small]\ntype = \"spin\"\nmax_bytes = 131072\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let args = ["--runtime-config", path_str(&config)];
    let mut server = Server::start(&kindling(), &data, &args, &[]);
    let spin5 = test_program("spin-kv");
    let spin7 = test_program("spin7");
    for (name, guest, namespace, extra) in [
        (
            "app",
            &spin5,
            "school",
            vec!["--sqlite", "default", "--sqlite", "small"],
        ),
        ("peer", &spin7, "school", vec!["--sqlite", "default"]),
        ("other", &spin5, "elsewhere", vec!["--sqlite", "default"]),
        (
            "slow",
            &spin7,
            "school",
            vec!["--sqlite", "default", "--timeout", "300ms"],
        ),
    ] {
        let mut deploy = vec!["deploy", name, path_str(guest), "--namespace", namespace];
        deploy.extend(extra);
        server.cli(&deploy).ok();
    }

    let create = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)";
    assert_eq!(
        sql(&server, "/app/sql2/default", create),
        (200, "\n".into())
    );
    assert_eq!(
        sql(&server, "/app/sql2/default/insert", "first"),
        (200, "1\n".into())
    );
    assert_eq!(
        sql(&server, "/app/sql3/default/insert", "it's second"),
        (200, "2\n".into()),
        "a parameter is bound, not spliced"
    );
    assert_eq!(
        sql(&server, "/peer/sql/default/insert", "third"),
        (200, "3 1\n".into()),
        "3.1's last-insert-rowid and changes"
    );
    let all = "SELECT id, body, NULL AS missing FROM notes ORDER BY id";
    assert_eq!(
        sql(&server, "/peer/sql/default", all),
        (
            200,
            "id|body|missing\n1|first|NULL\n2|it's second|NULL\n3|third|NULL\n".into()
        )
    );
    assert_eq!(
        sql(
            &server,
            "/app/sql3/default",
            "SELECT count(*) AS n FROM notes"
        ),
        (200, "n\n3\n".into())
    );

    // Another namespace has its own database under the same label; ungranted labels are
    // access-denied; a bad statement says what SQLite said.
    let (status, body) = sql(&server, "/other/sql2/default", "SELECT count(*) FROM notes");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no such table: notes"), "{body}");
    assert_eq!(
        sql(&server, "/peer/sql/small", "SELECT 1"),
        (403, "access denied\n".into())
    );
    let (status, body) = sql(&server, "/app/sql2/default", "SELEC 1");
    assert_eq!(status, 400);
    assert!(body.contains("syntax error"), "{body}");

    // A guest's database is its own: no other file can be attached (the registry, another
    // namespace's database), and the settings that keep it safe cannot be changed.
    let registry = data.join("registry.db");
    for statement in [
        format!("ATTACH '{}' AS r", registry.display()),
        format!("VACUUM INTO '{}'", data.join("copy.db").display()),
        "PRAGMA max_page_count = 4294967294".into(),
        "PRAGMA synchronous = off".into(),
    ] {
        let (status, body) = sql(&server, "/app/sql2/default", &statement);
        assert_eq!(status, 400, "{statement}: {body}");
    }
    assert!(!data.join("copy.db").exists());

    // The size cap is the interface's database-full.
    sql(&server, "/app/sql2/small", create);
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let (status, _) = sql(
            &server,
            "/app/sql2/small",
            "INSERT INTO notes (body) SELECT hex(randomblob(8000))",
        );
        statuses.push(status);
        if status != 200 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&507), "{statuses:?}");

    // A statement past the request's deadline is interrupted; the database stays usable.
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                   SELECT count(*) FROM c";
    assert_eq!(sql(&server, "/slow/sql/default", endless).0, 504);
    assert_eq!(
        sql(
            &server,
            "/peer/sql/default",
            "SELECT count(*) AS n FROM notes"
        ),
        (200, "n\n3\n".into())
    );

    // The operator's view of the same database.
    let out = server.cli(&[
        "sqlite",
        "app",
        "SELECT body FROM notes WHERE id = ?",
        "--param",
        "2",
        "--label",
        "default",
    ]);
    assert!(out.ok().contains("it's second"), "{out:?}");
    let out = server.cli(&[
        "sqlite",
        "school/default",
        "SELECT count(*) AS n FROM notes",
        "--json",
    ]);
    assert_eq!(out.json()["rows"], serde_json::json!([[3]]));
    let out = server.cli(&["sqlite", "app", "SELECT 1"]);
    assert_eq!(out.code, 2, "two labels granted: {out:?}");
    assert!(out.stderr.contains("say which with --label"), "{out:?}");
    let out = server.cli(&["sqlite", "nobody/default", "SELECT 1"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("has no SQLite database"), "{out:?}");
    assert!(
        !data.join("sqlite/nobody").exists(),
        "a typo makes no database"
    );
    let listing = server.cli(&["sqlite"]).ok().to_string();
    assert!(listing.contains("school/default"), "{listing}");
    let metrics = curl(&["-sS", &server.url("/metrics")]).unwrap();
    assert!(
        metrics.contains(r#"kindling_sqlite_bytes{label="default",namespace="school"}"#),
        "{metrics}"
    );

    // What a guest saw committed survives kill -9.
    server.kill();
    let server = Server::start(&kindling(), &data, &args, &[]);
    assert_eq!(
        sql(
            &server,
            "/app/sql3/default",
            "SELECT count(*) AS n FROM notes"
        ),
        (200, "n\n3\n".into())
    );
}
