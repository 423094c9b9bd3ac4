//! One instance's key-value state: the stores it was granted and the handles it has open.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use kindling_host::ResponseHeaders;
use wasmtime::component::{Resource, ResourceTable};

use crate::backend::Backend;
use crate::capability::Granted;

/// Most stores one instance may have open at once.
pub(crate) const MAX_OPEN: usize = 64;

/// A store a guest opened (the host side of its handle).
pub struct OpenStore {
    pub(crate) backend: Arc<dyn Backend>,
}

/// The value of a key as a guest read it, for a compare-and-swap.
pub struct Cas {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) key: String,
    pub(crate) current: Option<Vec<u8>>,
}

/// The key-value capability's state in an instance's store.
pub struct KvState {
    granted: Arc<Granted>,
    pub(crate) table: ResourceTable,
    open: usize,
    /// Where to say the response's synced data is stale (functions granted a synced label).
    headers: Option<ResponseHeaders>,
}

/// The response header an edge site adds when a function opened a synced label whose copy
/// is older than the label's `stale_after_seconds`: the seconds since the site last heard
/// from its hub.
pub const STALE_HEADER: &str = "kindling-stale";

/// Why a label cannot be opened.
pub(crate) enum OpenError {
    /// Not granted to this function at deploy.
    Denied,
    /// Too many open already.
    Full,
}

impl KvState {
    pub(crate) fn new(granted: Arc<Granted>, headers: Option<ResponseHeaders>) -> Self {
        Self {
            granted,
            table: ResourceTable::new(),
            open: 0,
            headers,
        }
    }

    /// Opens a store by label, if the function was granted it.
    pub(crate) fn open(&mut self, label: &str) -> Result<Resource<OpenStore>, OpenError> {
        let backend = self
            .granted
            .stores
            .get(label)
            .ok_or(OpenError::Denied)?
            .clone();
        if self.open >= MAX_OPEN {
            return Err(OpenError::Full);
        }
        let store = OpenStore { backend };
        let handle = self.table.push(store).map_err(|_| OpenError::Full)?;
        self.open += 1;
        self.note_staleness(label);
        Ok(handle)
    }

    /// At an edge site too long without its hub, marks the response of a function that opened
    /// a synced label: what it reads may be behind the rest of the fleet.
    fn note_staleness(&self, label: &str) {
        let (Some(headers), Some(kv)) = (&self.headers, &self.granted.kv) else {
            return;
        };
        let Some(stale_after) = self.granted.synced.get(label) else {
            return;
        };
        if let Some(silence) = kv.sync_status().hub_silence()
            && silence > *stale_after
        {
            headers.set(
                HeaderName::from_static(STALE_HEADER),
                HeaderValue::from(silence.as_secs()),
            );
        }
    }

    /// The backend behind a handle the guest holds.
    pub(crate) fn backend<T: HasBackend + 'static>(
        &self,
        handle: &Resource<T>,
    ) -> wasmtime::Result<Arc<dyn Backend>> {
        Ok(self.table.get(handle)?.backend().clone())
    }

    /// Closes a store handle.
    pub(crate) fn close(&mut self, handle: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.open -= 1;
        Ok(())
    }
}

/// Handles that name a store.
pub(crate) trait HasBackend {
    fn backend(&self) -> &Arc<dyn Backend>;
}

impl HasBackend for OpenStore {
    fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
}

impl HasBackend for Cas {
    fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
}
