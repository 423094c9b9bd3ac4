//! The seam for a queue that a cluster shares ([`SharedQueue`]; JetStream's is in
//! `kindling-cluster`). With one, an accepted invocation is durable in the cluster before the
//! client hears 202, and any node with room takes it: [`pump`] moves what this node takes into
//! its own queue database as a row marked `shared`, where the workers run it as any other,
//! and holds the message (the cluster's queue sends it to another node if this one stops
//! holding it) until the row is final. A node that cannot reach the cluster queues in its own
//! database and runs what it queued, as a node of its own does.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut as _, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::EventsError;
use crate::events::Events;
use crate::record::{InvocationRecord, NewInvocation, Source, State};
use crate::sql;
use crate::sql_shared::{self, Here};

/// A queue shared by the nodes of a cluster. Invocations are named by their id; what is
/// queued is an opaque payload ([`Envelope::encode`]). Beside the queue, the cluster keeps a
/// record of each invocation as its holder last reported it.
#[async_trait]
pub trait SharedQueue: Send + Sync + 'static {
    /// Queues `envelope`; answers once the cluster holds it durably. An envelope whose
    /// [`Envelope::key_hash`] the cluster saw within the idempotency window is the earlier
    /// invocation: its id is answered, as a duplicate. Fails with [`EventsError::Full`] when
    /// the cluster's queue is full, and with [`EventsError::Storage`] when it cannot be
    /// reached or cannot carry the envelope (the caller queues it on its own then).
    async fn publish(&self, envelope: Envelope) -> Result<crate::record::Accepted, EventsError>;

    /// Takes up to `max` invocations for this node, waiting a moment for one when none is
    /// there. Each stays held by this node until [`SharedQueue::settle`] or
    /// [`SharedQueue::abandon`].
    async fn take(&self, max: usize) -> Result<Vec<Taken>, String>;

    /// How many invocations this node holds now.
    fn held(&self) -> usize;

    /// Records `record`, an invocation just taken, as this node's, and answers what earlier
    /// holders left of it.
    async fn hold(&self, record: InvocationRecord) -> Result<Earlier, String>;

    /// Tells the other nodes where an invocation this node holds stands (tried a few times;
    /// the reports of one node arrive in the order it made them). Answers whether the
    /// cluster has it.
    async fn report(&self, record: InvocationRecord) -> bool;

    /// The message leaves the cluster's queue: the invocation is final, or not the queue's to
    /// run any more. Its record stays.
    async fn settle(&self, id: &str);

    /// This node will not run it: another node may take it once `delay` has passed.
    async fn abandon(&self, id: &str, delay: Duration);

    /// Deletes the cluster's record of an invocation (deleted or cancelled here).
    async fn forget(&self, id: &str);

    /// An invocation this node does not have: as its holder last reported it, or as it waits
    /// in the cluster's queue; `Ok(None)` when the cluster has no such id, and
    /// [`EventsError::Unreachable`] when it cannot say.
    async fn find(&self, id: &str) -> Result<Option<InvocationRecord>, EventsError>;

    /// Cancels an invocation this node does not hold: `Ok(true)` when it was waiting and is
    /// gone, or finished and its record is gone; `Ok(false)` when the cluster has no such id.
    async fn cancel(&self, id: &str) -> Result<bool, EventsError>;

    /// Invocations in the cluster's queue, waiting or held by some node (`None` when the
    /// cluster does not answer).
    async fn pending(&self) -> Option<u64>;
}

/// What the cluster knew of an invocation a node takes ([`SharedQueue::hold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Earlier {
    /// Earlier holders started this many attempts (0 for a new one); a delivery that never
    /// started an attempt (given back, or lost before a worker took it) does not count.
    Attempts(u32),
    /// It is final already: a holder finished it, and settling its message did not land.
    Final,
}

/// One invocation taken from a shared queue.
#[derive(Debug, Clone)]
pub struct Taken {
    /// Its id.
    pub id: String,
    /// What was published.
    pub payload: Bytes,
    /// How often the queue has sent it, this time included.
    pub delivered: u32,
}

/// How long an invocation this node could not take in waits before another node may.
const GIVE_BACK_DELAY: Duration = Duration::from_secs(5);

/// An accepted invocation as it travels through a shared queue: a length-prefixed JSON head
/// and the body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Its id.
    pub id: String,
    /// The function.
    pub function: String,
    /// Its namespace when it was accepted.
    pub namespace: String,
    /// What started it.
    pub source: Source,
    /// The request method.
    pub method: String,
    /// The path and query the function sees.
    pub path: String,
    /// The request headers, in order (values as text where they are).
    #[serde(serialize_with = "headers_out", deserialize_with = "headers_in")]
    pub headers: Vec<(String, Vec<u8>)>,
    /// Deduplicates within the idempotency window.
    pub idempotency_key: Option<String>,
    /// Receives the result.
    pub callback_url: Option<String>,
    /// When it was accepted (milliseconds since the epoch).
    pub created_at: i64,
    /// The request body (travels after the head).
    #[serde(skip)]
    pub body: Vec<u8>,
}

fn headers_out<S: serde::Serializer>(
    headers: &[(String, Vec<u8>)],
    out: S,
) -> Result<S::Ok, S::Error> {
    sql::encode_headers(headers).serialize(out)
}

fn headers_in<'de, D: serde::Deserializer<'de>>(
    input: D,
) -> Result<Vec<(String, Vec<u8>)>, D::Error> {
    Vec::<(String, sql::HeaderValue)>::deserialize(input).map(sql::from_header_values)
}

impl Envelope {
    pub(crate) fn new(id: String, new: NewInvocation, now: i64) -> Self {
        Self {
            id,
            function: new.function,
            namespace: new.namespace,
            source: new.source,
            method: new.method,
            path: new.path,
            headers: new.headers,
            idempotency_key: new.idempotency_key,
            callback_url: new.callback_url,
            created_at: now,
            body: new.body,
        }
    }

    /// What names its idempotency key in the cluster: a hash of the function and the key, so
    /// that the key of one function is one invocation on whichever node it arrives.
    pub fn key_hash(&self) -> Option<String> {
        use sha2::Digest as _;
        let key = self.idempotency_key.as_ref()?;
        let digest = sha2::Sha256::new()
            .chain_update(self.function.as_bytes())
            .chain_update([0])
            .chain_update(key.as_bytes())
            .finalize();
        Some(hex::encode(&digest[..16]))
    }

    /// Its bytes in the queue.
    pub fn encode(&self) -> Bytes {
        let head = serde_json::to_vec(self).expect("an envelope serializes");
        let mut out = BytesMut::with_capacity(4 + head.len() + self.body.len());
        out.put_u32(head.len() as u32);
        out.put_slice(&head);
        out.put_slice(&self.body);
        out.freeze()
    }

    /// Reads what [`Envelope::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let bad = || "not an invocation Kindling queued".to_string();
        let len = u32::from_be_bytes(
            bytes
                .get(..4)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        ) as usize;
        let head = bytes.get(4..4 + len).ok_or_else(bad)?;
        let mut envelope: Self =
            serde_json::from_slice(head).map_err(|err| format!("{}: {err}", bad()))?;
        envelope.body = bytes[4 + len..].to_vec();
        Ok(envelope)
    }

    /// The record of it while it waits for a node to take it.
    pub fn queued_record(&self) -> InvocationRecord {
        let created = sql::rfc3339(self.created_at);
        InvocationRecord {
            id: self.id.clone(),
            function: self.function.clone(),
            namespace: self.namespace.clone(),
            source: self.source,
            state: State::Queued,
            attempts: 0,
            method: self.method.clone(),
            path: self.path.clone(),
            body_bytes: self.body.len() as u64,
            idempotency_key: self.idempotency_key.clone(),
            created_at: created.clone(),
            updated_at: created.clone(),
            next_attempt_at: Some(created),
            finished_at: None,
            reason: None,
            response: None,
            callback: self
                .callback_url
                .as_ref()
                .map(|url| crate::record::CallbackRecord {
                    url: url.clone(),
                    state: "waiting".into(),
                    attempts: 0,
                    error: None,
                }),
            history: Vec::new(),
            node: None,
        }
    }
}

/// Queues `new` in the cluster: `Ok(None)` when the cluster's queue does not take it, and
/// the caller queues it here instead.
pub(crate) async fn enqueue(
    queue: &dyn SharedQueue,
    new: &NewInvocation,
) -> Result<Option<crate::record::Accepted>, EventsError> {
    let envelope = Envelope::new(sql::new_id(), new.clone(), sql::now_ms());
    match queue.publish(envelope).await {
        Ok(accepted) => Ok(Some(accepted)),
        Err(EventsError::Storage(why)) => {
            tracing::warn!(
                function = %new.function, error = %why,
                "the cluster's queue did not take the invocation: it is queued on this node"
            );
            Ok(None)
        }
        Err(other) => Err(other),
    }
}

/// Before the workers start: the shared rows a stopped node left unfinished are forgotten
/// (their messages went back to the cluster when it stopped holding them).
pub(crate) async fn forget_unfinished(events: &Events) {
    match events.store.call(sql_shared::forget_unfinished).await {
        Ok(0) => {}
        Ok(forgotten) => tracing::info!(
            forgotten,
            "queue: invocations taken from the cluster before the node stopped went back to it"
        ),
        Err(err) => tracing::error!(error = %err, "queue: cannot forget stale shared rows"),
    }
}

/// Takes work from the cluster's queue while this node has room for it: at most four
/// invocations per worker are held at once, the rest wait in the cluster for any node.
pub(crate) async fn pump(events: Arc<Events>, queue: Arc<dyn SharedQueue>) {
    let capacity = events.config.workers.max(1) * 4;
    loop {
        if events.stopping() {
            return;
        }
        let room = capacity.saturating_sub(queue.held());
        if room == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        match queue.take(room).await {
            Ok(taken) => {
                // Taken in together: their records go to the cluster at once, and their rows
                // share the queue database's transactions (one disk flush, not one each).
                let adopted = futures::future::join_all(
                    taken.into_iter().map(|one| adopt(&events, &*queue, one)),
                )
                .await;
                if adopted.contains(&true) {
                    events.wake.notify_one();
                }
                // The cluster answers: what this node queued alone while it did not is shown.
                events.report_unreported(&*queue).await;
            }
            Err(err) => {
                tracing::debug!(error = %err, "queue: cannot take from the cluster's queue now");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Takes one invocation in: answers whether it is a new row for the workers.
async fn adopt(events: &Events, queue: &dyn SharedQueue, taken: Taken) -> bool {
    let id = taken.id.clone();
    let envelope = match Envelope::decode(&taken.payload) {
        Ok(envelope) if envelope.id == id => envelope,
        Ok(_) | Err(_) => {
            tracing::error!(
                invocation = %id, bytes = taken.payload.len(),
                "queue: a message in the cluster's queue is not an invocation Kindling queued; \
                 removed from the queue"
            );
            queue.settle(&id).await;
            return false;
        }
    };
    let looked = id.clone();
    match events
        .store
        .call(move |conn| sql_shared::here(conn, &looked))
        .await
    {
        Ok(Here::Absent) => {}
        Ok(Here::Live) => return false,
        Ok(Here::Settle) => {
            // Finished here, or retried here by hand: the record says so before the message
            // goes, so that no node runs it again.
            let reported = match events.local(&id).await {
                Ok(record) => queue.report(record).await,
                Err(_) => false,
            };
            if reported {
                queue.settle(&id).await;
            } else {
                queue.abandon(&id, GIVE_BACK_DELAY).await;
            }
            return false;
        }
        Err(err) => {
            give_back(queue, &id, &err.to_string()).await;
            return false;
        }
    }
    // Recorded as this node's before a worker can report anything newer.
    let attempts = match queue.hold(envelope.queued_record()).await {
        Ok(Earlier::Attempts(attempts)) => attempts,
        Ok(Earlier::Final) => {
            queue.settle(&id).await;
            return false;
        }
        Err(err) => {
            give_back(queue, &id, &err).await;
            return false;
        }
    };
    let adopted = events
        .store
        .call(move |conn| sql_shared::adopt(conn, &envelope, attempts, sql::now_ms()))
        .await;
    match adopted {
        Ok(()) => true,
        Err(err) => {
            give_back(queue, &id, &err.to_string()).await;
            false
        }
    }
}

async fn give_back(queue: &dyn SharedQueue, id: &str, why: &str) {
    tracing::error!(
        invocation = %id, error = %why,
        "queue: cannot take an invocation from the cluster; another node may in a moment"
    );
    queue.abandon(id, GIVE_BACK_DELAY).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation() -> NewInvocation {
        NewInvocation {
            function: "f".into(),
            namespace: "default".into(),
            source: Source::Http,
            method: "POST".into(),
            path: "/a?b=1".into(),
            headers: vec![("x".into(), vec![0xff, 0]), ("y".into(), b"text".to_vec())],
            body: vec![1, 2, 3, 0, 255],
            idempotency_key: Some("k".into()),
            callback_url: None,
        }
    }

    #[test]
    fn an_envelope_survives_the_queue() {
        let envelope = Envelope::new("inv_1".into(), invocation(), 42);
        let back = Envelope::decode(&envelope.encode()).unwrap();
        assert_eq!(back.body, vec![1, 2, 3, 0, 255]);
        assert_eq!(back.headers, envelope.headers);
        assert_eq!(back.path, "/a?b=1");
        assert_eq!(back.queued_record().body_bytes, 5);
        assert!(Envelope::decode(b"\0\0\0\x09{}").is_err());
        assert!(Envelope::decode(b"").is_err());
    }

    #[test]
    fn one_key_of_one_function_is_one_hash() {
        let hash = |function: &str, key: Option<&str>| {
            let mut envelope = Envelope::new("inv_1".into(), invocation(), 0);
            envelope.function = function.into();
            envelope.idempotency_key = key.map(Into::into);
            envelope.key_hash()
        };
        assert_eq!(hash("f", Some("k")), hash("f", Some("k")));
        assert_ne!(hash("f", Some("k")), hash("g", Some("k")));
        assert_ne!(hash("f", Some("k1")), hash("f1", Some("k")));
        assert_eq!(hash("f", Some("k")).unwrap().len(), 32);
        assert_eq!(hash("f", None), None);
    }
}
