//! Kindling's access layer: who may do what on a node.
//!
//! - [`Access`] authenticates API tokens (random, shown once, stored only as a sha256) and
//!   keeps them, with namespaces and policies, in memory so that a check costs a hash and a
//!   map lookup; every change goes to the registry's [`kindling_registry::AccessStore`] first.
//! - [`Caller`] is an authenticated token; [`Caller::require`] says what it lacks.
//! - [`TenantQuota`] is the scheduler's quota hook: requests in flight and requests per
//!   second per namespace.
//! - [`Policies`] evaluates Rego in process (regorus): `data.kindling.admission.deny` at
//!   deploy, `data.kindling.authz.allow` per request.

mod access;
mod caller;
mod policy;
mod quota;
mod token;

pub use access::{Access, AccessError, AuthMode, NewTokenRequest, NewTokenResponse};
pub use caller::{Caller, CallerToken, Denied};
pub use policy::{AuthzInput, AuthzSource, Policies, PolicyError};
pub use quota::TenantQuota;
pub use token::{Scope, TOKEN_PREFIX, hash_token, parse_token};
