//! `kindling inspect NAME`: everything about one function.

use clap::Args;

use super::{OutputArgs, ServerArgs};
use crate::output::{print_fields, print_json};
use crate::units::format_size;

#[derive(Debug, Args)]
pub(crate) struct InspectCommand {
    /// The function
    name: String,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl InspectCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        let f = client.function(&self.name).await?;
        if self.output.json {
            return print_json(&f);
        }
        let limits = &f.config.limits;
        let or_default = |value: Option<String>| value.unwrap_or_else(|| "node default".into());
        let mut fields = vec![
            ("name", f.name.clone()),
            ("url", format!("{}/{}/", client.base(), f.name)),
            ("state", f.state.clone()),
            (
                "version",
                format!("{} of {}", f.active_version, f.version_count),
            ),
            ("kind", f.kind.clone()),
            ("sha256", f.sha256.clone()),
            ("size", format_size(f.size_bytes)),
            (
                "timeout",
                or_default(limits.timeout_ms.map(|ms| format!("{ms} ms"))),
            ),
            ("memory", or_default(limits.memory_bytes.map(format_size))),
            (
                "cpu budget",
                limits
                    .cpu_fuel
                    .map(|fuel| format!("{fuel} fuel"))
                    .unwrap_or_else(|| "none".into()),
            ),
            (
                "concurrency",
                limits
                    .max_concurrency
                    .map(|n| {
                        let queue = limits
                            .queue_len
                            .map_or("node default".into(), |q| q.to_string());
                        let wait = limits
                            .queue_timeout_ms
                            .map_or("node default".into(), |ms| format!("{ms} ms"));
                        format!("{n} instances, queue {queue}, wait {wait}")
                    })
                    .unwrap_or_else(|| "node limit".into()),
            ),
            (
                "priority",
                f.config
                    .priority
                    .map_or("normal".into(), |p| p.as_str().to_string()),
            ),
            ("namespace", f.config.namespace().to_string()),
            (
                "max request body",
                or_default(limits.max_request_body_bytes.map(format_size)),
            ),
            (
                "max response body",
                or_default(limits.max_response_body_bytes.map(format_size)),
            ),
        ];
        if f.config.allow_unsupported_imports {
            fields.push((
                "unsupported imports",
                "linked to stand-ins that trap when called".into(),
            ));
        }
        for line in &f.capabilities {
            fields.push((line.label.as_str(), line.value.clone()));
        }
        if let Some(load) = &f.load {
            fields.push((
                "loaded",
                format!("from {} in {:.2} ms", load.source, load.millis),
            ));
        }
        let stats = &f.stats;
        fields.push((
            "requests",
            format!(
                "{} admitted, {} rejected, {} cold starts (last {:.2} ms), {} pre-warms, {} in \
                 flight, {} queued",
                stats.invocations,
                stats.rejected,
                stats.cold_starts,
                stats.last_cold_start_ms,
                stats.prewarms,
                stats.in_flight,
                stats.queued
            ),
        ));
        if let Some(scale) = &f.autoscale {
            fields.push((
                "autoscale",
                format!(
                    "desired {} (stable {:.2}, panic {:.2}{})",
                    scale.desired,
                    scale.stable_concurrency,
                    scale.panic_concurrency,
                    if scale.panicking { ", panicking" } else { "" }
                ),
            ));
        }
        if let Some(retry) = &f.config.retry {
            fields.push((
                "retries",
                format!(
                    "{} (backoff {} ms..{} ms)",
                    retry.retries, retry.backoff_min_ms, retry.backoff_max_ms
                ),
            ));
        }
        for schedule in &f.schedules {
            fields.push((
                "schedule",
                format!(
                    "{:?} in {} -> {} (missed: {}), last {}, next {}",
                    schedule.cron,
                    schedule.timezone,
                    schedule.path,
                    match schedule.missed {
                        kindling_registry::Missed::Skip => "skip",
                        _ => "run-once",
                    },
                    schedule.last_run.as_deref().unwrap_or("never"),
                    schedule.next_run.as_deref().unwrap_or("never")
                ),
            ));
        }
        for trigger in &f.config.triggers {
            let mut text = format!(
                "{}:{} as {}",
                trigger.kind.as_str(),
                trigger.source,
                trigger.group_for(&f.name, f.config.namespace())
            );
            if let Some(subject) = &trigger.subject {
                text.push_str(&format!(", subjects {subject}"));
            }
            if let Some(reply) = &trigger.reply {
                text.push_str(&format!(", replies to {reply}"));
            }
            text.push_str(&format!(" -> {}", trigger.path.as_deref().unwrap_or("/")));
            fields.push(("trigger", text));
        }
        if let Some(error) = &f.error {
            fields.push(("error", error.clone()));
        }
        fields.push(("created", f.created_at.clone()));
        fields.push(("updated", f.updated_at.clone()));
        print_fields(&fields);
        Ok(())
    }
}
