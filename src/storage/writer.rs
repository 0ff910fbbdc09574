//! The one writer. Every write in the process is a job queued here; the writer thread takes
//! all queued jobs, runs them in one transaction (group commit: one fsync for many writes),
//! and answers each caller only after COMMIT returned. A job that fails is rolled back to its
//! own savepoint without disturbing the others in its batch.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::domain::audit::{self, AuditEvent};
use crate::error::Error;

/// How many queued messages one transaction takes at most (a longer transaction holds one of
/// the cores for longer: requests queue behind it).
const MAX_BATCH: usize = 512;

/// How long a batch of audit events alone waits for company (see [`linger_for_audit`]).
/// Longer lingers commit less often, so readers lose their page cache and memory map less
/// often, but each commit is a longer burst of work: measured on two cores (issue 16), 100 ms
/// raised validate's p99 at half load to 17–35 ms and 30 ms to 5–20 ms, against the 5 ms
/// budget.
const AUDIT_LINGER: Duration = Duration::from_millis(10);

type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;

enum Message {
    Job(Job),
    Audit(AuditEvent),
    Shutdown,
}

/// Told about every writer transaction (the server's metrics); storage knows nothing of them.
pub trait BatchObserver: Send + Sync {
    /// A transaction of `messages` jobs and audit events ended after `took`; `ok` if committed.
    fn committed(&self, messages: usize, took: Duration, ok: bool);
}

/// What the handles and the writer thread share: the queue's depth (an unbounded channel does
/// not tell its length to senders) and who is told about commits.
#[derive(Default)]
struct Probe {
    queued: AtomicI64,
    observer: OnceLock<Arc<dyn BatchObserver>>,
    /// The writer thread, so that a job (or Shutdown) can end its linger at once.
    thread: OnceLock<std::thread::Thread>,
    /// Set by a job or Shutdown, cleared by the writer when it takes them: a lingering writer
    /// commits at once when it is set.
    urgent: AtomicBool,
}

impl Probe {
    fn taken(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Cheap, cloneable sender side of the writer queue.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::UnboundedSender<Message>,
    probe: Arc<Probe>,
}

/// Owns the writer thread; [`Writer::shutdown`] commits what is queued and joins it.
pub struct Writer {
    handle: WriterHandle,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(conn: Connection) -> Result<Self, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let probe = Arc::new(Probe::default());
        let thread_probe = probe.clone();
        let thread = std::thread::Builder::new()
            .name("keyward-writer".into())
            .spawn(move || run(conn, rx, &thread_probe))
            .map_err(|e| Error::Storage(format!("cannot start the writer thread: {e}")))?;
        let _ = probe.thread.set(thread.thread().clone());
        Ok(Self {
            handle: WriterHandle { tx, probe },
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Commits every job queued so far, then stops the thread. Jobs queued afterwards fail.
    pub fn shutdown(mut self) {
        let _ = self.handle.send(Message::Shutdown);
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
        self.send(Message::Job(job))
            .map_err(|_| Error::Storage("storage is shutting down".into()))?;
        reply_rx.await.map_err(|_| {
            Error::Storage("the write was not committed (storage unavailable)".into())
        })?
    }

    /// Queues an audit event. It is committed with the next batch; nobody waits for it,
    /// which is why recording a validation never slows the validation down.
    pub fn record(&self, event: AuditEvent) {
        if self.send(Message::Audit(event)).is_err() {
            tracing::warn!("audit event dropped: storage is shutting down");
        }
    }

    fn send(&self, message: Message) -> Result<(), ()> {
        let urgent = !matches!(message, Message::Audit(_));
        self.probe.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(message).map_err(|_| {
            self.probe.taken();
        })?;
        // An audit event never wakes a lingering writer (that is the point of lingering);
        // somebody waits for a job. Unparking a thread that is not parked costs an atomic.
        if urgent {
            self.probe.urgent.store(true, Ordering::Release);
            if let Some(thread) = self.probe.thread.get() {
                thread.unpark();
            }
        }
        Ok(())
    }

    /// Jobs and audit events queued and not yet taken into a transaction.
    pub fn queue_depth(&self) -> u64 {
        self.probe.queued.load(Ordering::Relaxed).max(0) as u64
    }

    /// Tells `observer` about every later transaction (once per writer; a second call is
    /// ignored).
    pub fn observe(&self, observer: Arc<dyn BatchObserver>) {
        let _ = self.probe.observer.set(observer);
    }
}

fn run(conn: Connection, mut rx: mpsc::UnboundedReceiver<Message>, probe: &Probe) {
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        // Cleared before the queue is drained: a job queued after this point sets it again and
        // ends the next linger; one queued before is taken below.
        probe.urgent.store(false, Ordering::Release);
        probe.taken();
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
            probe.taken();
        }
        if !stopping && batch.iter().all(|m| matches!(m, Message::Audit(_))) {
            stopping = linger_for_audit(&mut rx, &mut batch, probe);
        }
        if !batch.is_empty() {
            let messages = batch.len();
            let started = Instant::now();
            let ok = commit_batch(&conn, batch);
            if let Some(observer) = probe.observer.get() {
                observer.committed(messages, started.elapsed(), ok);
            }
        }
    }
    // Anything sent after Shutdown is refused by the closed channel.
    rx.close();
    // Dropping a job unrun drops its reply sender: its caller gets "not committed".
    while rx.try_recv().is_ok() {}
}

/// A batch of audit events only has nobody waiting for it, so the writer gathers more for up to
/// [`AUDIT_LINGER`] before committing: under a flood of validations, a hundred commits a second
/// rather than thousands (each an fsync, and each making every reader drop its page cache and
/// its memory map of the database). The writer sleeps through the linger, where it used to wake
/// every millisecond to poll: audit events queue without waking it, and a job (or Shutdown)
/// unparks it, so a write somebody waits for is not delayed by the linger at all. Returns true
/// if Shutdown arrived.
fn linger_for_audit(
    rx: &mut mpsc::UnboundedReceiver<Message>,
    batch: &mut Vec<Message>,
    probe: &Probe,
) -> bool {
    let deadline = Instant::now() + AUDIT_LINGER;
    loop {
        let now = Instant::now();
        if now >= deadline || probe.urgent.load(Ordering::Acquire) {
            break;
        }
        std::thread::park_timeout(deadline - now);
    }
    while batch.len() < MAX_BATCH {
        let message = rx.try_recv();
        if message.is_ok() {
            probe.taken();
        }
        match message {
            Ok(Message::Shutdown) => return true,
            Ok(m) => batch.push(m),
            Err(_) => break,
        }
    }
    false
}

/// Runs one statement without parameters through the connection's statement cache: the
/// writer opens and closes a transaction and a savepoint per job, and parsing those again each
/// time showed in the profile of the key/HWID face.
pub(crate) fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs and commits one batch; true if it committed.
fn commit_batch(conn: &Connection, batch: Vec<Message>) -> bool {
    if let Err(e) = run_cached(conn, "BEGIN IMMEDIATE") {
        let msg = format!("cannot begin a transaction: {e}");
        tracing::error!("{msg}");
        // Dropping the jobs unrun answers each caller "not committed".
        drop(batch);
        return false;
    }
    let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
    // Queued events are counted for the dashboard once per batch, not once per row.
    let mut counts = audit::daily::DailyCounts::default();
    for m in batch {
        match m {
            Message::Audit(event) => match audit::repo::insert_row(conn, &event) {
                Ok(()) => counts.add(event),
                Err(e) => tracing::error!("audit event not recorded: {e}"),
            },
            Message::Job(job) => {
                if let Err(e) = run_cached(conn, "SAVEPOINT job") {
                    tracing::error!("cannot open a savepoint: {e}");
                }
                let (ok, done) = job(conn);
                let undone = if ok {
                    Ok(())
                } else {
                    run_cached(conn, "ROLLBACK TO job")
                };
                if let Err(e) = undone.and_then(|()| run_cached(conn, "RELEASE job")) {
                    tracing::error!("cannot close a savepoint: {e}");
                }
                completions.push(done);
            }
            Message::Shutdown => {}
        }
    }
    if let Err(e) = counts.write(conn) {
        tracing::error!("audit events not counted for the dashboard: {e}");
    }
    let committed = run_cached(conn, "COMMIT").map_err(|e| format!("commit failed: {e}"));
    if let Err(e) = &committed {
        tracing::error!("{e}");
        let _ = conn.execute_batch("ROLLBACK");
    }
    let ok = committed.is_ok();
    for done in completions {
        done(committed.clone());
    }
    ok
}
