//! `kindling invocations ls|show|retry|purge|rm`: asynchronous invocations and the dead-letter
//! store, a thin client of `/v1/invocations`.

use clap::{Args, Subcommand};
use kindling_events::{InvocationRecord, State};
use reqwest::Method;
use serde::Deserialize;

use super::{OutputArgs, ServerArgs};
use crate::UsageError;
use crate::output::{outln, print_fields, print_json, print_table};

#[derive(Debug, Args)]
pub(crate) struct InvocationsCommand {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List invocations, newest first
    Ls {
        /// Of this function only
        #[arg(long)]
        function: Option<String>,
        /// In this state only: queued, running, succeeded or dead (the dead-letter store)
        #[arg(long)]
        state: Option<State>,
        /// At most this many
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one invocation: its state, every attempt and the last response
    Show {
        /// The invocation's id (inv_...)
        id: String,
    },
    /// Queue a dead (or succeeded) invocation again, with a fresh retry budget
    Retry {
        /// The invocation's id
        id: String,
    },
    /// Delete finished invocations (succeeded and dead; pick with --function and --state)
    Purge {
        /// Of this function only
        #[arg(long)]
        function: Option<String>,
        /// succeeded or dead only
        #[arg(long)]
        state: Option<State>,
    },
    /// Delete one finished invocation, or cancel a queued one
    Rm {
        /// The invocation's id
        id: String,
    },
}

#[derive(Deserialize)]
struct List {
    invocations: Vec<InvocationRecord>,
}

#[derive(Deserialize)]
struct Purged {
    purged: u64,
}

fn id_segment(id: &str) -> Result<&str, UsageError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(UsageError(format!(
            "{id:?} is not an invocation id; they look like inv_ followed by 32 hex digits"
        )));
    }
    Ok(id)
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if let Some(value) = value {
            out.push(if out.is_empty() { '?' } else { '&' });
            out.push_str(name);
            out.push('=');
            out.push_str(&crate::client::encode(value));
        }
    }
    out
}

impl InvocationsCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        match self.action {
            Action::Ls {
                function,
                state,
                limit,
            } => {
                let path = format!(
                    "/v1/invocations{}",
                    query(&[
                        ("function", function),
                        ("state", state.map(|s| s.as_str().to_string())),
                        ("limit", Some(limit.to_string())),
                    ])
                );
                let list: List = client.get_json(&path).await?;
                if self.output.json {
                    return print_json(&list.invocations);
                }
                let rows: Vec<Vec<String>> = list
                    .invocations
                    .iter()
                    .map(|i| {
                        vec![
                            i.id.clone(),
                            i.function.clone(),
                            i.state.as_str().to_string(),
                            i.attempts.to_string(),
                            i.response
                                .as_ref()
                                .map_or_else(|| "-".into(), |r| r.status.to_string()),
                            i.created_at.clone(),
                            i.reason.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ID", "FUNCTION", "STATE", "ATTEMPTS", "STATUS", "CREATED", "REASON",
                    ],
                    &rows,
                );
                Ok(())
            }
            Action::Show { id } => {
                let record: InvocationRecord = client
                    .get_json(&format!("/v1/invocations/{}", id_segment(&id)?))
                    .await?;
                show(&record, self.output.json)
            }
            Action::Retry { id } => {
                let record: InvocationRecord = client
                    .send_json::<(), _>(
                        Method::POST,
                        &format!("/v1/invocations/{}/retry", id_segment(&id)?),
                        None,
                    )
                    .await?;
                if self.output.json {
                    return print_json(&record);
                }
                outln!("queued {} again ({})", record.id, record.function);
                Ok(())
            }
            Action::Purge { function, state } => {
                let path = format!(
                    "/v1/invocations{}",
                    query(&[
                        ("function", function),
                        ("state", state.map(|s| s.as_str().to_string())),
                    ])
                );
                let purged: Purged = client
                    .send_json::<(), _>(Method::DELETE, &path, None)
                    .await?;
                if self.output.json {
                    return print_json(&serde_json::json!({ "purged": purged.purged }));
                }
                outln!("purged {} finished invocation(s)", purged.purged);
                Ok(())
            }
            Action::Rm { id } => {
                client
                    .delete_path(&format!("/v1/invocations/{}", id_segment(&id)?))
                    .await?;
                if !self.output.json {
                    outln!("deleted {id}");
                }
                Ok(())
            }
        }
    }
}

fn show(record: &InvocationRecord, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(record);
    }
    let mut fields = vec![
        ("id", record.id.clone()),
        ("function", record.function.clone()),
        ("state", record.state.as_str().to_string()),
        ("attempts", record.attempts.to_string()),
        (
            "request",
            format!(
                "{} {} ({} bytes)",
                record.method, record.path, record.body_bytes
            ),
        ),
        ("created", record.created_at.clone()),
    ];
    if let Some(next) = &record.next_attempt_at {
        fields.push(("next attempt", next.clone()));
    }
    if let Some(finished) = &record.finished_at {
        fields.push(("finished", finished.clone()));
    }
    if let Some(reason) = &record.reason {
        fields.push(("reason", reason.clone()));
    }
    if let Some(response) = &record.response {
        fields.push(("status", response.status.to_string()));
    }
    if let Some(callback) = &record.callback {
        let mut text = format!(
            "{} {} ({} attempts)",
            callback.url, callback.state, callback.attempts
        );
        if let Some(error) = &callback.error {
            text.push_str(&format!(": {error}"));
        }
        fields.push(("callback", text));
    }
    print_fields(&fields);
    for attempt in &record.history {
        outln!(
            "  attempt {} at {}: {}{}",
            attempt.number,
            attempt.started_at,
            attempt
                .status
                .map_or_else(|| "no answer".to_string(), |s| s.to_string()),
            attempt
                .error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    if let Some(body) = record.response.as_ref().and_then(|r| r.body.as_ref()) {
        outln!("{body}");
    }
    Ok(())
}
