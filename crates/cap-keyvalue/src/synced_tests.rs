//! Synced stores converge: the same changes, in any order and any number of times, make the
//! same store; counters lose no increment; the outbox survives a restart.

use std::path::Path;
use std::sync::Arc;

use super::*;

fn open(dir: &Path, node: &str) -> SyncedStore {
    SyncedStore::open(
        &dir.join(format!("{node}.db")),
        Limits::default(),
        node,
        Arc::default(),
    )
    .unwrap()
}

/// Everything in `from`'s outbox, without sending it.
async fn outbox(from: &SyncedStore) -> Vec<Change> {
    let pending = from.pending(10_000).await.unwrap();
    pending.into_iter().map(|p| p.change).collect()
}

async fn value(store: &SyncedStore, key: &str) -> Option<String> {
    let bytes = store.get(key).await.unwrap()?;
    Some(String::from_utf8(bytes).unwrap())
}

#[tokio::test]
async fn the_last_writer_wins_on_every_node_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        open(dir.path(), "a"),
        open(dir.path(), "b"),
        open(dir.path(), "c"),
    );
    a.set("k", b"from a").await.unwrap();
    a.set("gone", b"x").await.unwrap();
    b.set("k", b"from b").await.unwrap();
    b.set("only-b", b"1").await.unwrap();
    a.delete("gone").await.unwrap();
    let (from_a, from_b) = (outbox(&a).await, outbox(&b).await);
    // b's set of k is stamped later (same wall clock, or later).
    a.apply(from_b.clone()).await.unwrap();
    b.apply(from_a.clone()).await.unwrap();
    // c gets them in the other order, twice.
    c.apply(from_a.iter().rev().cloned().collect())
        .await
        .unwrap();
    c.apply(from_b.clone()).await.unwrap();
    assert_eq!(
        c.apply(from_a.clone()).await.unwrap(),
        0,
        "applied again: no change"
    );
    for store in [&a, &b, &c] {
        assert_eq!(value(store, "k").await.as_deref(), Some("from b"));
        assert_eq!(value(store, "only-b").await.as_deref(), Some("1"));
        assert_eq!(value(store, "gone").await, None);
        assert_eq!(store.usage().await.unwrap().keys, 2);
    }
}

#[tokio::test]
async fn counters_count_every_nodes_increments() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path(), "a"), open(dir.path(), "b"));
    for _ in 0..3 {
        a.increment("lessons", 1).await.unwrap();
    }
    assert_eq!(b.increment("lessons", 5).await.unwrap(), 5);
    assert_eq!(b.increment("lessons", -1).await.unwrap(), 4);
    let (from_a, from_b) = (outbox(&a).await, outbox(&b).await);
    a.apply(from_b.clone()).await.unwrap();
    b.apply(from_a.clone()).await.unwrap();
    b.apply(from_a).await.unwrap();
    a.apply(from_b).await.unwrap();
    assert_eq!(value(&a, "lessons").await.as_deref(), Some("7"));
    assert_eq!(value(&b, "lessons").await.as_deref(), Some("7"));
    // Both keep counting from there.
    assert_eq!(a.increment("lessons", 1).await.unwrap(), 8);
    assert!(a.increment("k", 1).await.is_ok());
    a.set("text", b"abc").await.unwrap();
    assert!(matches!(
        a.increment("text", 1).await,
        Err(KvError::Value(_))
    ));
}

#[tokio::test]
async fn a_set_restarts_a_counter_and_a_delete_restarts_it_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path(), "a"), open(dir.path(), "b"));
    a.increment("n", 5).await.unwrap();
    b.apply(outbox(&a).await).await.unwrap();
    a.sent(i64::MAX).await.unwrap();
    b.set("n", b"100").await.unwrap();
    b.increment("n", 1).await.unwrap();
    a.apply(outbox(&b).await).await.unwrap();
    assert_eq!(value(&a, "n").await.as_deref(), Some("101"));
    a.delete("n").await.unwrap();
    assert_eq!(a.increment("n", 2).await.unwrap(), 2);
    b.apply(outbox(&a).await).await.unwrap();
    assert_eq!(value(&b, "n").await.as_deref(), Some("2"));
}

#[tokio::test]
async fn the_outbox_survives_a_restart_and_takes_earlier_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.db");
    // A plain store's keys, before the label was synced.
    {
        let plain = crate::sqlite::SqliteStore::open(&path, Limits::default()).unwrap();
        plain.set("before", b"1").await.unwrap();
    }
    let store = SyncedStore::open(&path, Limits::default(), "edge", Arc::default()).unwrap();
    store.set("k", b"v").await.unwrap();
    store.increment("n", 2).await.unwrap();
    drop(store);
    let store = SyncedStore::open(&path, Limits::default(), "edge", Arc::default()).unwrap();
    let pending = store.pending(10).await.unwrap();
    let keys: Vec<&str> = pending.iter().map(|p| p.change.key.as_str()).collect();
    assert_eq!(keys, ["before", "k", "n"]);
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        pending
            .windows(2)
            .all(|w| w[0].change.stamp < w[1].change.stamp)
    );
    store.sent(pending[1].seq).await.unwrap();
    assert_eq!(store.backlog().await.unwrap(), 1);
    // The clock never goes back behind what the database holds.
    store.set("later", b"x").await.unwrap();
    let last = store.pending(10).await.unwrap().pop().unwrap();
    assert!(last.change.stamp > pending[2].change.stamp);
}

#[test]
fn changes_travel_as_json_with_values_in_base64() {
    let change = Change {
        key: "k".into(),
        stamp: Stamp {
            hlc: 7,
            node: "a".into(),
        },
        op: Op::Put {
            value: Some(vec![0, 255]),
        },
    };
    let json = String::from_utf8(change.to_json()).unwrap();
    assert_eq!(
        json,
        r#"{"key":"k","stamp":{"hlc":7,"node":"a"},"op":"put","value":"AP8="}"#
    );
    assert_eq!(Change::from_json(json.as_bytes()).unwrap(), change);
    let delete = r#"{"key":"k","stamp":{"hlc":8,"node":"a"},"op":"put"}"#;
    assert_eq!(
        Change::from_json(delete.as_bytes()).unwrap().op,
        Op::Put { value: None }
    );
    assert!(Change::from_json(b"{}").is_err());
}

#[tokio::test]
async fn a_peer_clock_far_ahead_does_not_take_this_ones_along() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "a");
    let ahead = wall_clock() + ((48 * 3_600_000) << 16);
    let far = |hlc: u64| Change {
        key: "k".into(),
        stamp: Stamp {
            hlc,
            node: "skewed".into(),
        },
        op: Op::Put {
            value: Some(b"from the future".to_vec()),
        },
    };
    assert!(store.apply(vec![far(u64::MAX)]).await.is_err());
    store.apply(vec![far(ahead)]).await.unwrap();
    // Its write wins (its stamp is later), but this node's clock stays within an hour.
    store.set("mine", b"x").await.unwrap();
    let mine = store.pending(10).await.unwrap().pop().unwrap();
    assert!(mine.change.stamp.hlc < ahead);
    assert!(mine.change.stamp.hlc <= wall_clock() + (3_600_000 << 16) + 1);
    // Deleting an absent key writes nothing.
    store.delete("never-set").await.unwrap();
    assert_eq!(store.backlog().await.unwrap(), 1);
    // Nor does a restart take the clock to the peer's stamp the database holds.
    drop(store);
    let store = open(dir.path(), "a");
    store.set("after", b"x").await.unwrap();
    let after = store.pending(10).await.unwrap().pop().unwrap();
    assert_eq!(after.change.key, "after");
    assert!(after.change.stamp.hlc < ahead);
    assert!(after.change.stamp.hlc > mine.change.stamp.hlc);
}

#[tokio::test]
async fn after_a_restart_a_write_beats_this_nodes_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "a");
    // A write this node stamped two days ahead (its wall clock was wrong, then corrected).
    let ahead = wall_clock() + ((48 * 3_600_000) << 16);
    store
        .apply(vec![Change {
            key: "k".into(),
            stamp: Stamp {
                hlc: ahead,
                node: "a".into(),
            },
            op: Op::Put {
                value: Some(b"old".to_vec()),
            },
        }])
        .await
        .unwrap();
    drop(store);
    let store = open(dir.path(), "a");
    store.set("k", b"new").await.unwrap();
    assert_eq!(value(&store, "k").await.as_deref(), Some("new"));
    let sent = store.pending(10).await.unwrap().pop().unwrap();
    assert!(sent.change.stamp.hlc > ahead);
}

#[tokio::test]
async fn a_key_rewritten_offline_costs_one_change_to_send() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, hub) = (open(dir.path(), "edge"), open(dir.path(), "hub"));
    for n in 0..1000 {
        edge.set("quiz", format!("{n}").as_bytes()).await.unwrap();
        edge.increment("done", 1).await.unwrap();
        edge.increment("done", -1).await.unwrap();
        edge.increment("done", 1).await.unwrap();
    }
    edge.set("gone", b"x").await.unwrap();
    edge.delete("gone").await.unwrap();
    let changes = outbox(&edge).await;
    assert_eq!(
        changes.len(),
        3,
        "one put of quiz, one share of done, one delete"
    );
    hub.apply(changes).await.unwrap();
    assert_eq!(value(&hub, "quiz").await.as_deref(), Some("999"));
    assert_eq!(value(&hub, "done").await.as_deref(), Some("1000"));
    assert_eq!(value(&hub, "gone").await, None);
    // A set after increments replaces them; increments after it are a new share.
    edge.increment("n", 5).await.unwrap();
    edge.set("n", b"10").await.unwrap();
    edge.increment("n", 1).await.unwrap();
    let changes: Vec<Change> = outbox(&edge)
        .await
        .into_iter()
        .filter(|c| c.key == "n")
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    hub.apply(changes).await.unwrap();
    assert_eq!(value(&hub, "n").await.as_deref(), Some("11"));
}

#[tokio::test]
async fn a_losing_set_keeps_the_shares_of_the_put_that_beat_it() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, hub) = (open(dir.path(), "edge"), open(dir.path(), "hub"));
    // A put from a peer whose clock runs two days ahead: the local set below loses to it.
    let ahead = Change {
        key: "n".into(),
        stamp: Stamp {
            hlc: wall_clock() + ((48 * 3_600_000) << 16),
            node: "skewed".into(),
        },
        op: Op::Put {
            value: Some(b"100".to_vec()),
        },
    };
    edge.apply(vec![ahead.clone()]).await.unwrap();
    hub.apply(vec![ahead]).await.unwrap();
    assert_eq!(edge.increment("n", 3).await.unwrap(), 103);
    edge.set("n", b"0").await.unwrap();
    assert_eq!(value(&edge, "n").await.as_deref(), Some("103"));
    hub.apply(outbox(&edge).await).await.unwrap();
    assert_eq!(value(&hub, "n").await.as_deref(), Some("103"));
}

#[tokio::test]
async fn an_outbox_from_before_replacing_changes_is_sent_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE sync_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, change TEXT NOT NULL)",
        )
        .unwrap();
        let old = Change {
            key: "k".into(),
            stamp: Stamp {
                hlc: 1 << 16,
                node: "edge".into(),
            },
            op: Op::Put {
                value: Some(b"old".to_vec()),
            },
        };
        conn.execute(
            "INSERT INTO sync_outbox (change) VALUES (?1)",
            params![String::from_utf8(old.to_json()).unwrap()],
        )
        .unwrap();
    }
    let store = SyncedStore::open(&path, Limits::default(), "edge", Arc::default()).unwrap();
    store.set("k", b"new").await.unwrap();
    store.set("k", b"newer").await.unwrap();
    let values: Vec<Op> = outbox(&store).await.into_iter().map(|c| c.op).collect();
    assert_eq!(
        values.len(),
        2,
        "the old change and the last set: {values:?}"
    );
    drop(store);
    // Opening it again does not add the columns twice.
    SyncedStore::open(&path, Limits::default(), "edge", Arc::default()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_committed_together_answer_each_for_itself() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_keys: 11,
        ..Limits::default()
    };
    let store =
        SyncedStore::open(&dir.path().join("g.db"), limits, "edge", Arc::default()).unwrap();
    // 100 increments of one counter and 20 sets of keys of their own, all at once: the store
    // has room for the counter and 10 of the keys.
    store.increment("n", 0).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let counting = store.clone();
        tasks.push(tokio::spawn(async move {
            counting.increment("n", 1).await.map(|_| None)
        }));
        if i % 5 == 0 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("k{i}");
                store.set(&key, b"v").await.map(|()| Some(key))
            }));
        }
    }
    let mut set = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Some(key)) => set.push(key),
            Ok(None) => {}
            Err(KvError::Limit(_)) => refused += 1,
            Err(err) => panic!("{err}"),
        }
    }
    assert_eq!((set.len(), refused), (10, 10));
    assert_eq!(value(&store, "n").await.as_deref(), Some("100"));
    for i in (0..100).step_by(5) {
        let key = format!("k{i}");
        // A key is there exactly when its set said it succeeded: a refused write undid
        // itself only.
        assert_eq!(
            store.exists(&key).await.unwrap(),
            set.contains(&key),
            "{key}"
        );
    }
    assert_eq!(store.usage().await.unwrap().keys, 11);
    // The outbox: one share of the counter, one put per key set.
    assert_eq!(outbox(&store).await.len(), 11);
}

#[tokio::test]
async fn a_renamed_node_still_sends_the_old_names_share() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("renamed.db");
    let before = SyncedStore::open(&path, Limits::default(), "old-name", Arc::default()).unwrap();
    before.increment("n", 2).await.unwrap();
    drop(before);
    let after = SyncedStore::open(&path, Limits::default(), "new-name", Arc::default()).unwrap();
    after.increment("n", 3).await.unwrap();
    let changes = outbox(&after).await;
    assert_eq!(changes.len(), 2, "one share per name: {changes:?}");
    let hub = open(dir.path(), "hub");
    hub.apply(changes).await.unwrap();
    assert_eq!(value(&hub, "n").await.as_deref(), Some("5"));
}

#[test]
fn only_an_edge_is_ever_without_its_hub() {
    use std::time::{Duration, SystemTime};
    let status = crate::SyncStatus::default();
    assert_eq!(status.hub_silence(), None, "not an edge");
    status.report(vec![crate::LinkReport {
        peer: "hub".into(),
        up: false,
        last_contact: None,
        lag: 0,
    }]);
    assert_eq!(status.hub_silence(), None, "a hub with an edge named hub");
    // An edge restarted a day after it last heard from its hub.
    let day = Duration::from_secs(86_400);
    status.mark_edge(Some(SystemTime::now() - day));
    assert!(status.hub_silence().unwrap() >= day);
    status.report(vec![crate::LinkReport {
        peer: "hub".into(),
        up: true,
        last_contact: Some(SystemTime::now()),
        lag: 0,
    }]);
    assert!(status.hub_silence().unwrap() < Duration::from_secs(60));
}

#[tokio::test]
async fn an_append_only_store_takes_each_key_once_and_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        open(dir.path(), "a").append_only(true),
        open(dir.path(), "b").append_only(true),
    );
    a.set("event/a-1", b"lesson 1 done").await.unwrap();
    b.set("event/b-1", b"lesson 2 done").await.unwrap();
    a.increment("events", 1).await.unwrap();
    b.increment("events", 1).await.unwrap();
    assert!(a.swap("event/a-2", None, b"quiz passed").await.unwrap());

    // The same event again (a retried invocation) is no change.
    a.set("event/a-1", b"lesson 1 done").await.unwrap();
    a.set("event/a-9", b"9").await.unwrap();
    // What would replace or delete an event is refused, and says why.
    for refused in [
        a.set("event/a-1", b"rewritten").await,
        a.delete("event/a-1").await,
        a.increment("event/a-9", 1).await.map(|_| ()),
        a.swap("event/a-1", Some(b"lesson 1 done"), b"rewritten")
            .await
            .map(|_| ()),
    ] {
        match refused {
            Err(KvError::AppendOnly(why)) => assert!(why.contains("append-only"), "{why}"),
            other => panic!("an append-only store took {other:?}"),
        }
    }
    assert_eq!(
        value(&a, "event/a-1").await.as_deref(),
        Some("lesson 1 done")
    );

    let (from_a, from_b) = (outbox(&a).await, outbox(&b).await);
    a.apply(from_b).await.unwrap();
    b.apply(from_a).await.unwrap();
    for store in [&a, &b] {
        assert_eq!(
            store.keys(None, 10).await.unwrap().keys,
            ["event/a-1", "event/a-2", "event/a-9", "event/b-1", "events"]
        );
        assert_eq!(value(store, "events").await.as_deref(), Some("2"));
    }
}

#[tokio::test]
async fn what_a_node_held_before_the_label_was_synced_never_beats_a_synced_write() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path(), "hub");
    hub.set("lesson", b"written since the label is synced")
        .await
        .unwrap();
    // A site joins later with an old copy of the key, from when the label was plain there.
    let path = dir.path().join("site.db");
    {
        let plain = crate::sqlite::SqliteStore::open(&path, Limits::default()).unwrap();
        plain.set("lesson", b"stale, from before").await.unwrap();
        plain.set("only-here", b"kept").await.unwrap();
    }
    let site = SyncedStore::open(&path, Limits::default(), "site", Arc::default()).unwrap();
    let (from_hub, from_site) = (outbox(&hub).await, outbox(&site).await);
    hub.apply(from_site).await.unwrap();
    site.apply(from_hub).await.unwrap();
    for store in [&hub, &site] {
        assert_eq!(
            value(store, "lesson").await.as_deref(),
            Some("written since the label is synced")
        );
        assert_eq!(value(store, "only-here").await.as_deref(), Some("kept"));
    }
}

#[tokio::test]
async fn writes_made_while_the_label_was_plain_again_are_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.db");
    let peer = open(dir.path(), "peer");
    let site = SyncedStore::open(&path, Limits::default(), "site", Arc::default()).unwrap();
    for key in ["kept", "changed", "deleted"] {
        site.set(key, b"synced").await.unwrap();
    }
    site.increment("counter", 3).await.unwrap();
    peer.apply(outbox(&site).await).await.unwrap();
    let sent = site.pending(100).await.unwrap().last().unwrap().seq;
    site.sent(sent).await.unwrap();
    drop(site);
    // The label is plain for a while: its writes go to the store alone.
    {
        let plain = crate::sqlite::SqliteStore::open(&path, Limits::default()).unwrap();
        plain.set("changed", b"while plain").await.unwrap();
        plain.delete("deleted").await.unwrap();
    }
    let site = SyncedStore::open(&path, Limits::default(), "site", Arc::default()).unwrap();
    let resent: Vec<String> = outbox(&site).await.into_iter().map(|c| c.key).collect();
    assert_eq!(resent, ["changed", "deleted"]);
    peer.apply(outbox(&site).await).await.unwrap();
    assert_eq!(
        value(&peer, "changed").await.as_deref(),
        Some("while plain")
    );
    assert_eq!(value(&peer, "deleted").await, None);
    assert_eq!(value(&peer, "kept").await.as_deref(), Some("synced"));
    assert_eq!(value(&peer, "counter").await.as_deref(), Some("3"));
    // Opened again, nothing is sent again.
    let sent = site.pending(100).await.unwrap().last().unwrap().seq;
    site.sent(sent).await.unwrap();
    drop(site);
    let site = SyncedStore::open(&path, Limits::default(), "site", Arc::default()).unwrap();
    assert_eq!(site.backlog().await.unwrap(), 0);
}
