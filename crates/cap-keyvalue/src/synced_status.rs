//! What the node's sync reports of its links, kept here so that the key-value capability's
//! `/metrics` (and `kindling nodes`) show it beside the stores' backlogs.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// One link of the sync: an edge's to its hub, or the hub's to one edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkReport {
    /// The other end: `hub` at an edge, the edge's name at the hub.
    pub peer: String,
    /// Whether changes flow now.
    pub up: bool,
    /// When the other end was last heard from (never: `None`).
    #[serde(with = "unix_seconds")]
    pub last_contact: Option<SystemTime>,
    /// Changes the other end has that this node has not received yet.
    pub lag: u64,
}

mod unix_seconds {
    use std::time::{SystemTime, UNIX_EPOCH};

    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(
        at: &Option<SystemTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match at.and_then(|at| at.duration_since(UNIX_EPOCH).ok()) {
            Some(since) => serializer.serialize_u64(since.as_secs()),
            None => serializer.serialize_none(),
        }
    }
}

/// The sync's reports and counts; the sync writes them, `/metrics` reads them.
#[derive(Debug)]
pub struct SyncStatus {
    links: Mutex<Vec<LinkReport>>,
    sent: AtomicU64,
    applied: AtomicU64,
    /// When the node started: a site that never heard from its hub has been without it since.
    started: SystemTime,
    /// Whether this node is an edge site (its data may be behind its hub's).
    edge: AtomicBool,
    /// An edge's last contact with its hub before this process started, as it kept it.
    restored_contact: Mutex<Option<SystemTime>>,
    /// The messages and bytes of the stream this node applies from, when last read.
    stream: Mutex<Option<(u64, u64)>>,
}

impl Default for SyncStatus {
    fn default() -> Self {
        Self {
            links: Mutex::default(),
            sent: AtomicU64::default(),
            applied: AtomicU64::default(),
            started: SystemTime::now(),
            edge: AtomicBool::new(false),
            restored_contact: Mutex::new(None),
            stream: Mutex::new(None),
        }
    }
}

/// The peer an edge site's link report names.
const HUB: &str = "hub";

impl SyncStatus {
    /// Says this node is an edge site, whose last contact with its hub before this process
    /// was `last_contact` (kept on disk by the sync). Called when the sync starts, before its
    /// link reports anything.
    pub fn mark_edge(&self, last_contact: Option<SystemTime>) {
        *self.restored_contact.lock().expect("sync status lock") = last_contact;
        self.edge.store(true, Ordering::Relaxed);
    }

    /// At an edge site: how long it has gone without word from its hub, since the last contact
    /// (in this process or, kept on disk, an earlier one), or since it started when it never
    /// had one. `None` elsewhere: a hub, or a node without sync, holds no one else's data.
    pub fn hub_silence(&self) -> Option<Duration> {
        if !self.edge.load(Ordering::Relaxed) {
            return None;
        }
        let links = self.links.lock().expect("sync status lock");
        let reported = (links.iter().find(|link| link.peer == HUB)).and_then(|l| l.last_contact);
        let restored = *self.restored_contact.lock().expect("sync status lock");
        let since = reported.max(restored).unwrap_or(self.started);
        Some(SystemTime::now().duration_since(since).unwrap_or_default())
    }

    /// Replaces the link reports.
    pub fn report(&self, links: Vec<LinkReport>) {
        *self.links.lock().expect("sync status lock") = links;
    }

    /// The last link reports.
    pub fn links(&self) -> Vec<LinkReport> {
        self.links.lock().expect("sync status lock").clone()
    }

    /// Notes the size of the stream this node applies from (the hub's, or an edge's mirror
    /// of it): `messages` changes in `bytes`.
    pub fn note_stream(&self, messages: u64, bytes: u64) {
        *self.stream.lock().expect("sync status lock") = Some((messages, bytes));
    }

    /// The messages and bytes of that stream, once read.
    pub fn stream_size(&self) -> Option<(u64, u64)> {
        *self.stream.lock().expect("sync status lock")
    }

    /// Counts changes sent from this node's outboxes.
    pub fn note_sent(&self, changes: u64) {
        self.sent.fetch_add(changes, Ordering::Relaxed);
    }

    /// Counts other nodes' changes applied here.
    pub fn note_applied(&self, changes: u64) {
        self.applied.fetch_add(changes, Ordering::Relaxed);
    }

    /// Changes sent and applied since the node started.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.applied.load(Ordering::Relaxed),
        )
    }
}
