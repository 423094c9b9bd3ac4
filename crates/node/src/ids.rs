//! Request ids: unique within the process and unlikely to repeat across restarts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// A fresh request id.
pub fn new_request_id() -> Arc<str> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}-{n:x}", process_tag()).into()
}

/// A per-process random tag, so that ids from before and after a restart do not collide.
fn process_tag() -> u32 {
    static TAG: OnceLock<u32> = OnceLock::new();
    *TAG.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        hasher.write_u32(std::process::id());
        hasher.finish() as u32
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique() {
        assert_ne!(super::new_request_id(), super::new_request_id());
    }
}
