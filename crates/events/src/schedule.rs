//! Schedules: cron expressions (five fields, or six with seconds first) read in a time zone,
//! each firing an invocation through the queue.
//!
//! A firing and the schedule's new "last fired" time are written in one transaction, and the
//! invocation carries the firing's time in its idempotency key, so a restart can neither fire
//! a time twice nor lose one it recorded. Firings up to [`GRACE`] late are on time (the node
//! was busy, or restarted quickly) and each of them runs. Older ones were missed while the
//! node was down: the schedule's `missed` policy drops them (`skip`) or runs one invocation
//! for all of them (`run-once`).

use std::str::FromStr as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use kindling_registry::{Missed, ScheduleConfig};
use serde::{Deserialize, Serialize};

/// How late a firing may be and still count as on time, in milliseconds.
pub const GRACE_MS: i64 = 5_000;

/// A schedule, parsed.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
    /// As deployed.
    pub config: ScheduleConfig,
}

impl Schedule {
    /// Parses and checks a schedule: its expression, its time zone, and that it fires at all.
    pub fn parse(config: &ScheduleConfig) -> Result<Self, String> {
        let expression = config.cron.trim();
        let cron = Cron::from_str(expression).map_err(|err| {
            format!(
                "schedule {expression:?} is not a cron expression ({err}); write five fields \
                 `minute hour day-of-month month day-of-week`, or six with seconds first"
            )
        })?;
        let zone = match &config.timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| {
                format!(
                    "schedule {expression:?}: {name:?} is not an IANA time zone; write one \
                     such as `UTC` or `Europe/Paris`"
                )
            })?,
        };
        let schedule = Self {
            cron,
            zone,
            config: config.clone(),
        };
        if schedule.next_after(crate::sql::now_ms()).is_none() {
            return Err(format!("schedule {expression:?} never fires"));
        }
        Ok(schedule)
    }

    /// What identifies it across restarts.
    pub fn key(&self) -> String {
        self.config.key()
    }

    /// The first firing strictly after `ms`.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let at = DateTime::<Utc>::from_timestamp_millis(ms)?.with_timezone(&self.zone);
        let next = self.cron.find_next_occurrence(&at, false).ok()?;
        Some(whole_second(next.timestamp_millis()))
    }

    /// The last firing at or before `ms`.
    pub fn last_at_or_before(&self, ms: i64) -> Option<i64> {
        let at =
            DateTime::<Utc>::from_timestamp_millis(whole_second(ms))?.with_timezone(&self.zone);
        let previous = self.cron.find_previous_occurrence(&at, true).ok()?;
        Some(whole_second(previous.timestamp_millis()))
    }

    /// What to fire now, given when it last fired: each on-time firing, and at most one for
    /// the missed ones (by policy). Answers the firings and the new "last fired" time.
    pub fn due(&self, last: i64, now: i64) -> Due {
        let mut due = Due {
            fire: Vec::new(),
            missed: 0,
            last,
        };
        let Some(mut next) = self.next_after(last) else {
            return due;
        };
        let cutoff = now - GRACE_MS;
        if next < cutoff {
            let latest_missed = self.last_at_or_before(cutoff).unwrap_or(next).max(next);
            due.missed = self.count_between(next, latest_missed);
            if self.config.missed == Missed::RunOnce {
                due.fire.push(Firing {
                    at: latest_missed,
                    catch_up: true,
                });
            }
            due.last = latest_missed;
            match self.next_after(latest_missed) {
                Some(after) => next = after,
                None => return due,
            }
        }
        while next <= now && due.fire.len() < 64 {
            due.fire.push(Firing {
                at: next,
                catch_up: false,
            });
            due.last = next;
            match self.next_after(next) {
                Some(after) => next = after,
                None => break,
            }
        }
        due
    }

    /// Firings from `from` to `to`, both included, counted up to a bound.
    fn count_between(&self, from: i64, to: i64) -> u64 {
        const BOUND: u64 = 100_000;
        let mut count = 1;
        let mut at = from;
        while let Some(next) = self.next_after(at) {
            if next > to || count >= BOUND {
                break;
            }
            count += 1;
            at = next;
        }
        count
    }
}

/// Cron fires on whole seconds; the search keeps a start time's fraction.
fn whole_second(ms: i64) -> i64 {
    ms - ms.rem_euclid(1000)
}

/// What [`Schedule::due`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Firings to run now.
    pub fire: Vec<Firing>,
    /// Firings missed while the node was down (counted up to 100,000).
    pub missed: u64,
    /// The schedule's "last fired" time after this step.
    pub last: i64,
}

/// One firing to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firing {
    /// The time it was scheduled for, in milliseconds since the epoch.
    pub at: i64,
    /// Whether it stands for firings missed while the node was down.
    pub catch_up: bool,
}

/// A schedule as `inspect`, the API and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleStatus {
    /// The cron expression.
    pub cron: String,
    /// Its time zone.
    pub timezone: String,
    /// What happens to missed firings.
    pub missed: Missed,
    /// The path it invokes.
    pub path: String,
    /// When it last fired (RFC 3339), if it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// When it fires next (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, zone: Option<&str>, missed: Missed) -> Schedule {
        Schedule::parse(&ScheduleConfig {
            cron: cron.into(),
            timezone: zone.map(Into::into),
            missed,
            path: None,
        })
        .unwrap()
    }

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn five_and_six_field_expressions_parse() {
        let every_five = schedule("*/5 * * * *", None, Missed::Skip);
        assert_eq!(
            every_five.next_after(ms("2026-12-02T10:01:00Z")),
            Some(ms("2026-12-02T10:05:00Z"))
        );
        let every_second = schedule("* * * * * *", None, Missed::Skip);
        assert_eq!(
            every_second.next_after(ms("2026-12-02T10:01:00Z")),
            Some(ms("2026-12-02T10:01:01Z"))
        );
    }

    #[test]
    fn time_zones_move_the_firing() {
        let paris = schedule("0 9 * * *", Some("Europe/Paris"), Missed::Skip);
        // 09:00 in Paris in December is 08:00 UTC.
        assert_eq!(
            paris.next_after(ms("2026-12-02T00:00:00Z")),
            Some(ms("2026-12-02T08:00:00Z"))
        );
    }

    #[test]
    fn bad_schedules_say_what_to_write() {
        let bad = |cron: &str, zone: Option<&str>| {
            Schedule::parse(&ScheduleConfig {
                cron: cron.into(),
                timezone: zone.map(Into::into),
                missed: Missed::Skip,
                path: None,
            })
            .unwrap_err()
        };
        assert!(bad("every minute", None).contains("five fields"));
        assert!(bad("61 * * * *", None).contains("not a cron expression"));
        assert!(bad("* * * * *", Some("Mars/Olympus")).contains("IANA time zone"));
        assert!(bad("0 0 30 2 *", None).contains("never fires"));
    }

    #[test]
    fn on_time_firings_each_run() {
        let s = schedule("* * * * * *", None, Missed::Skip);
        let last = ms("2026-12-02T10:00:00Z");
        let due = s.due(last, last + 3_200);
        let at: Vec<i64> = due.fire.iter().map(|f| f.at - last).collect();
        assert_eq!(at, [1_000, 2_000, 3_000]);
        assert_eq!(due.missed, 0);
        assert_eq!(due.last, last + 3_000);
        assert!(s.due(due.last, last + 3_900).fire.is_empty());
    }

    #[test]
    fn missed_firings_are_skipped_or_run_once() {
        let last = ms("2026-12-02T10:00:00Z");
        let now = last + 60_500; // down for a minute
        let skip = schedule("* * * * * *", None, Missed::Skip).due(last, now);
        // Firings older than the grace period were missed; the last five seconds run.
        assert_eq!(skip.missed, 55);
        assert_eq!(skip.fire.len(), 5);
        assert!(skip.fire.iter().all(|f| !f.catch_up));
        let once = schedule("* * * * * *", None, Missed::RunOnce).due(last, now);
        assert_eq!(once.missed, 55);
        assert_eq!(once.fire.len(), 6);
        assert!(once.fire[0].catch_up);
        assert_eq!(once.last, last + 60_000);
    }
}
