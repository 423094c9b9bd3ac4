//! Per-request store state for both function kinds, and how every store is armed before the
//! guest runs: a deadline, a memory limiter and, when the node meters fuel, a CPU budget.
//!
//! The epoch deadline does two jobs: every tick a running guest yields its thread back to
//! Tokio (so one busy guest cannot starve other requests), and once the wall-clock deadline
//! has passed the guest is interrupted with a trap.

use tokio::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::outbound::OutboundHooks;

/// Store data for a `wasi:http` component instance.
pub(crate) struct HttpState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) hooks: OutboundHooks,
    pub(crate) limiter: GuestLimiter,
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Store data for a WAGI (WASI preview 1) module instance.
pub(crate) struct WagiState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: GuestLimiter,
}

/// Store data that carries a [`GuestLimiter`].
pub(crate) trait Limited: Send + 'static {
    fn limiter(&mut self) -> &mut GuestLimiter;
}

impl Limited for HttpState {
    fn limiter(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }
}

impl Limited for WagiState {
    fn limiter(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }
}

/// Caps the linear memory of all of an instance's memories together, and table sizes. A
/// refused growth makes `memory.grow` fail as the WebAssembly spec says; the refusal is
/// remembered so that the trap that usually follows is reported as the memory limit.
#[derive(Debug)]
pub(crate) struct GuestLimiter {
    memory_limit: usize,
    memory_used: usize,
    table_elements_limit: usize,
    memory_refused: bool,
}

/// Table elements any one table may hold; far above what real guests use.
const TABLE_ELEMENTS_LIMIT: usize = 20_000;

impl GuestLimiter {
    pub(crate) fn new(memory_limit: u64) -> Self {
        Self {
            memory_limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
            memory_used: 0,
            table_elements_limit: TABLE_ELEMENTS_LIMIT,
            memory_refused: false,
        }
    }

    /// True once a memory growth was refused for exceeding the limit.
    pub(crate) fn memory_refused(&self) -> bool {
        self.memory_refused
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        match self.memory_used.checked_add(growth) {
            Some(total) if total <= self.memory_limit => {
                self.memory_used = total;
                Ok(true)
            }
            _ => {
                self.memory_refused = true;
                Ok(false)
            }
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements_limit)
    }
}

/// Arms a store before the guest runs: deadline and yielding, memory limiter, fuel.
pub(crate) fn arm<T: Limited>(store: &mut Store<T>, deadline: Instant, fuel: Option<u64>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.limiter(|state| state.limiter());
    if let Some(fuel) = fuel {
        // Only called when the engine meters fuel, so this cannot fail.
        let _ = store.set_fuel(fuel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_counted_across_memories_and_refusals_remembered() {
        let mut limiter = GuestLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(
            limiter.memory_growing(0, 40, None).unwrap(),
            "a second memory shares the cap"
        );
        assert!(!limiter.memory_refused());
        assert!(!limiter.memory_growing(40, 41, None).unwrap());
        assert!(limiter.memory_refused());
        assert!(
            !limiter
                .table_growing(0, TABLE_ELEMENTS_LIMIT + 1, None)
                .unwrap()
        );
    }
}
