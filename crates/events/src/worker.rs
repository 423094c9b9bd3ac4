//! The workers: take due invocations from the queue, run each attempt through
//! [`kindling_node::Node::invoke`] (so admission, priorities, limits, metrics and traces are
//! those of HTTP traffic), and record the outcome. 2xx and 3xx succeed; 5xx (but 508), 429 and
//! timeouts are retried with backoff until the function's retries are spent; any other answer
//! is final. Either way a final failure goes to the dead-letter store with its last response
//! and the reason. An attempt admission control turns away never ran: it is put back and does
//! not count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use kindling_host::{CALL_BUDGET_HEADER, CALL_DEPTH_HEADER, CallChain};
use kindling_node::{CallContext, InvokeFailure};

use crate::backoff;
use crate::events::Events;
use crate::record::State;
use crate::sql::{self, Claimed, Outcome, StoredResponse};
use crate::sql_shared::Share;

/// Header carrying the invocation id to the function.
pub const INVOCATION_ID_HEADER: &str = "kindling-invocation-id";
/// Header carrying the attempt number to the function (1 for the first).
pub const ATTEMPT_HEADER: &str = "kindling-attempt";

/// Longest wait between two looks at the queue when nothing wakes the loop.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub(crate) async fn run(events: Arc<Events>) {
    let slots = events.slots.clone();
    loop {
        if events.stopping() {
            return;
        }
        let free = slots.available_permits();
        if free > 0 {
            match events
                .store
                .call(move |conn| sql::claim(conn, sql::now_ms(), free as u32))
                .await
            {
                Ok(claimed) => {
                    for claim in claimed {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            // Shutdown took the slots meanwhile: put it back, uncounted.
                            let (id, number) = (claim.id.clone(), claim.attempt);
                            let now = sql::now_ms();
                            let _ = events
                                .store
                                .call(move |conn| sql::release(conn, &id, number, now))
                                .await;
                            continue;
                        };
                        let events = events.clone();
                        tokio::spawn(async move {
                            attempt(&events, claim).await;
                            drop(permit);
                            events.wake.notify_one();
                        });
                    }
                }
                Err(err) => tracing::error!(error = %err, "queue: cannot take due invocations"),
            }
        }
        let wait = if slots.available_permits() == 0 {
            IDLE_POLL
        } else {
            match events.store.call(sql::next_due).await {
                Ok(Some(at)) => Duration::from_millis((at - sql::now_ms()).clamp(0, 1_000) as u64),
                _ => IDLE_POLL,
            }
        };
        if !wait.is_zero() {
            tokio::select! {
                () = events.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

async fn attempt(events: &Events, claim: Claimed) {
    let function = claim.function.clone();
    let started = Instant::now();
    if claim.shared != Share::Own {
        // Reported before it runs: an attempt that brings the node down still counts on the
        // node that takes the invocation over.
        events.shared_attempt_started(&claim.id).await;
    }
    let outcome = run_attempt(events, &claim).await;
    let (id, number) = (claim.id.clone(), claim.attempt);
    let label = match &outcome {
        Judged::Deferred => "deferred",
        Judged::Done(outcome) => match outcome.state {
            State::Succeeded => "succeeded",
            State::Dead => "dead",
            _ => "retry",
        },
    };
    events
        .counters
        .attempts
        .with_label_values(&[function.as_str(), label])
        .inc();
    let final_state = matches!(&outcome, Judged::Done(done) if done.state.is_final());
    let result = match outcome {
        Judged::Deferred => {
            // Admission had no room: try again shortly, spread out.
            let delay = 100
                + backoff::delay_ms(
                    &kindling_registry::RetryConfig {
                        retries: 1,
                        backoff_min_ms: 400,
                        backoff_max_ms: 400,
                    },
                    1,
                );
            let next = sql::now_ms() + delay as i64;
            events
                .store
                .call(move |conn| sql::release(conn, &id, number, next))
                .await
        }
        Judged::Done(outcome) => {
            if outcome.state.is_final() {
                events
                    .counters
                    .finished
                    .with_label_values(&[function.as_str(), outcome.state.as_str()])
                    .inc();
                tracing::debug!(
                    invocation = %claim.id, function = %function, state = outcome.state.as_str(),
                    attempts = number, elapsed_ms = started.elapsed().as_millis() as u64,
                    "asynchronous invocation finished"
                );
            }
            events
                .store
                .call(move |conn| sql::finish(conn, &id, number, sql::now_ms(), &outcome))
                .await
        }
    };
    match result {
        Ok(()) if claim.shared != Share::Own => {
            events
                .shared_attempt_recorded(&claim.id, claim.shared, final_state)
                .await;
        }
        Ok(()) => {}
        // The attempt stays `running` in the database; the next start queues it again.
        Err(err) => {
            tracing::error!(invocation = %claim.id, error = %err, "queue: cannot record an attempt")
        }
    }
}

enum Judged {
    /// It never ran (admission had no room).
    Deferred,
    /// It ran; this is what happens next.
    Done(Outcome),
}

async fn run_attempt(events: &Events, claim: &Claimed) -> Judged {
    let request = match build_request(claim, &events.config.authority) {
        Ok(request) => request,
        Err(why) => {
            return Judged::Done(Outcome {
                status: None,
                error: Some(why.clone()),
                response: None,
                state: State::Dead,
                next_at: None,
                reason: Some(why),
            });
        }
    };
    let made = claim.attempt.saturating_sub(claim.base);
    let entry = events.node.lookup(&claim.function);
    let refuse = |why: String| {
        Judged::Done(Outcome {
            status: None,
            error: Some(why.clone()),
            response: None,
            state: State::Dead,
            next_at: None,
            reason: Some(why),
        })
    };
    if let Some(entry) = &entry {
        // A function deleted and deployed again by another tenant is not the one this was
        // accepted for.
        let now = entry.version.config.namespace();
        if now != claim.namespace {
            return refuse(format!(
                "function {:?} now belongs to namespace {now:?}; this invocation was accepted \
                 for namespace {:?} and is not run",
                claim.function, claim.namespace
            ));
        }
        // Attempts the node did not live through count too: an invocation that brings the
        // node down does not run forever.
        let policy = entry
            .version
            .config
            .retry
            .unwrap_or(events.config.default_retry);
        if made > policy.retries + 1 {
            return refuse(format!(
                "{} attempts were made, the last ones cut off by the node stopping; the \
                 function's retries ({}) are spent",
                made - 1,
                policy.retries
            ));
        }
    }
    let chain = resumed_chain(events, &claim.headers);
    let request_id = format!("{}-{}", claim.id, claim.attempt);
    let Some(answer) = invoke(events, &claim.function, request_id, request, chain).await else {
        return Judged::Deferred;
    };
    let hint = format!("`kindling invocations retry {}`", claim.id);
    Judged::Done(judge(events, &claim.function, made, answer, &hint))
}

/// What one attempt got: the status, the error when the node answered for the function, and
/// the response when the function answered.
pub(crate) struct Answered {
    pub(crate) status: u16,
    pub(crate) error: Option<String>,
    pub(crate) response: Option<StoredResponse>,
}

/// Runs one attempt through the node; `None` when admission had no room (it did not run).
pub(crate) async fn invoke(
    events: &Events,
    function: &str,
    request_id: String,
    request: http::Request<Full<Bytes>>,
    chain: Option<CallChain>,
) -> Option<Answered> {
    let cx = CallContext {
        request_id: Some(request_id.into()),
        script_name: format!("/{function}"),
        chain,
        ..CallContext::default()
    };
    Some(match events.node.invoke(function, request, cx).await {
        Ok(answer) => Answered {
            status: answer.response.status().as_u16(),
            error: None,
            response: Some(collect(answer.response, events.config.max_response_bytes).await),
        },
        Err(InvokeFailure::Rejected { .. }) => return None,
        Err(failure) => Answered {
            status: failure.status(),
            error: Some(failure.to_string()),
            response: None,
        },
    })
}

/// The call chain a queued request was part of (a function that queued work through the
/// node's own socket): continued, so that a loop through the queue is stopped like any other.
fn resumed_chain(events: &Events, headers: &[(String, Vec<u8>)]) -> Option<CallChain> {
    let number = |wanted: &http::HeaderName| {
        headers
            .iter()
            .find(|(name, _)| name == wanted.as_str())
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
            .and_then(|value| value.trim().parse::<u32>().ok())
    };
    let depth = number(&CALL_DEPTH_HEADER)?;
    let limit = events.node.config().max_calls_per_request;
    Some(CallChain::resumed(
        depth,
        number(&CALL_BUDGET_HEADER),
        limit,
    ))
}

/// Decides what an answer means after `made` attempts (counted since the last manual retry):
/// success, another attempt after a backoff, or the dead-letter store. `retry_hint` says how
/// to run it again once the cause is fixed.
pub(crate) fn judge(
    events: &Events,
    function: &str,
    made: u32,
    answered: Answered,
    retry_hint: &str,
) -> Outcome {
    let Answered {
        status,
        error,
        response,
    } = answered;
    let mut outcome = Outcome {
        status: Some(status),
        error: error.clone(),
        response,
        state: State::Succeeded,
        next_at: None,
        reason: None,
    };
    if (200..400).contains(&status) {
        return outcome;
    }
    let policy = events
        .node
        .lookup(function)
        .and_then(|entry| entry.version.config.retry)
        .unwrap_or(events.config.default_retry);
    let what = error.unwrap_or_else(|| format!("the function answered {status}"));
    let retriable = status == 429 || (status >= 500 && status != 508);
    if !retriable {
        outcome.state = State::Dead;
        outcome.reason = Some(if status == 404 && outcome.response.is_none() {
            format!("{what}; once it is deployed, {retry_hint}")
        } else {
            format!("{what}; only 5xx, 429 and timeouts are retried")
        });
    } else if made > policy.retries {
        outcome.state = State::Dead;
        outcome.reason = Some(format!(
            "{what}; {made} attempts made, the function's retries ({}) are spent",
            policy.retries
        ));
    } else {
        outcome.state = State::Queued;
        let delay = backoff::delay_ms(&policy, made);
        outcome.next_at = Some(sql::now_ms() + delay as i64);
        outcome.reason = Some(format!(
            "{what}; retry {made} of {} in {delay}ms",
            policy.retries
        ));
    }
    outcome
}

fn build_request(claim: &Claimed, authority: &str) -> Result<http::Request<Full<Bytes>>, String> {
    let mut request = http::Request::builder()
        .method(claim.method.as_str())
        .uri(claim.path.as_str());
    for (name, value) in &claim.headers {
        if crate::headers::passes(name) {
            request = request.header(name.as_str(), value.as_slice());
        }
    }
    // wasi:http needs an authority; a request accepted over HTTP brought its own.
    if !claim
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request = request.header(http::header::HOST, authority);
    }
    request
        .header(INVOCATION_ID_HEADER, claim.id.as_str())
        .header(ATTEMPT_HEADER, claim.attempt)
        .body(Full::new(Bytes::from(claim.body.clone())))
        .map_err(|err| format!("the stored request cannot be rebuilt: {err}"))
}

/// Reads a response into what the queue keeps, up to `limit` bytes of body.
pub(crate) async fn collect(
    response: http::Response<kindling_host::ResponseBody>,
    limit: usize,
) -> StoredResponse {
    let (parts, mut body) = response.into_parts();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect();
    let mut bytes = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            truncated = true;
            break;
        };
        if let Some(data) = frame.data_ref() {
            let room = limit - bytes.len();
            if data.len() > room {
                bytes.extend_from_slice(&data[..room]);
                truncated = true;
                break;
            }
            bytes.extend_from_slice(data);
        }
    }
    StoredResponse {
        status: parts.status.as_u16(),
        headers,
        body: bytes,
        truncated,
    }
}
