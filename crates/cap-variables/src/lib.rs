//! Variables and secrets for guests, behind Kindling's capability seam.
//!
//! A function is deployed with variables (`--var name=value`) and secrets (`--secret
//! name=value`) and reads them through the interface it was built against: Spin's
//! `fermyon:spin/variables@2.0.0`, or `wasi:config` at `0.2.0-draft-2024-09-27` (Spin),
//! `0.2.0-rc.1` (wasmCloud 2) and `0.2.0-draft` (wasmCloud 1, as `runtime` and as `store`).
//! Secrets are sealed with the node's key before they reach the registry, so neither the
//! database, a backup, the admin API, `kindling inspect` nor the dashboard ever shows them.

mod capability;
mod host;
mod seal;

pub use capability::{Secret, Variables, VariablesSection, VarsState};
