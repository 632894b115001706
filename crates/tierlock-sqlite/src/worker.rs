//! The database thread: one per provider, owning its one connection.
//!
//! rusqlite is synchronous, so no database call runs on an async worker. Each provider starts
//! one thread (`tierlock-sqlite`) that owns the connection and does, in this order of arrival,
//! the jobs the async side sends it over a channel — acquire, release, mark and unmark a wait —
//! and, between jobs, the timed work: renewing held leases every `ttl / 3`, refreshing this
//! process's waiter rows, and scanning for other processes' waiter rows while the manager
//! wants to know. Why one thread rather than `spawn_blocking`:
//!
//! * SQLite lets one connection write at a time anyway (the database has one write lock), so a
//!   second thread in this process would only wait for the first;
//! * one connection means its statement cache stays warm and nothing is reopened;
//! * jobs run in the order they were sent: a lock dropped and taken again by this process is
//!   released before it is acquired again, without a latch;
//! * a held lock is released by *sending* a job, which needs no runtime: a guard dropped
//!   after its runtime is gone still frees its row at once;
//! * the thread needs no runtime for its timers either (`recv_timeout`), so renewals go on
//!   while the application's runtime is busy.
//!
//! Cancellation: every acquire and mark carries a cancel flag that its future sets when it is
//! dropped. A job whose flag is set before it starts is skipped; a busy wait stops when it is
//! set (see `busy.rs`); a job that commits anyway and finds nobody to take its result undoes it
//! at once, before the next job; and a result that lies unread in a channel dropped later is a
//! handle whose `Drop` sends the release (or unmark) job. No row is ever left owned by a lease
//! nobody renews.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tierlock_core::{LockName, LostSignal};
use tokio::sync::oneshot;

use crate::busy;
use crate::clock::{HostClock, nanos};
use crate::error::SqliteError;
use crate::lock::{SqliteLock, Waiting};

/// The share of its `ttl` after the start of its last renewal at which a holder counts its
/// lease as lost if it could not renew meanwhile. Other processes take a lease over only after
/// its full `ttl`, measured on the same clock (see `clock.rs`), from a moment no earlier than
/// that start: the last tenth is the time to tell the code that holds the lock.
const EXPIRY_NUM: u32 = 9;
const EXPIRY_DEN: u32 = 10;

/// How often a holder that the manager asked about requests looks for waiter rows (at most).
const REQUEST_SCAN: Duration = Duration::from_millis(50);

/// What a provider's thread needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) path: PathBuf,
    pub(crate) ttl: Duration,
    pub(crate) busy_timeout: Duration,
    pub(crate) clock: HostClock,
    pub(crate) host: String,
    pub(crate) pid: u32,
}

/// Where a job's result goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, SqliteError>>;

/// A job for the database thread.
pub(crate) enum Job {
    /// One attempt at a lease.
    Acquire {
        name: LockName,
        cancel: Arc<AtomicBool>,
        reply: Reply<Option<SqliteLock>>,
    },
    /// Delete a held lease's row.
    Release { id: u64, reply: Option<Reply<()>> },
    /// A held lease now wants request scans: wake up to start them.
    Watch,
    /// Insert a waiter row for this process.
    Mark {
        name: LockName,
        cancel: Arc<AtomicBool>,
        reply: Reply<Waiting>,
    },
    /// Delete a waiter row.
    Unmark { id: u64 },
}

/// The sending side of a provider's thread, shared by the provider and every lock and mark it
/// handed out. The thread ends once all of them are gone (after doing the jobs they sent).
#[derive(Debug)]
pub(crate) struct Handle {
    tx: Sender<Job>,
    path: PathBuf,
}

impl Handle {
    /// Queues `job` (never blocks).
    pub(crate) fn send(&self, job: Job) -> Result<(), SqliteError> {
        self.tx.send(job).map_err(|_| self.stopped())
    }

    /// The error for a thread that is gone.
    pub(crate) fn stopped(&self) -> SqliteError {
        SqliteError::Stopped {
            path: self.path.clone(),
        }
    }
}

/// What a held lease shares between the database thread and its [`SqliteLock`].
#[derive(Debug)]
pub(crate) struct LeaseShared {
    pub(crate) token: u64,
    pub(crate) lost: LostSignal,
    /// The last request scan's finding.
    pub(crate) requested: AtomicBool,
    /// Set by the first `is_requested`: from then on the thread scans for this name's waiters.
    pub(crate) watch: AtomicBool,
}

/// Starts the database thread on `conn`.
pub(crate) fn start(conn: Connection, settings: Settings) -> Result<Arc<Handle>, SqliteError> {
    let (tx, rx) = mpsc::channel();
    let handle = Arc::new(Handle {
        tx,
        path: settings.path.clone(),
    });
    let worker = Worker {
        conn,
        handle: Arc::downgrade(&handle),
        renew_every: settings.ttl / 3,
        retry_every: (settings.ttl / 20).max(Duration::from_millis(1)),
        scan_every: (settings.ttl / 3).min(REQUEST_SCAN),
        settings,
        next_id: 0,
        held: HashMap::new(),
        marks: HashMap::new(),
        next_scan: Instant::now(),
    };
    std::thread::Builder::new()
        .name("tierlock-sqlite".to_owned())
        .spawn(move || worker.run(rx))
        .map_err(|_| handle.stopped())?;
    Ok(handle)
}

struct Worker {
    conn: Connection,
    settings: Settings,
    /// To hand out locks and marks; never keeps the thread alive by itself.
    handle: Weak<Handle>,
    renew_every: Duration,
    retry_every: Duration,
    scan_every: Duration,
    next_id: u64,
    held: HashMap<u64, Held>,
    marks: HashMap<u64, Mark>,
    next_scan: Instant,
}

/// A lease this thread renews.
struct Held {
    name: LockName,
    owner: String,
    shared: Arc<LeaseShared>,
    next_renewal: Instant,
    /// From then on, unless renewed, the lease counts as lost.
    lost_at: Instant,
    /// The lost signal fired: no more renewals.
    lost: bool,
}

/// A waiter row this thread refreshes.
struct Mark {
    name: LockName,
    waiter: String,
    next_refresh: Instant,
}

/// A lease row as read.
struct Row {
    token: i64,
    clock: String,
    expires_ns: i64,
    expires_at: f64,
}

const READ_LEASE: &str =
    "SELECT token, clock, expires_ns, expires_at FROM tierlock_leases WHERE name = ?1";

/// Whether a waiter row is live, with `?2` the reader's clock domain and `?3` its now (see
/// `HostClock::is_live`, which this mirrors).
const WAITER_LIVE: &str = "((clock = ?2 AND expires_ns > ?3)
      OR (clock <> ?2 AND NOT (clock LIKE 'boot:%' AND ?2 LIKE 'boot:%')
          AND expires_at > unixepoch('subsec')))";

/// Polls `rx` until a job arrives or `until` passes (then `None`: block on it instead).
fn poll_until(rx: &Receiver<Job>, until: Instant) -> Option<Job> {
    while Instant::now() < until {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(std::sync::mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
        }
    }
    None
}

/// How long the thread polls its channel after a job before it goes to sleep on it. A caller
/// that locks and unlocks in a loop sends its next job within microseconds; a sleeping thread
/// takes tens of microseconds to wake (on the 2-vCPU VM the benchmarks ran on, a round trip to
/// a blocked thread cost 78 µs, to one polling for 200 µs 7 µs). Polling burns at most this
/// much CPU per job, and none while the provider is idle.
const SPIN_AFTER_JOB: Duration = Duration::from_micros(200);

impl Worker {
    fn run(mut self, rx: Receiver<Job>) {
        let mut spin_until: Option<Instant> = None;
        loop {
            self.tick();
            let job = match spin_until.take().and_then(|until| poll_until(&rx, until)) {
                Some(job) => Ok(job),
                None => match self.next_due() {
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                },
            };
            if job.is_ok() {
                spin_until = Some(Instant::now() + SPIN_AFTER_JOB);
            }
            match job {
                Ok(job) => self.job(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn job(&mut self, job: Job) {
        match job {
            Job::Acquire {
                name,
                cancel,
                reply,
            } => {
                if cancel.load(Ordering::Acquire) || reply.is_closed() {
                    return;
                }
                let result = self.acquire(&name, &cancel);
                if let Err(Ok(Some(lock))) = reply.send(result) {
                    // Committed after its future was dropped: release it before any job that
                    // was sent meanwhile (a retry of the same name by the same caller, say).
                    let id = lock.disarm();
                    let _ = self.release(id);
                }
            }
            Job::Release { id, reply } => {
                let result = self.release(id);
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Job::Watch => {}
            Job::Mark {
                name,
                cancel,
                reply,
            } => {
                if cancel.load(Ordering::Acquire) || reply.is_closed() {
                    return;
                }
                let result = self.mark(&name, &cancel);
                if let Err(Ok(waiting)) = reply.send(result) {
                    let id = waiting.disarm();
                    self.unmark(id);
                }
            }
            Job::Unmark { id } => self.unmark(id),
        }
    }

    /// The latest moment a busy wait may last to: the busy timeout, cut short where a held
    /// lease must be judged lost (a wait must not delay a lost signal).
    fn busy_deadline(&self) -> Instant {
        let limit = Instant::now() + self.settings.busy_timeout;
        self.held
            .values()
            .filter(|held| !held.lost)
            .map(|held| held.lost_at)
            .fold(limit, Instant::min)
    }

    fn error(
        &self,
        operation: &'static str,
        name: Option<&LockName>,
        scope: &busy::Scope,
        err: rusqlite::Error,
    ) -> SqliteError {
        let path = &self.settings.path;
        if matches!(err, rusqlite::Error::QueryReturnedNoRows) {
            // The fence row: the only query here that must return one.
            return SqliteError::Corrupt {
                path: path.clone(),
                detail: "the row of tierlock_fence is missing".to_owned(),
            };
        }
        SqliteError::from_sqlite(
            path,
            operation,
            name.map(LockName::as_str),
            scope.elapsed(),
            err,
        )
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction: committed if it succeeds, rolled back if not.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let conn = &self.conn;
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let result = f(conn).and_then(|value| {
            conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(value)
        });
        if result.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        result
    }

    fn read_lease(&self, name: &LockName) -> rusqlite::Result<Option<Row>> {
        self.conn
            .prepare_cached(READ_LEASE)?
            .query_row([name.as_str()], |row| {
                Ok(Row {
                    token: row.get(0)?,
                    clock: row.get(1)?,
                    expires_ns: row.get(2)?,
                    expires_at: row.get(3)?,
                })
            })
            .optional()
    }

    fn is_live(&self, row: &Row) -> bool {
        self.settings
            .clock
            .is_live(&row.clock, row.expires_ns, row.expires_at)
    }

    /// One attempt at `name`: a read first (no write lock while the lease stands, so polling
    /// waiters cost a holder nothing), then, if it looks free or expired, the take-over in a
    /// write transaction that checks again.
    fn acquire(
        &mut self,
        name: &LockName,
        cancel: &Arc<AtomicBool>,
    ) -> Result<Option<SqliteLock>, SqliteError> {
        let scope = busy::Scope::new(self.busy_deadline(), Some(Arc::clone(cancel)));
        let peek = self
            .read_lease(name)
            .map_err(|err| self.error("acquire", Some(name), &scope, err))?;
        if peek.as_ref().is_some_and(|row| self.is_live(row)) {
            return Ok(None);
        }
        let started = Instant::now();
        let owner = format!("{:016x}", random_u64());
        let settings = &self.settings;
        let ttl_ms = i64::try_from(settings.ttl.as_millis()).unwrap_or(i64::MAX);
        let token = self
            .write(|conn| {
                let row = self.read_lease(name)?;
                if row.as_ref().is_some_and(|row| self.is_live(row)) {
                    return Ok(None);
                }
                let previous = row.map_or(0, |row| row.token);
                let token: i64 = conn
                    .prepare_cached(
                        "UPDATE tierlock_fence SET last = max(last, ?1) + 1 WHERE id = 1 \
                         RETURNING last",
                    )?
                    .query_row([previous], |row| row.get(0))?;
                let expires_ns = settings.clock.now_ns().saturating_add(nanos(settings.ttl));
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO tierlock_leases
                       (name, token, owner, host, pid, ttl_ms, clock, expires_ns,
                        acquired_at, renewed_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,
                        unixepoch('subsec'), unixepoch('subsec'),
                        unixepoch('subsec') + ?6 / 1000.0)",
                )?
                .execute(params![
                    name.as_str(),
                    token,
                    owner,
                    settings.host,
                    settings.pid,
                    ttl_ms,
                    settings.clock.domain(),
                    expires_ns,
                ])?;
                Ok(Some(token))
            })
            .map_err(|err| self.error("acquire", Some(name), &scope, err))?;
        drop(scope);
        let Some(token) = token else {
            return Ok(None);
        };
        let id = self.next_id;
        self.next_id += 1;
        let shared = Arc::new(LeaseShared {
            token: u64::try_from(token).unwrap_or(0),
            lost: LostSignal::new(),
            requested: AtomicBool::new(false),
            watch: AtomicBool::new(false),
        });
        let ttl = self.settings.ttl;
        self.held.insert(
            id,
            Held {
                name: name.clone(),
                owner,
                shared: Arc::clone(&shared),
                next_renewal: started + self.renew_every,
                lost_at: started + ttl * EXPIRY_NUM / EXPIRY_DEN,
                lost: false,
            },
        );
        match self.handle.upgrade() {
            Some(handle) => Ok(Some(SqliteLock::new(id, shared, handle))),
            None => {
                // The provider and everything it handed out are gone: nobody can hold this.
                let _ = self.release(id);
                Ok(None)
            }
        }
    }

    /// Deletes the lease's row if it is still this lease's.
    fn release(&mut self, id: u64) -> Result<(), SqliteError> {
        let Some(held) = self.held.remove(&id) else {
            return Ok(());
        };
        let scope = busy::Scope::new(self.busy_deadline(), None);
        let deleted = self
            .write(|conn| {
                conn.prepare_cached("DELETE FROM tierlock_leases WHERE name = ?1 AND owner = ?2")?
                    .execute(params![held.name.as_str(), held.owner])
            })
            .map_err(|err| self.error("release", Some(&held.name), &scope, err))?;
        if deleted == 1 {
            return Ok(());
        }
        held.shared.lost.trigger();
        Err(SqliteError::LeaseLost {
            path: self.settings.path.clone(),
            name: held.name.to_string(),
        })
    }

    /// Extends the lease by `ttl` from now, or finds it lost.
    fn renew(&mut self, id: u64) {
        let deadline = self.busy_deadline();
        let Some(held) = self.held.get(&id) else {
            return;
        };
        let started = Instant::now();
        if started >= held.lost_at {
            self.lose(id);
            return;
        }
        let (settings, conn) = (&self.settings, &self.conn);
        let scope = busy::Scope::new(deadline, None);
        let renewed = self.write(|_| {
            let expires_ns = settings.clock.now_ns().saturating_add(nanos(settings.ttl));
            conn.prepare_cached(
                "UPDATE tierlock_leases SET expires_ns = ?3, renewed_at = unixepoch('subsec'),
                        expires_at = unixepoch('subsec') + ttl_ms / 1000.0
                  WHERE name = ?1 AND owner = ?2",
            )?
            .execute(params![held.name.as_str(), held.owner, expires_ns])
        });
        drop(scope);
        let (renew_every, retry_every, ttl) = (self.renew_every, self.retry_every, settings.ttl);
        match renewed {
            Ok(1) => {
                if let Some(held) = self.held.get_mut(&id) {
                    held.next_renewal = started + renew_every;
                    held.lost_at = started + ttl * EXPIRY_NUM / EXPIRY_DEN;
                }
            }
            // The row is gone or another process's: taken over after it expired, or deleted.
            Ok(_) => self.lose(id),
            // Busy, or an I/O error: try again soon, while the lease stands.
            Err(_) => {
                if let Some(held) = self.held.get_mut(&id) {
                    held.next_renewal = Instant::now() + retry_every;
                }
            }
        }
    }

    /// Fires the lost signal of a held lease and stops renewing it (its release still deletes
    /// the row if nobody took it over).
    fn lose(&mut self, id: u64) {
        if let Some(held) = self.held.get_mut(&id) {
            held.lost = true;
            held.shared.lost.trigger();
        }
    }

    /// Inserts a waiter row for `name`, removing the name's expired ones.
    fn mark(&mut self, name: &LockName, cancel: &Arc<AtomicBool>) -> Result<Waiting, SqliteError> {
        let scope = busy::Scope::new(self.busy_deadline(), Some(Arc::clone(cancel)));
        let waiter = format!("{:016x}", random_u64());
        self.write(|conn| {
            let settings = &self.settings;
            let now = settings.clock.now_ns();
            conn.prepare_cached(&format!(
                "DELETE FROM tierlock_waiters WHERE name = ?1 AND NOT {WAITER_LIVE}"
            ))?
            .execute(params![name.as_str(), settings.clock.domain(), now])?;
            self.insert_waiter(conn, name, &waiter)
        })
        .map_err(|err| self.error("mark a waiter", Some(name), &scope, err))?;
        drop(scope);
        let id = self.next_id;
        self.next_id += 1;
        self.marks.insert(
            id,
            Mark {
                name: name.clone(),
                waiter,
                next_refresh: Instant::now() + self.renew_every,
            },
        );
        match self.handle.upgrade() {
            Some(handle) => Ok(Waiting::new(id, handle)),
            None => {
                self.unmark(id);
                Err(SqliteError::Stopped {
                    path: self.settings.path.clone(),
                })
            }
        }
    }

    fn insert_waiter(
        &self,
        conn: &Connection,
        name: &LockName,
        waiter: &str,
    ) -> rusqlite::Result<()> {
        let settings = &self.settings;
        let expires_ns = settings.clock.now_ns().saturating_add(nanos(settings.ttl));
        conn.prepare_cached(
            "INSERT OR REPLACE INTO tierlock_waiters
               (name, waiter, host, pid, clock, expires_ns, since, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, unixepoch('subsec'), unixepoch('subsec') + ?7)",
        )?
        .execute(params![
            name.as_str(),
            waiter,
            settings.host,
            settings.pid,
            settings.clock.domain(),
            expires_ns,
            settings.ttl.as_secs_f64(),
        ])?;
        Ok(())
    }

    /// Extends a waiter row, or inserts it again if it was deleted meanwhile.
    fn refresh(&mut self, id: u64) {
        let Some(mark) = self.marks.get(&id) else {
            return;
        };
        let scope = busy::Scope::new(self.busy_deadline(), None);
        let settings = &self.settings;
        let refreshed = self.write(|conn| {
            let expires_ns = settings.clock.now_ns().saturating_add(nanos(settings.ttl));
            let updated = conn
                .prepare_cached(
                    "UPDATE tierlock_waiters SET expires_ns = ?3,
                            expires_at = unixepoch('subsec') + ?4
                      WHERE name = ?1 AND waiter = ?2",
                )?
                .execute(params![
                    mark.name.as_str(),
                    mark.waiter,
                    expires_ns,
                    settings.ttl.as_secs_f64()
                ])?;
            if updated == 0 {
                self.insert_waiter(conn, &mark.name, &mark.waiter)?;
            }
            Ok(())
        });
        drop(scope);
        let next = if refreshed.is_ok() {
            self.renew_every
        } else {
            self.retry_every
        };
        if let Some(mark) = self.marks.get_mut(&id) {
            mark.next_refresh = Instant::now() + next;
        }
    }

    fn unmark(&mut self, id: u64) {
        let Some(mark) = self.marks.remove(&id) else {
            return;
        };
        let _scope = busy::Scope::new(self.busy_deadline(), None);
        // On failure the row expires after `ttl` by itself.
        let _ = self.write(|conn| {
            conn.prepare_cached("DELETE FROM tierlock_waiters WHERE name = ?1 AND waiter = ?2")?
                .execute(params![mark.name.as_str(), mark.waiter])
        });
    }

    /// Looks for live waiter rows of the held names the manager asks about: reads only.
    fn scan(&mut self) {
        let _scope = busy::Scope::new(self.busy_deadline(), None);
        let settings = &self.settings;
        for held in self.held.values() {
            if held.lost || !held.shared.watch.load(Ordering::Acquire) {
                continue;
            }
            let found = self
                .conn
                .prepare_cached(&format!(
                    "SELECT EXISTS (SELECT 1 FROM tierlock_waiters WHERE name = ?1 AND {WAITER_LIVE})"
                ))
                .and_then(|mut stmt| {
                    stmt.query_row(
                        params![
                            held.name.as_str(),
                            settings.clock.domain(),
                            settings.clock.now_ns()
                        ],
                        |row| row.get::<_, bool>(0),
                    )
                });
            // A failed scan leaves the flag as it was; the next one tries again.
            if let Ok(found) = found {
                held.shared.requested.store(found, Ordering::Release);
            }
        }
    }

    fn watching(&self) -> bool {
        self.held
            .values()
            .any(|held| !held.lost && held.shared.watch.load(Ordering::Acquire))
    }

    /// The timed work that is due: lost checks and renewals, waiter refreshes, request scans.
    fn tick(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, held)| !held.lost && now >= held.next_renewal.min(held.lost_at))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.renew(id);
        }
        let due: Vec<u64> = self
            .marks
            .iter()
            .filter(|(_, mark)| now >= mark.next_refresh)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.refresh(id);
        }
        if now >= self.next_scan && self.watching() {
            self.scan();
            self.next_scan = Instant::now() + self.scan_every;
        }
    }

    /// When [`tick`](Self::tick) has something to do next, if ever.
    fn next_due(&self) -> Option<Instant> {
        let leases = self
            .held
            .values()
            .filter(|held| !held.lost)
            .map(|held| held.next_renewal.min(held.lost_at));
        let marks = self.marks.values().map(|mark| mark.next_refresh);
        let scan = self.watching().then_some(self.next_scan);
        leases.chain(marks).chain(scan).min()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Only leases whose handles still exist can be left (the thread panicked): nobody
        // renews them any more.
        for held in self.held.values() {
            held.shared.lost.trigger();
        }
    }
}

/// A random 64-bit number, different in every call and every process (lease owner and waiter
/// ids; not for cryptography).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::AtomicU64;
    static CALLS: AtomicU64 = AtomicU64::new(0);
    // `RandomState` is seeded from the operating system's random source per process.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}

/// This host's name, as the operating system reports it (a hint for people reading the table).
pub(crate) fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    raw.trim().chars().take(255).collect()
}
