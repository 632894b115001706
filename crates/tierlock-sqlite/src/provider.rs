//! [`SqliteProvider`]: the [`Provider`] implementation.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tierlock_core::provider::BoxFuture;
use tierlock_core::{BoxError, ExternalLock, LockName, Provider, RequestMark, WaitStrategy};
use tierlock_file::Mount;
use tokio::sync::oneshot;

use crate::builder::SqliteProviderBuilder;
use crate::error::SqliteError;
use crate::worker::{Handle, Job};

/// A [`Provider`] that keeps leases in an SQLite database file, for processes on one host.
///
/// One provider per database per process is enough; share it (`Arc`, or one
/// [`LockManager`](tierlock_core::LockManager) cloned app-wide). Each provider has one
/// database thread and one connection. Providers on the same file, in this process or others,
/// exclude each other. See the [crate documentation](crate).
///
/// ```
/// use std::time::Duration;
/// use tierlock_core::LockManager;
/// use tierlock_sqlite::SqliteProvider;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let tmp = tempfile::tempdir()?;
/// # let db = tmp.path().join("locks.db");
/// let a = LockManager::new(SqliteProvider::new(&db)?);
/// let b = LockManager::new(SqliteProvider::new(&db)?); // as if in another process
///
/// let held = a.lock("job:nightly", Duration::from_secs(5)).await?;
/// assert!(b.try_lock("job:nightly").await?.is_none());
/// let first = held.fencing_token().unwrap();
/// held.release().await?;
/// let taken = b.try_lock("job:nightly").await?.expect("free");
/// assert!(taken.fencing_token().unwrap() > first);
/// # Ok(())
/// # }
/// ```
pub struct SqliteProvider {
    pub(crate) handle: Arc<Handle>,
    pub(crate) path: PathBuf,
    pub(crate) ttl: Duration,
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    pub(crate) busy_timeout: Duration,
    pub(crate) durable: bool,
    pub(crate) mount: Mount,
}

impl SqliteProvider {
    /// The default lease time to live, 10 s: a process that dies holding a lock keeps it from
    /// the others for at most that long (plus a poll), while a live holder renews every 3.3 s
    /// and survives a 6 s stall (a stopped process, a disk that hangs) before it counts its
    /// lease as lost.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

    /// The default busy timeout, 1 s (see [`SqliteProviderBuilder::busy_timeout`]).
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

    /// A provider on the database file `path` with default settings, creating the file and its
    /// schema if it does not exist (its directory must). A relative path is made absolute
    /// against the current directory now.
    ///
    /// # Errors
    ///
    /// Those of [`SqliteProviderBuilder::build`]: among others
    /// [`SqliteError::UnsafeMount`] for a file on a network share,
    /// [`SqliteError::NotADatabase`] / [`SqliteError::Foreign`] / [`SqliteError::Corrupt`] for
    /// a file that is not a sound tierlock database, [`SqliteError::ReadOnly`].
    ///
    /// ```
    /// use tierlock_sqlite::{SqliteError, SqliteProvider};
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = SqliteProvider::new(tmp.path().join("locks.db"))?;
    /// println!("{provider:?}"); // the file, the mount it is on, the settings
    ///
    /// let text = tmp.path().join("notes.txt");
    /// std::fs::write(&text, "not a database, and long enough to have a header".repeat(4))?;
    /// assert!(matches!(SqliteProvider::new(&text), Err(SqliteError::NotADatabase { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        Self::builder(path).build()
    }

    /// A builder to set the time to live, the polling back-off, the busy timeout, durability,
    /// and (dangerous) unknown mounts.
    pub fn builder(path: impl AsRef<Path>) -> SqliteProviderBuilder {
        SqliteProviderBuilder::new(path.as_ref())
    }

    /// The database file, as an absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lease time to live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The mount the database's directory lives on, as classified when the provider was built.
    pub fn mount(&self) -> &Mount {
        &self.mount
    }

    /// Sends a job made with a fresh cancel flag and waits for its reply. Dropping the future
    /// sets the flag (see `worker.rs`).
    async fn ask<T>(
        &self,
        job: impl FnOnce(Arc<AtomicBool>, oneshot::Sender<Result<T, SqliteError>>) -> Job,
    ) -> Result<T, SqliteError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(Arc::clone(&cancel));
        let (tx, rx) = oneshot::channel();
        self.handle.send(job(cancel, tx))?;
        rx.await.map_err(|_| self.handle.stopped())?
    }
}

/// Sets the flag when dropped: the future that owns it is done or gone.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Provider for SqliteProvider {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    /// SQLite cannot wait for a row: the manager polls.
    fn wait_strategy(&self) -> WaitStrategy {
        WaitStrategy::Poll {
            initial: self.initial,
            max: self.max,
        }
    }

    /// One attempt, whatever the deadline (the manager polls): a read of the name's row, and
    /// only if it is free or expired a `BEGIN IMMEDIATE` transaction that takes it.
    fn acquire<'a>(
        &'a self,
        name: &'a LockName,
        _deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn ExternalLock>>, BoxError>> {
        Box::pin(async move {
            let lock = self
                .ask(|cancel, reply| Job::Acquire {
                    name: name.clone(),
                    cancel,
                    reply,
                })
                .await?;
            Ok(lock.map(|lock| Box::new(lock) as Box<dyn ExternalLock>))
        })
    }

    /// Inserts a row in `tierlock_waiters`, refreshed every `ttl / 3` until the mark is dropped.
    fn request<'a>(
        &'a self,
        name: &'a LockName,
    ) -> BoxFuture<'a, Result<Option<RequestMark>, BoxError>> {
        Box::pin(async move {
            let waiting = self
                .ask(|cancel, reply| Job::Mark {
                    name: name.clone(),
                    cancel,
                    reply,
                })
                .await?;
            Ok(Some(RequestMark::new(waiting)))
        })
    }
}

impl fmt::Debug for SqliteProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteProvider")
            .field("path", &self.path)
            .field("mount", &format_args!("{}", self.mount))
            .field("ttl", &self.ttl)
            .field("poll", &(self.initial, self.max))
            .field("busy_timeout", &self.busy_timeout)
            .field("durable", &self.durable)
            .finish()
    }
}
