//! The host functions: Spin's `fermyon:spin/variables@2.0.0` and `wasi:config` in the
//! versions components import, each reading the same resolved values.

use kindling_host::{ComponentCtx, ComponentLinker, HostState};
use wasmtime::component::HasSelf;

use crate::capability::{VarsState, valid_name};

wasmtime::component::bindgen!({
    path: "wit",
    world: "kindling:variables/host",
    imports: { default: trappable },
});

use fermyon::spin::variables as spin;
use wasi::config0_2_0_draft::{runtime as runtime_draft, store as store_draft};
use wasi::config0_2_0_draft_2024_09_27::store as store_2024;
use wasi::config0_2_0_rc_1::store as store_rc1;

/// Adds every interface to the component linker.
pub(crate) fn add_to_linker(linker: &mut ComponentLinker) -> wasmtime::Result<()> {
    fn state(host: &mut HostState<ComponentCtx>) -> &mut VarsState {
        host.state::<VarsState>()
            .expect("the variables capability prepares a state for every instance")
    }
    spin::add_to_linker::<_, HasSelf<VarsState>>(linker, state)?;
    store_2024::add_to_linker::<_, HasSelf<VarsState>>(linker, state)?;
    store_rc1::add_to_linker::<_, HasSelf<VarsState>>(linker, state)?;
    store_draft::add_to_linker::<_, HasSelf<VarsState>>(linker, state)?;
    runtime_draft::add_to_linker::<_, HasSelf<VarsState>>(linker, state)?;
    Ok(())
}

impl spin::Host for VarsState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, spin::Error>> {
        if !valid_name(&name) {
            return Ok(Err(spin::Error::InvalidName(format!(
                "{name:?} is not a variable name: a lowercase letter, then lowercase letters, \
                 digits and `_`"
            ))));
        }
        Ok(self
            .values
            .get(&name)
            .cloned()
            .ok_or_else(|| spin::Error::Undefined(format!("no variable {name:?} was deployed"))))
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
