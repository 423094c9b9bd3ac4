//! The on-disk cache of compiled functions: `.cwasm` files keyed by the sha256 of the
//! WebAssembly bytes and a hash of the engine configuration, so that a restart serves at once
//! and a change of Wasmtime version or settings never loads stale machine code.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::PrepareError;

/// A directory of compiled artifacts for one engine configuration.
#[derive(Debug, Clone)]
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    pub(crate) fn open(dir: PathBuf, engine: &wasmtime::Engine) -> Result<Self, PrepareError> {
        fs::create_dir_all(&dir).map_err(|source| PrepareError::Cache {
            path: dir.clone(),
            source,
        })?;
        // The compatibility hash covers the Wasmtime version, target and every setting
        // that affects code generation; hashing it gives a short, stable file-name key.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        Ok(Self { dir, engine_key })
    }

    /// Where the artifact for the given module hash lives.
    pub(crate) fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// Removes the artifact of one module, if present. Safe while it is loaded: a mapped file
    /// lives on until it is unmapped.
    pub(crate) fn remove(&self, sha256: &str) {
        let _ = fs::remove_file(self.path(sha256));
    }

    /// Removes every artifact that is not for one of `keep`, or was compiled by another engine
    /// configuration (an older Kindling or other settings). Returns how many were removed.
    pub(crate) fn retain(&self, keep: &std::collections::HashSet<String>) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let suffix = format!("-{}.cwasm", self.engine_key);
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let current = name
                .strip_suffix(&suffix)
                .is_some_and(|sha256| keep.contains(sha256));
            if !current && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Writes an artifact atomically: a reader sees the old file, no file, or the whole new
    /// one, never a torn write, even if the process is killed mid-way.
    pub(crate) fn store(&self, sha256: &str, bytes: &[u8]) -> Result<PathBuf, PrepareError> {
        let path = self.path(sha256);
        write_atomically(&path, bytes).map_err(|source| PrepareError::Cache {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it into place.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable.
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cwasm");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
