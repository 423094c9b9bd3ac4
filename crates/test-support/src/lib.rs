//! Helpers shared by Kindling's integration tests.
//!
//! Guests are built from source by `scripts/build-guests.sh`; these helpers find them and fail
//! with that instruction when they are missing. [`Server`] runs the real binary on a real port.

mod guests;
pub mod http;
mod nats;
mod nats_cluster;
mod nats_edge;
mod redis;
mod server;
mod wait;

pub use guests::{example, repo_root, test_program};
pub use nats::NatsServer;
pub use nats_cluster::NatsCluster;
pub use nats_edge::{EdgeNats, Link};
pub use redis::RedisServer;
pub use server::{CliOutput, Server, get_status};
pub use wait::{PATIENCE, wait_for, wait_for_async};
