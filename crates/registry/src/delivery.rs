//! How a function's work that arrives without a waiting client is delivered: the retry policy
//! of its asynchronous invocations and the schedules that fire it. The registry only keeps
//! them; `kindling-events` parses the cron expressions and time zones and runs them.

use serde::{Deserialize, Serialize};

/// Retries of a failed asynchronous invocation (`--retries 5 --backoff 1s..5m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts after the first one; 0 sends a failure straight to the dead-letter store.
    pub retries: u32,
    /// The delay before the first retry, in milliseconds; each retry doubles it.
    pub backoff_min_ms: u64,
    /// The longest delay between two attempts, in milliseconds.
    pub backoff_max_ms: u64,
}

/// Most schedules one function may have.
pub(crate) const MAX_SCHEDULES: usize = 16;

impl RetryConfig {
    /// Most retries a policy may ask for.
    pub const MAX_RETRIES: u32 = 100;
    /// The longest backoff a policy may ask for: a day.
    pub const MAX_BACKOFF_MS: u64 = 86_400_000;

    /// Checks the bounds serde cannot.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.retries > Self::MAX_RETRIES {
            return Err(format!(
                "retry.retries is {}; at most {} retries are allowed",
                self.retries,
                Self::MAX_RETRIES
            ));
        }
        if self.backoff_min_ms == 0 || self.backoff_min_ms > self.backoff_max_ms {
            return Err(format!(
                "retry backoff {}ms..{}ms: the first delay must be at least 1ms and at most the longest",
                self.backoff_min_ms, self.backoff_max_ms
            ));
        }
        if self.backoff_max_ms > Self::MAX_BACKOFF_MS {
            return Err(format!(
                "retry backoff up to {}ms: the longest delay allowed is a day",
                self.backoff_max_ms
            ));
        }
        Ok(())
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            retries: 5,
            backoff_min_ms: 1_000,
            backoff_max_ms: 300_000,
        }
    }
}

/// A schedule firing a function through the invocation queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// A cron expression, five fields or six with seconds first (`*/5 * * * *`).
    pub cron: String,
    /// The IANA time zone the expression is read in (`Europe/Paris`); UTC when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// What to do with firings missed while the node was down.
    #[serde(default)]
    pub missed: Missed,
    /// The path the function is invoked with (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl ScheduleConfig {
    /// What identifies the schedule across restarts: its expression and time zone.
    pub fn key(&self) -> String {
        format!(
            "{} @ {}",
            self.cron.trim(),
            self.timezone.as_deref().unwrap_or("UTC")
        )
    }
}

/// What a schedule does with the firings it missed while the node was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    /// Drop them; the next regular firing runs.
    #[default]
    Skip,
    /// Run once for all of them, as soon as the node is back.
    RunOnce,
}

impl std::str::FromStr for Missed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(Self::Skip),
            "run-once" => Ok(Self::RunOnce),
            other => Err(format!(
                "unknown missed-firing policy {other:?}; use \"skip\" or \"run-once\""
            )),
        }
    }
}
