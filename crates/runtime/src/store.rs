//! Building the store of one request's instance, the same way for both function kinds: every
//! capability prepares its state, the kind adds what is its own (WAGI's CGI variables and
//! pipes), and the store is armed before the guest runs with a deadline, a memory limiter and,
//! when the node meters fuel, a CPU budget.
//!
//! The epoch deadline does two jobs: every tick a running guest yields its thread back to
//! Tokio (so one busy guest cannot starve other requests), and once the wall-clock deadline
//! has passed the guest is interrupted with a trap.

use kindling_host::{Capabilities, GuestLimiter, HostState, InstanceBuilder, InstanceKind};
use tokio::time::Instant;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

use crate::config::FunctionSettings;
use crate::error::InvokeError;
use crate::invocation::RequestInfo;

/// What one request's instance is built from.
pub(crate) struct StoreParts<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) capabilities: &'a Capabilities,
    pub(crate) settings: &'a FunctionSettings,
    pub(crate) info: &'a RequestInfo,
    pub(crate) deadline: Instant,
    pub(crate) fuel: Option<u64>,
}

impl StoreParts<'_> {
    /// Builds and arms the store. `kind_env` turns the capabilities' environment into the
    /// instance's (WAGI adds its CGI variables, which win on a clash) and may set up the rest
    /// of the WASI context; `build` makes the kind's WASI context from it.
    pub(crate) fn build<W: Send + 'static>(
        &self,
        kind: InstanceKind,
        kind_env: impl FnOnce(&mut WasiCtxBuilder, Vec<(String, String)>) -> Vec<(String, String)>,
        build: impl FnOnce(&mut WasiCtxBuilder) -> W,
    ) -> Result<Store<HostState<W>>, InvokeError> {
        let mut wasi = WasiCtxBuilder::new();
        let mut env = Vec::new();
        let states = {
            let mut builder =
                InstanceBuilder::new(&mut wasi, &mut env, &self.info.invocation, kind);
            self.capabilities
                .prepare(&self.settings.capabilities, &mut builder)
                .map_err(|err| InvokeError::Internal(err.to_string()))?
        };
        let env = kind_env(&mut wasi, env);
        wasi.envs(&env);
        let limiter = GuestLimiter::new(self.settings.limits.memory_bytes);
        let mut store = Store::new(
            self.engine,
            HostState::new(build(&mut wasi), limiter, states),
        );
        arm(&mut store, self.deadline, self.fuel);
        Ok(store)
    }
}

/// Arms a store before the guest runs: deadline and yielding, memory limiter, fuel.
fn arm<W: Send + 'static>(store: &mut Store<HostState<W>>, deadline: Instant, fuel: Option<u64>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.limiter(|state| &mut state.limiter);
    if let Some(fuel) = fuel {
        // Only called when the engine meters fuel, so this cannot fail.
        let _ = store.set_fuel(fuel);
    }
}

/// After the guest: every capability finishes with its state (guest output reaches the log).
pub(crate) fn finish<W>(
    store: &mut Store<HostState<W>>,
    capabilities: &Capabilities,
    info: &RequestInfo,
) {
    capabilities.finish(store.data_mut().states_mut(), &info.invocation);
}
