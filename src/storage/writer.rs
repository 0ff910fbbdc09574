//! The one writer. Every write in the process is a job queued here; the writer thread takes
//! all queued jobs, runs them in one transaction (group commit: one fsync for many writes),
//! and answers each caller only after COMMIT returned. A job that fails is rolled back to its
//! own savepoint without disturbing the others in its batch.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::domain::audit::{self, AuditEvent};
use crate::error::Error;

/// How many queued messages one transaction takes at most.
const MAX_BATCH: usize = 512;

/// How long a batch of audit events alone waits for company (see [`linger_for_audit`]).
const AUDIT_LINGER: Duration = Duration::from_millis(10);
const LINGER_POLL: Duration = Duration::from_millis(1);

type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;

enum Message {
    Job(Job),
    Audit(AuditEvent),
    Shutdown,
}

/// Cheap, cloneable sender side of the writer queue.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::UnboundedSender<Message>,
}

/// Owns the writer thread; [`Writer::shutdown`] commits what is queued and joins it.
pub struct Writer {
    handle: WriterHandle,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(conn: Connection) -> Result<Self, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("keyward-writer".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| Error::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            handle: WriterHandle { tx },
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Commits every job queued so far, then stops the thread. Jobs queued afterwards fail.
    pub fn shutdown(mut self) {
        let _ = self.handle.tx.send(Message::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl WriterHandle {
    pub async fn write<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel::<Result<T, Error>>();
        let job: Job = Box::new(move |conn: &Connection| {
            let outcome = catch_unwind(AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|_| Err(Error::Storage("a write job panicked".into())));
            let ok = outcome.is_ok();
            let completion: Completion = Box::new(move |committed: Result<(), String>| {
                let answer = match committed {
                    Ok(()) => outcome,
                    Err(e) => Err(Error::Storage(e)),
                };
                let _ = reply_tx.send(answer);
            });
            (ok, completion)
        });
        self.tx
            .send(Message::Job(job))
            .map_err(|_| Error::Storage("storage is shutting down".into()))?;
        reply_rx.await.map_err(|_| {
            Error::Storage("the write was not committed (storage unavailable)".into())
        })?
    }

    /// Queues an audit event. It is committed with the next batch; nobody waits for it,
    /// which is why recording a validation never slows the validation down.
    pub fn record(&self, event: AuditEvent) {
        if self.tx.send(Message::Audit(event)).is_err() {
            tracing::warn!("audit event dropped: storage is shutting down");
        }
    }
}

fn run(conn: Connection, mut rx: mpsc::UnboundedReceiver<Message>) {
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut batch = Vec::with_capacity(16);
        match first {
            Message::Shutdown => stopping = true,
            m => batch.push(m),
        }
        while !stopping && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Message::Shutdown) => stopping = true,
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if !stopping && batch.iter().all(|m| matches!(m, Message::Audit(_))) {
            stopping = linger_for_audit(&mut rx, &mut batch);
        }
        if !batch.is_empty() {
            commit_batch(&conn, batch);
        }
    }
    // Anything sent after Shutdown is refused by the closed channel.
    rx.close();
    // Dropping a job unrun drops its reply sender: its caller gets "not committed".
    while rx.try_recv().is_ok() {}
}

/// A batch of audit events only has nobody waiting for it, so the writer gathers more for up to
/// [`AUDIT_LINGER`] before committing. Under a flood of validations this turns thousands of
/// commits (each an fsync, and each making every reader drop its page cache) into a hundred a
/// second. A write job that arrives meanwhile ends the wait at the next poll, so it waits at
/// most [`LINGER_POLL`] longer. Returns true if Shutdown arrived.
fn linger_for_audit(rx: &mut mpsc::UnboundedReceiver<Message>, batch: &mut Vec<Message>) -> bool {
    let deadline = Instant::now() + AUDIT_LINGER;
    while batch.len() < MAX_BATCH && Instant::now() < deadline {
        std::thread::sleep(LINGER_POLL);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Message::Shutdown) => return true,
                Ok(job @ Message::Job(_)) => {
                    batch.push(job);
                    return false;
                }
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
    }
    false
}

fn commit_batch(conn: &Connection, batch: Vec<Message>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = format!("cannot begin a transaction: {e}");
        tracing::error!("{msg}");
        // Dropping the jobs unrun answers each caller "not committed".
        drop(batch);
        return;
    }
    let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
    for m in batch {
        match m {
            Message::Audit(event) => {
                if let Err(e) = audit::repo::insert(conn, &event) {
                    tracing::error!("audit event not recorded: {e}");
                }
            }
            Message::Job(job) => {
                if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                    tracing::error!("cannot open a savepoint: {e}");
                }
                let (ok, done) = job(conn);
                let end = if ok {
                    "RELEASE job"
                } else {
                    "ROLLBACK TO job; RELEASE job"
                };
                if let Err(e) = conn.execute_batch(end) {
                    tracing::error!("cannot close a savepoint: {e}");
                }
                completions.push(done);
            }
            Message::Shutdown => {}
        }
    }
    let committed = conn
        .execute_batch("COMMIT")
        .map_err(|e| format!("commit failed: {e}"));
    if let Err(e) = &committed {
        tracing::error!("{e}");
        let _ = conn.execute_batch("ROLLBACK");
    }
    for done in completions {
        done(committed.clone());
    }
}
