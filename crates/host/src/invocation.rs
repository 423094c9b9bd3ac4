//! What every capability may know about the request an instance serves ([`Invocation`]), the
//! call chain a request belongs to ([`CallChain`]), the headers capabilities add to the
//! function's response ([`ResponseHeaders`]), and the way back into the node for calls between
//! its functions ([`Dispatch`]).

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

use crate::output::FunctionLog;

/// The error type of streamed bodies: a body can fail mid-stream when a guest traps after it
/// has sent the response head.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a function's response, streamed as the guest writes it.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// The body of a request one function sends another through the node.
pub type LocalBody = UnsyncBoxBody<Bytes, LocalBodyError>;

/// Why the body of a call between functions failed (the caller's stream broke).
#[derive(Debug)]
pub struct LocalBodyError(pub BoxError);

impl fmt::Display for LocalBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for LocalBodyError {}

/// The request's place in a trace: its server span, which the function's outbound calls are
/// children of.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    /// Where spans go.
    pub tracer: kindling_telemetry::Tracer,
    /// The request's own span.
    pub parent: kindling_telemetry::TraceContext,
}

/// The facts of one invocation every capability may read: whose it is, its ids, its trace and
/// its call chain.
#[derive(Clone)]
pub struct Invocation {
    /// The function's name.
    pub function: Arc<str>,
    /// Its namespace.
    pub namespace: Arc<str>,
    /// The request id, in logs and error bodies.
    pub request_id: Arc<str>,
    /// Where the function's guest output is kept, besides the host log.
    pub log: Option<Arc<FunctionLog>>,
    /// The request's place in a trace, when tracing is on.
    pub trace: Option<RequestTrace>,
    /// How deep in a chain of calls between functions this request is, and what the chain may
    /// still spend.
    pub chain: CallChain,
    /// Where calls to other functions of the node go; without it they fail like an
    /// unreachable host.
    pub dispatch: Option<Arc<dyn Dispatch>>,
    /// Headers capabilities add to the function's response.
    pub response_headers: ResponseHeaders,
}

/// Headers the host adds to a function's response on behalf of its capabilities (the
/// key-value capability's `kindling-stale` when a site's synced data is old), shared by every
/// clone of the [`Invocation`]. A capability claims a name when it prepares the instance: the
/// guest's own header of that name is dropped, so that a client can trust what it reads there.
/// What is set before the guest sends its response head goes out with it; later settings are
/// dropped.
#[derive(Debug, Clone, Default)]
pub struct ResponseHeaders(Arc<Mutex<Vec<ClaimedHeader>>>);

/// A header name the host claimed, with the value it set, if any.
pub type ClaimedHeader = (http::HeaderName, Option<http::HeaderValue>);

impl ResponseHeaders {
    /// Claims `name` for the host: the response carries only what [`ResponseHeaders::set`]
    /// gives it, if anything.
    pub fn claim(&self, name: http::HeaderName) {
        let mut headers = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !headers.iter().any(|(n, _)| *n == name) {
            headers.push((name, None));
        }
    }

    /// Sets `name: value` (claiming the name), replacing what was set under it before.
    pub fn set(&self, name: http::HeaderName, value: http::HeaderValue) {
        let mut headers = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        headers.retain(|(n, _)| *n != name);
        headers.push((name, Some(value)));
    }

    /// Takes the claimed names, each with its value if one was set.
    pub fn take(&self) -> Vec<ClaimedHeader> {
        let mut headers = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::take(&mut *headers)
    }
}

impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invocation")
            .field("function", &self.function)
            .field("request_id", &self.request_id)
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

/// A request's place in a chain of calls between functions: how deep it is (0 for a request
/// from outside) and the invocations the whole chain may still cause. The host sets both; a
/// guest cannot change them.
///
/// The budget is shared by every request of the chain inside the node, so a fan-out is
/// counted however wide it is. It is created on the first call a request makes, so a request
/// that calls nothing allocates nothing.
#[derive(Clone, Default)]
pub struct CallChain {
    depth: u32,
    budget: Option<Arc<Budget>>,
    /// The most invocations a chain may cause, counting its root.
    limit: u32,
}

struct Budget {
    remaining: AtomicU32,
}

impl CallChain {
    /// The chain of a request from outside the node that may cause at most `limit`
    /// invocations, itself included.
    pub fn root(limit: u32) -> Self {
        Self {
            depth: 0,
            budget: None,
            limit,
        }
    }

    /// The chain of a request that arrived over the network from another function (of this
    /// node or another): `depth` and the budget its caller said were left, which cannot exceed
    /// this node's `limit`.
    pub fn resumed(depth: u32, remaining: Option<u32>, limit: u32) -> Self {
        let remaining = remaining.map_or(limit, |r| r.min(limit));
        Self {
            depth,
            budget: Some(Arc::new(Budget {
                remaining: AtomicU32::new(remaining),
            })),
            limit,
        }
    }

    /// How many calls deep this request is.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The chain's total limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Invocations the chain may still cause.
    pub fn remaining(&self) -> u32 {
        self.budget
            .as_ref()
            .map_or(self.limit.saturating_sub(1), |b| {
                b.remaining.load(Ordering::Relaxed)
            })
    }

    /// The chain of a call this request makes: one deeper, sharing the budget, which this
    /// creates on the first call of a root request.
    pub fn child(&mut self) -> Self {
        let limit = self.limit;
        let budget = self.budget.get_or_insert_with(|| {
            Arc::new(Budget {
                remaining: AtomicU32::new(limit.saturating_sub(1)),
            })
        });
        Self {
            depth: self.depth + 1,
            budget: Some(budget.clone()),
            limit,
        }
    }

    /// Takes one invocation from the budget; false when the chain has spent it all. A root
    /// request is its own first invocation and always passes.
    pub fn charge(&self) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        budget
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
            .is_ok()
    }
}

impl fmt::Debug for CallChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallChain")
            .field("depth", &self.depth)
            .field("remaining", &self.remaining())
            .field("limit", &self.limit)
            .finish()
    }
}

/// A call one function makes to another of the same node.
#[derive(Debug)]
pub struct LocalCall {
    /// The function called.
    pub function: String,
    /// The calling function's namespace: a function that needs a token may be called only
    /// from its own namespace.
    pub caller_namespace: Arc<str>,
    /// The request; its URI is the path and query the caller used.
    pub request: http::Request<LocalBody>,
    /// The callee's place in the chain.
    pub chain: CallChain,
    /// The caller's client span, parent of the callee's server span.
    pub trace: Option<kindling_telemetry::TraceContext>,
}

/// The future a [`Dispatch`] returns.
pub type DispatchFuture = Pin<Box<dyn Future<Output = http::Response<ResponseBody>> + Send>>;

/// The node as seen from a guest's calls to `http://{name}.fn.local/`: a call goes through
/// the node's one entry point, with admission, limits, metrics and tracing, and always comes
/// back as a response (a refusal is an error response, as over the network).
pub trait Dispatch: Send + Sync {
    /// Invokes the function `call` names.
    fn dispatch(&self, call: LocalCall) -> DispatchFuture;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_shared_by_the_whole_chain() {
        let mut root = CallChain::root(4);
        assert!(root.charge(), "the root is its own first invocation");
        let mut a = root.child();
        let b = root.child();
        assert_eq!((a.depth(), b.depth()), (1, 1));
        assert!(a.charge() && b.charge());
        let c = a.child();
        assert_eq!(c.depth(), 2);
        assert!(c.charge(), "three calls fit a budget of four");
        assert!(!root.child().charge(), "a fourth call does not");
        assert_eq!(root.remaining(), 0);
    }

    #[test]
    fn a_resumed_chain_is_capped_by_the_local_limit() {
        let chain = CallChain::resumed(3, Some(1_000_000), 10);
        assert_eq!((chain.depth(), chain.remaining()), (3, 10));
        let chain = CallChain::resumed(1, Some(1), 10);
        assert!(chain.charge());
        assert!(!chain.charge());
    }
}
