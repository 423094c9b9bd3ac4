//! Locating the WebAssembly guests the tests deploy.

use std::path::PathBuf;

/// The repository's root directory: the nearest directory holding `Cargo.lock` above the
/// package under test. Found at run time from the `CARGO_MANIFEST_DIR` cargo gives the test
/// process, not baked in at build time, so a build cached by one checkout never points the
/// tests of another at the first one's files.
pub fn repo_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    start
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .expect("the tests run inside the Kindling workspace")
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
