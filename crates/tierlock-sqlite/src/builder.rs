//! [`SqliteProviderBuilder`]: how a provider is set up, and the checks made before the
//! database is touched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tierlock_file::{Mount, MountClass};

use crate::clock::HostClock;
use crate::error::SqliteError;
use crate::provider::SqliteProvider;
use crate::schema::{self, Durability};
use crate::worker::{self, Settings};

/// The accepted lease times to live.
const TTL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(86_400);

/// Settings for a [`SqliteProvider`]; from [`SqliteProvider::builder`].
///
/// ```
/// use std::time::Duration;
/// use tierlock_sqlite::SqliteProvider;
///
/// # let tmp = tempfile::tempdir()?;
/// let provider = SqliteProvider::builder(tmp.path().join("locks.db"))
///     .ttl(Duration::from_secs(30))          // a crashed holder blocks a name this long
///     .busy_timeout(Duration::from_secs(2))  // patience with another program's transaction
///     .build()?;
/// assert_eq!(provider.ttl(), Duration::from_secs(30));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SqliteProviderBuilder {
    path: PathBuf,
    ttl: Duration,
    initial: Duration,
    max: Duration,
    busy_timeout: Duration,
    durable: bool,
    allow_unknown_mount: bool,
}

impl SqliteProviderBuilder {
    pub(crate) fn new(path: &Path) -> Self {
        SqliteProviderBuilder {
            path: path.to_path_buf(),
            ttl: SqliteProvider::DEFAULT_TTL,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(8),
            busy_timeout: SqliteProvider::DEFAULT_BUSY_TIMEOUT,
            durable: false,
            allow_unknown_mount: false,
        }
    }

    /// How long a lease stands without renewal (default
    /// [`SqliteProvider::DEFAULT_TTL`], 10 s; 10 ms to 1 day). The holder renews every
    /// `ttl / 3` and counts its lease as lost once `9/10 · ttl` passed without a renewal; a
    /// process that dies (or is stopped) keeps the name from others for up to `ttl`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_sqlite::SqliteProvider;
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = SqliteProvider::builder(tmp.path().join("locks.db"))
    ///     .ttl(Duration::from_secs(60)) // holders that may be paused for long
    ///     .build()?;
    /// assert_eq!(provider.ttl(), Duration::from_secs(60));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The polling back-off while waiting for a lock held elsewhere: the first pause, doubling
    /// up to `max` (defaults 1 ms and 8 ms). A poll is one indexed read that takes no lock
    /// a holder could wait for.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_sqlite::SqliteProvider;
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = SqliteProvider::builder(tmp.path().join("locks.db"))
    ///     .poll(Duration::from_millis(5), Duration::from_millis(100)) // fewer reads
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll(mut self, initial: Duration, max: Duration) -> Self {
        self.initial = initial;
        self.max = max.max(initial);
        self
    }

    /// The longest one database operation waits for the database's write lock while another
    /// connection holds it (default [`SqliteProvider::DEFAULT_BUSY_TIMEOUT`], 1 s), after which
    /// it fails with [`SqliteError::Busy`]. tierlock's own transactions hold that lock for tens
    /// of microseconds; a longer wait means another program keeps a transaction open on the
    /// file.
    ///
    /// Each wait is also cut short where it would delay a held lease's lost signal, and ends at
    /// once when the acquisition that started it is dropped. The manager makes each polled
    /// attempt with a deadline that has already passed, so a wait is bounded by this setting,
    /// not by the caller's remaining budget: a `lock(name, timeout)` can overrun `timeout` by
    /// up to `busy_timeout`, and only while another program holds the write lock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_sqlite::SqliteProvider;
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = SqliteProvider::builder(tmp.path().join("locks.db"))
    ///     .busy_timeout(Duration::from_secs(5)) // a reporting tool reads the table at length
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// `true`: every commit is flushed to the disk (`PRAGMA synchronous = FULL`), so that even
    /// after a power loss or a kernel crash a fencing token is never handed out twice. The
    /// default, `synchronous = NORMAL` in WAL mode, survives any crash of a *process*, but a
    /// power loss may roll back the last commits — leases held by processes that died with the
    /// machine, and the fencing counter by as much. An fsync per acquisition and release costs
    /// milliseconds on most disks.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_sqlite::SqliteProvider;
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = SqliteProvider::builder(tmp.path().join("locks.db"))
    ///     .durable(true) // fencing tokens survive a power loss
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// **Dangerous.** `true` accepts a database on a mount tierlock does not recognise
    /// ([`MountClass::Unknown`]: FUSE file systems such as bindfs, 9p, virtiofs; and every
    /// mount on platforms other than Linux and Windows, where the mount is not detected).
    ///
    /// SQLite's locking and its WAL mode's shared memory work only where every process sees one
    /// kernel's view of the file. Allow an unknown mount only if you know it is a local file
    /// system of this host (or that all processes using the database run on the host that
    /// serves it). Network file systems are refused whatever this says: SQLite's documentation
    /// warns that its locking is unreliable there, and two hosts would both "hold" a lock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_sqlite::SqliteProvider;
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// // Only for a directory known to be a local file system of this host (here a temporary one).
    /// let provider = SqliteProvider::builder(tmp.path().join("locks.db"))
    ///     .allow_unknown_mount(true)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allow_unknown_mount(mut self, allow: bool) -> Self {
        self.allow_unknown_mount = allow;
        self
    }

    /// Checks the mount of the database's directory, opens the database (creating the file and
    /// the schema on first use), checks it, and starts the provider's database thread.
    ///
    /// This does blocking file I/O, and may wait up to the busy timeout if another process is
    /// creating the same database: call it at start-up, or inside `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`SqliteError::InvalidTtl`], [`SqliteError::NoDirectory`],
    /// [`SqliteError::UnsafeMount`], [`SqliteError::Open`], [`SqliteError::ReadOnly`],
    /// [`SqliteError::NotADatabase`], [`SqliteError::Foreign`], [`SqliteError::SchemaVersion`],
    /// [`SqliteError::Corrupt`], [`SqliteError::Busy`], [`SqliteError::Database`].
    ///
    /// ```
    /// use tierlock_sqlite::{SqliteError, SqliteProvider};
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let path = tmp.path().join("locks.db");
    /// let provider = SqliteProvider::builder(&path).build()?; // creates the file and its schema
    /// assert!(path.exists());
    /// let nowhere = SqliteProvider::builder(tmp.path().join("missing/locks.db")).build();
    /// assert!(matches!(nowhere, Err(SqliteError::NoDirectory { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<SqliteProvider, SqliteError> {
        if !TTL_RANGE.contains(&self.ttl) {
            return Err(SqliteError::InvalidTtl { ttl: self.ttl });
        }
        let path = std::path::absolute(&self.path).map_err(|_| SqliteError::NoDirectory {
            path: self.path.clone(),
        })?;
        let dir = path
            .parent()
            .filter(|dir| dir.is_dir())
            .ok_or_else(|| SqliteError::NoDirectory { path: path.clone() })?;
        let mount = Mount::detect(dir);
        if !mount_allowed(mount.class(), self.allow_unknown_mount) {
            return Err(SqliteError::UnsafeMount {
                path,
                class: mount.class(),
                fs_type: mount.fs_type().to_owned(),
                mount_point: mount.mount_point().to_path_buf(),
                reason: mount.reason().to_owned(),
            });
        }
        let durability = Durability { full: self.durable };
        let conn = schema::open(&path, durability, self.busy_timeout)?;
        let settings = Settings {
            path: path.clone(),
            ttl: self.ttl,
            busy_timeout: self.busy_timeout,
            clock: HostClock::detect(),
            host: worker::host_name(),
            pid: std::process::id(),
        };
        let handle = worker::start(conn, settings)?;
        Ok(SqliteProvider {
            handle,
            path,
            ttl: self.ttl,
            initial: self.initial,
            max: self.max,
            busy_timeout: self.busy_timeout,
            durable: self.durable,
            mount,
        })
    }
}

/// Whether a database may live on a mount of class `class`: a local file system always, an
/// unrecognised one only when allowed, a network file system never.
pub(crate) fn mount_allowed(class: MountClass, allow_unknown: bool) -> bool {
    match class {
        MountClass::Local => true,
        MountClass::Unknown => allow_unknown,
        // ForwardsLocks, LocalOnlyLocks, and whatever classes come later: network shares.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_mounts_and_explicitly_allowed_unknown_ones() {
        use MountClass::*;
        for allow in [false, true] {
            assert!(mount_allowed(Local, allow));
            assert!(
                !mount_allowed(ForwardsLocks, allow),
                "never a network share"
            );
            assert!(
                !mount_allowed(LocalOnlyLocks, allow),
                "never a network share"
            );
            assert_eq!(mount_allowed(Unknown, allow), allow);
        }
    }

    #[test]
    fn the_refusal_names_the_mount() {
        let err = SqliteError::UnsafeMount {
            path: PathBuf::from("/mnt/share/locks.db"),
            class: MountClass::ForwardsLocks,
            fs_type: "nfs4".to_owned(),
            mount_point: PathBuf::from("/mnt/share"),
            reason: "nfs4 forwards locks to the server".to_owned(),
        };
        let text = err.to_string();
        for part in [
            "/mnt/share/locks.db",
            "nfs4",
            "at /mnt/share",
            "forwards-locks",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        assert!(
            text.contains("not reliable on network file systems"),
            "{text}"
        );
        let err = SqliteError::UnsafeMount {
            path: PathBuf::from("/tmp/rig/hostA/locks.db"),
            class: MountClass::Unknown,
            fs_type: "fuse".to_owned(),
            mount_point: PathBuf::from("/tmp/rig/hostA"),
            reason: "fuse from /x does not name its daemon".to_owned(),
        };
        assert!(
            err.to_string().contains("allow_unknown_mount(true)"),
            "{err}"
        );
    }
}
