//! `kindling versions NAME`: a function's versions, newest first, the active one marked.

use clap::Args;

use super::{OutputArgs, ServerArgs};
use crate::output::{print_json, print_table};
use crate::units::format_size;

#[derive(Debug, Args)]
pub(crate) struct VersionsCommand {
    /// The function
    name: String,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl VersionsCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        let versions = client.versions(&self.name).await?;
        if self.output.json {
            return print_json(&versions);
        }
        let active = client.function(&self.name).await?.active_version;
        let rows: Vec<Vec<String>> = versions
            .iter()
            .map(|v| {
                vec![
                    v.version.to_string(),
                    if v.version == active {
                        "*".into()
                    } else {
                        String::new()
                    },
                    v.kind.clone(),
                    v.sha256[..12].to_string(),
                    format_size(v.size_bytes),
                    v.created_at.clone(),
                ]
            })
            .collect();
        print_table(
            &["VERSION", "ACTIVE", "KIND", "SHA256", "SIZE", "DEPLOYED"],
            &rows,
        );
        Ok(())
    }
}
