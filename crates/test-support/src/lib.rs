//! Helpers shared by Kindling's integration tests.
//!
//! Guests are built from source by `scripts/build-guests.sh`; these helpers find them and fail
//! with that instruction when they are missing.

mod guests;

pub use guests::{example, repo_root, test_program};
