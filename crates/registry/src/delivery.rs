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
/// Most triggers one function may have.
pub(crate) const MAX_TRIGGERS: usize = 16;

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
    /// What identifies the schedule across restarts: its expression, time zone and path (two
    /// schedules of one function with the same expression but different paths are two).
    pub fn key(&self) -> String {
        format!(
            "{} @ {} -> {}",
            self.cron.trim(),
            self.timezone.as_deref().unwrap_or("UTC"),
            self.path.as_deref().unwrap_or("/")
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

/// A broker a function consumes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerKind {
    /// A core NATS subject, in a queue group: requests are answered, other messages queued.
    Nats,
    /// A JetStream stream, through a durable consumer acked after a 2xx.
    Jetstream,
    /// A Redis stream, through a consumer group, `XACK`ed after a 2xx.
    Redis,
}

impl TriggerKind {
    /// Its name in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nats => "nats",
            Self::Jetstream => "jetstream",
            Self::Redis => "redis",
        }
    }
}

/// A broker source firing a function: each message becomes an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// The broker.
    pub kind: TriggerKind,
    /// The subject (NATS; wildcards allowed) or the stream (JetStream, Redis).
    pub source: String,
    /// The queue group (NATS), durable consumer (JetStream) or consumer group (Redis);
    /// default `kindling-{function}`, so that the nodes of a fleet share the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Only these subjects of the stream (JetStream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Where the function's response is published: a subject (JetStream) or a stream (Redis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// The path the function is invoked with (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl TriggerConfig {
    /// The consumer's name: the configured group, or `kindling-{function}` (in namespace
    /// `default`) or `{namespace}_kindling-{function}`.
    pub fn group_for(&self, function: &str, namespace: &str) -> String {
        self.group.clone().unwrap_or_else(|| {
            if namespace == "default" {
                format!("kindling-{function}")
            } else {
                format!("{namespace}_kindling-{function}")
            }
        })
    }

    /// Checks that a function of `namespace` reaches only its namespace's part of the broker.
    /// Namespace `default` (the node operator's) names anything; any other namespace consumes
    /// and publishes only under its own prefix: subjects `{ns}.`, JetStream streams and groups
    /// `{ns}_`, Redis streams `{ns}:`. Namespace names have no `.`, `_` or `:`, so one
    /// namespace's prefix is never another's.
    pub fn validate_in(&self, namespace: &str) -> Result<(), String> {
        self.validate()?;
        if namespace == "default" {
            return Ok(());
        }
        let what = format!("{} trigger {:?}", self.kind.as_str(), self.source);
        let check = |value: &str, prefix: String, role: &str| {
            if value.starts_with(&prefix) && value.len() > prefix.len() {
                Ok(())
            } else {
                Err(format!(
                    "{what}: a function of namespace {namespace:?} may use only {role}s under \
                     {prefix:?}, not {value:?}; name it \"{prefix}{value}\""
                ))
            }
        };
        let (subjects, streams) = (format!("{namespace}."), format!("{namespace}_"));
        match self.kind {
            TriggerKind::Nats => check(&self.source, subjects.clone(), "subject")?,
            TriggerKind::Jetstream => check(&self.source, streams.clone(), "stream")?,
            TriggerKind::Redis => check(&self.source, format!("{namespace}:"), "stream")?,
        }
        if let Some(group) = &self.group {
            check(group, streams.clone(), "group")?;
        }
        if let Some(subject) = &self.subject {
            check(subject, subjects.clone(), "subject")?;
        }
        if let Some(reply) = &self.reply {
            match self.kind {
                TriggerKind::Redis => check(reply, format!("{namespace}:"), "stream")?,
                _ => check(reply, subjects, "subject")?,
            }
        }
        Ok(())
    }

    /// Parses `KIND:SOURCE[?key=value&...]`, as `--trigger` takes it: `nats:orders.*`,
    /// `jetstream:ORDERS?subject=orders.eu&reply=orders.done`, `redis:events?group=g`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let usage = "write KIND:SOURCE[?group=..&subject=..&reply=..&path=..] with KIND nats, \
                     jetstream or redis";
        let (kind, rest) = spec
            .split_once(':')
            .ok_or_else(|| format!("trigger {spec:?}: {usage}"))?;
        let kind = match kind {
            "nats" => TriggerKind::Nats,
            "jetstream" => TriggerKind::Jetstream,
            "redis" => TriggerKind::Redis,
            other => return Err(format!("trigger {spec:?}: unknown kind {other:?}; {usage}")),
        };
        let (source, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut trigger = Self {
            kind,
            source: source.to_string(),
            group: None,
            subject: None,
            reply: None,
            path: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("trigger {spec:?}: {pair:?} is not key=value"))?;
            let slot = match key {
                "group" | "queue" | "consumer" => &mut trigger.group,
                "subject" => &mut trigger.subject,
                "reply" => &mut trigger.reply,
                "path" => &mut trigger.path,
                other => {
                    return Err(format!(
                        "trigger {spec:?}: unknown option {other:?}; use group, subject, reply or path"
                    ));
                }
            };
            *slot = Some(value.to_string());
        }
        trigger.validate()?;
        Ok(trigger)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        let what = format!("{} trigger {:?}", self.kind.as_str(), self.source);
        let token = |value: &str, wildcards: bool| {
            !value.is_empty()
                && value.len() <= 255
                && value.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || b"-_.".contains(&b)
                        || (wildcards && (b == b'*' || b == b'>'))
                        || (self.kind == TriggerKind::Redis && b == b':')
                })
        };
        if !token(&self.source, self.kind == TriggerKind::Nats) {
            return Err(format!(
                "{what}: the source must be 1-255 letters, digits, `-`, `_` and `.`{}",
                if self.kind == TriggerKind::Nats {
                    " (and the wildcards `*` and `>`)"
                } else {
                    ""
                }
            ));
        }
        if let Some(group) = &self.group
            && !token(group, false)
        {
            return Err(format!(
                "{what}: group {group:?} must be letters, digits, `-` and `_`"
            ));
        }
        if let Some(subject) = &self.subject {
            if self.kind != TriggerKind::Jetstream {
                return Err(format!("{what}: subject= filters JetStream streams only"));
            }
            if !token(subject, true) {
                return Err(format!("{what}: subject {subject:?} is not a NATS subject"));
            }
        }
        if let Some(reply) = &self.reply {
            if self.kind == TriggerKind::Nats {
                return Err(format!(
                    "{what}: core NATS answers a request on its own reply subject; reply= is for \
                     jetstream and redis triggers"
                ));
            }
            if !token(reply, false) {
                return Err(format!(
                    "{what}: reply {reply:?} is not a subject or stream name"
                ));
            }
        }
        if let Some(path) = &self.path
            && !path.starts_with('/')
        {
            return Err(format!("{what}: path {path:?} must start with `/`"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_specs_parse_with_clear_errors() {
        let t =
            TriggerConfig::parse("jetstream:ORDERS?subject=orders.eu&reply=done&path=/x").unwrap();
        assert_eq!(t.kind, TriggerKind::Jetstream);
        assert_eq!(t.source, "ORDERS");
        assert_eq!(t.subject.as_deref(), Some("orders.eu"));
        assert_eq!(t.reply.as_deref(), Some("done"));
        assert_eq!(t.path.as_deref(), Some("/x"));
        assert!(
            TriggerConfig::parse("kafka:x")
                .unwrap_err()
                .contains("unknown kind")
        );
        assert!(
            TriggerConfig::parse("nats")
                .unwrap_err()
                .contains("KIND:SOURCE")
        );
        assert!(
            TriggerConfig::parse("nats:a?reply=b")
                .unwrap_err()
                .contains("own reply")
        );
        assert!(
            TriggerConfig::parse("redis:s?subject=x")
                .unwrap_err()
                .contains("JetStream")
        );
        assert!(
            TriggerConfig::parse("nats:a b")
                .unwrap_err()
                .contains("source must be")
        );
        assert!(
            TriggerConfig::parse("nats:a?colour=red")
                .unwrap_err()
                .contains("unknown option")
        );
    }

    #[test]
    fn a_namespace_reaches_only_its_own_part_of_the_broker() {
        let ok = |spec: &str| TriggerConfig::parse(spec).unwrap().validate_in("team-a");
        assert!(ok("nats:team-a.orders.*").is_ok());
        assert!(ok("nats:>").unwrap_err().contains("under \"team-a.\""));
        assert!(
            ok("nats:team-ab.x").is_err(),
            "a longer namespace is another one"
        );
        assert!(ok("jetstream:team-a_ORDERS?subject=team-a.eu&reply=team-a.done").is_ok());
        assert!(ok("jetstream:ORDERS").is_err());
        assert!(ok("jetstream:team-a_ORDERS?reply=done").is_err());
        assert!(ok("jetstream:team-a_ORDERS?group=kindling-victim").is_err());
        assert!(ok("redis:team-a:events?reply=team-a:done&group=team-a_g").is_ok());
        assert!(ok("redis:events").is_err());
        // The default namespace is the operator's: anything goes.
        let any = TriggerConfig::parse("nats:>").unwrap();
        assert!(any.validate_in("default").is_ok());
        assert_eq!(any.group_for("f", "default"), "kindling-f");
        assert_eq!(any.group_for("f", "team-a"), "team-a_kindling-f");
    }
}
