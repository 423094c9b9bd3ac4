//! The queue database's one writer: a thread that owns the SQLite connection and runs what
//! the async side asks of it in batches, one transaction (and so one fsync) per batch. A burst
//! of accepted invocations costs one disk flush, not one each, and no SQLite call ever runs on
//! an async thread. Each request runs in a savepoint of its own, so one failing request leaves
//! the others of its batch standing; the answers go out only after the batch is committed, so
//! a 202 is never sent for a write that is not on disk.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, Transaction};
use tokio::sync::oneshot;

use crate::error::EventsError;

/// Requests one transaction may carry.
const MAX_BATCH: usize = 256;

/// A request to the writer thread.
trait Job: Send {
    /// Runs inside the batch's transaction.
    fn run(&mut self, tx: &mut Transaction<'_>);
    /// Delivers the answer once the batch's fate is known.
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

struct Op<T, F> {
    work: Option<F>,
    answer: Option<Result<T, EventsError>>,
    reply: oneshot::Sender<Result<T, EventsError>>,
}

impl<T, F> Job for Op<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, EventsError> + Send,
{
    fn run(&mut self, tx: &mut Transaction<'_>) {
        let Some(work) = self.work.take() else { return };
        let answer = match tx.savepoint() {
            // Dropping an uncommitted savepoint rolls it back.
            Ok(savepoint) => match work(&savepoint) {
                Ok(value) => savepoint
                    .commit()
                    .map(|()| value)
                    .map_err(EventsError::from),
                Err(err) => Err(err),
            },
            Err(err) => Err(err.into()),
        };
        self.answer = Some(answer);
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let answer = match committed {
            Ok(()) => self
                .answer
                .unwrap_or_else(|| Err(EventsError::Storage("request was not run".into()))),
            Err(err) => Err(EventsError::Storage(err)),
        };
        // The asker may have given up; the work is done either way.
        let _ = self.reply.send(answer);
    }
}

/// A handle on the writer thread; cheap to clone.
#[derive(Clone)]
pub(crate) struct Store {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) the queue database at `path` and starts its writer thread.
    pub(crate) fn open(path: &Path) -> Result<Self, EventsError> {
        let conn = crate::sql::open(path)?;
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("kindling-queue-db".into())
            .spawn(move || writer(conn, queue))
            .map_err(|err| EventsError::Storage(format!("cannot start the queue writer: {err}")))?;
        Ok(Self { jobs })
    }

    /// Runs `work` in the writer's next transaction and answers once it is committed.
    pub(crate) async fn call<T, F>(&self, work: F) -> Result<T, EventsError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, EventsError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Op {
            work: Some(work),
            answer: None,
            reply,
        });
        self.jobs
            .send(job)
            .map_err(|_| EventsError::Storage("the queue writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| EventsError::Storage("the queue writer has stopped".into()))?
    }
}

fn writer(mut conn: Connection, queue: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let committed = match conn.transaction() {
            Ok(mut tx) => {
                for job in &mut batch {
                    job.run(&mut tx);
                }
                tx.commit().map_err(|err| err.to_string())
            }
            Err(err) => Err(err.to_string()),
        };
        if let Err(err) = &committed {
            tracing::error!(error = %err, "queue database: a batch failed to commit");
        }
        for job in batch {
            job.finish(committed.clone());
        }
    }
}
