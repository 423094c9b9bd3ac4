//! `kindling rollback NAME [--to VERSION]`: make an earlier version serve again.

use clap::Args;

use super::{OutputArgs, ServerArgs};
use crate::output::print_json;

#[derive(Debug, Args)]
pub(crate) struct RollbackCommand {
    /// The function
    name: String,
    /// The version to activate; by default the one before the active version
    #[arg(long)]
    to: Option<u32>,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl RollbackCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let function = self.server.client()?.rollback(&self.name, self.to).await?;
        if self.output.json {
            return print_json(&function);
        }
        crate::output::outln!(
            "{} now serves version {} ({})",
            function.name,
            function.active_version,
            function.kind
        );
        Ok(())
    }
}
