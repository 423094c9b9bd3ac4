//! Sealing secrets with the node's key, so that the registry (and every backup of it) holds
//! only ciphertext. The key is 32 random bytes in `<data-dir>/secret.key` (mode 0600), made on
//! first use and never stored in the database.
//!
//! XChaCha20-Poly1305 with the secret's name as associated data, so a sealed value cannot be
//! moved to another name. The nonce is derived from the key, the name and the value (an HMAC):
//! sealing the same secret twice gives the same text, so redeploying an unchanged
//! configuration changes nothing; the cost is that equal values of one name look equal.

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a sealed value's text, naming the scheme.
const SCHEME: &str = "xc20p1";

/// A node's sealing key.
pub(crate) struct SealKey {
    key: [u8; 32],
    path: PathBuf,
}

impl SealKey {
    /// Reads the key at `path`, or makes one there. Blocking.
    pub(crate) fn load_or_create(path: &Path) -> Result<Self, String> {
        match std::fs::read(path) {
            Ok(bytes) => Self::from_bytes(path, &bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(err) => Err(format!("the node's secret key {}: {err}", path.display())),
        }
    }

    fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, String> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            format!(
                "the node's secret key {} is {} bytes, not 32: restore it from where you \
                         keep it, or move it away to make a new one (secrets sealed with the old \
                         key must then be deployed again)",
                path.display(),
                bytes.len()
            )
        })?;
        Ok(Self {
            key,
            path: path.to_path_buf(),
        })
    }

    /// Writes a new key beside `path` and links it into place, so that nobody ever reads a
    /// partly written key; when another part of the node made one first, that one is used.
    fn create(path: &Path) -> Result<Self, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut key = [0u8; 32];
        getrandom(&mut key)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        let cannot = |err: std::io::Error| {
            format!(
                "cannot create the node's secret key {}: {err}",
                path.display()
            )
        };
        let mut tmp = path.as_os_str().to_owned();
        let mut suffix = [0u8; 8];
        getrandom(&mut suffix)?;
        tmp.push(format!(".{}.tmp", hex::encode(suffix)));
        let tmp = PathBuf::from(tmp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut file| file.write_all(&key).and_then(|()| file.sync_all()));
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(Self {
                key,
                path: path.to_path_buf(),
            }),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let bytes = std::fs::read(path).map_err(cannot)?;
                Self::from_bytes(path, &bytes)
            }
            Err(err) => Err(cannot(err)),
        }
    }

    /// A key for `purpose`, derived from this one: nodes that share the key derive equal
    /// keys, and no derived key reveals this one or another purpose's.
    pub(crate) fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"kindling-derive\0");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The sealed text of `value` under `name`.
    pub(crate) fn seal(&self, name: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"kindling-secret\0");
        mac.update(name.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let nonce = XNonce::from_slice(&digest[..24]);
        let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&self.key));
        let sealed = cipher
            .encrypt(
                nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .expect("encryption into memory cannot fail");
        format!("{SCHEME}:{}:{}", hex::encode(nonce), hex::encode(sealed))
    }

    /// The value sealed under `name`.
    pub(crate) fn open(&self, name: &str, sealed: &str) -> Result<String, String> {
        let cannot = |why: &str| {
            format!(
                "secret {name:?} cannot be opened with this node's key ({}): {why}; deploy it \
                 again with --secret {name}=VALUE",
                self.path.display()
            )
        };
        let mut parts = sealed.splitn(3, ':');
        let (Some(SCHEME), Some(nonce), Some(text)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(cannot("it is not a sealed value Kindling wrote"));
        };
        let nonce = hex::decode(nonce)
            .ok()
            .filter(|n| n.len() == 24)
            .ok_or_else(|| cannot("its nonce is malformed"))?;
        let text = hex::decode(text).map_err(|_| cannot("its text is malformed"))?;
        let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&self.key));
        let plain = cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &text,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| cannot("it was sealed by another node's key, or altered"))?;
        String::from_utf8(plain).map_err(|_| cannot("it is not text"))
    }
}

fn getrandom(buf: &mut [u8]) -> Result<(), String> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(buf))
        .map_err(|err| format!("cannot read random bytes for the node's secret key: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let key = SealKey::load_or_create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = key.seal("db_password", "hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(key.seal("db_password", "hunter2"), sealed, "deterministic");
        assert_eq!(key.open("db_password", &sealed).unwrap(), "hunter2");
        assert!(
            key.open("other_name", &sealed).is_err(),
            "bound to its name"
        );
        let again = SealKey::load_or_create(&path).unwrap();
        assert_eq!(
            again.open("db_password", &sealed).unwrap(),
            "hunter2",
            "the key persists"
        );
        let other = SealKey::load_or_create(&dir.path().join("other.key")).unwrap();
        let err = other.open("db_password", &sealed).unwrap_err();
        assert!(
            err.contains("another node's key") && err.contains("--secret db_password="),
            "{err}"
        );
    }

    #[test]
    fn keys_made_at_once_are_one_key_and_derive_equal_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let keys: Vec<[u8; 32]> = std::thread::scope(|scope| {
            let made: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| SealKey::load_or_create(&path).unwrap().derive("code")))
                .collect();
            made.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(
            keys.iter().all(|k| *k == keys[0]),
            "one key, whoever made it"
        );
        let key = SealKey::load_or_create(&path).unwrap();
        assert_eq!(key.derive("code"), keys[0]);
        assert_ne!(
            key.derive("code"),
            key.derive("other"),
            "one key per purpose"
        );
        assert_ne!(
            key.derive("code"),
            key.key,
            "the derived key is not the key"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files stay");
    }
}
