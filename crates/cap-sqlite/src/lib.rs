//! SQLite databases for guests, behind Kindling's capability seam.
//!
//! Components link the interfaces they were built against, unmodified: Spin's
//! `fermyon:spin/sqlite@2.0.0` (the Rust SDK up to 5.x, the JavaScript and Python SDKs) and
//! `spin:sqlite/sqlite@3.1.0` (spin-sdk 6 and 7, with the async forms; components built
//! against 3.0.0 link to it too). A database is named by a label (`default` always exists)
//! and belongs to the function's namespace: one SQLite file per namespace and label under the
//! data directory, in WAL mode. A function opens only the labels it was granted at deploy.
//! Statements run off the async threads, are interrupted when their request's deadline passes,
//! and each database is capped in size (`[sqlite_database.<label>]` in the runtime config).

mod backup;
mod capability;
mod config;
mod database;
mod host;
mod state;

pub use capability::{Granted, Sqlite, SqliteSection};
pub use config::{DatabaseConfig, parse_databases};
pub use database::{Conn, Database, Interrupt, Limits, Rows, SqlError, Value};
pub use state::{OpenConnection, SqlState};
