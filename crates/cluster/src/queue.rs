//! The cluster's invocation queue on JetStream ([`NatsQueue`], behind
//! [`kindling_events::SharedQueue`]).
//!
//! - The stream `KINDLING_QUEUE` (work-queue retention, the cluster's replicas) holds every
//!   accepted invocation on `kindling.queue.{id}` until a node acknowledges it. Its
//!   `Nats-Msg-Id` is the invocation id, so a publish sent again after an unanswered one is
//!   kept once. An idempotency key is claimed in the records bucket (`key_{hash}`, compare
//!   and set) before its invocation is published, so that it is one invocation on whatever
//!   node it arrives.
//! - One durable pull consumer, `kindling-workers`, is shared by all nodes: a node fetches
//!   what it has room for and holds each message (telling JetStream it is still working
//!   every third of the ack wait) until the invocation is final there. A node that stops
//!   holding, killed or cut off, lets the ack wait lapse, and JetStream sends the message to
//!   another node.
//! - The bucket `kindling-invocations` keeps each invocation as its holder last reported it,
//!   so any node can show any invocation. A holder reports when it takes an invocation, when
//!   each attempt starts and after it: a node that takes an invocation over counts the
//!   attempts started before (not the deliveries), and one sent an invocation whose record
//!   is final settles it without running it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, kv};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use kindling_events::{
    Accepted, Earlier, Envelope, EventsError, InvocationRecord, SharedQueue, Taken,
};

use crate::cluster::Shared;

mod records;

const STREAM: &str = "KINDLING_QUEUE";
const CONSUMER: &str = "kindling-workers";
const SUBJECTS: &str = "kindling.queue.>";
/// Core NATS subject rung after each publish, so that idle nodes look at once.
const BELL: &str = "kindling.queue-bell";
pub(crate) const RECORDS: &str = "kindling-invocations";
/// Most bytes a record takes in the bucket (a value must fit a NATS message): past it, the
/// response body goes, then the oldest attempts of its history.
const RECORD_MAX: usize = 256 * 1024;
/// Longest duplicate window of the stream: it only dedupes a publish sent again after an
/// unanswered one; idempotency keys are kept longer in the records bucket (`key_{hash}`).
const PUBLISH_DEDUP: Duration = Duration::from_secs(120);
/// Room left in a message for its headers and subject.
const HEADROOM: usize = 1024;
/// How long a fetch from the queue's consumer may take to answer.
const FETCH_PATIENCE: Duration = Duration::from_secs(5);
/// How often a publish, report or settle is tried before the node gives up on it.
const TRIES: u32 = 3;

/// How the cluster's queue is made.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// How long JetStream waits for a holder's word before it sends an invocation to another
    /// node.
    pub ack_wait: Duration,
    /// Most invocations the cluster's queue holds; past it, new ones are refused.
    pub max_waiting: u64,
    /// How long an idempotency key deduplicates (JetStream's duplicate window).
    pub idempotency_window: Duration,
    /// How long records are kept in `kindling-invocations`.
    pub retain: Duration,
}

#[derive(Clone)]
struct Opened {
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    consumer: PullConsumer,
    records: kv::Store,
}

/// The cluster's queue as one node uses it.
pub(crate) struct NatsQueue {
    shared: Arc<Shared>,
    settings: QueueSettings,
    /// The messages this node holds: invocation id to the message's reply subject.
    held: Mutex<HashMap<String, async_nats::Subject>>,
    /// The revision of each record this node last wrote and reports on: its next report is
    /// a compare-and-set from there, so that a node that lost an invocation to another
    /// (cut off past the ack wait) does not write over the new holder's record.
    revisions: Mutex<HashMap<String, u64>>,
    opened: tokio::sync::Mutex<Option<Opened>>,
    /// Rung when any node publishes an invocation (core NATS, `kindling.queue-bell`).
    bell: Arc<tokio::sync::Notify>,
}

fn subject(id: &str) -> String {
    format!("kindling.queue.{id}")
}

/// An invocation id is `inv_` and hex digits: nothing else names a subject or a key.
fn valid_id(id: &str) -> bool {
    id.strip_prefix("inv_")
        .is_some_and(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl NatsQueue {
    pub(crate) fn new(shared: Arc<Shared>, settings: QueueSettings) -> Arc<Self> {
        let queue = Arc::new(Self {
            shared,
            settings,
            held: Mutex::default(),
            revisions: Mutex::default(),
            opened: tokio::sync::Mutex::default(),
            bell: Arc::default(),
        });
        tokio::spawn(keep_holding(Arc::downgrade(&queue)));
        tokio::spawn(listen(
            queue.shared.client.clone(),
            Arc::downgrade(&queue.bell),
        ));
        queue
    }

    /// The stream, the consumer and the bucket, made by the first node that needs them.
    async fn open(&self) -> Result<Opened, String> {
        if !self.shared.connected() {
            return Err("the cluster's NATS servers cannot be reached now".into());
        }
        let mut opened = self.opened.lock().await;
        if let Some(opened) = &*opened {
            return Ok(opened.clone());
        }
        let js = self.shared.config.jetstream(&self.shared.client);
        let stream = match js.get_stream(STREAM).await {
            Ok(stream) => stream,
            Err(_) => self.make_stream(&js).await?,
        };
        let consumer = stream
            .get_or_create_consumer(
                CONSUMER,
                jetstream::consumer::pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    description: Some("Kindling: every node takes its share of the queue".into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.settings.ack_wait,
                    filter_subject: SUBJECTS.into(),
                    max_ack_pending: 65_536,
                    ..Default::default()
                },
            )
            .await
            .map_err(|err| format!("cannot open the queue's consumer {CONSUMER}: {err}"))?;
        let retain = self.settings.retain;
        let records = crate::buckets::key_value(&js, self.shared.config.replicas, |num_replicas| {
            kv::Config {
                bucket: RECORDS.into(),
                description: "Kindling: asynchronous invocations as their holders report them"
                    .into(),
                history: 1,
                max_age: retain,
                num_replicas,
                ..Default::default()
            }
        })
        .await?;
        let made = Opened {
            js,
            stream,
            consumer,
            records,
        };
        *opened = Some(made.clone());
        Ok(made)
    }

    async fn make_stream(
        &self,
        js: &jetstream::Context,
    ) -> Result<jetstream::stream::Stream, String> {
        let config = |num_replicas| jetstream::stream::Config {
            name: STREAM.into(),
            description: Some(
                "Kindling: asynchronous invocations, each held until one node finishes it".into(),
            ),
            subjects: vec![SUBJECTS.into()],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            max_messages: i64::try_from(self.settings.max_waiting).unwrap_or(i64::MAX),
            discard: jetstream::stream::DiscardPolicy::New,
            duplicate_window: self.settings.idempotency_window.min(PUBLISH_DEDUP),
            allow_direct: true,
            num_replicas,
            ..Default::default()
        };
        let replicas = self.shared.config.replicas;
        let made = match js.create_stream(config(replicas)).await {
            Err(err) if replicas > 1 && err.to_string().contains("non-clustered") => {
                js.create_stream(config(1)).await
            }
            made => made,
        };
        made.map_err(|err| format!("cannot make the queue's stream {STREAM}: {err}"))
    }

    /// What JetStream has for this node now, up to `max`, without waiting.
    async fn fetch(&self, max: usize) -> Result<Vec<Taken>, String> {
        let opened = match self.open().await {
            Ok(opened) => opened,
            Err(err) => {
                // The consumer may be gone with a server; look again next time.
                *self.opened.lock().await = None;
                return Err(err);
            }
        };
        let fetched = opened.consumer.fetch().max_messages(max).messages().await;
        let mut batch = match fetched {
            Ok(batch) => batch,
            Err(err) => {
                *self.opened.lock().await = None;
                return Err(format!("cannot fetch from the queue's consumer: {err}"));
            }
        };
        // A fetch sent while the consumer had no leader (the whole of NATS restarting) is
        // never answered: it is given up on, and asked again.
        let collected = tokio::time::timeout(FETCH_PATIENCE, async {
            let mut messages = Vec::new();
            while let Some(message) = batch.next().await {
                match message {
                    Ok(message) => messages.push(message),
                    Err(err) => {
                        tracing::debug!(error = %err, "queue: a fetch ended early");
                        break;
                    }
                }
            }
            messages
        })
        .await;
        let Ok(messages) = collected else {
            *self.opened.lock().await = None;
            return Err("the queue's consumer did not answer a fetch; asking again".into());
        };
        let mut taken = Vec::new();
        for message in messages {
            let id = message
                .subject
                .strip_prefix("kindling.queue.")
                .unwrap_or_default()
                .to_string();
            let (Some(reply), Ok(info)) = (message.reply.clone(), message.info()) else {
                continue;
            };
            let delivered = u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX);
            if !valid_id(&id) {
                tracing::error!(subject = %message.subject, "queue: a message that is not an invocation; dropped");
                let _ = message.ack_with(jetstream::AckKind::Term).await;
                continue;
            }
            // A message sent again replaces the earlier delivery's reply subject.
            self.held
                .lock()
                .expect("held lock")
                .insert(id.clone(), reply);
            taken.push(Taken {
                id,
                payload: message.payload.clone(),
                delivered,
            });
        }
        Ok(taken)
    }

    /// Most bytes an invocation may take in the queue.
    fn max_payload(&self) -> usize {
        self.shared
            .client
            .server_info()
            .max_payload
            .saturating_sub(HEADROOM)
    }

    /// Remembers (or, with `None`, forgets) the revision this node wrote `id`'s record at.
    fn wrote(&self, id: &str, revision: Option<u64>) {
        let mut revisions = self.revisions.lock().expect("revisions lock");
        match revision {
            Some(revision) => revisions.insert(id.to_string(), revision),
            None => revisions.remove(id),
        };
    }

    fn release(&self, id: &str) -> Option<async_nats::Subject> {
        self.held.lock().expect("held lock").remove(id)
    }
}

#[async_trait]
impl SharedQueue for NatsQueue {
    async fn publish(&self, mut envelope: Envelope) -> Result<Accepted, EventsError> {
        let opened = self.open().await.map_err(EventsError::Storage)?;
        let mut payload = envelope.encode();
        let most = self.max_payload();
        if payload.len() > most {
            return Err(EventsError::Storage(format!(
                "the invocation takes {} bytes, more than a message of the cluster's NATS \
                 servers carries ({most} bytes; their max_payload)",
                payload.len()
            )));
        }
        let mut duplicate = false;
        let keyed = envelope.key_hash();
        if let Some(hash) = &keyed
            && let Some(earlier) = self.claim_key(&opened, hash, &envelope.id).await?
        {
            duplicate = true;
            // Past the claim, queueing on this node instead would make a second invocation
            // of the key: a failure here is the client's to retry.
            if self.known(&opened, &earlier).await.map_err(unavailable)? {
                return Ok(Accepted {
                    id: earlier,
                    duplicate,
                });
            }
            // The node that claimed the key stopped before its invocation was published:
            // publish it under the id the key names.
            envelope.id = earlier;
            payload = envelope.encode();
        }
        let id = envelope.id.clone();
        let new = match self.publish_once(&opened, &id, payload).await {
            Err(err) if keyed.is_some() => return Err(unavailable(err)),
            other => other?,
        };
        if new {
            let _ = self.shared.client.publish(BELL, Bytes::new()).await;
        }
        Ok(Accepted {
            id,
            duplicate: duplicate || !new,
        })
    }

    async fn take(&self, max: usize) -> Result<Vec<Taken>, String> {
        // Listening before looking: a bell rung between the two is not missed.
        let bell = self.bell.notified();
        tokio::pin!(bell);
        bell.as_mut().enable();
        let taken = self.fetch(max).await?;
        if !taken.is_empty() {
            return Ok(taken);
        }
        // Nothing now: wait for a publish anywhere, or look again in a second (for messages
        // JetStream sends again after a holder fell silent).
        tokio::select! {
            () = &mut bell => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        self.fetch(max).await
    }

    fn held(&self) -> usize {
        self.held.lock().expect("held lock").len()
    }

    async fn hold(&self, record: InvocationRecord) -> Result<Earlier, String> {
        let opened = self.open().await?;
        let id = record.id.clone();
        if !valid_id(&id) {
            return Err(format!("{id:?} is not an invocation id"));
        }
        for _ in 0..TRIES {
            match opened
                .records
                .create(&id, self.fit(record.clone()).into())
                .await
            {
                Ok(revision) => {
                    self.wrote(&id, Some(revision));
                    return Ok(Earlier::Attempts(0));
                }
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(err) => return Err(format!("cannot record {id:?}: {err}")),
            }
            let Some(entry) = opened
                .records
                .entry(&id)
                .await
                .map_err(|err| format!("cannot read the record of {id:?}: {err}"))?
            else {
                continue;
            };
            let Ok(earlier) = serde_json::from_slice::<InvocationRecord>(&entry.value) else {
                // Deleted, or not a record this node reads: its own takes the place.
                match opened
                    .records
                    .update(&id, self.fit(record.clone()).into(), entry.revision)
                    .await
                {
                    Ok(revision) => {
                        self.wrote(&id, Some(revision));
                        return Ok(Earlier::Attempts(0));
                    }
                    Err(_) => continue,
                }
            };
            let revision = entry.revision;
            if earlier.state.is_final() {
                return Ok(Earlier::Final);
            }
            let mut mine = record.clone();
            mine.attempts = earlier.attempts;
            mine.history = earlier.history;
            match opened
                .records
                .update(&id, self.fit(mine).into(), revision)
                .await
            {
                Ok(revision) => {
                    self.wrote(&id, Some(revision));
                    return Ok(Earlier::Attempts(earlier.attempts));
                }
                Err(_) => continue,
            }
        }
        Err(format!(
            "the record of {id:?} changes under this node; retry"
        ))
    }

    async fn report(&self, record: InvocationRecord) -> bool {
        let id = record.id.clone();
        if !valid_id(&id) {
            return false;
        }
        let finished = record.state.is_final();
        let value: Bytes = self.fit(record).into();
        let mut from = self
            .revisions
            .lock()
            .expect("revisions lock")
            .get(&id)
            .copied();
        let mut last = String::new();
        for attempt in 0..TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let opened = match self.open().await {
                Ok(opened) => opened,
                Err(err) => {
                    last = err;
                    continue;
                }
            };
            let written = match from {
                Some(revision) => opened
                    .records
                    .update(&id, value.clone(), revision)
                    .await
                    .map_err(|err| {
                        let moved = err.kind() == kv::UpdateErrorKind::WrongLastRevision;
                        (moved, err.to_string())
                    }),
                None => opened
                    .records
                    .put(&id, value.clone())
                    .await
                    .map_err(|err| (false, err.to_string())),
            };
            match written {
                Ok(revision) => {
                    self.wrote(&id, (!finished).then_some(revision));
                    return true;
                }
                Err((true, err)) => {
                    // Written since: by this node (a write that landed unanswered), or by the
                    // node that took the invocation over while this one was cut off.
                    match self.recorded(&opened, &id).await {
                        Ok(Some((now, revision)))
                            if !now.state.is_final()
                                && now.node.as_deref() == Some(&self.shared.config.node_name) =>
                        {
                            from = Some(revision);
                            last = err;
                        }
                        _ => {
                            self.wrote(&id, None);
                            tracing::warn!(
                                invocation = %id,
                                "queue: another node took this invocation over; this node's report is dropped"
                            );
                            return false;
                        }
                    }
                }
                Err((false, err)) => last = err,
            }
        }
        tracing::warn!(
            invocation = %id, error = %last,
            "queue: cannot report an invocation to the cluster; other nodes show it as it was"
        );
        false
    }

    async fn settle(&self, id: &str) {
        let Some(reply) = self.release(id) else {
            return;
        };
        // Asked for an answer: JetStream confirms the message is gone. One that never
        // confirms is sent again after the ack wait, to a node that finds its record final.
        for attempt in 0..TRIES {
            let acked = tokio::time::timeout(
                Duration::from_secs(2),
                self.shared.client.request(reply.clone(), "+ACK".into()),
            )
            .await;
            if matches!(acked, Ok(Ok(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        tracing::warn!(
            invocation = %id,
            "queue: the cluster did not confirm a settled invocation; the node it goes to next settles it"
        );
    }

    async fn abandon(&self, id: &str, delay: Duration) {
        self.wrote(id, None);
        if let Some(reply) = self.release(id) {
            let nak = if delay.is_zero() {
                Bytes::from_static(b"-NAK")
            } else {
                Bytes::from(format!("-NAK {{\"delay\": {}}}", delay.as_nanos()))
            };
            // Flushed: a stopping node gives back what it had not started, and exits next.
            if self.shared.client.publish(reply, nak).await.is_ok() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), self.shared.client.flush()).await;
            }
        }
    }

    async fn forget(&self, id: &str) {
        self.wrote(id, None);
        if !valid_id(id) {
            return;
        }
        let forgotten = match self.open().await {
            Ok(opened) => opened
                .records
                .delete(id)
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(err),
        };
        if let Err(err) = forgotten {
            tracing::warn!(
                invocation = %id, error = %err,
                "queue: cannot delete the cluster's record of an invocation; other nodes show it until it expires"
            );
        }
    }

    async fn find(&self, id: &str) -> Result<Option<InvocationRecord>, EventsError> {
        if !valid_id(id) {
            return Ok(None);
        }
        let unreachable = |err: String| {
            EventsError::Unreachable(format!(
                "this node does not hold invocation {id:?} and cannot ask the cluster: {err}"
            ))
        };
        let opened = self.open().await.map_err(unreachable)?;
        if let Some((record, _)) = self.recorded(&opened, id).await.map_err(unreachable)? {
            return Ok(Some(record));
        }
        match opened.stream.direct_get_last_for_subject(subject(id)).await {
            Ok(message) => Ok(Envelope::decode(&message.payload)
                .ok()
                .map(|envelope| envelope.queued_record())),
            Err(err) if err.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(err) => Err(unreachable(err.to_string())),
        }
    }

    async fn cancel(&self, id: &str) -> Result<bool, EventsError> {
        if !valid_id(id) {
            return Ok(false);
        }
        let unreachable = |err: String| {
            EventsError::Unreachable(format!("cannot cancel invocation {id:?}: {err}"))
        };
        let opened = self.open().await.map_err(unreachable)?;
        let record = self
            .recorded(&opened, id)
            .await
            .map_err(unreachable)?
            .map(|(record, _)| record);
        if let Some(record) = &record
            && !record.state.is_final()
        {
            return Err(EventsError::Conflict(format!(
                "invocation {id:?} is held by node {:?}; cancel it there",
                record.node.as_deref().unwrap_or("?")
            )));
        }
        let mut gone = false;
        match opened.stream.direct_get_last_for_subject(subject(id)).await {
            Ok(message) => {
                gone = opened
                    .stream
                    .delete_message(message.sequence)
                    .await
                    .map_err(|err| unreachable(err.to_string()))?;
            }
            Err(err) if err.kind() == jetstream::stream::DirectGetErrorKind::NotFound => {}
            Err(err) => return Err(unreachable(err.to_string())),
        }
        if record.is_some() {
            opened
                .records
                .delete(id)
                .await
                .map_err(|err| unreachable(err.to_string()))?;
            gone = true;
        }
        Ok(gone)
    }

    async fn pending(&self) -> Option<u64> {
        let opened = self.open().await.ok()?;
        let mut consumer = opened.consumer.clone();
        let info = consumer.info().await.ok()?;
        Some(info.num_pending + info.num_ack_pending as u64)
    }
}

/// Rings `bell` at every publish of any node, for as long as the queue lives; resubscribes
/// after the subscription ends (the client resubscribes by itself across reconnections).
async fn listen(client: async_nats::Client, bell: Weak<tokio::sync::Notify>) {
    loop {
        match client.subscribe(BELL).await {
            Ok(mut subscription) => {
                while subscription.next().await.is_some() {
                    let Some(bell) = bell.upgrade() else { return };
                    bell.notify_waiters();
                }
            }
            Err(err) => tracing::debug!(error = %err, "queue: cannot listen for new invocations"),
        }
        if bell.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A storage failure once an idempotency key is claimed: the client retries.
fn unavailable(err: EventsError) -> EventsError {
    match err {
        EventsError::Storage(why) => EventsError::Unavailable(why),
        other => other,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Tells JetStream, every third of the ack wait, that this node still works on what it holds.
async fn keep_holding(queue: Weak<NatsQueue>) {
    let every = {
        let Some(queue) = queue.upgrade() else { return };
        (queue.settings.ack_wait / 3).max(Duration::from_millis(100))
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(queue) = queue.upgrade() else { return };
        let replies: Vec<async_nats::Subject> = queue
            .held
            .lock()
            .expect("held lock")
            .values()
            .cloned()
            .collect();
        for reply in replies {
            if queue
                .shared
                .client
                .publish(reply, "+WPI".into())
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_invocation_ids_name_subjects() {
        assert!(valid_id("inv_0123abcdef"));
        for bad in [
            "", "inv_", "inv_x", "inv_1.2", "inv_1 2", "inv_*", "inv_>", "other",
        ] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}
