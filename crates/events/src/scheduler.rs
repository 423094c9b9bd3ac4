//! The loop that fires schedules: it reads every deployed function's schedules (a redeploy
//! changes them within a second), fires what is due through the queue, and sleeps until the
//! next firing. A schedule seen for the first time starts counting from now; one that a
//! function no longer has is forgotten.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kindling_registry::ScheduleConfig;

use crate::events::Events;
use crate::record::{NewInvocation, Source};
use crate::schedule::{Firing, Schedule};
use crate::sql;

/// Header naming the schedule that fired an invocation.
pub const SCHEDULE_HEADER: &str = "kindling-schedule";
/// Header with the time a firing was scheduled for (RFC 3339).
pub const SCHEDULED_TIME_HEADER: &str = "kindling-scheduled-time";
/// Header with how many missed firings a catch-up invocation stands for.
pub const MISSED_HEADER: &str = "kindling-missed-firings";

/// Parsed schedules and their last firings, by function.
#[derive(Debug, Default)]
pub(crate) struct Table {
    parsed: HashMap<String, (Vec<ScheduleConfig>, Vec<Schedule>)>,
    last: HashMap<(String, String), i64>,
}

impl Table {
    /// When a schedule last fired, as this node last recorded it.
    pub(crate) fn last_fire(&self, function: &str, key: &str) -> Option<i64> {
        self.last
            .get(&(function.to_string(), key.to_string()))
            .copied()
    }

    fn schedules(&mut self, function: &str, configs: &[ScheduleConfig]) -> Vec<Schedule> {
        if let Some((seen, parsed)) = self.parsed.get(function)
            && seen == configs
        {
            return parsed.clone();
        }
        let parsed: Vec<Schedule> = configs
            .iter()
            .filter_map(|config| match Schedule::parse(config) {
                Ok(schedule) => Some(schedule),
                Err(why) => {
                    tracing::error!(function, error = %why, "schedule cannot run");
                    None
                }
            })
            .collect();
        self.parsed
            .insert(function.to_string(), (configs.to_vec(), parsed.clone()));
        parsed
    }
}

pub(crate) async fn run(events: Arc<Events>) {
    let mut last_cleanup = 0i64;
    let mut leading = true;
    loop {
        if events.stopping() {
            return;
        }
        if let Some(gate) = &events.config.schedule_gate {
            let now_leading = (gate.0)();
            if now_leading && !leading {
                // Another node fired them until now: count from here, or this node would
                // fire again what that one already did.
                tracing::info!("this node now fires the cluster's schedules");
                restart_counts(&events).await;
            }
            leading = now_leading;
            if !leading {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        let now = sql::now_ms();
        let mut wake_at = now + 1_000;
        let mut keep = Vec::new();
        for entry in events.node.entries() {
            let configs = &entry.version.config.schedules;
            if configs.is_empty() {
                continue;
            }
            let function = entry.name.to_string();
            let schedules = lock(&events).schedules(&function, configs);
            for schedule in schedules {
                let key = schedule.key();
                keep.push((function.clone(), key.clone()));
                let namespace = entry.version.config.namespace().to_string();
                if let Some(next) = step(&events, &function, &namespace, &schedule, now).await {
                    wake_at = wake_at.min(next);
                }
            }
        }
        if now - last_cleanup > 60_000 {
            last_cleanup = now;
            lock(&events)
                .last
                .retain(|key, _| keep.iter().any(|k| k == key));
            if let Err(err) = events
                .store
                .call(move |conn| sql::forget_schedules(conn, &keep))
                .await
            {
                tracing::warn!(error = %err, "schedules: cannot forget removed schedules");
            }
        }
        let wait = (wake_at - sql::now_ms()).clamp(10, 1_000) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// Makes every schedule count from now, as if new.
async fn restart_counts(events: &Events) {
    let now = sql::now_ms();
    for entry in events.node.entries() {
        let configs = &entry.version.config.schedules;
        if configs.is_empty() {
            continue;
        }
        let function = entry.name.to_string();
        let schedules = lock(events).schedules(&function, configs);
        for schedule in schedules {
            let _ = record(events, &function, &schedule.key(), now, None).await;
        }
    }
}

fn lock(events: &Events) -> std::sync::MutexGuard<'_, Table> {
    events
        .schedules
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Fires what is due of one schedule; answers when it fires next.
async fn step(
    events: &Events,
    function: &str,
    namespace: &str,
    schedule: &Schedule,
    now: i64,
) -> Option<i64> {
    let key = schedule.key();
    let cached = lock(events)
        .last
        .get(&(function.to_string(), key.clone()))
        .copied();
    let last = match cached {
        Some(last) => last,
        None => {
            let (f, k) = (function.to_string(), key.clone());
            match events
                .store
                .call(move |conn| sql::last_fire(conn, &f, &k))
                .await
            {
                Ok(Some(last)) => last,
                Ok(None) => {
                    // New: it starts counting now.
                    record(events, function, &key, now, None).await.ok()?;
                    return schedule.next_after(now);
                }
                Err(err) => {
                    tracing::error!(function, error = %err, "schedules: cannot read the queue");
                    return None;
                }
            }
        }
    };
    let due = schedule.due(last, now);
    if due.missed > 0 {
        events
            .counters
            .firings
            .with_label_values(&[function, "missed"])
            .inc_by(due.missed);
        tracing::info!(
            function, schedule = %key, missed = due.missed, policy = ?schedule.config.missed,
            "schedule missed firings while the node was down"
        );
    }
    if due.fire.is_empty() {
        if due.last != last {
            record(events, function, &key, due.last, None).await.ok()?;
        }
    } else {
        for firing in &due.fire {
            let new = invocation(function, namespace, schedule, *firing, due.missed);
            match record(events, function, &key, firing.at, Some(new)).await {
                Ok(()) => events
                    .counters
                    .firings
                    .with_label_values(&[function, "fired"])
                    .inc(),
                Err(()) => return None,
            }
        }
        events.wake.notify_one();
    }
    schedule.next_after(due.last)
}

/// Writes the schedule's new last firing, with its invocation when there is one, and caches it.
async fn record(
    events: &Events,
    function: &str,
    key: &str,
    at: i64,
    new: Option<NewInvocation>,
) -> Result<(), ()> {
    let (f, k) = (function.to_string(), key.to_string());
    let limits = events.limits();
    let written = events
        .store
        .call(move |conn| sql::fire(conn, &f, &k, at, new.as_ref(), sql::now_ms(), limits))
        .await;
    match written {
        Ok(_) => {
            lock(events)
                .last
                .insert((function.to_string(), key.to_string()), at);
            Ok(())
        }
        Err(err) => {
            tracing::error!(function, schedule = %key, error = %err, "schedule could not fire");
            Err(())
        }
    }
}

fn invocation(
    function: &str,
    namespace: &str,
    schedule: &Schedule,
    firing: Firing,
    missed: u64,
) -> NewInvocation {
    let key = schedule.key();
    let mut headers = vec![
        (SCHEDULE_HEADER.to_string(), key.clone().into_bytes()),
        (
            SCHEDULED_TIME_HEADER.to_string(),
            sql::rfc3339(firing.at).into_bytes(),
        ),
    ];
    if firing.catch_up {
        headers.push((MISSED_HEADER.to_string(), missed.to_string().into_bytes()));
    }
    NewInvocation {
        function: function.to_string(),
        namespace: namespace.to_string(),
        source: Source::Schedule,
        method: "POST".into(),
        path: schedule.config.path.clone().unwrap_or_else(|| "/".into()),
        headers,
        body: Vec::new(),
        idempotency_key: Some(format!("schedule:{key}:{}", firing.at)),
        callback_url: None,
    }
}
