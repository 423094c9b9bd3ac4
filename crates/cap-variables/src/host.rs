//! The host functions: Spin's `fermyon:spin/variables@2.0.0` and (async, WASI 0.3)
//! `spin:variables/variables@3.0.0`, and `wasi:config` in the versions components import, each
//! reading the same resolved values.

use kindling_host::{ComponentCtx, ComponentLinker, HostState};
use wasmtime::component::{Accessor, HasSelf};

use crate::capability::{VarsState, valid_name};

wasmtime::component::bindgen!({
    path: "wit",
    world: "kindling:variables/host",
    imports: { default: trappable },
});

use fermyon::spin::variables as spin2;
use spin::variables::variables as spin3;
use wasi::config0_2_0_draft::{runtime as runtime_draft, store as store_draft};
use wasi::config0_2_0_draft_2024_09_27::store as store_2024;
use wasi::config0_2_0_rc_1::store as store_rc1;

/// Adds every interface to the component linker; Spin 3's, whose functions are `async func`s,
/// only to a linker with concurrency support (`concurrent`).
pub(crate) fn add_to_linker(
    linker: &mut ComponentLinker,
    concurrent: bool,
) -> wasmtime::Result<()> {
    fn state(host: &mut HostState<ComponentCtx>) -> &mut VarsState {
        host.state::<VarsState>()
            .expect("the variables capability prepares a state for every instance")
    }
    spin2::add_to_linker::<_, HasSelf<VarsState>>(linker, state)?;
    store_2024::add_to_linker::<_, HasSelf<VarsState>>(linker, state)?;
    store_rc1::add_to_linker::<_, HasSelf<VarsState>>(linker, state)?;
    store_draft::add_to_linker::<_, HasSelf<VarsState>>(linker, state)?;
    runtime_draft::add_to_linker::<_, HasSelf<VarsState>>(linker, state)?;
    if concurrent {
        spin3::add_to_linker::<_, HasSelf<VarsState>>(linker, state)?;
    }
    Ok(())
}

/// Why a lookup found no value, in words a guest can show; the same for both Spin versions.
enum Miss {
    InvalidName(String),
    Undefined(String),
}

impl VarsState {
    fn lookup(&self, name: &str) -> Result<String, Miss> {
        if !valid_name(name) {
            return Err(Miss::InvalidName(format!(
                "{name:?} is not a variable name: a lowercase letter, then lowercase letters, \
                 digits and `_`"
            )));
        }
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| Miss::Undefined(format!("no variable {name:?} was deployed")))
    }
}

impl spin2::Host for VarsState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, spin2::Error>> {
        Ok(self.lookup(&name).map_err(|miss| match miss {
            Miss::InvalidName(why) => spin2::Error::InvalidName(why),
            Miss::Undefined(why) => spin2::Error::Undefined(why),
        }))
    }
}

impl spin3::Host for VarsState {}

impl<U> spin3::HostWithStore<U> for HasSelf<VarsState> {
    async fn get(
        accessor: &Accessor<U, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, spin3::Error>> {
        // Values are resolved at deploy: the lookup never waits.
        let found = accessor.with(|mut access| access.get().lookup(&name));
        Ok(found.map_err(|miss| match miss {
            Miss::InvalidName(why) => spin3::Error::InvalidName(why),
            Miss::Undefined(why) => spin3::Error::Undefined(why),
        }))
    }
}

macro_rules! config_store {
    ($module:ident, $error:ident) => {
        impl $module::Host for VarsState {
            fn get(
                &mut self,
                key: String,
            ) -> wasmtime::Result<Result<Option<String>, $module::$error>> {
                Ok(Ok(self.values.get(&key).cloned()))
            }

            fn get_all(
                &mut self,
            ) -> wasmtime::Result<Result<Vec<(String, String)>, $module::$error>> {
                Ok(Ok(self
                    .values
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()))
            }
        }
    };
}

config_store!(store_2024, Error);
config_store!(store_rc1, Error);
config_store!(store_draft, Error);
config_store!(runtime_draft, ConfigError);
