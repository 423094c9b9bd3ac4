//! What the invocation queue keeps: an invocation as it was accepted, its state, every
//! attempt, the last response and the callback's progress. These types are also the admin
//! API's JSON (`GET /v1/invocations/{id}`).

use serde::{Deserialize, Serialize};

/// Where an invocation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum State {
    /// Accepted, waiting for its first or next attempt.
    Queued,
    /// An attempt is running.
    Running,
    /// The function answered with a success (2xx or 3xx).
    Succeeded,
    /// Retries are spent or the failure is final: it is in the dead-letter store.
    Dead,
}

impl State {
    /// Its name in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
        }
    }

    /// Whether nothing more happens to it (until someone retries it).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Dead)
    }
}

impl std::str::FromStr for State {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "queued" => Ok(Self::Queued),
            "running" => Ok(Self::Running),
            "succeeded" => Ok(Self::Succeeded),
            "dead" => Ok(Self::Dead),
            other => Err(format!(
                "unknown invocation state {other:?}; use queued, running, succeeded or dead"
            )),
        }
    }
}

/// What started an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Source {
    /// A client, through `Prefer: respond-async` or the admin API.
    Http,
    /// A schedule.
    Schedule,
    /// A core NATS message.
    Nats,
    /// A JetStream message (dead letters only: JetStream keeps the rest).
    Jetstream,
    /// A Redis stream entry (dead letters only: the stream keeps the rest).
    Redis,
}

impl Source {
    /// Its name in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Schedule => "schedule",
            Self::Nats => "nats",
            Self::Jetstream => "jetstream",
            Self::Redis => "redis",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "schedule" => Self::Schedule,
            "nats" => Self::Nats,
            "jetstream" => Self::Jetstream,
            "redis" => Self::Redis,
            _ => Self::Http,
        }
    }
}

/// A request to run later, as the queue accepts it.
#[derive(Debug, Clone)]
pub struct NewInvocation {
    /// The function.
    pub function: String,
    /// Its namespace when the request was accepted (for access checks on the record).
    pub namespace: String,
    /// What started it.
    pub source: Source,
    /// The request method.
    pub method: String,
    /// The path and query the function sees.
    pub path: String,
    /// The request headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole request body.
    pub body: Vec<u8>,
    /// Deduplicates within the idempotency window, per function.
    pub idempotency_key: Option<String>,
    /// Receives the result.
    pub callback_url: Option<String>,
}

/// What [`crate::Events::enqueue`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The invocation's id.
    pub id: String,
    /// Whether an earlier invocation with the same idempotency key was found instead.
    pub duplicate: bool,
}

/// One attempt of an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When it started (RFC 3339, milliseconds).
    pub started_at: String,
    /// How long it ran, when it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The status the function (or the node, for a trap or a timeout) answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The last response of an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseRecord {
    /// Its status.
    pub status: u16,
    /// Its headers, in order.
    pub headers: Vec<(String, String)>,
    /// Its body, when it is UTF-8 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Its body in base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Whether the body was cut at the node's limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// Where a callback stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackRecord {
    /// The URL the result is posted to.
    pub url: String,
    /// `waiting` (the invocation has not finished), `pending`, `delivered` or `failed`.
    pub state: String,
    /// Deliveries tried.
    pub attempts: u32,
    /// The last delivery's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An invocation as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// Its id (`inv_` and 32 hex digits).
    pub id: String,
    /// The function.
    pub function: String,
    /// The function's namespace when it was accepted.
    pub namespace: String,
    /// What started it.
    pub source: Source,
    /// Where it is.
    pub state: State,
    /// Attempts so far.
    pub attempts: u32,
    /// The request method.
    pub method: String,
    /// The path the function sees.
    pub path: String,
    /// Size of the request body.
    pub body_bytes: u64,
    /// Its idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// When it was accepted (RFC 3339, milliseconds).
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When the next attempt is due, while queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Why it is dead, or why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseRecord>,
    /// The callback, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackRecord>,
    /// Every attempt, first to last (filled by `show`, empty in lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Attempt>,
    /// In a cluster, the node that holds it (takes its attempts); absent on a node of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Which invocations a list or a purge selects.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Of this function only.
    pub function: Option<String>,
    /// In this state only.
    pub state: Option<State>,
    /// Of these namespaces only (`None`: all).
    pub namespaces: Option<Vec<String>>,
    /// At most this many (newest first); lists only.
    pub limit: Option<u32>,
}

/// What is waiting, per function: the scaling signals.
#[derive(Debug, Clone, PartialEq)]
pub struct Backlog {
    /// The function.
    pub function: String,
    /// Invocations queued or running.
    pub depth: u64,
    /// Age of the oldest of them, in seconds.
    pub oldest_age_seconds: f64,
}
