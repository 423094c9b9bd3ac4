//! Work that arrives without a waiting client, delivered at least once.
//!
//! - The **invocation queue** ([`Events`]): a request accepted for later (`Prefer:
//!   respond-async`) is on disk, in the node's `queue.db` (SQLite, WAL, full sync), before the
//!   client hears 202; workers run it through [`kindling_node::Node::invoke`], retry what failed
//!   with exponential backoff and jitter, keep what finally failed in the dead-letter store,
//!   and post results to callbacks. Idempotency keys deduplicate within a window.
//! - **Schedules** (cron, optional seconds, a time zone) fire invocations through the queue,
//!   exactly once per firing across restarts.
//! - **Triggers** consume NATS subjects, JetStream streams and Redis streams behind one seam
//!   (`trigger.rs`); a message is acknowledged only after the function answered 2xx.
//! - In a cluster the queue is shared ([`SharedQueue`], on JetStream in `kindling-cluster`):
//!   an accepted invocation is held by the cluster until one node finishes it.

mod backoff;
mod backup;
mod callback;
mod error;
mod events;
mod headers;
mod nats;
mod record;
mod redis_stream;
mod schedule;
mod scheduler;
mod shared;
mod sql;
mod sql_callbacks;
mod sql_schedules;
mod sql_shared;
mod store;
mod trigger;
mod unreported;
mod worker;

pub use backoff::{delay_ms, nominal_ms, parse_range};
pub use backup::{back_up, restore, verify};
pub use callback::{SIGNATURE_HEADER, signature};
pub use error::EventsError;
pub use events::{Events, EventsConfig, ScheduleGate};
pub use headers::passes as header_passes;
pub use record::{
    Accepted, Attempt, Backlog, CallbackRecord, Filter, InvocationRecord, NewInvocation,
    ResponseRecord, Source, State,
};
pub use schedule::{Due, Firing, GRACE_MS, Schedule, ScheduleStatus};
pub use scheduler::{MISSED_HEADER, SCHEDULE_HEADER, SCHEDULED_TIME_HEADER};
pub use shared::{Earlier, Envelope, SharedQueue, Taken};
pub use trigger::{
    DELIVERY_HEADER, MESSAGE_ID_HEADER, STREAM_HEADER, SUBJECT_HEADER, TRIGGER_HEADER,
};
pub use worker::{ATTEMPT_HEADER, INVOCATION_ID_HEADER};
