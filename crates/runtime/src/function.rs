//! A function ready to serve: compiled code pre-linked against the host (`InstancePre`), plus
//! the settings of its deployed version. Cheap to clone and shared by all requests.

use std::sync::Arc;

use bytes::Bytes;
use http_body::Body;
use kindling_host::{BoxError, Capabilities, ComponentCtx, HostState, ModuleCtx};
use wasmtime::InstancePre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::config::FunctionSettings;
use crate::error::InvokeError;
use crate::executor::{Executor, Placement, Weight};
use crate::invocation::{Invoked, RequestInfo};
use crate::kind::FunctionKind;

/// A loaded function. Each invocation instantiates it afresh: no state survives a request.
#[derive(Clone)]
pub struct Function {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    sha256: String,
    pub(crate) settings: FunctionSettings,
    pre: Pre,
    /// What every instance's store is built from.
    pub(crate) shared: Shared,
    /// Whether its guests have lately run long enough to belong on the guest pool.
    pub(crate) weight: Arc<Weight>,
}

/// What a function shares with every other function of the runtime.
#[derive(Clone)]
pub(crate) struct Shared {
    /// The capabilities every instance is prepared by.
    pub(crate) capabilities: Capabilities,
    /// Whether the engine meters fuel: every store then needs a budget.
    pub(crate) meters_fuel: bool,
    /// Where guest code runs.
    pub(crate) executor: Arc<Executor>,
}

#[derive(Clone)]
pub(crate) enum Pre {
    Http(ProxyPre<HostState<ComponentCtx>>),
    Http3(ServicePre<HostState<ComponentCtx>>),
    Wagi(InstancePre<HostState<ModuleCtx>>),
}

impl Function {
    /// The engine its code was compiled for.
    #[cfg(test)]
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match &self.inner.pre {
            Pre::Http(pre) => pre.engine(),
            Pre::Http3(pre) => pre.engine(),
            Pre::Wagi(pre) => pre.module().engine(),
        }
    }

    pub(crate) fn new(
        sha256: String,
        settings: FunctionSettings,
        pre: Pre,
        shared: Shared,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                sha256,
                settings,
                pre,
                shared,
                weight: Arc::default(),
            }),
        }
    }

    /// The kind of binary this function is.
    pub fn kind(&self) -> FunctionKind {
        match self.inner.pre {
            Pre::Http(_) => FunctionKind::WasiHttp,
            Pre::Http3(_) => FunctionKind::WasiHttp3,
            Pre::Wagi(_) => FunctionKind::Wagi,
        }
    }

    /// The sha256 of the WebAssembly bytes, in hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// What the binary imports and exports, by name: interfaces (`wasi:http/types@0.2.0`)
    /// for a component, `module::name` for a core module. Deploy-time policy reads these.
    pub fn interface_names(&self) -> (Vec<String>, Vec<String>) {
        let component = match &self.inner.pre {
            Pre::Http(pre) => pre.instance_pre().component(),
            Pre::Http3(pre) => pre.instance_pre().component(),
            Pre::Wagi(pre) => {
                let module = pre.module();
                let imports = module
                    .imports()
                    .map(|i| format!("{}::{}", i.module(), i.name()))
                    .collect();
                let exports = module.exports().map(|e| e.name().to_string()).collect();
                return (imports, exports);
            }
        };
        let engine = component.engine();
        let ty = component.component_type();
        let imports = ty
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let exports = ty
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        (imports, exports)
    }

    /// Where its guests run now: inline on the I/O threads, or on the guest pool when it has
    /// been marked heavy (see `executor.rs`).
    pub fn placement(&self) -> Placement {
        self.inner.weight.placement()
    }

    /// The settings this function runs with.
    pub fn settings(&self) -> &FunctionSettings {
        &self.inner.settings
    }

    /// Returns a copy of this function that runs with other settings, sharing the compiled
    /// code: a configuration-only change needs no recompilation.
    pub fn with_settings(&self, settings: FunctionSettings) -> Self {
        Self::new(
            self.inner.sha256.clone(),
            settings,
            self.inner.pre.clone(),
            self.inner.shared.clone(),
        )
    }

    /// Runs one request through a fresh instance and returns the function's response, whose
    /// body streams as the guest writes it. `hold` is kept until the instance is gone, which
    /// can be after the response head has been returned: pass the admission permit.
    pub async fn invoke<B>(
        &self,
        request: http::Request<B>,
        info: &RequestInfo,
        hold: impl Send + 'static,
    ) -> Result<Invoked, InvokeError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let limit = self.inner.settings.limits.max_request_body_bytes;
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit) {
            return Err(InvokeError::RequestBodyTooLarge { limit });
        }
        let inner = &self.inner;
        match &inner.pre {
            Pre::Http(pre) => crate::http::invoke(inner, pre, hold, request, info).await,
            Pre::Http3(pre) => crate::http_p3::invoke(inner, pre, hold, request, info).await,
            Pre::Wagi(pre) if !inner.weight.is_heavy() => {
                let _hold = hold;
                crate::wagi::invoke(inner, pre, request, info).await
            }
            Pre::Wagi(_) => {
                // A heavy WAGI call runs start to end on the guest pool; this task waits.
                let function = self.clone();
                let info = info.clone();
                let call = async move {
                    let _hold = hold;
                    let inner = &function.inner;
                    let Pre::Wagi(pre) = &inner.pre else {
                        unreachable!("matched above")
                    };
                    crate::wagi::invoke(inner, pre, request, &info).await
                };
                inner
                    .shared
                    .executor
                    .spawn(true, call)
                    .await
                    .map_err(|err| InvokeError::Internal(format!("guest task failed: {err}")))?
            }
        }
    }
}

impl Inner {
    /// The fuel every store of this function starts with, when the engine meters fuel.
    pub(crate) fn fuel(&self) -> Option<u64> {
        self.shared
            .meters_fuel
            .then(|| self.settings.limits.cpu_fuel.unwrap_or(u64::MAX))
    }
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("kind", &self.kind())
            .field("sha256", &self.inner.sha256)
            .finish_non_exhaustive()
    }
}
