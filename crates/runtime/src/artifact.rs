//! The on-disk cache of compiled functions: `.cwasm` files keyed by the sha256 of the
//! WebAssembly bytes and a hash of the engine configuration, so that a restart serves at once,
//! a module deployed under several names is compiled once, and a change of Wasmtime version or
//! settings never loads stale machine code.
//!
//! Machine code is mapped and run as it is, so a damaged file (a flipped bit in its `.text`)
//! could crash the process. Each artifact therefore has a digest beside it
//! (`.cwasm.digest`, XXH3-128 of the whole file), written before the artifact itself and
//! checked before the file is mapped the first time in a process; a mismatch is reported so
//! that the caller recompiles from the module.

use std::collections::HashMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::PrepareError;

/// A directory of compiled artifacts for one runtime's engine configurations.
#[derive(Debug)]
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
    /// Artifacts checked in this process, by module hash, with the file's length and
    /// modification time when it was checked: a file that has not changed is not read again.
    verified: Mutex<HashMap<String, (u64, SystemTime)>>,
}

/// What the cache holds for a module.
#[derive(Debug)]
pub(crate) enum Verified {
    /// A sound artifact, `bytes` long.
    Sound { path: PathBuf, bytes: u64 },
    /// None.
    Missing,
    /// One that must not be mapped.
    Damaged { path: PathBuf, problem: String },
}

impl ArtifactCache {
    /// Opens `dir` for artifacts compiled by any of `engines`.
    pub(crate) fn open(dir: PathBuf, engines: &[&wasmtime::Engine]) -> Result<Self, PrepareError> {
        fs::create_dir_all(&dir).map_err(|error| PrepareError::Cache {
            path: dir.clone(),
            error,
        })?;
        // The compatibility hash covers the Wasmtime version, target and every setting
        // that affects code generation; hashing it gives a short, stable file-name key.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for engine in engines {
            engine.precompile_compatibility_hash().hash(&mut hasher);
        }
        let engine_key = format!("{:016x}", hasher.finish());
        Ok(Self {
            dir,
            engine_key,
            verified: Mutex::default(),
        })
    }

    /// The engine configuration's key: equal on every node of the same build and settings.
    pub(crate) fn engine_key(&self) -> &str {
        &self.engine_key
    }

    /// Where the artifact for the given module hash lives.
    pub(crate) fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    fn digest_path(artifact: &Path) -> PathBuf {
        let mut name = artifact.as_os_str().to_owned();
        name.push(".digest");
        PathBuf::from(name)
    }

    /// Checks the artifact of `sha256` against its recorded digest (once per process while
    /// the file is unchanged).
    pub(crate) fn verify(&self, sha256: &str) -> Verified {
        let path = self.path(sha256);
        let Ok(meta) = fs::metadata(&path) else {
            return Verified::Missing;
        };
        let stamp = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        if self.verified.lock().expect("verified lock").get(sha256) == Some(&stamp) {
            return Verified::Sound {
                path,
                bytes: stamp.0,
            };
        }
        let damaged = |problem: String| Verified::Damaged {
            path: path.clone(),
            problem,
        };
        let recorded = match fs::read_to_string(Self::digest_path(&path)) {
            Ok(text) => text.trim().to_string(),
            Err(err) => return damaged(format!("its digest file cannot be read: {err}")),
        };
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) => return damaged(format!("it cannot be read: {err}")),
        };
        let actual = digest(&bytes);
        if actual != recorded {
            return damaged(format!(
                "its digest is {actual}, not the {recorded} recorded when it was compiled"
            ));
        }
        self.verified
            .lock()
            .expect("verified lock")
            .insert(sha256.to_string(), stamp);
        Verified::Sound {
            path,
            bytes: stamp.0,
        }
    }

    /// Removes the artifact of one module, if present. Safe while it is loaded: a mapped file
    /// lives on until it is unmapped.
    pub(crate) fn remove(&self, sha256: &str) {
        let path = self.path(sha256);
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(Self::digest_path(&path));
        self.verified.lock().expect("verified lock").remove(sha256);
    }

    /// Removes every artifact (and digest) that is not for one of `keep`, or was compiled by
    /// another engine configuration (an older Kindling or other settings). Returns how many
    /// artifacts were removed.
    pub(crate) fn retain(&self, keep: &std::collections::HashSet<String>) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let suffix = format!("-{}.cwasm", self.engine_key);
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let artifact = name.strip_suffix(".digest").unwrap_or(&name);
            let current = artifact
                .strip_suffix(&suffix)
                .is_some_and(|sha256| keep.contains(sha256));
            if !current && fs::remove_file(entry.path()).is_ok() && !name.ends_with(".digest") {
                removed += 1;
            }
        }
        removed
    }

    /// Writes an artifact and its digest atomically: a reader sees the old file, no file, or
    /// the whole new one, never a torn write, even if the process is killed mid-way. The digest
    /// goes first, so an artifact is never on disk without the digest it must match.
    pub(crate) fn store(&self, sha256: &str, bytes: &[u8]) -> Result<PathBuf, PrepareError> {
        let path = self.path(sha256);
        let fail = |path: &Path| {
            let path = path.to_path_buf();
            move |error| PrepareError::Cache { path, error }
        };
        let digest_path = Self::digest_path(&path);
        write_atomically(&digest_path, digest(bytes).as_bytes()).map_err(fail(&digest_path))?;
        write_atomically(&path, bytes).map_err(fail(&path))?;
        self.verified.lock().expect("verified lock").remove(sha256);
        Ok(path)
    }
}

fn digest(bytes: &[u8]) -> String {
    format!("xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
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
    fn a_damaged_artifact_is_reported_not_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let engine = wasmtime::Engine::default();
        let cache = ArtifactCache::open(dir.path().to_path_buf(), &[&engine]).unwrap();
        assert!(matches!(cache.verify("abc"), Verified::Missing));
        let path = cache.store("abc", b"machine code").unwrap();
        assert!(matches!(
            cache.verify("abc"),
            Verified::Sound { bytes: 12, .. }
        ));

        let mut bytes = fs::read(&path).unwrap();
        bytes[3] ^= 0x10;
        fs::write(&path, &bytes).unwrap();
        // As after a restart: a new process checks every artifact once.
        let cache = ArtifactCache::open(dir.path().to_path_buf(), &[&engine]).unwrap();
        match cache.verify("abc") {
            Verified::Damaged { problem, .. } => assert!(problem.contains("digest"), "{problem}"),
            other => panic!("a flipped bit went unnoticed: {other:?}"),
        }

        cache.store("abc", b"machine code").unwrap();
        fs::remove_file(ArtifactCache::digest_path(&path)).unwrap();
        assert!(matches!(cache.verify("abc"), Verified::Damaged { .. }));

        cache.store("abc", b"machine code").unwrap();
        assert_eq!(cache.retain(&Default::default()), 1);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "digests go too"
        );
    }

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
