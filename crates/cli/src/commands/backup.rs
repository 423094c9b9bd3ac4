//! `kindling backup DEST` and `kindling restore SRC`: a consistent copy of a node's registry,
//! modules and the data its capabilities keep for functions (key-value stores), taken while it
//! serves, and putting one back while it is stopped.

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
    /// The node's runtime-config file, which says where its key-value stores are
    #[arg(long, env = "KINDLING_RUNTIME_CONFIG", value_name = "FILE")]
    runtime_config: Option<PathBuf>,
}

impl DataDirArgs {
    /// The node's capabilities, built as `serve` builds them, for their data.
    fn capabilities(&self) -> Result<kindling_host::Capabilities, UsageError> {
        let runtime_config = self
            .runtime_config
            .as_deref()
            .map(super::serve::read_runtime_config)
            .transpose()?;
        super::serve::capabilities(&super::serve::CapabilitySettings {
            mount_root: None,
            data_dir: self.data_dir.clone(),
            runtime_config,
            ..Default::default()
        })
        .map_err(|err| UsageError(format!("--runtime-config: {err}")))
    }
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
        let capabilities = self.data.capabilities()?;
        let (data_dir, dest) = (self.data.data_dir.clone(), self.dest.clone());
        let (report, lines) = tokio::task::spawn_blocking(move || {
            let report =
                kindling_registry::backup(&data_dir, &dest).map_err(|err| err.to_string())?;
            let mut lines = capabilities
                .back_up(&dest)
                .map_err(|err| format!("the registry and modules are backed up, but {err}"))?;
            lines.extend(
                kindling_events::back_up(&data_dir, &dest)
                    .map_err(|err| format!("the registry and modules are backed up, but {err}"))?,
            );
            Ok::<_, String>((report, lines))
        })
        .await?
        .map_err(UsageError)?;
        crate::output::outln!(
            "backed up {} functions and {} modules ({}) from {} to {}",
            report.functions,
            report.modules,
            format_size(report.bytes),
            self.data.data_dir.display(),
            self.dest.display()
        );
        for line in lines {
            crate::output::outln!("  {line}");
        }
        if self.data.data_dir.join("admin.token").exists() {
            crate::output::outln!(
                "  API tokens are backed up as hashes and keep working after a restore; the \
                 first admin token's file ({}) is left out like every secret: keep your copy \
                 of it apart",
                self.data.data_dir.join("admin.token").display()
            );
        }
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
        let capabilities = self.data.capabilities()?;
        let (src, data_dir) = (self.src.clone(), self.data.data_dir.clone());
        let (report, lines) = tokio::task::spawn_blocking(move || {
            let fail = |err: &dyn std::fmt::Display| err.to_string();
            // The whole backup is checked before anything is replaced: the registry and its
            // modules here, each capability's data inside its restore.
            kindling_registry::verify(&src).map_err(|err| fail(&err))?;
            kindling_events::verify(&src).map_err(|err| fail(&err))?;
            let lock =
                kindling_registry::DataDirLock::acquire(&data_dir).map_err(|err| fail(&err))?;
            let mut lines = capabilities
                .restore(&src)
                .map_err(|err| format!("{err}; the registry was not replaced"))?;
            lines.extend(
                kindling_events::restore(&src, &data_dir)
                    .map_err(|err| format!("{err}; the registry was not replaced"))?,
            );
            let report = kindling_registry::restore(&src, &lock).map_err(|err| fail(&err))?;
            Ok::<_, String>((report, lines))
        })
        .await?
        .map_err(UsageError)?;
        crate::output::outln!(
            "restored {} functions and {} modules into {}; start the node to serve them",
            report.functions,
            report.modules,
            self.data.data_dir.display()
        );
        for line in lines {
            crate::output::outln!("  {line}");
        }
        Ok(())
    }
}
