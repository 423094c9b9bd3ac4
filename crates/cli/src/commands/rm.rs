//! `kindling rm NAME`: delete a function and all its versions.

use clap::Args;

use super::{OutputArgs, ServerArgs};
use crate::output::print_json;

#[derive(Debug, Args)]
pub(crate) struct RmCommand {
    /// The function
    name: String,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl RmCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        self.server.client()?.delete(&self.name).await?;
        if self.output.json {
            return print_json(&serde_json::json!({ "deleted": self.name }));
        }
        crate::output::outln!("deleted {} and all its versions", self.name);
        Ok(())
    }
}
