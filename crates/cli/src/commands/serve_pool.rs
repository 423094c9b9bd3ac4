//! `kindling serve`'s flags for the instance pool's memory: what a released slot keeps
//! resident for the next request. They trade resident memory for page faults, so they are
//! measured (`bench/ab-env.sh` with `KINDLING_KEEP_RESIDENT` or `KINDLING_WARM_SLOTS`) rather
//! than guessed.

use clap::Args;
use kindling_runtime::RuntimeConfig;

use crate::UsageError;
use crate::units::parse_size;

/// How much of a released instance's memory stays resident.
#[derive(Debug, Args)]
pub(crate) struct PoolArgs {
    /// Bytes of a released instance's linear memory (and table) kept resident and reset in
    /// place instead of handed back to the kernel: fewer page faults for the next request on
    /// that slot
    #[arg(long, env = "KINDLING_KEEP_RESIDENT", default_value = "2MiB", value_parser = parse_size)]
    keep_resident: u64,
    /// Released pool slots that keep their resident memory, so that the next instance of the
    /// same function reuses one warm
    #[arg(long, env = "KINDLING_WARM_SLOTS", default_value_t = 32)]
    warm_slots: u32,
}

impl PoolArgs {
    /// Checks the flags against `--max-memory` and writes them into `runtime`.
    pub(crate) fn apply(&self, runtime: &mut RuntimeConfig) -> Result<(), UsageError> {
        if self.keep_resident > runtime.max_memory_bytes {
            return Err(UsageError(format!(
                "--keep-resident ({}) is above --max-memory ({}): a slot cannot keep more \
                 memory than it has",
                self.keep_resident, runtime.max_memory_bytes
            )));
        }
        if self.warm_slots > runtime.max_instances {
            return Err(UsageError(format!(
                "--warm-slots ({}) is above --max-instances ({}): there are no more slots",
                self.warm_slots, runtime.max_instances
            )));
        }
        runtime.keep_resident_bytes = self.keep_resident as usize;
        runtime.max_unused_warm_slots = self.warm_slots;
        Ok(())
    }
}
