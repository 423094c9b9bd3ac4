//! The cluster's invocation queue (`NatsQueue` behind `SharedQueue`) against a real
//! `nats-server`, as two nodes use it: what a node that takes an invocation over learns of
//! it, how idempotency keys and cancels behave across nodes, and what the queue refuses.

use std::time::{Duration, Instant};

use kindling_cluster::{Cluster, ClusterConfig, QueueSettings};
use kindling_events::{Earlier, Envelope, EventsError, SharedQueue, Source, State, Taken};
use kindling_registry::SqliteCatalog;
use kindling_test_support::NatsServer;

async fn node(dir: &std::path::Path, url: &str, name: &str) -> std::sync::Arc<dyn SharedQueue> {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let config = ClusterConfig {
        servers: vec![url.to_string()],
        node_name: name.into(),
        zone: None,
        credentials: None,
        token: None,
        replicas: 1,
        heartbeat: Duration::from_millis(300),
        spill: false,
        domain: None,
    };
    let catalog = SqliteCatalog::open(&data).await.unwrap();
    let cluster = Cluster::connect(config, catalog).await.unwrap();
    cluster.queue(QueueSettings {
        ack_wait: Duration::from_secs(1),
        max_waiting: 1_000,
        idempotency_window: Duration::from_secs(3600),
        retain: Duration::from_secs(3600),
    })
}

fn envelope(key: Option<&str>, body: Vec<u8>) -> Envelope {
    let id = format!(
        "inv_{:032x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    Envelope {
        id,
        function: "f".into(),
        namespace: "default".into(),
        source: Source::Http,
        method: "POST".into(),
        path: "/".into(),
        headers: vec![],
        idempotency_key: key.map(Into::into),
        callback_url: None,
        created_at: 1_000,
        body,
    }
}

/// Takes from `queue` until `id` comes (other messages are given back at once).
async fn take(queue: &dyn SharedQueue, id: &str) -> Taken {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "{id} was never delivered");
        for taken in queue.take(8).await.unwrap() {
            if taken.id == id {
                return taken;
            }
            queue.abandon(&taken.id, Duration::ZERO).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_taking_over_counts_the_attempts_started_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let a = node(dir.path(), &nats.url(), "a").await;
    let b = node(dir.path(), &nats.url(), "b").await;

    let sent = envelope(None, b"hello".to_vec());
    let accepted = a.publish(sent.clone()).await.unwrap();
    assert_eq!(
        (accepted.id.as_str(), accepted.duplicate),
        (sent.id.as_str(), false)
    );
    // Waiting: any node shows it queued, from the stream.
    assert_eq!(
        b.find(&sent.id).await.unwrap().unwrap().state,
        State::Queued
    );

    // Node a takes it and gives it back before an attempt started: it does not count.
    let taken = take(&*a, &sent.id).await;
    assert_eq!(
        (taken.delivered, &taken.payload[..]),
        (1, &sent.encode()[..])
    );
    assert_eq!(
        a.hold(sent.queued_record()).await.unwrap(),
        Earlier::Attempts(0)
    );
    assert_eq!(a.held(), 1);
    a.abandon(&sent.id, Duration::ZERO).await;
    assert_eq!(a.held(), 0);
    let taken = take(&*b, &sent.id).await;
    assert_eq!(taken.delivered, 2);
    assert_eq!(
        b.hold(sent.queued_record()).await.unwrap(),
        Earlier::Attempts(0)
    );

    // Node b starts an attempt: node a sees it running there and may not cancel it.
    let mut running = sent.queued_record();
    running.state = State::Running;
    running.attempts = 1;
    assert!(b.report(running.clone()).await);
    let seen = a.find(&sent.id).await.unwrap().unwrap();
    assert_eq!(
        (seen.state, seen.node.as_deref()),
        (State::Running, Some("b"))
    );
    match a.cancel(&sent.id).await {
        Err(EventsError::Conflict(why)) => assert!(why.contains("\"b\""), "{why}"),
        other => panic!("cancelled while node b runs it: {other:?}"),
    }

    // Node b stops holding it mid-attempt (as if killed): node a counts that attempt.
    b.abandon(&sent.id, Duration::ZERO).await;
    take(&*a, &sent.id).await;
    assert_eq!(
        a.hold(sent.queued_record()).await.unwrap(),
        Earlier::Attempts(1)
    );

    // Finished on a, recorded before its message is settled: a node sent it again (an
    // acknowledgement lost) finds it final and does not run it.
    let mut done = running;
    done.state = State::Succeeded;
    done.attempts = 2;
    assert!(a.report(done).await);
    assert_eq!(b.hold(sent.queued_record()).await.unwrap(), Earlier::Final);
    a.settle(&sent.id).await;
    assert_eq!(a.held(), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.pending().await != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the settled message stays in the queue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = b.find(&sent.id).await.unwrap().unwrap();
    assert_eq!(
        (seen.state, seen.node.as_deref()),
        (State::Succeeded, Some("a"))
    );

    // Deleted on one node, it is gone on every node.
    b.forget(&sent.id).await;
    assert_eq!(a.find(&sent.id).await.unwrap(), None);
    assert!(!a.cancel(&sent.id).await.unwrap());

    // A node cut off past the ack wait loses the invocation to another: its late report
    // does not write over the new holder's record.
    let late = envelope(None, vec![]);
    a.publish(late.clone()).await.unwrap();
    take(&*b, &late.id).await;
    assert_eq!(
        b.hold(late.queued_record()).await.unwrap(),
        Earlier::Attempts(0)
    );
    assert_eq!(
        a.hold(late.queued_record()).await.unwrap(),
        Earlier::Attempts(0)
    );
    let mut stale = late.queued_record();
    stale.state = State::Succeeded;
    assert!(!b.report(stale).await);
    let seen = a.find(&late.id).await.unwrap().unwrap();
    assert_eq!(
        (seen.state, seen.node.as_deref()),
        (State::Queued, Some("a"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_cancels_and_sizes_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let a = node(dir.path(), &nats.url(), "a").await;
    let b = node(dir.path(), &nats.url(), "b").await;

    // One key is one invocation, on either node, before and after it ran.
    let first = a.publish(envelope(Some("k1"), vec![])).await.unwrap();
    let again = b.publish(envelope(Some("k1"), vec![])).await.unwrap();
    assert_eq!(
        (again.id.as_str(), again.duplicate),
        (first.id.as_str(), true)
    );
    take(&*b, &first.id).await;
    let mut done = envelope(Some("k1"), vec![]).queued_record();
    done.id = first.id.clone();
    done.state = State::Succeeded;
    assert!(b.report(done).await);
    b.settle(&first.id).await;
    let later = a.publish(envelope(Some("k1"), vec![])).await.unwrap();
    assert_eq!(
        (later.id.as_str(), later.duplicate),
        (first.id.as_str(), true)
    );
    assert_eq!(
        a.pending().await,
        Some(0),
        "a duplicate is not queued again"
    );

    // A waiting invocation is cancelled from any node.
    let waiting = a.publish(envelope(None, vec![1; 10])).await.unwrap();
    assert!(b.cancel(&waiting.id).await.unwrap());
    assert_eq!(a.find(&waiting.id).await.unwrap(), None);
    assert!(!b.cancel("inv_00").await.unwrap());
    assert!(!b.cancel("not an id").await.unwrap());

    // Larger than a NATS message: refused, so that the node queues it on its own.
    match a.publish(envelope(Some("big"), vec![0; 2 << 20])).await {
        Err(EventsError::Storage(why)) => assert!(why.contains("max_payload"), "{why}"),
        other => panic!("a 2 MiB invocation went to the queue: {other:?}"),
    }
    // ... and its key was not claimed by the refused attempt.
    let small = a.publish(envelope(Some("big"), vec![])).await.unwrap();
    assert!(!small.duplicate);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_cannot_reach_the_cluster_does_not_call_an_invocation_missing() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(&dir.path().join("nats"));
    let a = node(dir.path(), &nats.url(), "a").await;
    let sent = a.publish(envelope(None, vec![])).await.unwrap();
    assert!(a.find(&sent.id).await.unwrap().is_some());

    nats.kill();
    // The client notices the lost connection within moments; until then an answer may still
    // come from the server's last moments, never a "missing".
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match a.find(&sent.id).await {
            Err(EventsError::Unreachable(why)) => {
                assert!(why.contains(&sent.id), "{why}");
                break;
            }
            Ok(None) => panic!("an invocation the cluster holds was reported missing"),
            other => assert!(Instant::now() < deadline, "still {other:?} after 20 s"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match a.cancel(&sent.id).await {
        Err(EventsError::Unreachable(why)) => assert!(why.contains(&sent.id), "{why}"),
        other => panic!("a cancel without the cluster answered {other:?}"),
    }
}
