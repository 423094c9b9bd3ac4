//! The `kindling` binary: parses the command line and runs one command. Everything else lives
//! in the library crates; this file only wires them and reports errors.

mod client;
mod commands;
mod output;
mod units;

use std::process::ExitCode;

use clap::Parser;

// jemalloc hands freed pages back to the system on a timer (its background thread purges
// dirty pages after a second); with the system allocator a node keeps the memory of a burst of
// connections long after they are gone.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read by jemalloc itself at start-up from this symbol.
#[allow(
    non_upper_case_globals,
    reason = "the symbol name jemalloc reads its options from"
)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000\0";

/// An error in what the user asked for (flags, configuration): exit status 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    // Wasmtime builds an internal error value on every component request and, when
    // `RUST_BACKTRACE` is set, captures a backtrace into it: 45% more time per request
    // (BENCHMARKS.md). Library backtraces stay off unless asked for with `RUST_LIB_BACKTRACE`;
    // panics still print theirs under `RUST_BACKTRACE`.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: the process has one thread here; the async runtime starts below.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    let cli = commands::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("kindling: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kindling: {err:#}");
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
