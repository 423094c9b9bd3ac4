//! The Redis Streams trigger: a consumer group per function (shared by the nodes of a fleet),
//! `XACK` only after the function answered 2xx.
//!
//! An entry a failed attempt left pending is claimed again once it has been idle for the
//! function's backoff (by its delivery count), so retries back off as the queue's do. At
//! start a node first takes back the entries it was handling when it stopped; entries another
//! consumer left pending longer than the function's deadline allows are claimed too, so a
//! crashed node's work is not stranded. When an entry's retries are spent it goes to the
//! dead-letter store and is acknowledged.
//!
//! An entry's `body` field is the request body, and its other fields are headers
//! (`kindling-field-{name}`); an entry without `body` is sent as a JSON object of its fields.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kindling_registry::TriggerKind;
use redis::Value;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamClaimReply, StreamId, StreamReadReply};
use tokio::sync::Semaphore;

use crate::backoff;
use crate::events::Events;
use crate::trigger::{self, Binding, Broker, Message, Settle};

/// Entries of one trigger handled at once.
const PARALLEL: usize = 16;
/// How often pending entries are looked at for a retry.
const RECLAIM_EVERY: Duration = Duration::from_millis(200);

/// A Redis server for stream triggers.
pub(crate) struct Redis {
    client: redis::Client,
    consumer: String,
}

impl Redis {
    pub(crate) fn new(url: &str, node: &str) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|err| format!("--redis-url {url:?} is not a Redis URL: {err}"))?;
        Ok(Self {
            client,
            consumer: node.to_string(),
        })
    }
}

impl Broker for Redis {
    fn kind(&self) -> TriggerKind {
        TriggerKind::Redis
    }

    fn consume(&self, events: Arc<Events>, binding: Binding) -> BoxFuture<'static, ()> {
        let client = self.client.clone();
        let consumer = Arc::new(Consumer {
            events,
            binding: binding.clone(),
            name: self.consumer.clone(),
            busy: Default::default(),
            slots: Arc::new(Semaphore::new(PARALLEL)),
        });
        trigger::keep_consuming(binding, Duration::from_secs(1), move |_| {
            let (consumer, client) = (consumer.clone(), client.clone());
            async move { consumer.run(&client).await }
        })
    }
}

struct Consumer {
    events: Arc<Events>,
    binding: Binding,
    name: String,
    /// Entries being handled now, so that they are not claimed again meanwhile.
    busy: Mutex<HashSet<String>>,
    slots: Arc<Semaphore>,
}

impl Consumer {
    fn stream(&self) -> &str {
        &self.binding.trigger.source
    }

    async fn run(self: Arc<Self>, client: &redis::Client) -> Result<(), String> {
        let error = |err: redis::RedisError| err.to_string();
        let mut reader = client
            .get_multiplexed_async_connection()
            .await
            .map_err(error)?;
        let writer = client
            .get_multiplexed_async_connection()
            .await
            .map_err(error)?;
        let group = self.binding.group();
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream())
            .arg(&group)
            .arg("$")
            .arg("MKSTREAM")
            .query_async(&mut reader)
            .await;
        if let Err(err) = created
            && err.code() != Some("BUSYGROUP")
        {
            return Err(format!("cannot create consumer group {group:?}: {err}"));
        }
        // What this consumer was handling when it stopped comes first.
        let mine: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(1000)
            .arg("STREAMS")
            .arg(self.stream())
            .arg("0")
            .query_async(&mut reader)
            .await
            .map_err(error)?;
        for entry in entries(mine) {
            self.clone().spawn(writer.clone(), entry, None).await;
        }
        let mut reclaimed = Instant::now();
        loop {
            let fresh: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&group)
                .arg(&self.name)
                .arg("COUNT")
                .arg(PARALLEL)
                .arg("BLOCK")
                .arg(RECLAIM_EVERY.as_millis() as u64)
                .arg("STREAMS")
                .arg(self.stream())
                .arg(">")
                .query_async(&mut reader)
                .await
                .map_err(error)?;
            for entry in entries(fresh) {
                self.clone().spawn(writer.clone(), entry, Some(1)).await;
            }
            if reclaimed.elapsed() >= RECLAIM_EVERY {
                reclaimed = Instant::now();
                self.clone()
                    .reclaim(&mut reader, writer.clone(), &group)
                    .await?;
            }
        }
    }

    /// Claims pending entries whose backoff has passed.
    async fn reclaim(
        self: Arc<Self>,
        conn: &mut MultiplexedConnection,
        writer: MultiplexedConnection,
        group: &str,
    ) -> Result<(), String> {
        let policy = self
            .events
            .node
            .lookup(&self.binding.function)
            .and_then(|entry| entry.version.config.retry)
            .unwrap_or(self.events.config.default_retry);
        let deadline = self
            .events
            .node
            .lookup(&self.binding.function)
            .and_then(|entry| entry.version.config.limits.timeout_ms)
            .unwrap_or(30_000);
        let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(self.stream())
            .arg(group)
            .arg("IDLE")
            .arg(policy.backoff_min_ms / 2)
            .arg("-")
            .arg("+")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(|err| err.to_string())?;
        for (id, owner, idle, delivered) in pending {
            if self
                .busy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&id)
            {
                continue;
            }
            let wait = backoff::nominal_ms(&policy, delivered as u32) / 2;
            // Another consumer may still be running it: only take it past its deadline.
            let wait = if owner == self.name {
                wait
            } else {
                wait.max(deadline + 5_000)
            };
            if idle < wait {
                continue;
            }
            let claimed: StreamClaimReply = redis::cmd("XCLAIM")
                .arg(self.stream())
                .arg(group)
                .arg(&self.name)
                .arg(wait)
                .arg(&id)
                .query_async(conn)
                .await
                .map_err(|err| err.to_string())?;
            for entry in claimed.ids {
                self.clone()
                    .spawn(writer.clone(), entry, Some(delivered as u32 + 1))
                    .await;
            }
        }
        Ok(())
    }

    /// Handles an entry in its own task, once a slot is free.
    async fn spawn(
        self: Arc<Self>,
        writer: MultiplexedConnection,
        entry: StreamId,
        delivery: Option<u32>,
    ) {
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            return;
        };
        if !self
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.id.clone())
        {
            return;
        }
        tokio::spawn(async move {
            let id = entry.id.clone();
            self.handle(writer, entry, delivery).await;
            self.busy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            drop(permit);
        });
    }

    async fn handle(
        &self,
        mut writer: MultiplexedConnection,
        entry: StreamId,
        delivery: Option<u32>,
    ) {
        let group = self.binding.group();
        let delivery = match delivery {
            Some(n) => n,
            None => self.delivery_count(&mut writer, &group, &entry.id).await,
        };
        let (headers, body) = shape(&entry.map);
        let own = [
            (trigger::STREAM_HEADER, self.stream().to_string()),
            (trigger::MESSAGE_ID_HEADER, entry.id.clone()),
        ];
        let message = Message {
            id: format!("{}-{}", self.stream(), entry.id),
            headers,
            body,
            delivery,
        };
        let ack = match trigger::deliver(&self.events, &self.binding, &message, &own).await {
            Settle::Ack(response) => {
                if let Some(reply) = &self.binding.trigger.reply {
                    let added: Result<String, _> = redis::cmd("XADD")
                        .arg(reply)
                        .arg("*")
                        .arg("status")
                        .arg(response.status)
                        .arg("id")
                        .arg(&entry.id)
                        .arg("body")
                        .arg(response.body)
                        .query_async(&mut writer)
                        .await;
                    if let Err(err) = added {
                        tracing::warn!(function = %self.binding.function, error = %err, "cannot add the reply; the entry stays pending");
                        return;
                    }
                }
                true
            }
            Settle::DeadLettered => true,
            Settle::Retry(_) | Settle::Keep => false,
        };
        if ack {
            let acked: Result<u64, _> = redis::cmd("XACK")
                .arg(self.stream())
                .arg(&group)
                .arg(&entry.id)
                .query_async(&mut writer)
                .await;
            if let Err(err) = acked {
                tracing::warn!(function = %self.binding.function, error = %err, "cannot XACK; the entry comes back");
            }
        }
    }

    /// How many times the group has delivered `id` (1 when Redis cannot say).
    async fn delivery_count(&self, conn: &mut MultiplexedConnection, group: &str, id: &str) -> u32 {
        let pending: Result<Vec<(String, String, u64, u64)>, _> = redis::cmd("XPENDING")
            .arg(self.stream())
            .arg(group)
            .arg(id)
            .arg(id)
            .arg(1)
            .query_async(conn)
            .await;
        pending
            .ok()
            .and_then(|rows| rows.first().map(|row| row.3 as u32))
            .unwrap_or(1)
            .max(1)
    }
}

fn entries(reply: Option<StreamReadReply>) -> Vec<StreamId> {
    reply
        .map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect())
        .unwrap_or_default()
}

/// An entry's fields as the request's headers and body.
fn shape(map: &HashMap<String, Value>) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
    let bytes = |value: &Value| redis::from_redis_value_ref::<Vec<u8>>(value).unwrap_or_default();
    match map.get("body") {
        Some(body) => {
            let mut headers: Vec<(String, Vec<u8>)> = map
                .iter()
                .filter(|(name, _)| name.as_str() != "body")
                .map(|(name, value)| {
                    (
                        format!("kindling-field-{}", name.to_ascii_lowercase()),
                        bytes(value),
                    )
                })
                .collect();
            headers.sort();
            (headers, bytes(body))
        }
        None => {
            let object: serde_json::Map<String, serde_json::Value> = map
                .iter()
                .map(|(name, value)| {
                    (
                        name.clone(),
                        serde_json::Value::String(
                            String::from_utf8_lossy(&bytes(value)).into_owned(),
                        ),
                    )
                })
                .collect();
            let headers = vec![("content-type".to_string(), b"application/json".to_vec())];
            (headers, serde_json::to_vec(&object).unwrap_or_default())
        }
    }
}
