//! `kindling sqlite DATABASE "SQL" [--param V]...`: a statement on a guest's SQLite database,
//! from outside; `kindling sqlite` alone lists the databases. DATABASE is a function (its
//! namespace and its one granted label, or `--label`) or `NAMESPACE/LABEL`.

use clap::Args;

use super::kv::{Grant, resolve_label};
use super::{OutputArgs, ServerArgs};
use crate::output::{outln, print_json, print_table};
use crate::units::format_size;

const SQLITE: Grant = Grant {
    field: "sqlite_databases",
    flag: "--sqlite",
    what: "SQLite database",
};

#[derive(Debug, Args)]
pub(crate) struct SqliteCommand {
    /// A function (its namespace and granted label) or NAMESPACE/LABEL; without it, the
    /// databases and their sizes
    database: Option<String>,
    /// The statement, such as "SELECT * FROM notes"
    statement: Option<String>,
    /// A positional parameter for a `?` in the statement, as text (repeatable, in order)
    #[arg(long = "param", value_name = "VALUE")]
    params: Vec<String>,
    /// The label, when the function was granted more than one
    #[arg(long)]
    label: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl SqliteCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        let Some(database) = self.database else {
            let databases = client.sqlite_databases().await?;
            if self.output.json {
                return print_json(&databases);
            }
            let rows: Vec<Vec<String>> = databases
                .iter()
                .map(|d| vec![format!("{}/{}", d.namespace, d.label), format_size(d.bytes)])
                .collect();
            print_table(&["DATABASE", "SIZE"], &rows);
            return Ok(());
        };
        let Some(statement) = self.statement else {
            return Err(crate::UsageError(format!(
                "say what to run on {database}: kindling sqlite {database} \"SELECT ...\""
            ))
            .into());
        };
        let database = resolve_label(&client, &database, self.label.as_deref(), &SQLITE).await?;
        let statement = kindling_gateway::Statement {
            statement,
            parameters: self.params.into_iter().map(Into::into).collect(),
        };
        let answer = client.sqlite_execute(&database, &statement).await?;
        if self.output.json {
            return print_json(&answer);
        }
        if answer.columns.is_empty() {
            outln!("ok");
            return Ok(());
        }
        let rows: Vec<Vec<String>> = answer
            .rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|value| match value {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => "NULL".into(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect();
        let columns: Vec<&str> = answer.columns.iter().map(String::as_str).collect();
        print_table(&columns, &rows);
        Ok(())
    }
}
