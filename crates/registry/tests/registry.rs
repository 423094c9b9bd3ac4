//! The registry against a real SQLite database in a temporary directory: deploy, activate,
//! roll back, delete, reopen, and crash-safety of module files.

use bytes::Bytes;
use kindling_registry::{Catalog, FunctionConfig, NewVersion, RegistryError, SqliteCatalog};

fn new_version(sha256: String, size: u64) -> NewVersion {
    NewVersion {
        sha256,
        kind: "wasi-http".into(),
        size_bytes: size,
        config: FunctionConfig::default(),
        base: None,
    }
}

#[tokio::test]
async fn versions_count_up_and_rollback_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let registry = SqliteCatalog::open(dir.path()).await.unwrap();

    let a = registry
        .store_module(Bytes::from_static(b"module a"))
        .await
        .unwrap();
    let b = registry
        .store_module(Bytes::from_static(b"module b"))
        .await
        .unwrap();
    assert_ne!(a, b);
    assert!(registry.module_path(&a).exists());

    let v1 = registry
        .commit_version("hello", new_version(a.clone(), 8))
        .await
        .unwrap();
    let v2 = registry
        .commit_version("hello", new_version(b.clone(), 8))
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(registry.active_version("hello").await.unwrap().sha256, b);

    assert_eq!(registry.previous_version("hello").await.unwrap(), 1);
    registry.activate("hello", 1).await.unwrap();
    assert_eq!(registry.active_version("hello").await.unwrap().sha256, a);
    assert!(matches!(
        registry.previous_version("hello").await,
        Err(RegistryError::NothingToRollBack(_))
    ));
    assert!(matches!(
        registry.activate("hello", 9).await,
        Err(RegistryError::VersionNotFound { version: 9, .. })
    ));
    assert!(matches!(
        registry.activate("nope", 1).await,
        Err(RegistryError::FunctionNotFound(_))
    ));

    let versions = registry.versions("hello").await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![2, 1]
    );
    let functions = registry.functions().await.unwrap();
    assert_eq!(functions.len(), 1);
    assert_eq!(functions[0].active_version, 1);
    assert_eq!(functions[0].version_count, 2);
}

#[tokio::test]
async fn state_survives_reopen_and_unreferenced_modules_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let kept;
    let orphan;
    {
        let registry = SqliteCatalog::open(dir.path()).await.unwrap();
        kept = registry
            .store_module(Bytes::from_static(b"kept"))
            .await
            .unwrap();
        registry
            .commit_version("keep", new_version(kept.clone(), 4))
            .await
            .unwrap();
        // A deploy killed after writing its module but before committing leaves this behind.
        orphan = registry
            .store_module(Bytes::from_static(b"orphan"))
            .await
            .unwrap();
        assert!(registry.module_path(&orphan).exists());
    }
    let registry = SqliteCatalog::open(dir.path()).await.unwrap();
    assert_eq!(registry.active_version("keep").await.unwrap().sha256, kept);
    assert!(registry.module_path(&kept).exists());
    assert!(!registry.module_path(&orphan).exists());
    assert!(
        dir.path()
            .join("quarantine")
            .join(format!("{orphan}.wasm"))
            .exists(),
        "an unreferenced module is moved aside, never deleted on a guess"
    );
}

#[tokio::test]
async fn delete_removes_versions_and_their_modules() {
    let dir = tempfile::tempdir().unwrap();
    let registry = SqliteCatalog::open(dir.path()).await.unwrap();
    let shared = registry
        .store_module(Bytes::from_static(b"shared"))
        .await
        .unwrap();
    let own = registry
        .store_module(Bytes::from_static(b"own"))
        .await
        .unwrap();
    registry
        .commit_version("one", new_version(shared.clone(), 6))
        .await
        .unwrap();
    registry
        .commit_version("two", new_version(shared.clone(), 6))
        .await
        .unwrap();
    registry
        .commit_version("two", new_version(own.clone(), 3))
        .await
        .unwrap();

    let unreferenced = registry.delete_function("two").await.unwrap();
    assert_eq!(
        unreferenced,
        vec![own.clone()],
        "`shared` is still used by `one`"
    );
    assert!(
        registry.module_path(&shared).exists(),
        "still used by `one`"
    );
    assert!(!registry.module_path(&own).exists());
    assert!(registry.function("two").await.unwrap().is_none());
    assert!(matches!(
        registry.delete_function("two").await,
        Err(RegistryError::FunctionNotFound(_))
    ));

    // The name can be reused and starts again at version 1.
    let again = registry.commit_version("two", new_version(own, 3)).await;
    assert_eq!(again.unwrap().version, 1);
}

#[tokio::test]
async fn bad_names_and_configs_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let registry = SqliteCatalog::open(dir.path()).await.unwrap();
    let sha = registry
        .store_module(Bytes::from_static(b"m"))
        .await
        .unwrap();
    let err = registry
        .commit_version("Bad_Name", new_version(sha.clone(), 1))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::InvalidName { .. }), "{err}");
    let mut bad = new_version(sha, 1);
    bad.config.limits.timeout_ms = Some(0);
    let err = registry.commit_version("ok", bad).await.unwrap_err();
    assert!(matches!(err, RegistryError::InvalidConfig(_)), "{err}");
    assert!(registry.functions().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_newer_schema_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteCatalog::open(dir.path()).await.unwrap());
    let conn = rusqlite::Connection::open(dir.path().join("registry.db")).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteCatalog::open(dir.path())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("schema version 99"), "{err}");
}

#[tokio::test]
async fn a_function_without_an_active_version_is_named_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let registry = SqliteCatalog::open(dir.path()).await.unwrap();
    let sha = registry
        .store_module(Bytes::from_static(b"m"))
        .await
        .unwrap();
    registry
        .commit_version("f", new_version(sha, 1))
        .await
        .unwrap();
    drop(registry);
    let conn = rusqlite::Connection::open(dir.path().join("registry.db")).unwrap();
    conn.execute("UPDATE functions SET active_version = NULL", [])
        .unwrap();
    drop(conn);
    let registry = SqliteCatalog::open(dir.path()).await.unwrap();
    let err = registry.active_version("f").await.unwrap_err().to_string();
    assert_eq!(
        err,
        "registry database holds an unreadable row: function \"f\" has no active version"
    );
    let err = registry
        .previous_version("f")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no active version"), "{err}");
}
