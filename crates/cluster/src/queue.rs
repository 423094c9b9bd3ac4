//! The cluster's invocation queue on JetStream ([`NatsQueue`], behind
//! [`kindling_events::SharedQueue`]).
//!
//! - The stream `KINDLING_QUEUE` (work-queue retention, the cluster's replicas) holds every
//!   accepted invocation on `kindling.queue.{id}` until a node acknowledges it. Its
//!   `Nats-Msg-Id` is the invocation id, so an idempotency key (which makes the id) is a
//!   duplicate within the stream's window on whatever node it arrives.
//! - One durable pull consumer, `kindling-workers`, is shared by all nodes: a node fetches
//!   what it has room for and holds each message (telling JetStream it is still working
//!   every third of the ack wait) until the invocation is final there. A node that stops
//!   holding, killed or cut off, lets the ack wait lapse, and JetStream sends the message to
//!   another node.
//! - The bucket `kindling-invocations` keeps each invocation as its holder last reported it,
//!   so any node can show any invocation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, kv};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use kindling_events::{Accepted, Envelope, EventsError, InvocationRecord, SharedQueue, Taken};

use crate::cluster::Shared;

const STREAM: &str = "KINDLING_QUEUE";
const CONSUMER: &str = "kindling-workers";
const SUBJECTS: &str = "kindling.queue.>";
/// Core NATS subject rung after each publish, so that idle nodes look at once.
const BELL: &str = "kindling.queue-bell";
pub(crate) const RECORDS: &str = "kindling-invocations";
/// Most of a record's response body kept in the bucket (a value must fit a NATS message).
const RECORD_BODY: usize = 256 * 1024;

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
        let js = jetstream::new(self.shared.client.clone());
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
            duplicate_window: self.settings.idempotency_window,
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
        let mut taken = Vec::new();
        while let Some(message) = batch.next().await {
            let message = match message {
                Ok(message) => message,
                Err(err) => {
                    tracing::debug!(error = %err, "queue: a fetch ended early");
                    break;
                }
            };
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

    fn release(&self, id: &str) -> Option<async_nats::Subject> {
        self.held.lock().expect("held lock").remove(id)
    }

    /// Claims an idempotency key (`key_{hash}` in the records bucket) for `id`: `None` when
    /// the key is free (never seen, or seen longer ago than the window), else the id of the
    /// invocation that holds it.
    async fn claim_key(
        &self,
        opened: &Opened,
        hash: &str,
        id: &str,
    ) -> Result<Option<String>, EventsError> {
        let key = format!("key_{hash}");
        let now = now_ms();
        let value = || Bytes::from(format!("{id} {now}"));
        let unavailable = |err: String| EventsError::Storage(format!("idempotency key: {err}"));
        for _ in 0..3 {
            match opened.records.create(&key, value()).await {
                Ok(_) => return Ok(None),
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(err) => return Err(unavailable(err.to_string())),
            }
            let Some(entry) = opened
                .records
                .entry(&key)
                .await
                .map_err(|err| unavailable(err.to_string()))?
            else {
                continue;
            };
            let text = String::from_utf8_lossy(&entry.value).into_owned();
            let mut parts = text.split(' ');
            let (earlier, at) = (parts.next().unwrap_or_default(), parts.next());
            let at: i64 = at.and_then(|at| at.parse().ok()).unwrap_or(0);
            let window = self.settings.idempotency_window.as_millis() as i64;
            if valid_id(earlier) && now - at < window {
                return Ok(Some(earlier.to_string()));
            }
            // Past the window the key is free again: take it, unless another node just did.
            match opened.records.update(&key, value(), entry.revision).await {
                Ok(_) => return Ok(None),
                Err(_) => continue,
            }
        }
        Err(unavailable("contended; retry".into()))
    }

    /// `record` as the bucket keeps it: by this node, with a response body that fits.
    fn fit(&self, mut record: InvocationRecord) -> Vec<u8> {
        record.node = Some(self.shared.config.node_name.clone());
        if let Some(response) = &mut record.response {
            let long = |body: &Option<String>| body.as_ref().is_some_and(|b| b.len() > RECORD_BODY);
            if long(&response.body) || long(&response.body_base64) {
                response.body = None;
                response.body_base64 = None;
                response.truncated = true;
            }
        }
        serde_json::to_vec(&record).expect("a record serializes")
    }
}

#[async_trait]
impl SharedQueue for NatsQueue {
    async fn publish(&self, mut envelope: Envelope) -> Result<Accepted, EventsError> {
        let opened = self.open().await.map_err(EventsError::Storage)?;
        let mut duplicate = false;
        if let Some(hash) = envelope.key_hash()
            && let Some(earlier) = self.claim_key(&opened, &hash, &envelope.id).await?
        {
            // Published again under the earlier id: JetStream drops it as a duplicate if the
            // first publish landed, and keeps it if the node that claimed the key stopped
            // before publishing.
            envelope.id = earlier;
            duplicate = true;
        }
        let id = envelope.id.clone();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        let acked = match opened
            .js
            .publish_with_headers(subject(&id), headers, envelope.encode())
            .await
        {
            Ok(ack) => ack.await,
            Err(err) => return Err(EventsError::Storage(err.to_string())),
        };
        match acked {
            Ok(ack) => {
                if !ack.duplicate {
                    let _ = self.shared.client.publish(BELL, Bytes::new()).await;
                }
                Ok(Accepted {
                    id,
                    duplicate: duplicate || ack.duplicate,
                })
            }
            Err(err) if err.to_string().contains("maximum messages") => Err(EventsError::Full {
                limit: self.settings.max_waiting,
            }),
            Err(err) => Err(EventsError::Storage(err.to_string())),
        }
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

    async fn finish(&self, id: &str, record: Option<InvocationRecord>) {
        if let Some(reply) = self.release(id) {
            // Asked for an answer: JetStream confirms the message is gone.
            let acked = tokio::time::timeout(
                Duration::from_secs(5),
                self.shared.client.request(reply, "+ACK".into()),
            )
            .await;
            if !matches!(acked, Ok(Ok(_))) {
                tracing::warn!(invocation = %id, "queue: the cluster did not confirm a finished invocation; it may run again elsewhere");
            }
        }
        if let Some(record) = record {
            self.report(record).await;
        }
    }

    async fn abandon(&self, id: &str) {
        if let Some(reply) = self.release(id) {
            // Flushed: a stopping node gives back what it had not started, and exits next.
            if self
                .shared
                .client
                .publish(reply, "-NAK".into())
                .await
                .is_ok()
            {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), self.shared.client.flush()).await;
            }
        }
    }

    async fn report(&self, record: InvocationRecord) {
        let Ok(opened) = self.open().await else {
            return;
        };
        let id = record.id.clone();
        if !valid_id(&id) {
            return;
        }
        if let Err(err) = opened.records.put(&id, self.fit(record).into()).await {
            tracing::debug!(invocation = %id, error = %err, "queue: cannot report an invocation to the cluster");
        }
    }

    async fn find(&self, id: &str) -> Option<InvocationRecord> {
        if !valid_id(id) {
            return None;
        }
        let opened = self.open().await.ok()?;
        if let Ok(Some(bytes)) = opened.records.get(id).await
            && let Ok(record) = serde_json::from_slice::<InvocationRecord>(&bytes)
        {
            return Some(record);
        }
        let message = opened
            .stream
            .direct_get_last_for_subject(subject(id))
            .await
            .ok()?;
        Envelope::decode(&message.payload)
            .ok()
            .map(|envelope| envelope.queued_record())
    }

    async fn cancel(&self, id: &str) -> Result<bool, EventsError> {
        if !valid_id(id) {
            return Ok(false);
        }
        let opened = self.open().await.map_err(|err| {
            EventsError::Storage(format!("{err}; retry once the cluster is reachable"))
        })?;
        let record = match opened.records.get(id).await {
            Ok(Some(bytes)) => serde_json::from_slice::<InvocationRecord>(&bytes).ok(),
            _ => None,
        };
        if let Some(record) = &record
            && !record.state.is_final()
        {
            return Err(EventsError::Conflict(format!(
                "invocation {id:?} is held by node {:?}; cancel it there",
                record.node.as_deref().unwrap_or("?")
            )));
        }
        if let Ok(message) = opened.stream.direct_get_last_for_subject(subject(id)).await {
            return opened
                .stream
                .delete_message(message.sequence)
                .await
                .map_err(|err| EventsError::Storage(format!("cannot cancel {id:?}: {err}")));
        }
        if record.is_some() {
            opened
                .records
                .delete(id)
                .await
                .map_err(|err| EventsError::Storage(format!("cannot delete {id:?}: {err}")))?;
            return Ok(true);
        }
        Ok(false)
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
