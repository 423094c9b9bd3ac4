//! Helpers shared by Kindling's integration tests.
//!
//! Guests are built from source by `scripts/build-guests.sh`; these helpers find them and fail
//! with that instruction when they are missing. [`Server`] runs the real binary on a real port.

mod guests;
pub mod http;
mod server;

pub use guests::{example, repo_root, test_program};
pub use server::{CliOutput, Server, get_status};
