//! The host functions: Spin's `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue`'s
//! `store`, `atomics` and `batch` at `0.2.0-draft2` (Spin's) and `0.2.0-draft` (wasmCloud's),
//! each a thin translation to the same [`Backend`](crate::backend::Backend) operations. A label
//! the function was not granted is the interface's `access-denied`.

use kindling_host::{ComponentCtx, ComponentLinker, HostState};
use wasmtime::component::{HasSelf, Resource};

use crate::backend::{Backend, KvError};
use crate::state::{Cas, KvState, OpenError, OpenStore};

wasmtime::component::bindgen!({
    path: "wit",
    world: "kindling:keyvalue/host",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/key-value.store": crate::state::OpenStore,
        "wasi:keyvalue/store@0.2.0-draft2.bucket": crate::state::OpenStore,
        "wasi:keyvalue/atomics@0.2.0-draft2.cas": crate::state::Cas,
        "wasi:keyvalue/store@0.2.0-draft.bucket": crate::state::OpenStore,
    },
});

use fermyon::spin::key_value as spin;
use wasi::keyvalue0_2_0_draft::{
    atomics as atomics_draft, batch as batch_draft, store as store_draft,
};
use wasi::keyvalue0_2_0_draft2::{atomics as atomics2, batch as batch2, store as store2};

/// Keys per page of a `list-keys`.
const PAGE: usize = 1000;

/// Adds every interface to the component linker.
pub(crate) fn add_to_linker(linker: &mut ComponentLinker) -> wasmtime::Result<()> {
    fn state(host: &mut HostState<ComponentCtx>) -> &mut KvState {
        host.state::<KvState>()
            .expect("the key-value capability prepares a state for every instance")
    }
    spin::add_to_linker::<_, HasSelf<KvState>>(linker, state)?;
    store2::add_to_linker::<_, HasSelf<KvState>>(linker, state)?;
    atomics2::add_to_linker::<_, HasSelf<KvState>>(linker, state)?;
    batch2::add_to_linker::<_, HasSelf<KvState>>(linker, state)?;
    store_draft::add_to_linker::<_, HasSelf<KvState>>(linker, state)?;
    atomics_draft::add_to_linker::<_, HasSelf<KvState>>(linker, state)?;
    batch_draft::add_to_linker::<_, HasSelf<KvState>>(linker, state)?;
    Ok(())
}

pub(crate) fn text(err: KvError) -> String {
    err.to_string()
}

// fermyon:spin/key-value@2.0.0

impl spin::Host for KvState {}

impl spin::HostStore for KvState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, spin::Error>> {
        Ok(self.open(&label).map_err(|err| match err {
            OpenError::Denied => spin::Error::AccessDenied,
            OpenError::Full => spin::Error::StoreTableFull,
        }))
    }

    async fn get(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, spin::Error>> {
        let backend = self.backend(&store)?;
        Ok(backend.get(&key).await.map_err(spin_error))
    }

    async fn set(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), spin::Error>> {
        let backend = self.backend(&store)?;
        Ok(backend.set(&key, &value).await.map_err(spin_error))
    }

    async fn delete(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), spin::Error>> {
        let backend = self.backend(&store)?;
        Ok(backend.delete(&key).await.map_err(spin_error))
    }

    async fn exists(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, spin::Error>> {
        let backend = self.backend(&store)?;
        Ok(backend.exists(&key).await.map_err(spin_error))
    }

    async fn get_keys(
        &mut self,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<Result<Vec<String>, spin::Error>> {
        let backend = self.backend(&store)?;
        let (keys, ended) = all_keys(&*backend).await;
        Ok(ended.map(|()| keys).map_err(spin_error))
    }

    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.close(store)
    }
}

/// Every key of a store, page by page, and how the listing ended: the keys read before an
/// error are kept.
pub(crate) async fn all_keys(backend: &dyn Backend) -> (Vec<String>, Result<(), KvError>) {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        match backend.keys(after.as_deref(), PAGE).await {
            Ok(page) => {
                keys.extend(page.keys);
                match page.next {
                    Some(next) => after = Some(next),
                    None => return (keys, Ok(())),
                }
            }
            Err(err) => return (keys, Err(err)),
        }
    }
}

fn spin_error(err: KvError) -> spin::Error {
    spin::Error::Other(text(err))
}

// wasi:keyvalue@0.2.0-draft2 and @0.2.0-draft: the same store, two cursor types.

macro_rules! wasi_store {
    ($store:ident, $cursor:ty, $page:expr) => {
        impl $store::Host for KvState {
            async fn open(
                &mut self,
                identifier: String,
            ) -> wasmtime::Result<Result<Resource<OpenStore>, $store::Error>> {
                Ok(self.open(&identifier).map_err(|err| match err {
                    OpenError::Denied => $store::Error::AccessDenied,
                    OpenError::Full => $store::Error::Other(format!(
                        "too many stores open at once (at most {})",
                        crate::state::MAX_OPEN
                    )),
                }))
            }
        }

        impl $store::HostBucket for KvState {
            async fn get(
                &mut self,
                bucket: Resource<OpenStore>,
                key: String,
            ) -> wasmtime::Result<Result<Option<Vec<u8>>, $store::Error>> {
                let backend = self.backend(&bucket)?;
                Ok(backend
                    .get(&key)
                    .await
                    .map_err(|e| $store::Error::Other(text(e))))
            }

            async fn set(
                &mut self,
                bucket: Resource<OpenStore>,
                key: String,
                value: Vec<u8>,
            ) -> wasmtime::Result<Result<(), $store::Error>> {
                let backend = self.backend(&bucket)?;
                Ok(backend
                    .set(&key, &value)
                    .await
                    .map_err(|e| $store::Error::Other(text(e))))
            }

            async fn delete(
                &mut self,
                bucket: Resource<OpenStore>,
                key: String,
            ) -> wasmtime::Result<Result<(), $store::Error>> {
                let backend = self.backend(&bucket)?;
                Ok(backend
                    .delete(&key)
                    .await
                    .map_err(|e| $store::Error::Other(text(e))))
            }

            async fn exists(
                &mut self,
                bucket: Resource<OpenStore>,
                key: String,
            ) -> wasmtime::Result<Result<bool, $store::Error>> {
                let backend = self.backend(&bucket)?;
                Ok(backend
                    .exists(&key)
                    .await
                    .map_err(|e| $store::Error::Other(text(e))))
            }

            async fn list_keys(
                &mut self,
                bucket: Resource<OpenStore>,
                cursor: Option<$cursor>,
            ) -> wasmtime::Result<Result<$store::KeyResponse, $store::Error>> {
                let backend = self.backend(&bucket)?;
                let page: fn(&std::sync::Arc<dyn crate::backend::Backend>, Option<$cursor>) -> _ =
                    $page;
                Ok(page(&backend, cursor)
                    .await
                    .map_err(|e| $store::Error::Other(text(e))))
            }

            async fn drop(&mut self, bucket: Resource<OpenStore>) -> wasmtime::Result<()> {
                self.close(bucket)
            }
        }
    };
}

wasi_store!(store2, String, |backend, cursor| {
    let backend = backend.clone();
    async move {
        let page = backend.keys(cursor.as_deref(), PAGE).await?;
        Ok(store2::KeyResponse {
            keys: page.keys,
            cursor: page.next,
        })
    }
});

wasi_store!(store_draft, u64, |backend, cursor| {
    // This draft's cursor is a count of keys already returned.
    let backend = backend.clone();
    async move {
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        let mut after: Option<String> = None;
        let mut seen = 0usize;
        loop {
            let page = backend.keys(after.as_deref(), PAGE).await?;
            let len = page.keys.len();
            if seen + len > skip || page.next.is_none() {
                let keys: Vec<String> = page
                    .keys
                    .into_iter()
                    .skip(skip.saturating_sub(seen))
                    .collect();
                let returned = seen.max(skip) + keys.len();
                return Ok(store_draft::KeyResponse {
                    cursor: page.next.map(|_| returned as u64),
                    keys,
                });
            }
            seen += len;
            after = page.next;
        }
    }
});

// Atomics.

impl atomics2::Host for KvState {
    async fn increment(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store2::Error>> {
        let backend = self.backend(&bucket)?;
        Ok(backend
            .increment(&key, delta)
            .await
            .map_err(|e| store2::Error::Other(text(e))))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics2::CasError>> {
        let handle = self.table.get(&cas)?;
        let (backend, key, expected) = (
            handle.backend.clone(),
            handle.key.clone(),
            handle.current.clone(),
        );
        match backend.swap(&key, expected.as_deref(), &value).await {
            Ok(true) => {
                self.table.delete(cas)?;
                Ok(Ok(()))
            }
            // Changed since it was read: hand the handle back, with the value now.
            Ok(false) => {
                let now = backend.get(&key).await;
                let handle = self.table.get_mut(&cas)?;
                match now {
                    Ok(now) => {
                        handle.current = now;
                        Ok(Err(atomics2::CasError::CasFailed(cas)))
                    }
                    Err(e) => {
                        self.table.delete(cas)?;
                        Ok(Err(atomics2::CasError::StoreError(store2::Error::Other(
                            text(e),
                        ))))
                    }
                }
            }
            Err(e) => {
                self.table.delete(cas)?;
                Ok(Err(atomics2::CasError::StoreError(store2::Error::Other(
                    text(e),
                ))))
            }
        }
    }
}

impl atomics2::HostCas for KvState {
    async fn new(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, store2::Error>> {
        let backend = self.backend(&bucket)?;
        let current = match backend.get(&key).await {
            Ok(current) => current,
            Err(e) => return Ok(Err(store2::Error::Other(text(e)))),
        };
        Ok(Ok(self.table.push(Cas {
            backend,
            key,
            current,
        })?))
    }

    async fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store2::Error>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl atomics_draft::Host for KvState {
    async fn increment(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, store_draft::Error>> {
        let backend = self.backend(&bucket)?;
        let Ok(delta) = i64::try_from(delta) else {
            return Ok(Err(store_draft::Error::Other(format!(
                "increment by {delta} is beyond a signed 64-bit counter"
            ))));
        };
        Ok(match backend.increment(&key, delta).await {
            Ok(value) => u64::try_from(value).map_err(|_| {
                store_draft::Error::Other(format!("the counter {key:?} is negative ({value})"))
            }),
            Err(e) => Err(store_draft::Error::Other(text(e))),
        })
    }
}

// Batches: one operation per key; not atomic, as the interfaces say.

impl batch2::Host for KvState {
    async fn get_many(
        &mut self,
        bucket: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, store2::Error>> {
        let backend = self.backend(&bucket)?;
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            match backend.get(&key).await {
                Ok(value) => values.push((key, value)),
                Err(e) => return Ok(Err(store2::Error::Other(text(e)))),
            }
        }
        Ok(Ok(values))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<OpenStore>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store2::Error>> {
        let backend = self.backend(&bucket)?;
        for (key, value) in key_values {
            if let Err(e) = backend.set(&key, &value).await {
                return Ok(Err(store2::Error::Other(text(e))));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store2::Error>> {
        let backend = self.backend(&bucket)?;
        for key in keys {
            if let Err(e) = backend.delete(&key).await {
                return Ok(Err(store2::Error::Other(text(e))));
            }
        }
        Ok(Ok(()))
    }
}

impl batch_draft::Host for KvState {
    async fn get_many(
        &mut self,
        bucket: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store_draft::Error>> {
        let backend = self.backend(&bucket)?;
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            match backend.get(&key).await {
                Ok(value) => values.push(value.map(|value| (key, value))),
                Err(e) => return Ok(Err(store_draft::Error::Other(text(e)))),
            }
        }
        Ok(Ok(values))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<OpenStore>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store_draft::Error>> {
        let backend = self.backend(&bucket)?;
        for (key, value) in key_values {
            if let Err(e) = backend.set(&key, &value).await {
                return Ok(Err(store_draft::Error::Other(text(e))));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store_draft::Error>> {
        let backend = self.backend(&bucket)?;
        for key in keys {
            if let Err(e) = backend.delete(&key).await {
                return Ok(Err(store_draft::Error::Other(text(e))));
            }
        }
        Ok(Ok(()))
    }
}
