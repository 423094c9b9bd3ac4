//! The seam for broker triggers. A [`Broker`] (NATS and JetStream in `nats.rs`, Redis Streams in
//! `redis_stream.rs`) turns what it consumes into [`Message`]s and settles each with the broker
//! once [`deliver`] says how the function answered: acknowledged after a success, left for
//! redelivery with a backoff after a failure that may pass, or moved to the dead-letter store
//! (and then acknowledged) when the function's retries are spent. A new broker is a new file
//! implementing [`Broker`]; [`run`] starts and stops consumers as functions are deployed with
//! triggers, redeployed without them, or deleted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use kindling_registry::{TriggerConfig, TriggerKind};

use crate::events::Events;
use crate::record::{NewInvocation, Source, State};
use crate::sql::{self, Outcome};
use crate::worker::{self, Answered};

/// Header naming the broker a message came from (`nats`, `jetstream`, `redis`).
pub const TRIGGER_HEADER: &str = "kindling-trigger";
/// Header with the NATS subject a message was published on.
pub const SUBJECT_HEADER: &str = "kindling-subject";
/// Header with the stream a message came from (JetStream, Redis).
pub const STREAM_HEADER: &str = "kindling-stream";
/// Header with the message's id in its stream (JetStream sequence, Redis entry id).
pub const MESSAGE_ID_HEADER: &str = "kindling-message-id";
/// Header with how many times the broker has delivered the message (1 the first time).
pub const DELIVERY_HEADER: &str = "kindling-delivery";

/// A function's trigger, as a consumer runs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Binding {
    pub(crate) function: String,
    pub(crate) namespace: String,
    pub(crate) trigger: TriggerConfig,
}

impl Binding {
    /// The consumer's name on the broker.
    pub(crate) fn group(&self) -> String {
        self.trigger.group_for(&self.function, &self.namespace)
    }
}

/// A broker Kindling consumes from.
pub(crate) trait Broker: Send + Sync {
    /// Which triggers it serves.
    fn kind(&self) -> TriggerKind;

    /// Consumes for `binding` until the future is dropped, reconnecting on its own.
    fn consume(&self, events: Arc<Events>, binding: Binding) -> BoxFuture<'static, ()>;
}

/// One message, as the function will see it.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// Its id in the broker, for the request id and the logs.
    pub(crate) id: String,
    /// Headers besides the trigger's own.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    /// The payload, the request body.
    pub(crate) body: Vec<u8>,
    /// How many times the broker has delivered it, this time included.
    pub(crate) delivery: u32,
}

/// How a delivered message should be settled with its broker.
#[derive(Debug)]
pub(crate) enum Settle {
    /// The function succeeded: acknowledge (after publishing `response` where asked).
    Ack(sql::StoredResponse),
    /// It may pass: deliver it again after `delay`.
    Retry(Duration),
    /// Recorded in the dead-letter store: acknowledge.
    DeadLettered,
    /// It could not be recorded anywhere: leave it with the broker.
    Keep,
}

/// The HTTP request a message becomes: `POST` to the trigger's path, the trigger's own
/// headers (`kindling-trigger`, `kindling-delivery` and those in `own`), then the message's
/// headers except any that would pass for Kindling's.
pub(crate) fn request(
    events: &Events,
    binding: &Binding,
    message: &Message,
    own: &[(&str, String)],
) -> Result<http::Request<Full<Bytes>>, String> {
    binding.request(events, message, own)
}

impl Binding {
    fn request(
        &self,
        events: &Events,
        message: &Message,
        own: &[(&str, String)],
    ) -> Result<http::Request<Full<Bytes>>, String> {
        let path = self.trigger.path.as_deref().unwrap_or("/");
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(path)
            .header(http::header::HOST, events.config.authority.as_str())
            .header(TRIGGER_HEADER, self.trigger.kind.as_str())
            .header(DELIVERY_HEADER, message.delivery);
        for (name, value) in own {
            request = request.header(*name, value.as_str());
        }
        for (name, value) in &message.headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_bytes(value),
            ) && (crate::headers::passes(name.as_str())
                || name.as_str().starts_with("kindling-field-"))
            {
                request = request.header(name, value);
            }
        }
        request
            .body(Full::new(Bytes::from(message.body.clone())))
            .map_err(|err| format!("the message cannot be made a request: {err}"))
    }
}

/// Runs `message` through the function and says how to settle it. `own` are the trigger's
/// headers (subject, stream, message id).
pub(crate) async fn deliver(
    events: &Events,
    binding: &Binding,
    message: &Message,
    own: &[(&str, String)],
) -> Settle {
    let answered = match admitted(events, binding, message, own).await {
        Ok(Some(answered)) => answered,
        // Still no room: the broker sends it again shortly.
        Ok(None) => return Settle::Retry(Duration::from_millis(500)),
        Err(why) => Answered {
            status: 400,
            error: Some(why),
            response: None,
        },
    };
    let hint = "publish it again";
    let outcome = worker::judge(events, &binding.function, message.delivery, answered, hint);
    let label = match outcome.state {
        State::Succeeded => "succeeded",
        State::Dead => "dead",
        _ => "retry",
    };
    events
        .counters
        .triggered
        .with_label_values(&[
            binding.function.as_str(),
            binding.trigger.kind.as_str(),
            label,
        ])
        .inc();
    match outcome.state {
        State::Succeeded => Settle::Ack(outcome.response.unwrap_or(sql::StoredResponse {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
            truncated: false,
        })),
        State::Dead => dead_letter(events, binding, message, own, outcome).await,
        _ => {
            let delay = outcome
                .next_at
                .map_or(1_000, |at| (at - sql::now_ms()).max(0) as u64);
            Settle::Retry(Duration::from_millis(delay))
        }
    }
}

/// How long a message waits in process for admission before it goes back to its broker.
const ADMISSION_PATIENCE: Duration = Duration::from_secs(20);

/// Invokes the function, waiting (up to [`ADMISSION_PATIENCE`]) while admission control has
/// no room: a message turned away never ran, so it must not spend a delivery, which the
/// broker would count against its retries. `Ok(None)`: still no room.
async fn admitted(
    events: &Events,
    binding: &Binding,
    message: &Message,
    own: &[(&str, String)],
) -> Result<Option<Answered>, String> {
    let started = std::time::Instant::now();
    let request_id = format!(
        "{}-{}-{}",
        binding.trigger.kind.as_str(),
        message.id,
        message.delivery
    );
    loop {
        let request = binding.request(events, message, own)?;
        let answered =
            worker::invoke(events, &binding.function, request_id.clone(), request, None).await;
        if answered.is_some() || started.elapsed() >= ADMISSION_PATIENCE {
            return Ok(answered);
        }
        let pause = 100 + crate::backoff::delay_ms(&PAUSE, 1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// The pause between two tries for admission: 200 to 300 ms, jittered.
const PAUSE: kindling_registry::RetryConfig = kindling_registry::RetryConfig {
    retries: 1,
    backoff_min_ms: 200,
    backoff_max_ms: 200,
};

/// Keeps a message whose retries are spent in the dead-letter store, with its last answer.
async fn dead_letter(
    events: &Events,
    binding: &Binding,
    message: &Message,
    own: &[(&str, String)],
    outcome: Outcome,
) -> Settle {
    let source = match binding.trigger.kind {
        TriggerKind::Nats => Source::Nats,
        TriggerKind::Jetstream => Source::Jetstream,
        TriggerKind::Redis => Source::Redis,
    };
    let mut headers: Vec<(String, Vec<u8>)> = own
        .iter()
        .map(|(name, value)| ((*name).to_string(), value.clone().into_bytes()))
        .collect();
    headers.extend(
        message
            .headers
            .iter()
            .filter(|(name, _)| crate::headers::passes(name))
            .cloned(),
    );
    let new = NewInvocation {
        function: binding.function.clone(),
        namespace: binding.namespace.clone(),
        source,
        method: "POST".into(),
        path: binding.trigger.path.clone().unwrap_or_else(|| "/".into()),
        headers,
        body: message.body.clone(),
        idempotency_key: None,
        callback_url: None,
    };
    let attempts = message.delivery;
    match events
        .store
        .call(move |conn| sql::record_dead(conn, &new, attempts, sql::now_ms(), &outcome))
        .await
    {
        Ok(id) => {
            tracing::warn!(
                function = %binding.function, trigger = binding.trigger.kind.as_str(),
                message = %message.id, invocation = %id,
                "message moved to the dead-letter store"
            );
            Settle::DeadLettered
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot record a dead letter; the broker keeps the message");
            Settle::Keep
        }
    }
}

/// Runs `consume` for `binding` again and again: a broker that fails (connection lost, stream
/// missing) is logged and tried again after `pause`, for as long as the trigger is wanted.
pub(crate) fn keep_consuming<F, Fut>(
    binding: Binding,
    pause: Duration,
    consume: F,
) -> BoxFuture<'static, ()>
where
    F: Fn(Binding) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    Box::pin(async move {
        loop {
            if let Err(err) = consume(binding.clone()).await {
                tracing::error!(
                    function = %binding.function, trigger = binding.trigger.kind.as_str(),
                    source = %binding.trigger.source, error = %err,
                    "trigger failed; trying again"
                );
            }
            tokio::time::sleep(pause).await;
        }
    })
}

/// The brokers this node is configured for.
pub(crate) fn brokers(events: &Events) -> Vec<Arc<dyn Broker>> {
    let mut brokers: Vec<Arc<dyn Broker>> = Vec::new();
    if let Some(url) = &events.config.nats_url {
        let nats = Arc::new(crate::nats::Nats::new(url.clone()));
        brokers.push(Arc::new(crate::nats::Core(nats.clone())));
        brokers.push(Arc::new(crate::nats::JetStream(nats)));
    }
    if let Some(url) = &events.config.redis_url {
        match crate::redis_stream::Redis::new(url, &events.config.node_name) {
            Ok(redis) => brokers.push(Arc::new(redis)),
            Err(err) => tracing::error!(error = %err, "Redis triggers cannot run"),
        }
    }
    brokers
}

/// Starts a consumer for every trigger of every deployed function, and stops those whose
/// function no longer has them; looks again every second.
pub(crate) async fn run(events: Arc<Events>) {
    let brokers = brokers(&events);
    let mut running: HashMap<Binding, tokio::task::AbortHandle> = HashMap::new();
    let mut warned: std::collections::HashSet<Binding> = Default::default();
    loop {
        if events.stopping() {
            for (_, task) in running.drain() {
                task.abort();
            }
            return;
        }
        let mut wanted = Vec::new();
        for entry in events.node.entries() {
            for trigger in &entry.version.config.triggers {
                wanted.push(Binding {
                    function: entry.name.to_string(),
                    namespace: entry.version.config.namespace().to_string(),
                    trigger: trigger.clone(),
                });
            }
        }
        running.retain(|binding, task| {
            let keep = wanted.contains(binding);
            if !keep {
                task.abort();
                tracing::info!(function = %binding.function, trigger = binding.trigger.kind.as_str(), source = %binding.trigger.source, "trigger stopped");
            }
            keep
        });
        for binding in wanted {
            if running.contains_key(&binding) {
                continue;
            }
            let Some(broker) = brokers.iter().find(|b| b.kind() == binding.trigger.kind) else {
                if warned.insert(binding.clone()) {
                    tracing::error!(
                        function = %binding.function, trigger = binding.trigger.kind.as_str(),
                        "this node has no connection for the trigger; start it with --nats-url or --redis-url"
                    );
                }
                continue;
            };
            tracing::info!(function = %binding.function, trigger = binding.trigger.kind.as_str(), source = %binding.trigger.source, "trigger started");
            let task = tokio::spawn(broker.consume(events.clone(), binding.clone()));
            running.insert(binding, task.abort_handle());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
