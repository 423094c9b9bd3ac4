//! The queue's statements on a real database file.

use super::*;

fn new(function: &str, key: Option<&str>) -> NewInvocation {
    NewInvocation {
        function: function.into(),
        namespace: "default".into(),
        source: Source::Http,
        method: "POST".into(),
        path: "/x".into(),
        headers: vec![("content-type".into(), b"text/plain".to_vec())],
        body: b"hello".to_vec(),
        idempotency_key: key.map(Into::into),
        callback_url: None,
    }
}

const LIMITS: EnqueueLimits = EnqueueLimits {
    window_ms: 60_000,
    max_waiting: 3,
    max_waiting_per_namespace: 100,
};

fn outcome(state: State, status: u16, next_at: Option<i64>) -> Outcome {
    Outcome {
        status: Some(status),
        error: None,
        response: Some(StoredResponse {
            status,
            headers: vec![],
            body: b"answer".to_vec(),
            truncated: false,
        }),
        state,
        next_at,
        reason: None,
    }
}

#[test]
fn idempotency_keys_deduplicate_within_the_window_only() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(&dir.path().join("queue.db")).unwrap();
    let (first, dup) = enqueue(&conn, &new("f", Some("k")), 1_000, LIMITS).unwrap();
    assert!(!dup);
    let (again, dup) = enqueue(&conn, &new("f", Some("k")), 30_000, LIMITS).unwrap();
    assert_eq!((again.as_str(), dup), (first.as_str(), true));
    // Another function's key space is its own.
    let (other, dup) = enqueue(&conn, &new("g", Some("k")), 30_000, LIMITS).unwrap();
    assert!(!dup && other != first);
    // Past the window the key is free again.
    let (later, dup) = enqueue(&conn, &new("f", Some("k")), 100_000, LIMITS).unwrap();
    assert!(!dup && later != first);
}

#[test]
fn a_full_queue_refuses_new_work() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(&dir.path().join("queue.db")).unwrap();
    let limits = EnqueueLimits {
        max_waiting_per_namespace: 2,
        ..LIMITS
    };
    let mut other = new("g", None);
    other.namespace = "team-b".into();
    for _ in 0..2 {
        enqueue(&conn, &new("f", None), 1, limits).unwrap();
    }
    // One namespace has its share; another still has room.
    let err = enqueue(&conn, &new("f", None), 1, limits).unwrap_err();
    assert!(
        matches!(err, EventsError::NamespaceFull { limit: 2, .. }),
        "{err}"
    );
    enqueue(&conn, &other, 1, limits).unwrap();
    let err = enqueue(&conn, &other, 1, limits).unwrap_err();
    assert!(matches!(err, EventsError::Full { limit: 3 }), "{err}");
}

#[test]
fn attempts_move_an_invocation_through_its_states() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(&dir.path().join("queue.db")).unwrap();
    let (id, _) = enqueue(&conn, &new("f", None), 1_000, LIMITS).unwrap();
    let claimed = claim(&conn, 1_000, 10).unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempt, 1);
    assert_eq!(claimed[0].body, b"hello");
    assert_eq!(claimed[0].headers[0].1, b"text/plain");
    assert!(claim(&conn, 1_000, 10).unwrap().is_empty(), "taken once");
    finish(
        &conn,
        &id,
        1,
        1_100,
        &outcome(State::Queued, 503, Some(5_000)),
    )
    .unwrap();
    assert!(claim(&conn, 4_999, 10).unwrap().is_empty(), "not due yet");
    assert_eq!(next_due(&conn).unwrap(), Some(5_000));
    let second = claim(&conn, 5_000, 10).unwrap();
    assert_eq!(second[0].attempt, 2);
    finish(&conn, &id, 2, 5_200, &outcome(State::Succeeded, 200, None)).unwrap();
    let record = get(&conn, &id).unwrap().unwrap();
    assert_eq!(record.state, State::Succeeded);
    assert_eq!(record.attempts, 2);
    assert_eq!(
        record.response.as_ref().unwrap().body.as_deref(),
        Some("answer")
    );
    let statuses: Vec<Option<u16>> = record.history.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(503), Some(200)]);
    assert_eq!(record.history[1].duration_ms, Some(200));
}

#[test]
fn an_attempt_cut_off_by_a_crash_is_queued_again_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let id = {
        let conn = open(&path).unwrap();
        let (id, _) = enqueue(&conn, &new("f", None), 1_000, LIMITS).unwrap();
        claim(&conn, 1_000, 10).unwrap();
        id
    };
    let conn = open(&path).unwrap();
    let record = get(&conn, &id).unwrap().unwrap();
    assert_eq!(record.state, State::Queued);
    assert_eq!(
        record.history[0].error.as_deref(),
        Some("the node stopped during the attempt")
    );
    let again = claim(&conn, now_ms(), 10).unwrap();
    assert_eq!(again[0].attempt, 2, "the cut-off attempt counts");
}

#[test]
fn deferred_attempts_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(&dir.path().join("queue.db")).unwrap();
    let (id, _) = enqueue(&conn, &new("f", None), 1_000, LIMITS).unwrap();
    claim(&conn, 1_000, 10).unwrap();
    release(&conn, &id, 1, 2_000).unwrap();
    let record = get(&conn, &id).unwrap().unwrap();
    assert_eq!((record.state, record.attempts), (State::Queued, 0));
    assert!(record.history.is_empty());
}

#[test]
fn only_finished_invocations_are_retried_purged_or_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(&dir.path().join("queue.db")).unwrap();
    let (dead, _) = enqueue(&conn, &new("f", None), 1_000, LIMITS).unwrap();
    let (queued, _) = enqueue(&conn, &new("f", None), 1_000, LIMITS).unwrap();
    claim(&conn, 1_000, 1).unwrap();
    finish(&conn, &dead, 1, 1_001, &outcome(State::Dead, 500, None)).unwrap();
    assert!(matches!(
        retry(&conn, &queued, 2_000),
        Err(EventsError::Conflict(_))
    ));
    assert!(matches!(
        retry(&conn, "inv_none", 2_000),
        Err(EventsError::NotFound(_))
    ));
    let running = Filter {
        state: Some(State::Running),
        ..Filter::default()
    };
    assert!(matches!(
        purge(&conn, &running),
        Err(EventsError::Conflict(_))
    ));

    retry(&conn, &dead, 2_000).unwrap();
    let claimed = claim(&conn, 2_000, 10).unwrap();
    let again = claimed.iter().find(|c| c.id == dead).unwrap();
    assert_eq!(
        (again.attempt, again.base),
        (2, 1),
        "history keeps counting"
    );
    finish(&conn, &dead, 2, 2_001, &outcome(State::Dead, 500, None)).unwrap();
    assert_eq!(purge(&conn, &Filter::default()).unwrap(), 1);
    assert!(get(&conn, &dead).unwrap().is_none());
    // `queued` was taken by the last claim: running, it cannot be deleted.
    assert!(matches!(
        delete(&conn, &queued),
        Err(EventsError::Conflict(_))
    ));
    // One still waiting is cancelled.
    let (waiting, _) = enqueue(&conn, &new("f", None), 3_000, LIMITS).unwrap();
    delete(&conn, &waiting).unwrap();
    assert!(get(&conn, &waiting).unwrap().is_none());
}

#[test]
fn lists_leave_response_bodies_out() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(&dir.path().join("queue.db")).unwrap();
    let (id, _) = enqueue(&conn, &new("f", None), 1_000, LIMITS).unwrap();
    claim(&conn, 1_000, 1).unwrap();
    finish(&conn, &id, 1, 1_001, &outcome(State::Succeeded, 200, None)).unwrap();
    let listed = list(&conn, &Filter::default()).unwrap();
    let response = listed[0].response.as_ref().unwrap();
    assert_eq!((response.status, response.body.as_deref()), (200, None));
    let shown = get(&conn, &id).unwrap().unwrap();
    assert_eq!(shown.response.unwrap().body.as_deref(), Some("answer"));
}

#[test]
fn schedules_fire_once_per_recorded_time() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(&dir.path().join("queue.db")).unwrap();
    assert_eq!(last_fire(&conn, "f", "* * * * * * @ UTC").unwrap(), None);
    let mut firing = new("f", Some("schedule:s:1000"));
    firing.source = Source::Schedule;
    let first = fire(&conn, "f", "s", 1_000, Some(&firing), 1_000, LIMITS).unwrap();
    // The same firing again (a restart that had not seen its own write) finds the first.
    let again = fire(&conn, "f", "s", 1_000, Some(&firing), 1_500, LIMITS).unwrap();
    assert_eq!(first, again);
    assert_eq!(last_fire(&conn, "f", "s").unwrap(), Some(1_000));
    forget_schedules(&conn, &[]).unwrap();
    assert_eq!(last_fire(&conn, "f", "s").unwrap(), None);
}
