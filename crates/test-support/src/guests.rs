//! Locating the WebAssembly guests the tests deploy.

use std::path::PathBuf;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|crates| crates.parent())
        .expect("the test-support crate lives in crates/test-support")
        .to_path_buf()
}

/// An example function: `examples/{name}.wasm`.
pub fn example(name: &str) -> PathBuf {
    built(repo_root().join("examples").join(format!("{name}.wasm")))
}

/// A test guest: `test-programs/build/{name}.wasm`.
pub fn test_program(name: &str) -> PathBuf {
    built(
        repo_root()
            .join("test-programs")
            .join("build")
            .join(format!("{name}.wasm")),
    )
}

fn built(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: build the guests first with scripts/build-guests.sh",
        path.display()
    );
    path
}
