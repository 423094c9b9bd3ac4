//! Spill-over between nodes, over NATS request-reply: a node with no room for a request sends
//! it whole to the least loaded peer that reported room (`kindling.spill.{node}`), which runs
//! it as its own and answers; a peer that turns it away too is skipped for the next one, and
//! only when none takes it does the client get the 503 it would have had. The peer runs it
//! with spilling off, so a request travels at most one hop.
//!
//! A message is a length-prefixed JSON head and the body: the request's method, URI, headers,
//! request id, trace parent and deadline one way; the status and headers (or "no room") back.
//! One larger than a NATS message travels in parts (`spill_parts.rs`), up to 16 MiB; the
//! sender listens for the answer on an inbox of its own, so that a response can come back
//! in parts too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut as _, Bytes, BytesMut};
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use kindling_host::ResponseBody;
use kindling_node::{CallContext, InvokeFailure, Node, Spill, Spilled};
use serde::{Deserialize, Serialize};

use crate::cluster::Shared;
use crate::members::MemberState;
use crate::spill_parts::{self, Assembled, Assembler, PART_HEADER};

/// Peers tried for one request before it is answered 503.
const TRIES: usize = 3;
/// Room kept in a NATS message for its headers (the part mark).
const HEADER_ROOM: usize = 1024;
/// What an answer may take beyond its body: its head.
const HEAD_ROOM: usize = 64 * 1024;
/// How long the next part of a response may take once its first part came.
const PART_WAIT: Duration = Duration::from_secs(10);

/// Spill-over counters, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct SpillCounters {
    /// Requests this node passed to a peer that answered.
    pub(crate) forwarded: AtomicU64,
    /// Requests this node had no room for and no peer took.
    pub(crate) no_peer: AtomicU64,
    /// Peers' requests this node ran.
    pub(crate) served: AtomicU64,
    /// Peers' requests this node had no room for either.
    pub(crate) refused: AtomicU64,
}

#[derive(Debug, Serialize, Deserialize)]
struct RequestHead {
    function: String,
    method: String,
    uri: String,
    script_name: String,
    headers: Vec<(String, String)>,
    request_id: String,
    traceparent: Option<String>,
    deadline_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ResponseHead {
    /// The peer had no room (or not the function): try another.
    refused: bool,
    status: u16,
    headers: Vec<(String, String)>,
}

fn subject(node: &str) -> String {
    format!("kindling.spill.{node}")
}

fn frame(head: &impl Serialize, body: &[u8]) -> Bytes {
    let head = serde_json::to_vec(head).expect("a head serializes");
    let mut out = BytesMut::with_capacity(4 + head.len() + body.len());
    out.put_u32(head.len() as u32);
    out.put_slice(&head);
    out.put_slice(body);
    out.freeze()
}

fn unframe<T: for<'de> Deserialize<'de>>(message: &Bytes) -> Option<(T, Bytes)> {
    let len = u32::from_be_bytes(message.get(..4)?.try_into().ok()?) as usize;
    let head = serde_json::from_slice(message.get(4..4 + len)?).ok()?;
    Some((head, message.slice(4 + len..)))
}

fn headers_of(map: &http::HeaderMap) -> Option<Vec<(String, String)>> {
    map.iter()
        .map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect()
}

/// Headers of one hop only, which the peer's connection and this one each set for themselves.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn header_map(pairs: &[(String, String)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        if HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// The sending half: what the node calls when it has no room.
pub(crate) struct NatsSpill {
    pub(crate) shared: Arc<Shared>,
    /// Requests this node has sent each peer and not had back: added to the peer's last
    /// report, so that a burst does not all go to the peer that was idle a heartbeat ago.
    pub(crate) outstanding: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Room for the bodies of the requests this node has on their way to peers, in KiB: a
    /// spill past it is answered 503 here, as with no peer, so that a burst of large
    /// requests on a full node does not hold unbounded memory.
    in_transit: tokio::sync::Semaphore,
}

/// Most KiB of spilled request bodies one node has on their way at once.
const IN_TRANSIT_KIB: usize = 64 * 1024;

/// Counts a request sent to a peer until it is dropped.
struct Sent<'a> {
    spill: &'a NatsSpill,
    peer: String,
}

impl Drop for Sent<'_> {
    fn drop(&mut self) {
        let mut outstanding = self.spill.outstanding.lock().expect("outstanding lock");
        if let Some(count) = outstanding.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
        }
    }
}

impl NatsSpill {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            outstanding: std::sync::Mutex::default(),
            in_transit: tokio::sync::Semaphore::new(IN_TRANSIT_KIB),
        }
    }

    fn send_to(&self, peer: &str) -> Sent<'_> {
        *self
            .outstanding
            .lock()
            .expect("outstanding lock")
            .entry(peer.to_string())
            .or_default() += 1;
        Sent {
            spill: self,
            peer: peer.to_string(),
        }
    }

    /// Peers that are up, least loaded first: their last report plus what this node has sent
    /// them since. A peer that looks full stays a candidate, last: reports are a heartbeat
    /// old, and the peer itself says no if it has no room.
    fn candidates(&self) -> Vec<String> {
        let me = &self.shared.config.node_name;
        let outstanding = self.outstanding.lock().expect("outstanding lock").clone();
        let mut peers: Vec<(f64, String)> = self
            .shared
            .members
            .lock()
            .expect("members lock")
            .iter()
            .filter(|m| &m.name != me && m.state == MemberState::Up && m.connected && m.spill)
            .map(|m| {
                let busy = m.in_flight + outstanding.get(&m.name).copied().unwrap_or(0);
                let load = f64::from(busy) / f64::from(m.max_in_flight.max(1));
                (load, m.name.clone())
            })
            .collect();
        peers.sort_by(|a, b| a.0.total_cmp(&b.0));
        peers
            .into_iter()
            .map(|(_, name)| name)
            .take(TRIES)
            .collect()
    }
}

#[async_trait]
impl Spill for NatsSpill {
    fn max_body_bytes(&self) -> usize {
        spill_parts::MAX_BODY
    }

    async fn forward(&self, request: Spilled) -> Option<http::Response<Bytes>> {
        let counters = &self.shared.spill;
        let peers = self.candidates();
        let headers = headers_of(&request.headers);
        let kib = u32::try_from(request.body.len() / 1024 + 1).unwrap_or(u32::MAX);
        let room = self.in_transit.try_acquire_many(kib).ok();
        let (Some(headers), false, Some(_room)) = (headers, peers.is_empty(), room) else {
            counters.no_peer.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let head = RequestHead {
            function: request.function,
            method: request.method.to_string(),
            uri: request.uri.to_string(),
            script_name: request.script_name,
            headers,
            request_id: request.request_id.to_string(),
            traceparent: request.traceparent,
            deadline_ms: request.deadline.as_millis() as u64,
        };
        let message = frame(&head, &request.body);
        // The peer's own deadline stops the function; this one only bounds a lost reply.
        let patience = request.deadline + Duration::from_secs(2);
        for peer in peers {
            let _sent = self.send_to(&peer);
            let answer = match self.ask(&peer, &message, patience).await {
                Asked::Answered(answer) => answer,
                Asked::Refused => continue,
                Asked::Lost => return Some(lost(&peer)),
            };
            let Some((head, body)) = unframe::<ResponseHead>(&answer) else {
                continue;
            };
            if head.refused {
                continue;
            }
            let mut response = http::Response::new(body);
            *response.status_mut() =
                http::StatusCode::from_u16(head.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
            *response.headers_mut() = header_map(&head.headers);
            if let Ok(value) = http::HeaderValue::from_str(&peer) {
                response.headers_mut().insert("kindling-served-by", value);
            }
            counters.forwarded.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(function = %head_function(&message), peer, "request spilled to a peer");
            return Some(response);
        }
        counters.no_peer.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// What asking one peer gave.
enum Asked {
    /// Its answer, whole (a refusal included).
    Answered(Bytes),
    /// No answer: the peer is gone, or never got the request; try another.
    Refused,
    /// The peer answered, but not all of its answer arrived: it ran, so no other peer may.
    Lost,
}

impl NatsSpill {
    /// Sends `message` to `peer` (in parts if it must) and waits for the answer on an inbox
    /// of this request's own.
    async fn ask(&self, peer: &str, message: &Bytes, patience: Duration) -> Asked {
        let client = &self.shared.client;
        let inbox = client.new_inbox();
        let Ok(mut answers) = client.subscribe(inbox.clone()).await else {
            return Asked::Refused;
        };
        let parts = spill_parts::split(message, part_size(&self.shared));
        let count = parts.len();
        if count > spill_parts::MAX_PARTS {
            return Asked::Refused;
        }
        for (index, part) in parts.into_iter().enumerate() {
            let mut headers = async_nats::HeaderMap::new();
            if count > 1 {
                headers.insert(
                    PART_HEADER,
                    spill_parts::mark(&inbox, index, count).as_str(),
                );
            }
            if client
                .publish_with_reply_and_headers(subject(peer), inbox.clone(), headers, part)
                .await
                .is_err()
            {
                return Asked::Refused;
            }
        }
        let Ok(Some(first)) = tokio::time::timeout(patience, answers.next()).await else {
            return Asked::Refused;
        };
        // NATS says at once when nobody listens on the peer's subject.
        if first.status.is_some_and(|status| status.is_server_error()) {
            return Asked::Refused;
        }
        let count = match mark_of(&first) {
            Marked::Whole => return Asked::Answered(first.payload),
            Marked::Part(_, 0, count) => count,
            // Its first part went missing, or a mark nobody wrote: it ran, but did not arrive.
            Marked::Part(..) | Marked::Bad => return Asked::Lost,
        };
        let mut whole = BytesMut::from(&first.payload[..]);
        for index in 1..count {
            match tokio::time::timeout(PART_WAIT, answers.next()).await {
                Ok(Some(part))
                    if matches!(mark_of(&part), Marked::Part(_, i, _) if i == index)
                        && whole.len() + part.payload.len()
                            <= spill_parts::MAX_BODY + HEAD_ROOM =>
                {
                    whole.put_slice(&part.payload);
                }
                _ => return Asked::Lost,
            }
        }
        Asked::Answered(whole.freeze())
    }
}

/// The answer to a request whose response did not all come back from the peer that ran it.
fn lost(peer: &str) -> http::Response<Bytes> {
    tracing::warn!(
        peer,
        "a spilled request's response did not all arrive from the peer"
    );
    let mut response = http::Response::new(Bytes::from_static(
        b"{\"error\":{\"code\":\"response_lost\",\"message\":\"the peer that ran this \
          request answered, but not all of its response arrived\"}}",
    ));
    *response.status_mut() = http::StatusCode::BAD_GATEWAY;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// What a message says of its part.
enum Marked {
    /// It is a whole message.
    Whole,
    /// Part `index` of `count` from the sender `id`.
    Part(String, usize, usize),
    /// It says it is a part, but not in a way this node reads: refuse it.
    Bad,
}

fn mark_of(message: &async_nats::Message) -> Marked {
    let Some(value) = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(PART_HEADER))
    else {
        return Marked::Whole;
    };
    match spill_parts::parse_mark(value.as_str()) {
        Some((id, index, count)) => Marked::Part(id.to_string(), index, count),
        None => Marked::Bad,
    }
}

/// The most bytes one part may take.
fn part_size(shared: &Shared) -> usize {
    shared
        .client
        .server_info()
        .max_payload
        .saturating_sub(HEADER_ROOM)
        .max(spill_parts::MIN_PART)
}

/// Publishes `answer` to `reply`, in parts if it must.
async fn send_answer(shared: &Shared, reply: async_nats::Subject, answer: Bytes) {
    let parts = spill_parts::split(&answer, part_size(shared));
    let count = parts.len();
    for (index, part) in parts.into_iter().enumerate() {
        let sent = if count > 1 {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(PART_HEADER, spill_parts::mark("r", index, count).as_str());
            shared
                .client
                .publish_with_headers(reply.clone(), headers, part)
                .await
        } else {
            shared.client.publish(reply.clone(), part).await
        };
        if sent.is_err() {
            return;
        }
    }
}

fn head_function(message: &Bytes) -> String {
    unframe::<RequestHead>(message).map_or_else(String::new, |(head, _)| head.function)
}

/// The receiving half: runs peers' requests on this node until the node is dropped.
pub(crate) async fn serve(shared: Arc<Shared>, node: Weak<Node>) {
    let mut pause = Duration::from_millis(100);
    loop {
        match shared
            .client
            .subscribe(subject(&shared.config.node_name))
            .await
        {
            Ok(mut requests) => {
                let mut assembler = Assembler::default();
                while let Some(message) = requests.next().await {
                    let Some(node) = node.upgrade() else {
                        return;
                    };
                    let Some(reply) = message.reply.clone() else {
                        continue;
                    };
                    let assembled = match mark_of(&message) {
                        Marked::Whole => Assembled::Whole(message.payload),
                        Marked::Part(id, index, count) => {
                            assembler.add(&id, index, count, message.payload)
                        }
                        Marked::Bad => Assembled::Broken,
                    };
                    let payload = match assembled {
                        Assembled::Pending => continue,
                        Assembled::Whole(payload) => payload,
                        Assembled::Broken => {
                            shared.spill.refused.fetch_add(1, Ordering::Relaxed);
                            send_answer(&shared, reply, refused()).await;
                            continue;
                        }
                    };
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let answer = run(&shared, &node, &payload).await;
                        send_answer(&shared, reply, answer).await;
                    });
                }
            }
            Err(err) => tracing::debug!(error = %err, "cannot take spilled requests yet"),
        }
        if node.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// The answer of a peer with no room.
fn refused() -> Bytes {
    frame(
        &ResponseHead {
            refused: true,
            status: 503,
            headers: Vec::new(),
        },
        &[],
    )
}

async fn run(shared: &Shared, node: &Node, payload: &Bytes) -> Bytes {
    let Some((head, body)) = unframe::<RequestHead>(payload) else {
        return refused();
    };
    let (Ok(method), Ok(uri)) = (
        http::Method::from_bytes(head.method.as_bytes()),
        head.uri.parse::<http::Uri>(),
    ) else {
        return refused();
    };
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = header_map(&head.headers);
    let cx = CallContext {
        request_id: Some(head.request_id.as_str().into()),
        script_name: head.script_name,
        trace_parent: head
            .traceparent
            .as_deref()
            .and_then(kindling_telemetry::TraceContext::parse),
        may_spill: false,
        ..CallContext::default()
    };
    let counters = &shared.spill;
    let answer = match node.invoke(&head.function, request, cx).await {
        Ok(answer) => answer.response,
        Err(InvokeFailure::Rejected { .. } | InvokeFailure::NotFound(_)) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            return refused();
        }
        Err(failure) => failure.to_response(&head.request_id),
    };
    counters.served.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = answer.into_parts();
    let (status, body) = match collect(body, spill_parts::MAX_BODY).await {
        Some(body) => (parts.status.as_u16(), body),
        None => (
            502,
            Bytes::from_static(
                b"{\"error\":{\"code\":\"response_too_large\",\"message\":\"the peer that ran this \
                  request cannot carry its response back: it is larger than 16 MiB\"}}",
            ),
        ),
    };
    let headers = if status == 502 {
        vec![("content-type".into(), "application/json".into())]
    } else {
        headers_of(&parts.headers).unwrap_or_default()
    };
    frame(
        &ResponseHead {
            refused: false,
            status,
            headers,
        },
        &body,
    )
}

/// A response body whole, or `None` past `limit` bytes or on a failure mid-stream.
async fn collect(mut body: ResponseBody, limit: usize) -> Option<Bytes> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            if out.len() + data.len() > limit {
                return None;
            }
            out.put_slice(&data);
        }
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_and_body_survive_the_frame() {
        let head = ResponseHead {
            refused: false,
            status: 201,
            headers: vec![("x-a".into(), "1".into()), ("x-a".into(), "2".into())],
        };
        let message = frame(&head, b"body bytes");
        let (back, body) = unframe::<ResponseHead>(&message).unwrap();
        assert_eq!(back.status, 201);
        assert_eq!(body, Bytes::from_static(b"body bytes"));
        let map = header_map(&back.headers);
        assert_eq!(map.get_all("x-a").iter().count(), 2);
        assert!(unframe::<ResponseHead>(&Bytes::from_static(b"\0\0\0\x09{}")).is_none());
        assert!(unframe::<ResponseHead>(&Bytes::from_static(b"\0")).is_none());
    }
}
