//! [`ClusterKey`]: the key the nodes of a cluster share, derived from the `secret.key` they all
//! hold. It tags what a node must not take on NATS's word alone: compiled code (machine code
//! runs outside the sandbox) and access records (tokens, namespaces, policies). Whoever can
//! write to NATS but lacks `secret.key` can plant neither.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The cluster's shared key.
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    /// The key from its 32 bytes.
    pub fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// An HMAC-SHA256 over `bytes` filed as `name`, for one `domain` (what kind of thing it
    /// is), so that a tag made for one name or kind is no tag for another.
    pub(crate) fn mac(&self, domain: &[u8], name: &str, bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(domain);
        mac.update(name.as_bytes());
        mac.update(b"\0");
        mac.update(bytes);
        mac
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}
