//! Kindling's HTTP layer.
//!
//! One [`app`] holds everything a node answers: `/{function}/...` (or `Host:
//! {function}.{domain}`) invokes a function; `/v1/` is the admin API described by
//! `/v1/openapi.json`; `/healthz` and `/readyz` are for orchestrators; `/metrics` is for
//! Prometheus; `/dashboard` is for people. [`serve`] runs it on a
//! listener with timeouts and graceful shutdown.

// The OpenAPI document is one `json!` literal, deeper than the default limit.
#![recursion_limit = "256"]

mod access_api;
mod admin;
pub mod api;
mod auth;
mod config;
mod dashboard;
mod error;
mod events_api;
mod invoke;
mod kv;
mod logs;
mod nodes_api;
mod openapi;
mod openapi_access;
mod openapi_events;
mod request_id;
mod router;
mod server;
mod sqlite;
mod tls;

pub use access_api::{NamespaceInfo, NewNamespace};
pub use config::GatewayConfig;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use kv::{KeysPage, StoreInfo};
pub use openapi::document as openapi_document;
pub use router::app;
pub use server::serve;
pub use sqlite::{Answer, DatabaseInfo, Statement};
pub use tls::{TlsConfig, TlsError};
