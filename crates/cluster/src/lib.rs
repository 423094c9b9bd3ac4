//! Cluster mode: many Kindling nodes, one platform, on NATS JetStream.
//!
//! The registry is shared through JetStream: a key-value bucket holds each function's record
//! (its versions and the active one), changed only by compare-and-set on the record's
//! revision, so that of two concurrent changes exactly one wins; an object store holds module
//! bytes by sha256. Every node keeps a full copy in its own SQLite catalog ([`ClusterCatalog`]
//! reads it, [`Cluster::start`] keeps it current from a watch on the bucket), so a node that
//! loses NATS keeps serving what it had. Nodes heartbeat into a second bucket whose entries
//! expire: that is the membership `kindling nodes` shows. Compiled code is shared through a
//! second object store, authenticated with a key the nodes derive from their shared secret, so
//! that a module is compiled once for the whole cluster. Tokens, namespaces and policies live
//! in a third bucket ([`ClusterAccessStore`]), copied to every node like the functions.
//! Asynchronous invocations go through one JetStream stream that every node takes work from
//! ([`Cluster::queue`]).

mod access_store;
mod access_sync;
mod artifacts;
mod buckets;
mod catalog;
mod cluster;
mod config;
mod error;
mod key;
mod members;
mod queue;
mod record;
mod spill;
mod spill_parts;
mod sync;

pub use access_store::ClusterAccessStore;
pub use catalog::ClusterCatalog;
pub use cluster::{Cluster, Link};
pub use config::ClusterConfig;
pub use error::ClusterError;
pub use key::ClusterKey;
pub use members::{Member, MemberState};
pub use queue::QueueSettings;
