//! The data of every instance's store: one generic [`HostState`] holding the WASI context of
//! the instance's kind, the memory limiter and each capability's state.
//!
//! Capability states are found by type: a host function linked by a capability reaches its own
//! state with [`HostState::state`], a plain function pointer as Wasmtime's bindings want. The
//! lookup is a scan of a handful of type ids.

use std::any::{Any, TypeId};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::outbound::OutboundHooks;

/// The store data of an instance: `W` is the WASI context of its kind ([`ComponentCtx`] or
/// [`ModuleCtx`]).
pub struct HostState<W> {
    /// WASI for this instance.
    pub wasi: W,
    /// Caps its memories and tables.
    pub limiter: GuestLimiter,
    pub(crate) states: States,
}

impl<W> HostState<W> {
    /// A store's data from its WASI context, limiter and the capabilities' states (from
    /// [`crate::Capabilities::prepare`]).
    pub fn new(wasi: W, limiter: GuestLimiter, states: States) -> Self {
        Self {
            wasi,
            limiter,
            states,
        }
    }

    /// Every capability's state, for [`crate::Capabilities::finish`].
    pub fn states_mut(&mut self) -> &mut States {
        &mut self.states
    }

    /// The state of the capability whose state type is `T`, if that capability is in the set.
    pub fn state<T: 'static>(&mut self) -> Option<&mut T> {
        self.states.get_mut::<T>()
    }
}

/// WASI for a `wasi:http` component: the WASI 0.2 context, the resource table and the HTTP
/// context.
pub struct ComponentCtx {
    /// WASI 0.2.
    pub ctx: WasiCtx,
    /// Resources the guest holds handles to.
    pub table: ResourceTable,
    /// `wasi:http`.
    pub http: WasiHttpCtx,
    /// Outgoing HTTP when no outbound capability is in the set: every request is denied.
    deny: DenyOutbound,
}

impl ComponentCtx {
    /// A component's WASI from a built context.
    pub fn new(ctx: WasiCtx) -> Self {
        Self {
            ctx,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            deny: DenyOutbound,
        }
    }
}

/// WASI for a WAGI module: the preview 1 context (which holds its own table).
pub type ModuleCtx = WasiP1Ctx;

impl WasiView for HostState<ComponentCtx> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.wasi.table,
        }
    }
}

impl WasiHttpView for HostState<ComponentCtx> {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let hooks: &mut dyn WasiHttpHooks = match self.states.get_mut::<OutboundHooks>() {
            Some(hooks) => hooks,
            None => &mut self.wasi.deny,
        };
        WasiHttpCtxView {
            ctx: &mut self.wasi.http,
            table: &mut self.wasi.table,
            hooks,
        }
    }
}

/// Refuses every outgoing request.
struct DenyOutbound;

impl WasiHttpHooks for DenyOutbound {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> crate::outbound::SendFuture {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// The states of one instance's capabilities, in the order of the set.
#[derive(Default)]
pub struct States {
    slots: Vec<(TypeId, Box<dyn Any + Send>)>,
}

impl States {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            slots: Vec::with_capacity(n),
        }
    }

    pub(crate) fn push(&mut self, state: Box<dyn Any + Send>) {
        self.slots.push(((*state).type_id(), state));
    }

    pub(crate) fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        self.slots
            .iter_mut()
            .find(|(slot, _)| *slot == id)
            .and_then(|(_, state)| state.downcast_mut())
    }

    pub(crate) fn slots_mut(&mut self) -> impl Iterator<Item = &mut (dyn Any + Send)> {
        self.slots.iter_mut().map(|(_, state)| &mut **state)
    }
}

/// Caps the linear memory of all of an instance's memories together, and table sizes. A
/// refused growth makes `memory.grow` fail as the WebAssembly spec says; the refusal is
/// remembered so that the trap that usually follows is reported as the memory limit.
#[derive(Debug)]
pub struct GuestLimiter {
    memory_limit: usize,
    memory_used: usize,
    table_elements_limit: usize,
    memory_refused: bool,
}

/// Table elements any one table may hold; far above what real guests use.
const TABLE_ELEMENTS_LIMIT: usize = 20_000;

impl GuestLimiter {
    /// A limiter allowing `memory_limit` bytes across all memories.
    pub fn new(memory_limit: u64) -> Self {
        Self {
            memory_limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
            memory_used: 0,
            table_elements_limit: TABLE_ELEMENTS_LIMIT,
            memory_refused: false,
        }
    }

    /// True once a memory growth was refused for exceeding the limit.
    pub fn memory_refused(&self) -> bool {
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

    #[test]
    fn states_are_found_by_type() {
        let mut states = States::with_capacity(2);
        states.push(Box::new(7u32));
        states.push(Box::new(String::from("kv")));
        assert_eq!(states.get_mut::<String>().unwrap(), "kv");
        *states.get_mut::<u32>().unwrap() += 1;
        assert_eq!(*states.get_mut::<u32>().unwrap(), 8);
        assert!(states.get_mut::<u64>().is_none());
    }
}
