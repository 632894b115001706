//! The status listing: the leases that stand right now in a lock database
//! ([`held_locks`], [`SqliteProvider::held_locks`], `tierlock status --url sqlite:…`).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};
use tierlock_core::HeldLock;

use crate::clock::HostClock;
use crate::error::SqliteError;
use crate::provider::SqliteProvider;
use crate::schema::{APPLICATION_ID, SCHEMA_VERSION};

/// How long the listing waits for a writer's lock on the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const OPERATION: &str = "status";

impl SqliteProvider {
    /// The leases that stand right now in this provider's database, by any process on the
    /// host: the same as [`held_locks`] on [`path`](Self::path).
    ///
    /// # Errors
    ///
    /// Those of [`held_locks`].
    pub fn held_locks(&self) -> Result<Vec<HeldLock>, SqliteError> {
        held_locks(&self.path)
    }
}

/// The leases that stand right now in the lock database at `path`, sorted by name: rows of
/// `tierlock_leases` that have not expired, judged the way an acquisition judges them (the
/// host's monotonic clock of the holder's boot, else the wall clock). Opens its own read-only
/// connection (a short read transaction; it blocks the calling thread for that long, waiting
/// at most 5 s for a writer), creates nothing and changes nothing: a file that does not exist,
/// or an empty one, has no held locks.
///
/// Each [`HeldLock`] has the exact **name** (the row's key, also its **key**), the **holder**
/// (`pid N on HOST`), the **fencing token**, the time the lease has left (**expires_in**; a
/// live holder renews it every `ttl / 3`) and the number of live waiter marks (**waiters**).
///
/// ```
/// use std::time::Duration;
/// use tierlock_core::LockManager;
/// use tierlock_sqlite::{SqliteProvider, status};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let tmp = tempfile::tempdir()?;
/// let path = tmp.path().join("locks.db"); // e.g. /var/lib/app/locks.db
/// let locks = LockManager::new(SqliteProvider::new(&path)?);
/// let guard = locks.lock("job:nightly", Duration::from_secs(5)).await?;
///
/// let held = status::held_locks(&path)?;
/// assert_eq!(held[0].name.as_deref(), Some("job:nightly"));
/// assert_eq!(held[0].fencing_token, guard.fencing_token());
/// guard.release().await?;
/// assert!(status::held_locks(&path)?.is_empty());
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`SqliteError::Foreign`] for another application's database,
/// [`SqliteError::SchemaVersion`] for a newer schema, [`SqliteError::Open`],
/// [`NotADatabase`](SqliteError::NotADatabase), [`Busy`](SqliteError::Busy) or
/// [`Database`](SqliteError::Database) if it cannot be read.
pub fn held_locks(path: &Path) -> Result<Vec<HeldLock>, SqliteError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let started = Instant::now();
    let error = |source| SqliteError::from_sqlite(path, OPERATION, None, started.elapsed(), source);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|source| SqliteError::Open {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
    let application: i64 = conn
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .map_err(error)?;
    if application != APPLICATION_ID {
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
                [],
                |row| row.get(0),
            )
            .map_err(error)?;
        if application == 0 && tables == 0 {
            return Ok(Vec::new());
        }
        return Err(SqliteError::Foreign {
            path: path.to_path_buf(),
            detail: format!("application_id {application:#x}, {tables} tables"),
        });
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(error)?;
    if version != SCHEMA_VERSION {
        return Err(SqliteError::SchemaVersion {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    list(&conn, &HostClock::detect()).map_err(error)
}

fn list(conn: &Connection, clock: &HostClock) -> rusqlite::Result<Vec<HeldLock>> {
    // One read transaction: leases and waiter marks from the same snapshot.
    let tx = conn.unchecked_transaction()?;
    let mut waiters =
        tx.prepare("SELECT clock, expires_ns, expires_at FROM tierlock_waiters WHERE name = ?1")?;
    let mut leases = tx.prepare(
        "SELECT name, token, host, pid, clock, expires_ns, expires_at \
           FROM tierlock_leases ORDER BY name",
    )?;
    let rows = leases.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, i64>(5)?,
            row.get::<_, f64>(6)?,
        ))
    })?;
    let mut held = Vec::new();
    for row in rows {
        let (name, token, host, pid, domain, expires_ns, expires_at) = row?;
        if !clock.is_live(&domain, expires_ns, expires_at) {
            continue;
        }
        let marks = waiters.query_map([&name], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, f64>(2)?,
            ))
        })?;
        let mut waiting = 0u64;
        for mark in marks {
            let (domain, expires_ns, expires_at) = mark?;
            if clock.is_live(&domain, expires_ns, expires_at) {
                waiting += 1;
            }
        }
        let holder = if host.is_empty() {
            format!("pid {pid}")
        } else {
            format!("pid {pid} on {host}")
        };
        let mut lock = HeldLock::new(name.clone())
            .with_name(name)
            .with_holder(holder)
            .with_waiters(waiting)
            .with_expires_in(left(clock, &domain, expires_ns, expires_at));
        if let Ok(token) = u64::try_from(token) {
            lock = lock.with_fencing_token(token);
        }
        held.push(lock);
    }
    Ok(held)
}

/// What a live lease has left: by its own clock when it is this host's, else by the wall clock.
fn left(clock: &HostClock, domain: &str, expires_ns: i64, expires_at: f64) -> Duration {
    if domain == clock.domain() {
        let ns = expires_ns.saturating_sub(clock.now_ns());
        return Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    Duration::try_from_secs_f64(expires_at - now).unwrap_or(Duration::ZERO)
}
