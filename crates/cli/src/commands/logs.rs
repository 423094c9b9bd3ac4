//! `kindling logs NAME`: a function's recent guest output with the request that wrote each
//! line; `--follow` keeps printing new lines as they come (long poll, no busy loop).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use kindling_gateway::api::LogEntry;

use super::{OutputArgs, ServerArgs};
use crate::units::parse_duration;

/// How long one long poll waits before asking again.
const FOLLOW_WAIT_SECONDS: u64 = 30;

#[derive(Debug, Args)]
pub(crate) struct LogsCommand {
    /// The function
    name: String,
    /// Keep printing new lines as they arrive, until interrupted
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only lines from this long ago or later, e.g. 5m, 1h
    #[arg(long, value_parser = parse_duration)]
    since: Option<Duration>,
    /// At most this many lines before following (the newest)
    #[arg(long, short = 'n', default_value_t = 1000)]
    lines: usize,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl LogsCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        let since_ms = self.since.map_or(0, |ago| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            now.saturating_sub(ago).as_millis() as u64
        });
        let limit = self.lines.clamp(1, 10_000);
        let mut page = client.logs(&self.name, 0, since_ms, limit, 0).await?;
        loop {
            for line in &page.lines {
                self.print(line)?;
            }
            if !self.follow {
                return Ok(());
            }
            page = client
                .logs(&self.name, page.next, since_ms, 10_000, FOLLOW_WAIT_SECONDS)
                .await?;
        }
    }

    fn print(&self, line: &LogEntry) -> anyhow::Result<()> {
        if self.output.json {
            crate::output::outln!("{}", serde_json::to_string(line)?);
        } else {
            let at = UNIX_EPOCH + Duration::from_millis(line.at_ms);
            crate::output::outln!(
                "{} {} {} {}",
                humantime::format_rfc3339_millis(at),
                line.request_id,
                line.stream,
                line.text
            );
        }
        Ok(())
    }
}
