//! `kindling ls`: the deployed functions, one line each.

use clap::Args;

use super::{OutputArgs, ServerArgs};
use crate::output::{print_json, print_table};
use crate::units::format_size;

#[derive(Debug, Args)]
pub(crate) struct LsCommand {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl LsCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let functions = self.server.client()?.functions().await?;
        if self.output.json {
            return print_json(&functions);
        }
        if functions.is_empty() {
            crate::output::outln!(
                "no functions deployed; deploy one with `kindling deploy NAME FILE.wasm`"
            );
            return Ok(());
        }
        let rows: Vec<Vec<String>> = functions
            .iter()
            .map(|f| {
                vec![
                    f.name.clone(),
                    f.active_version.to_string(),
                    f.kind.clone(),
                    f.state.clone(),
                    format_size(f.size_bytes),
                    f.updated_at.clone(),
                ]
            })
            .collect();
        print_table(
            &["NAME", "VERSION", "KIND", "STATE", "SIZE", "UPDATED"],
            &rows,
        );
        Ok(())
    }
}
