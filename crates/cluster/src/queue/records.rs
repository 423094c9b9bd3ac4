//! The records bucket as the queue uses it (`kindling-invocations`): idempotency keys claimed
//! by compare-and-set, records fitted to a message and read back, and the publish that
//! sends an invocation again under the same `Nats-Msg-Id` when JetStream's answer is lost.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use kindling_events::{EventsError, InvocationRecord};

use super::{NatsQueue, Opened, RECORD_MAX, TRIES, now_ms, subject, valid_id};

impl NatsQueue {
    /// Claims an idempotency key (`key_{hash}` in the records bucket) for `id`: `None` when
    /// the key is free (never seen, or seen longer ago than the window), else the id of the
    /// invocation that holds it.
    pub(super) async fn claim_key(
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
            // A timestamp from the future (a clock far ahead, or a forged value) holds no key.
            if valid_id(earlier) && now.saturating_sub(at) < window && at <= now + 60_000 {
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

    /// `record` as the bucket keeps it: by this node, within [`RECORD_MAX`] bytes.
    pub(super) fn fit(&self, mut record: InvocationRecord) -> Vec<u8> {
        record.node = Some(self.shared.config.node_name.clone());
        let mut bytes = serde_json::to_vec(&record).expect("a record serializes");
        if bytes.len() > RECORD_MAX
            && let Some(response) = &mut record.response
        {
            response.body = None;
            response.body_base64 = None;
            response.truncated = true;
            bytes = serde_json::to_vec(&record).expect("a record serializes");
        }
        while bytes.len() > RECORD_MAX && !record.history.is_empty() {
            let keep = record.history.len() / 2;
            record.history.drain(..record.history.len() - keep);
            bytes = serde_json::to_vec(&record).expect("a record serializes");
        }
        bytes
    }

    /// The record the bucket has of `id`, with its revision.
    pub(super) async fn recorded(
        &self,
        opened: &Opened,
        id: &str,
    ) -> Result<Option<(InvocationRecord, u64)>, String> {
        let entry = opened
            .records
            .entry(id)
            .await
            .map_err(|err| format!("cannot read the record of {id:?}: {err}"))?;
        Ok(entry
            .filter(|entry| entry.operation == kv::Operation::Put)
            .and_then(|entry| {
                serde_json::from_slice::<InvocationRecord>(&entry.value)
                    .ok()
                    .map(|record| (record, entry.revision))
            }))
    }

    /// Whether the cluster knows invocation `id`: a record of it, or its message waiting.
    pub(super) async fn known(&self, opened: &Opened, id: &str) -> Result<bool, EventsError> {
        match self.recorded(opened, id).await {
            Ok(Some(_)) => return Ok(true),
            Ok(None) => {}
            Err(err) => return Err(EventsError::Storage(err)),
        }
        match opened.stream.direct_get_last_for_subject(subject(id)).await {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(false),
            Err(err) => Err(EventsError::Storage(format!(
                "cannot look up {id:?}: {err}"
            ))),
        }
    }

    /// Publishes the invocation, sent again (same `Nats-Msg-Id`) when JetStream's answer
    /// does not come: a publish that landed unanswered is kept once.
    /// Answers whether JetStream kept it as new (a duplicate of a publish this node sent
    /// before the last one counts as new).
    pub(super) async fn publish_once(
        &self,
        opened: &Opened,
        id: &str,
        payload: Bytes,
    ) -> Result<bool, EventsError> {
        let mut last = String::new();
        for attempt in 0..TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id);
            let acked = match opened
                .js
                .publish_with_headers(subject(id), headers, payload.clone())
                .await
            {
                Ok(ack) => ack.await,
                Err(err) => {
                    last = err.to_string();
                    continue;
                }
            };
            match acked {
                Ok(ack) => return Ok(attempt > 0 || !ack.duplicate),
                Err(err) if err.to_string().contains("maximum messages") => {
                    return Err(EventsError::Full {
                        limit: self.settings.max_waiting,
                    });
                }
                Err(err) => last = err.to_string(),
            }
        }
        Err(EventsError::Storage(format!(
            "the cluster did not confirm invocation {id:?} ({last}); it may still run"
        )))
    }
}
