//! Key-value stores for guests, behind Kindling's capability seam.
//!
//! Components link the interfaces they were built against, unmodified: Spin's
//! `fermyon:spin/key-value@2.0.0` (the Rust SDK up to 5.x, the JavaScript and Python SDKs),
//! `spin:key-value/key-value@3.0.0` (spin-sdk 6 and 7, WASI 0.3, async) and
//! `wasi:keyvalue/{store,atomics,batch}` at `0.2.0-draft2` (Spin) and `0.2.0-draft`
//! (wasmCloud). Stores are named by label (`default` always exists) and belong to the
//! function's namespace; a function opens only the labels it was granted at deploy. Each label
//! is kept in SQLite under the data directory (the default) or on a Redis server, as the node's
//! runtime-config file says (`[key_value_store.<label>]`, Spin's form). A SQLite label marked
//! `sync = "hub"` is held by every node of a fleet and merges their writes (`synced.rs`).

mod backend;
mod backup;
mod capability;
mod config;
mod counted;
mod host;
mod redis;
mod spin3;
mod sqlite;
mod state;
mod synced;
mod synced_status;

pub use backend::{Backend, KeyPage, KvError, Limits, Usage};
pub use capability::{Granted, KeyValue, KeyValueSection};
pub use config::{DEFAULT_STALE_AFTER, StoreConfig, StoreKind, parse_stores};
pub use state::{Cas, KvState, OpenStore, STALE_HEADER};
pub use synced::{Change, Op, Pending, Stamp, SyncedStore};
pub use synced_status::{LinkReport, SyncStatus};
