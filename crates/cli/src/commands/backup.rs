//! `kindling backup DEST` and `kindling restore SRC`: a consistent copy of a node's registry and
//! modules, taken while it serves, and putting one back while it is stopped.

use std::path::PathBuf;

use clap::Args;

use crate::UsageError;
use crate::units::format_size;

/// The data directory both commands work on.
#[derive(Debug, Args)]
pub(crate) struct DataDirArgs {
    /// The node's data directory
    #[arg(long, env = "KINDLING_DATA_DIR", default_value = ".kindling")]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct BackupCommand {
    /// A new directory to write the backup to
    dest: PathBuf,
    #[command(flatten)]
    data: DataDirArgs,
}

impl BackupCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let (data_dir, dest) = (self.data.data_dir.clone(), self.dest.clone());
        let report =
            tokio::task::spawn_blocking(move || kindling_registry::backup(&data_dir, &dest))
                .await?
                .map_err(|err| UsageError(err.to_string()))?;
        crate::output::outln!(
            "backed up {} functions and {} modules ({}) from {} to {}",
            report.functions,
            report.modules,
            format_size(report.bytes),
            self.data.data_dir.display(),
            self.dest.display()
        );
        crate::output::outln!(
            "  restore with: kindling restore {} --data-dir DIR (with that node stopped)",
            self.dest.display()
        );
        Ok(())
    }
}

#[derive(Debug, Args)]
pub(crate) struct RestoreCommand {
    /// A directory `kindling backup` wrote
    src: PathBuf,
    #[command(flatten)]
    data: DataDirArgs,
}

impl RestoreCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let (src, data_dir) = (self.src.clone(), self.data.data_dir.clone());
        let report =
            tokio::task::spawn_blocking(move || kindling_registry::restore(&src, &data_dir))
                .await?
                .map_err(|err| UsageError(err.to_string()))?;
        crate::output::outln!(
            "restored {} functions and {} modules into {}; start the node to serve them",
            report.functions,
            report.modules,
            self.data.data_dir.display()
        );
        Ok(())
    }
}
