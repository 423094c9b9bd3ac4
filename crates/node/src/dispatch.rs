//! Calls between functions of one node: a guest's request to `http://{name}.fn.local/` comes
//! back in through [`Node::invoke`] as a request of its own (its own request id, admission,
//! limits, metrics and span), one level deeper in the caller's chain. Only functions are
//! reachable this way: the admin API, metrics and dashboard are routes of the gateway, which
//! this path never touches. A function deployed with `auth = "token"` answers calls from
//! its own namespace only.

use std::sync::Weak;

use kindling_host::{Dispatch, DispatchFuture, LocalCall};

use crate::failure::error_response;
use crate::invoke::CallContext;
use crate::node::Node;

/// The node as its guests' outbound calls see it. It holds the node weakly: the node owns the
/// runtime that holds this, and a dropped node simply stops answering.
pub(crate) struct LocalDispatch {
    pub(crate) node: Weak<Node>,
}

impl Dispatch for LocalDispatch {
    fn dispatch(&self, call: LocalCall) -> DispatchFuture {
        let node = self.node.clone();
        Box::pin(async move {
            let request_id = crate::ids::new_request_id();
            let Some(node) = node.upgrade() else {
                return error_response(
                    503,
                    "shutting_down",
                    "the node is shutting down".into(),
                    &request_id,
                );
            };
            // A function that needs a token is reachable from its own namespace only: a
            // function elsewhere holds no token for it, and must not get in by the side door.
            if let Some(entry) = node.lookup(&call.function) {
                let config = &entry.version.config;
                if config.auth == Some(kindling_registry::InvokeAuth::Token)
                    && config.namespace() != &*call.caller_namespace
                {
                    return error_response(
                        403,
                        "forbidden",
                        format!(
                            "function {:?} needs a token and belongs to namespace {:?}; a \
                             function of namespace {:?} may not call it",
                            call.function,
                            config.namespace(),
                            call.caller_namespace
                        ),
                        &request_id,
                    );
                }
            }
            let cx = CallContext {
                request_id: Some(request_id.clone()),
                script_name: format!("/{}", call.function),
                remote_addr: None,
                local_addr: None,
                trace_parent: call.trace,
                chain: Some(call.chain),
                may_spill: false,
            };
            let mut request = call.request;
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            match path.parse() {
                Ok(uri) => *request.uri_mut() = uri,
                Err(_) => {
                    return error_response(
                        400,
                        "bad_uri",
                        format!("invalid path {path:?}"),
                        &request_id,
                    );
                }
            }
            match node.invoke(&call.function, request, cx).await {
                Ok(answer) => answer.response,
                Err(failure) => failure.to_response(&request_id),
            }
        })
    }
}
