//! NATS triggers: core subjects in a queue group, and JetStream streams through a durable pull
//! consumer.
//!
//! - **Core NATS** has no redelivery: a message nobody is subscribed to is gone. A request
//!   (a message with a reply subject) is invoked at once and answered on its reply subject,
//!   with the function's status in the `Kindling-Status` header; any other message is queued
//!   durably the moment it arrives, and from there has the queue's retries and dead letters.
//! - **JetStream** keeps every message until a consumer acknowledges it, across restarts of
//!   both sides: a message is acknowledged only after the function answered 2xx (and its
//!   response was published to `reply`, when set), redelivered with the function's backoff
//!   after a failure, and moved to the dead-letter store when its retries are spent.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use kindling_registry::TriggerKind;
use tokio::sync::{OnceCell, Semaphore};

use crate::events::Events;
use crate::record::{NewInvocation, Source};
use crate::trigger::{self, Binding, Broker, Message, Settle};

/// Messages of one trigger handled at once.
const PARALLEL: usize = 16;
/// How long to wait before trying again after the broker failed.
const RECONNECT: Duration = Duration::from_secs(2);

/// A connection to a NATS server, shared by every NATS trigger of the node.
pub(crate) struct Nats {
    url: String,
    client: OnceCell<async_nats::Client>,
}

impl Nats {
    pub(crate) fn new(url: String) -> Self {
        Self {
            url,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<async_nats::Client, String> {
        self.client
            .get_or_try_init(|| async {
                async_nats::ConnectOptions::new()
                    .name("kindling")
                    .retry_on_initial_connect()
                    .connect(self.url.as_str())
                    .await
                    .map_err(|err| format!("cannot connect to NATS at {:?}: {err}", self.url))
            })
            .await
            .cloned()
    }
}

fn headers_of(message: &async_nats::Message) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Some(headers) = &message.headers {
        for (name, values) in headers.iter() {
            let name = name.to_string().to_ascii_lowercase();
            if !crate::headers::passes(&name) {
                continue;
            }
            for value in values {
                out.push((name.clone(), value.as_str().as_bytes().to_vec()));
            }
        }
    }
    out
}

/// Core NATS subjects.
pub(crate) struct Core(pub(crate) Arc<Nats>);

impl Broker for Core {
    fn kind(&self) -> TriggerKind {
        TriggerKind::Nats
    }

    fn consume(&self, events: Arc<Events>, binding: Binding) -> BoxFuture<'static, ()> {
        let nats = self.0.clone();
        trigger::keep_consuming(binding, RECONNECT, move |binding| {
            let (nats, events) = (nats.clone(), events.clone());
            async move { core(&nats, &events, &binding).await }
        })
    }
}

async fn core(nats: &Nats, events: &Arc<Events>, binding: &Binding) -> Result<(), String> {
    let client = nats.client().await?;
    let mut subscription = client
        .queue_subscribe(binding.trigger.source.clone(), binding.group())
        .await
        .map_err(|err| format!("cannot subscribe: {err}"))?;
    let slots = Arc::new(Semaphore::new(PARALLEL));
    while let Some(message) = subscription.next().await {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (events, binding, client) = (events.clone(), binding.clone(), client.clone());
        tokio::spawn(async move {
            handle_core(&events, &binding, &client, message).await;
            drop(permit);
        });
    }
    Err("the subscription ended".into())
}

async fn handle_core(
    events: &Events,
    binding: &Binding,
    client: &async_nats::Client,
    message: async_nats::Message,
) {
    let own = [(trigger::SUBJECT_HEADER, message.subject.to_string())];
    let headers = headers_of(&message);
    let Some(reply) = message.reply.clone() else {
        // An event: durable from here on.
        let mut all: Vec<(String, Vec<u8>)> = own
            .iter()
            .map(|(n, v)| ((*n).to_string(), v.clone().into_bytes()))
            .collect();
        all.push((trigger::TRIGGER_HEADER.into(), b"nats".to_vec()));
        all.extend(headers);
        let queued = events
            .enqueue(NewInvocation {
                function: binding.function.clone(),
                namespace: binding.namespace.clone(),
                source: Source::Nats,
                method: "POST".into(),
                path: binding.trigger.path.clone().unwrap_or_else(|| "/".into()),
                headers: all,
                body: message.payload.to_vec(),
                idempotency_key: None,
                callback_url: None,
            })
            .await;
        if let Err(err) = queued {
            // Core NATS cannot take it back; say so loudly.
            tracing::error!(function = %binding.function, subject = %message.subject, error = %err, "NATS message dropped: the queue refused it");
        }
        return;
    };
    // A request: answer it.
    let one = Message {
        id: crate::sql::new_id(),
        headers,
        body: message.payload.to_vec(),
        delivery: 1,
    };
    let request_id = format!("nats-{}", one.id);
    let request = match trigger::request(events, binding, &one, &own) {
        Ok(request) => request,
        Err(why) => {
            let _ = client.publish(reply, why.into()).await;
            return;
        }
    };
    let answered =
        crate::worker::invoke(events, &binding.function, request_id, request, None).await;
    let (status, body) = match answered {
        Some(answered) => (
            answered.status,
            answered
                .response
                .map(|r| r.body)
                .or(answered.error.map(String::into_bytes))
                .unwrap_or_default(),
        ),
        None => (503, b"the node has no room now; retry shortly".to_vec()),
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Kindling-Status", status.to_string().as_str());
    if let Err(err) = client
        .publish_with_headers(reply, headers, body.into())
        .await
    {
        tracing::warn!(function = %binding.function, error = %err, "cannot answer a NATS request");
    }
}

/// JetStream streams.
pub(crate) struct JetStream(pub(crate) Arc<Nats>);

impl Broker for JetStream {
    fn kind(&self) -> TriggerKind {
        TriggerKind::Jetstream
    }

    fn consume(&self, events: Arc<Events>, binding: Binding) -> BoxFuture<'static, ()> {
        let nats = self.0.clone();
        trigger::keep_consuming(binding, RECONNECT, move |binding| {
            let (nats, events) = (nats.clone(), events.clone());
            async move { stream(&nats, &events, &binding).await }
        })
    }
}

async fn stream(nats: &Nats, events: &Arc<Events>, binding: &Binding) -> Result<(), String> {
    let client = nats.client().await?;
    let js = jetstream::new(client.clone());
    let name = &binding.trigger.source;
    let stream = js.get_stream(name).await.map_err(|err| {
        format!("stream {name:?}: {err}; create it first (with `nats stream add` or a client)")
    })?;
    let group = binding.group();
    // A message stays unacknowledged while the function runs: give it the function's
    // deadline and some room before JetStream sends it again.
    let timeout = events
        .node
        .lookup(&binding.function)
        .and_then(|entry| entry.version.config.limits.timeout_ms)
        .unwrap_or(30_000);
    let consumer = stream
        .get_or_create_consumer(
            &group,
            pull::Config {
                durable_name: Some(group.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_millis(timeout + 30_000),
                filter_subject: binding.trigger.subject.clone().unwrap_or_default(),
                max_ack_pending: 1024,
                ..Default::default()
            },
        )
        .await
        .map_err(|err| format!("consumer {group:?}: {err}"))?;
    // Fetch no more than can run at once: a message waiting here past the ack wait would be
    // sent again while it is still queued locally.
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(PARALLEL)
        .messages()
        .await
        .map_err(|err| format!("consumer {group:?}: {err}"))?;
    let slots = Arc::new(Semaphore::new(PARALLEL));
    while let Some(message) = messages.next().await {
        let message = message.map_err(|err| format!("consumer {group:?}: {err}"))?;
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (events, binding, client) = (events.clone(), binding.clone(), client.clone());
        tokio::spawn(async move {
            handle_stream(&events, &binding, &client, message).await;
            drop(permit);
        });
    }
    Err("the consumer's message stream ended".into())
}

async fn handle_stream(
    events: &Events,
    binding: &Binding,
    client: &async_nats::Client,
    message: jetstream::Message,
) {
    let (sequence, delivered) = match message.info() {
        Ok(info) => (info.stream_sequence, info.delivered.max(1) as u32),
        Err(err) => {
            tracing::warn!(error = %err, "a JetStream message without its metadata; it comes back");
            return;
        }
    };
    let own = [
        (trigger::STREAM_HEADER, binding.trigger.source.clone()),
        (trigger::SUBJECT_HEADER, message.subject.to_string()),
        (trigger::MESSAGE_ID_HEADER, sequence.to_string()),
    ];
    let one = Message {
        id: format!("{}-{sequence}", binding.trigger.source),
        headers: headers_of(&message),
        body: message.payload.to_vec(),
        delivery: delivered,
    };
    let ack = match trigger::deliver(events, binding, &one, &own).await {
        Settle::Ack(response) => {
            if let Some(reply) = &binding.trigger.reply {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Kindling-Status", response.status.to_string().as_str());
                headers.insert("Kindling-Message-Id", sequence.to_string().as_str());
                let published = client
                    .publish_with_headers(reply.clone(), headers, response.body.into())
                    .await;
                if let Err(err) = published.map_err(|e| e.to_string()).and(Ok(())) {
                    // Not acknowledged: the message comes back and the reply is sent again.
                    tracing::warn!(function = %binding.function, error = %err, "cannot publish the reply");
                    return;
                }
                if let Err(err) = client.flush().await {
                    tracing::warn!(function = %binding.function, error = %err, "cannot flush the reply");
                    return;
                }
            }
            AckKind::Ack
        }
        Settle::Retry(delay) => AckKind::Nak(Some(delay)),
        Settle::DeadLettered => AckKind::Term,
        Settle::Keep => AckKind::Nak(Some(Duration::from_secs(5))),
    };
    let acked = match ack {
        AckKind::Ack => message.double_ack().await,
        other => message.ack_with(other).await,
    };
    if let Err(err) = acked {
        tracing::warn!(function = %binding.function, error = %err, "cannot acknowledge a JetStream message; it comes back");
    }
}
