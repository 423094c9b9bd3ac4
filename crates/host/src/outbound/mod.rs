//! Outbound HTTP. A function may call only the hosts it declared at deploy
//! (`allowed_outbound_hosts`, `--allow-outbound URL`); anything else fails in the guest with
//! `HttpRequestDenied` and a log line on the host.
//!
//! An allowed call to `http://{name}.fn.local/...` never leaves the process: it goes to the
//! node's function `name` through the node's entry point (admission, limits and metrics
//! included), one level deeper in the request's call chain. Every other call carries the chain
//! in the `kindling-call-depth` and `kindling-call-budget` headers, so that a loop through a
//! node's own socket is counted too. When the request is traced, each call is a client span
//! and carries `traceparent`, so a chain of functions is one trace.

mod hooks;
mod policy;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub(crate) use hooks::{OutboundHooks, SendFuture};
pub use policy::OutboundPolicy;

use crate::capability::{
    Capability, DeployFlag, FieldSchema, FlagForm, FunctionContext, InstanceBuilder,
};

/// The host suffix of in-process calls: `http://{name}.fn.local/`.
pub const LOCAL_SUFFIX: &str = ".fn.local";

/// How many calls deep an outgoing request's chain is.
pub const CALL_DEPTH_HEADER: http::HeaderName =
    http::HeaderName::from_static("kindling-call-depth");

/// How many invocations an outgoing request's chain may still cause.
pub const CALL_BUDGET_HEADER: http::HeaderName =
    http::HeaderName::from_static("kindling-call-budget");

/// The outbound-HTTP capability.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboundHttp;

/// `{"allowed_outbound_hosts": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSection {
    /// The hosts it may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
}

impl Capability for OutboundHttp {
    type Section = OutboundSection;
    type Config = Arc<OutboundPolicy>;
    type State = OutboundHooks;

    fn name(&self) -> &'static str {
        "outbound-http"
    }

    fn fields(&self) -> Vec<FieldSchema> {
        vec![FieldSchema {
            name: "allowed_outbound_hosts",
            schema: serde_json::json!({
                "type": "array",
                "description": "Hosts it may call: https://api.example.com, http://*.internal:8080, *://example.com:*, http://{name}.fn.local for functions of this node",
                "items": {"type": "string"}
            }),
        }]
    }

    fn configure(
        &self,
        section: &mut OutboundSection,
        _function: &FunctionContext<'_>,
    ) -> Result<Self::Config, String> {
        OutboundPolicy::parse(&section.allowed_outbound_hosts).map(Arc::new)
    }

    fn prepare(
        &self,
        config: &Self::Config,
        instance: &mut InstanceBuilder<'_>,
    ) -> Result<OutboundHooks, String> {
        let invocation = instance.invocation();
        Ok(OutboundHooks {
            policy: config.clone(),
            function: invocation.function.clone(),
            namespace: invocation.namespace.clone(),
            request_id: invocation.request_id.clone(),
            trace: invocation.trace.clone(),
            dispatch: invocation.dispatch.clone(),
            chain: invocation.chain.clone(),
        })
    }

    fn inspect(&self, section: &OutboundSection) -> Vec<(String, String)> {
        let value = if section.allowed_outbound_hosts.is_empty() {
            "(none: outgoing HTTP is denied)".to_string()
        } else {
            section.allowed_outbound_hosts.join(" ")
        };
        vec![("outbound".into(), value)]
    }

    fn deploy_flags(&self) -> Vec<DeployFlag> {
        vec![DeployFlag {
            long: "allow-outbound",
            short: None,
            value_name: "URL",
            help: "A host the function may call over HTTP, such as https://api.example.com \
                   (repeatable)",
            field: "allowed_outbound_hosts",
            form: FlagForm::List,
        }]
    }
}
