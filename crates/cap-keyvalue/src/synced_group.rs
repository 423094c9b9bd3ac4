//! Group commit for a synced store's local writes. Each write is durable before the guest
//! sees it succeed (one fsync per commit, `synchronous = FULL`), and a guest recording a lesson
//! makes four of them; committed one by one, a site's writes queue behind each other's fsync.
//! Here writes that arrive while a commit is under way wait for the next one, which takes
//! them all: each in its own savepoint (one write's error undoes only that write), one
//! transaction and one fsync for the group. A write alone commits at once, as before.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{Change, Db, Inner, enqueue, merge};
use crate::backend::KvError;
use crate::sqlite::backend;

/// A write's own work: reads and checks, then the value it answers with and the change it
/// makes, if any (merged and queued in the same savepoint).
pub(super) type Work = Box<
    dyn FnOnce(&Connection, &mut u64, &Inner) -> Result<(Answer, Option<Change>), KvError> + Send,
>;

/// What a write answers its caller.
pub(super) type Answer = Box<dyn Any + Send>;

/// Writes waiting for the next commit, and whether a committer is at work.
#[derive(Default)]
pub(super) struct Queue {
    jobs: Vec<(Work, oneshot::Sender<Result<Answer, KvError>>)>,
    committing: bool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("jobs", &self.jobs.len())
            .field("committing", &self.committing)
            .finish()
    }
}

/// Queues `work` for the next group commit, starting a committer when none is at work; its
/// answer once the group is durable.
pub(super) async fn write(inner: &std::sync::Arc<Inner>, work: Work) -> Result<Answer, KvError> {
    let (done, answer) = oneshot::channel();
    let start = {
        let mut queue = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.jobs.push((work, done));
        !std::mem::replace(&mut queue.committing, true)
    };
    if start {
        let inner = inner.clone();
        tokio::task::spawn_blocking(move || commit_groups(&inner));
    }
    answer
        .await
        .map_err(|_| KvError::Backend("the store's committer stopped".into()))?
}

/// Commits groups until no write waits. Blocking.
fn commit_groups(inner: &Inner) {
    loop {
        let jobs = {
            let mut queue = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.jobs.is_empty() {
                queue.committing = false;
                return;
            }
            std::mem::take(&mut queue.jobs)
        };
        let (works, senders): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        let answers = match inner.db.lock() {
            Ok(mut db) => commit(&mut db, inner, works),
            Err(_) => Err(KvError::Backend("an earlier operation panicked".into())),
        };
        match answers {
            Ok((answers, queued)) => {
                if queued {
                    inner.outbox.notify_one();
                }
                for (sender, answer) in senders.into_iter().zip(answers) {
                    let _ = sender.send(answer);
                }
            }
            Err(err) => {
                for sender in senders {
                    let _ = sender.send(Err(err.clone()));
                }
            }
        }
    }
}

/// One group: every write in its savepoint, one commit. Returns each write's answer and
/// whether the outbox gained a change; an error here (the commit failed) fails them all.
fn commit(
    db: &mut Db,
    inner: &Inner,
    works: Vec<Work>,
) -> Result<(Vec<Result<Answer, KvError>>, bool), KvError> {
    let mut clock = db.clock;
    let mut tx = db.conn.transaction().map_err(backend)?;
    let mut answers = Vec::with_capacity(works.len());
    let mut queued = false;
    for work in works {
        let savepoint = tx.savepoint().map_err(backend)?;
        // A write that panics fails alone; the others, and the writes after them, go on.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let (answer, change) = work(&savepoint, &mut clock, inner)?;
            if let Some(change) = &change {
                merge(&savepoint, change)?;
                enqueue(&savepoint, change)?;
            }
            Ok((answer, change.is_some()))
        }))
        .unwrap_or_else(|_| Err(KvError::Backend("the write panicked".into())));
        match outcome {
            Ok((answer, changed)) => {
                savepoint.commit().map_err(backend)?;
                queued |= changed;
                answers.push(Ok(answer));
            }
            // Dropping the savepoint rolls back what the write did.
            Err(err) => answers.push(Err(err)),
        }
    }
    tx.commit().map_err(backend)?;
    db.clock = clock;
    Ok((answers, queued))
}
