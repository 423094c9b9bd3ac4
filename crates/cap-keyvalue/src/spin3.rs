//! Spin 3's `spin:key-value/key-value@3.0.0`, the interface spin-sdk 6 and 7 (WASI 0.3)
//! import: the same [`Backend`](crate::backend::Backend) operations as Spin 2's, as
//! component-model async functions. Each takes what it needs from the instance's state, lets
//! go of the store, and awaits the backend, so a slow Redis never holds the guest's store.

use kindling_host::{ComponentCtx, ComponentLinker, HostState};
use wasmtime::component::{Accessor, FutureReader, HasSelf, Resource, StreamReader};

use crate::backend::KvError;
use crate::host::{all_keys, text};
use crate::state::{KvState, OpenError, OpenStore};

wasmtime::component::bindgen!({
    path: "wit",
    world: "kindling:keyvalue/host3",
    imports: { default: trappable },
    with: {
        "spin:key-value/key-value.store": crate::state::OpenStore,
    },
});

use spin::key_value::key_value as kv;

/// Adds the interface to the component linker.
pub(crate) fn add_to_linker(linker: &mut ComponentLinker) -> wasmtime::Result<()> {
    fn state(host: &mut HostState<ComponentCtx>) -> &mut KvState {
        host.state::<KvState>()
            .expect("the key-value capability prepares a state for every instance")
    }
    kv::add_to_linker::<_, HasSelf<KvState>>(linker, state)
}

fn error(err: KvError) -> kv::Error {
    kv::Error::Other(text(err))
}

impl kv::Host for KvState {}

impl kv::HostStore for KvState {
    fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.close(store)
    }
}

impl<U: 'static> kv::HostStoreWithStore<U> for HasSelf<KvState> {
    async fn open(
        accessor: &Accessor<U, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, kv::Error>> {
        Ok(accessor.with(|mut access| {
            access.get().open(&label).map_err(|err| match err {
                OpenError::Denied => kv::Error::AccessDenied,
                OpenError::Full => kv::Error::StoreTableFull,
            })
        }))
    }

    async fn get(
        accessor: &Accessor<U, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::Error>> {
        let backend = accessor.with(|mut access| access.get().backend(&store))?;
        Ok(backend.get(&key).await.map_err(error))
    }

    async fn set(
        accessor: &Accessor<U, Self>,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let backend = accessor.with(|mut access| access.get().backend(&store))?;
        Ok(backend.set(&key, &value).await.map_err(error))
    }

    async fn delete(
        accessor: &Accessor<U, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let backend = accessor.with(|mut access| access.get().backend(&store))?;
        Ok(backend.delete(&key).await.map_err(error))
    }

    async fn exists(
        accessor: &Accessor<U, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv::Error>> {
        let backend = accessor.with(|mut access| access.get().backend(&store))?;
        Ok(backend.exists(&key).await.map_err(error))
    }

    async fn get_keys(
        accessor: &Accessor<U, Self>,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), kv::Error>>)> {
        let backend = accessor.with(|mut access| access.get().backend(&store))?;
        // The listing is read whole before the stream opens (a store holds at most its
        // keys-per-store limit); an error part way keeps the keys read before it.
        let (keys, ended) = all_keys(&*backend).await;
        let ended = ended.map_err(error);
        accessor.with(|mut access| {
            let keys = StreamReader::new(&mut access, keys)?;
            let ended =
                FutureReader::new(&mut access, async move { Ok::<_, wasmtime::Error>(ended) })?;
            Ok((keys, ended))
        })
    }
}
