//! Admission control under contention: concurrency limits, FIFO queues with timeouts,
//! cancelled waiters, priority ceilings and quotas. Time is Tokio's paused test clock, so the
//! queue timeouts are exact and the tests take no real time.

use std::sync::Arc;
use std::time::Duration;

use kindling_scheduler::{
    Account, Admission, AdmissionConfig, Lane, LaneConfig, NamespaceLimits, Priority, Rejection,
    Unlimited,
};

fn admission(max_in_flight: u32) -> Arc<Admission> {
    Admission::new(
        AdmissionConfig {
            max_in_flight,
            ..AdmissionConfig::default()
        },
        Arc::new(Unlimited),
    )
}

fn account(namespace: &str) -> Account {
    Account {
        namespace: namespace.into(),
        function: "f".into(),
    }
}

fn lane(max_concurrency: u32, queue_len: u32, priority: Priority) -> Arc<Lane> {
    Lane::new(LaneConfig {
        max_concurrency: Some(max_concurrency),
        queue_len,
        queue_timeout: Duration::from_secs(5),
        priority,
        ..LaneConfig::default()
    })
}

#[tokio::test(start_paused = true)]
async fn exactly_the_excess_is_refused_when_there_is_no_queue() {
    let admission = admission(100);
    let lane = lane(3, 0, Priority::Normal);
    let mut permits = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..5 {
        match admission.admit(&lane, &account("default")).await {
            Ok(permit) => permits.push(permit),
            Err(rejection) => refused.push(rejection),
        }
    }
    assert_eq!(permits.len(), 3);
    assert_eq!(refused, vec![Rejection::FunctionBusy { limit: 3 }; 2]);
    assert_eq!(refused[0].status(), 429);
    assert_eq!(lane.in_flight(), 3);
    assert_eq!(admission.in_flight(), 3);
    drop(permits);
    assert_eq!(lane.in_flight(), 0);
    assert_eq!(admission.in_flight(), 0);
    assert_eq!(lane.counts(), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn the_queue_drains_in_arrival_order_and_then_refuses() {
    let admission = admission(100);
    let lane = lane(1, 3, Priority::Normal);
    let first = admission.admit(&lane, &account("default")).await.unwrap();

    let (order_tx, mut order_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waiters = Vec::new();
    for i in 0..3 {
        let (admission, lane, order) = (admission.clone(), lane.clone(), order_tx.clone());
        waiters.push(tokio::spawn(async move {
            let permit = admission.admit(&lane, &account("default")).await.unwrap();
            order.send(i).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(permit);
        }));
        // Let each waiter enqueue before the next arrives.
        tokio::task::yield_now().await;
    }
    assert_eq!(lane.queued(), 3);
    let full = admission
        .admit(&lane, &account("default"))
        .await
        .err()
        .unwrap();
    assert_eq!(
        full,
        Rejection::QueueFull {
            limit: 1,
            queue_len: 3
        }
    );

    drop(first);
    for waiter in waiters {
        waiter.await.unwrap();
    }
    let order: Vec<i32> = std::iter::from_fn(|| order_rx.try_recv().ok()).collect();
    assert_eq!(order, vec![0, 1, 2]);
    assert_eq!(lane.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn waiting_is_bounded_and_leaks_no_slot() {
    let admission = admission(100);
    let lane = lane(1, 8, Priority::Normal);
    let held = admission.admit(&lane, &account("default")).await.unwrap();

    let err = admission
        .admit(&lane, &account("default"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Rejection::QueueTimeout { waited } if waited >= Duration::from_secs(5)));
    assert_eq!(lane.queued(), 0, "the timed-out waiter is gone");

    // A waiter whose client goes away (its future is dropped) must not take the slot with it.
    let waiting = {
        let (admission, lane) = (admission.clone(), lane.clone());
        tokio::spawn(async move {
            admission
                .admit(&lane, &account("default"))
                .await
                .map(|_| ())
        })
    };
    tokio::task::yield_now().await;
    waiting.abort();
    let _ = waiting.await;
    drop(held);
    assert_eq!(lane.in_flight(), 0);
    let again = admission.admit(&lane, &account("default")).await;
    assert!(again.is_ok(), "the slot came back");
}

#[tokio::test(start_paused = true)]
async fn lower_priorities_are_shed_first() {
    // 10 node slots: batch may fill 5, normal 8, critical all 10.
    let admission = admission(10);
    assert_eq!(admission.limit_for(Priority::Batch), 5);
    assert_eq!(admission.limit_for(Priority::Normal), 8);
    let batch = Lane::new(LaneConfig {
        priority: Priority::Batch,
        ..LaneConfig::default()
    });
    let critical = Lane::new(LaneConfig {
        priority: Priority::Critical,
        ..LaneConfig::default()
    });

    let mut held = Vec::new();
    let mut shed = 0;
    for _ in 0..20 {
        match admission.admit(&batch, &account("default")).await {
            Ok(permit) => held.push(permit),
            Err(rejection) => {
                assert_eq!(rejection.status(), 503);
                assert_eq!(rejection.code(), "node_overloaded");
                shed += 1;
            }
        }
    }
    assert_eq!((held.len(), shed), (5, 15));
    // The flood of batch work leaves the reserved capacity to critical requests.
    for _ in 0..5 {
        held.push(
            admission
                .admit(&critical, &account("default"))
                .await
                .unwrap(),
        );
    }
    assert!(
        admission
            .admit(&critical, &account("default"))
            .await
            .is_err(),
        "node is full"
    );
    assert_eq!(admission.in_flight(), 10);
}

#[tokio::test(start_paused = true)]
async fn requests_are_accounted_to_their_namespace() {
    let admission = Admission::new(
        AdmissionConfig::default(),
        Arc::new(NamespaceLimits::new([("team-a".to_string(), 1)])),
    );
    let lane = Lane::new(LaneConfig::default());
    let held = admission.admit(&lane, &account("team-a")).await.unwrap();
    let err = admission
        .admit(&lane, &account("team-a"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), "over_quota");
    assert_eq!(err.status(), 429);
    assert!(admission.admit(&lane, &account("team-b")).await.is_ok());
    drop(held);
    assert!(admission.admit(&lane, &account("team-a")).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn lanes_report_their_average_concurrency() {
    let admission = admission(100);
    let lane = Lane::new(LaneConfig::default());
    let start = tokio::time::Instant::now();
    lane.sample(start);
    let a = admission.admit(&lane, &account("default")).await.unwrap();
    let b = admission.admit(&lane, &account("default")).await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    drop(b);
    tokio::time::advance(Duration::from_secs(1)).await;
    drop(a);
    // Two in flight for one second, one for the next: an average of 1.5 over two seconds.
    let average = lane.sample(tokio::time::Instant::now());
    assert!((average - 1.5).abs() < 1e-6, "{average}");
}

#[tokio::test(start_paused = true)]
async fn the_memory_budget_bounds_what_requests_may_reserve_together() {
    let admission = Admission::new(
        AdmissionConfig {
            memory_budget_bytes: Some(300),
            ..AdmissionConfig::default()
        },
        Arc::new(Unlimited),
    );
    let big = Lane::new(LaneConfig {
        memory_bytes: 128,
        ..LaneConfig::default()
    });
    let small = Lane::new(LaneConfig {
        memory_bytes: 40,
        ..LaneConfig::default()
    });
    let a = admission.admit(&big, &account("default")).await.unwrap();
    let b = admission.admit(&big, &account("default")).await.unwrap();
    let refused = admission
        .admit(&big, &account("default"))
        .await
        .err()
        .unwrap();
    assert_eq!(
        refused,
        Rejection::MemoryFull {
            reserved: 256,
            budget: 300,
            need: 128
        }
    );
    assert_eq!(
        (refused.status(), refused.code()),
        (503, "node_memory_full")
    );
    assert_eq!(admission.in_flight(), 2, "a refusal holds no slot");
    let c = admission.admit(&small, &account("default")).await.unwrap();
    assert_eq!(admission.reserved_bytes(), 296);
    drop((a, b, c));
    assert_eq!(admission.reserved_bytes(), 0);
    assert!(admission.admit(&big, &account("default")).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_critical_request_waits_briefly_for_a_slot_others_are_shed() {
    let admission = Admission::new(
        AdmissionConfig {
            max_in_flight: 2,
            critical_wait: Duration::from_millis(250),
            ..AdmissionConfig::default()
        },
        Arc::new(Unlimited),
    );
    let critical = Lane::new(LaneConfig {
        priority: Priority::Critical,
        ..LaneConfig::default()
    });
    let held = vec![
        admission
            .admit(&critical, &account("default"))
            .await
            .unwrap(),
        admission
            .admit(&critical, &account("default"))
            .await
            .unwrap(),
    ];
    // A slot frees within the wait: the waiting critical request gets it.
    let waiter = {
        let (admission, critical) = (admission.clone(), critical.clone());
        tokio::spawn(async move { admission.admit(&critical, &account("default")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut held = held.into_iter();
    drop(held.next());
    let admitted = waiter.await.unwrap().expect("admitted when a slot freed");
    // Nothing frees within the wait: refused once it is over.
    let started = tokio::time::Instant::now();
    let refused = admission.admit(&critical, &account("default")).await;
    assert_eq!(refused.err().unwrap().code(), "node_overloaded");
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    drop((admitted, held));
}
