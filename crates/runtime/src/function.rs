//! A function ready to serve: compiled code pre-linked against the host (`InstancePre`), plus
//! the settings of its deployed version. Cheap to clone and shared by all requests.

use std::sync::Arc;

use bytes::Bytes;
use http_body::Body;
use wasmtime::InstancePre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::config::FunctionSettings;
use crate::error::InvokeError;
use crate::executor::{Executor, Weight};
use crate::invocation::{BoxError, RequestInfo, ResponseBody};
use crate::kind::FunctionKind;
use crate::store::{HttpState, WagiState};

/// A loaded function. Each invocation instantiates it afresh: no state survives a request.
#[derive(Clone)]
pub struct Function {
    inner: Arc<Inner>,
}

struct Inner {
    sha256: String,
    settings: FunctionSettings,
    pre: Pre,
    /// Whether the engine meters fuel: every store then needs a budget.
    meters_fuel: bool,
    /// Where guest code runs.
    executor: Arc<Executor>,
    /// Whether its guests have lately run long enough to belong on the guest pool.
    weight: Arc<Weight>,
}

pub(crate) enum Pre {
    Http(ProxyPre<HttpState>),
    Wagi(InstancePre<WagiState>),
}

impl Function {
    pub(crate) fn new(
        sha256: String,
        settings: FunctionSettings,
        pre: Pre,
        meters_fuel: bool,
        executor: Arc<Executor>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                sha256,
                settings,
                pre,
                meters_fuel,
                executor,
                weight: Arc::default(),
            }),
        }
    }

    /// The kind of binary this function is.
    pub fn kind(&self) -> FunctionKind {
        match self.inner.pre {
            Pre::Http(_) => FunctionKind::WasiHttp,
            Pre::Wagi(_) => FunctionKind::Wagi,
        }
    }

    /// The sha256 of the WebAssembly bytes, in hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// The settings this function runs with.
    pub fn settings(&self) -> &FunctionSettings {
        &self.inner.settings
    }

    /// Returns a copy of this function that runs with other settings, sharing the compiled
    /// code: a configuration-only change needs no recompilation.
    pub fn with_settings(&self, settings: FunctionSettings) -> Self {
        let pre = match &self.inner.pre {
            Pre::Http(pre) => Pre::Http(pre.clone()),
            Pre::Wagi(pre) => Pre::Wagi(pre.clone()),
        };
        Self::new(
            self.inner.sha256.clone(),
            settings,
            pre,
            self.inner.meters_fuel,
            self.inner.executor.clone(),
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
    ) -> Result<http::Response<ResponseBody>, InvokeError>
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
        let settings = &self.inner.settings;
        let fuel = self
            .inner
            .meters_fuel
            .then(|| settings.limits.cpu_fuel.unwrap_or(u64::MAX));
        let executor = &self.inner.executor;
        let weight = &self.inner.weight;
        match &self.inner.pre {
            Pre::Http(pre) => {
                crate::http::invoke(pre, settings, fuel, (executor, weight), hold, request, info)
                    .await
            }
            Pre::Wagi(pre) if !weight.is_heavy() => {
                let _hold = hold;
                crate::wagi::invoke(pre, settings, fuel, weight, request, info).await
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
                    crate::wagi::invoke(pre, &inner.settings, fuel, &inner.weight, request, &info)
                        .await
                };
                executor
                    .spawn(true, call)
                    .await
                    .map_err(|err| InvokeError::Internal(format!("guest task failed: {err}")))?
            }
        }
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
