//! The SQLite provider's error type.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::ErrorCode;
use tierlock_file::MountClass;

/// An error of the [`SqliteProvider`](crate::SqliteProvider).
///
/// Construction errors come from [`SqliteProviderBuilder::build`](crate::SqliteProviderBuilder::build)
/// (and [`SqliteProvider::new`](crate::SqliteProvider::new)); the others from the
/// [`Provider`](tierlock_core::Provider) methods, boxed inside
/// [`LockError::Provider`](tierlock_core::LockError::Provider): get them back with
/// `downcast_ref::<SqliteError>()` on its `source`.
///
/// "The lock is held elsewhere" is never an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The database would live on a mount where SQLite's locking cannot be trusted: a network
    /// file system (whether or not it forwards locks, SQLite's own documentation warns that its
    /// locking is unreliable there, and WAL mode needs shared memory that only one host sees),
    /// or a mount tierlock does not recognise. Nothing was created.
    ///
    /// [`MountClass::Unknown`] can be allowed with
    /// [`allow_unknown_mount`](crate::SqliteProviderBuilder::allow_unknown_mount); network mounts
    /// cannot.
    #[error(
        "refusing to keep the lock database {} on {fs_type} mounted at {} ({class} mount: {reason}){}",
        path.display(),
        mount_point.display(),
        if *class == MountClass::Unknown {
            "; if it is a local disk, allow it with allow_unknown_mount(true)"
        } else {
            "; SQLite's locking is not reliable on network file systems"
        }
    )]
    UnsafeMount {
        /// The database file.
        path: PathBuf,
        /// How the mount was classified.
        class: MountClass,
        /// The file system type, e.g. `nfs4`, `cifs` or `fuse` (empty if unknown).
        fs_type: String,
        /// Where that file system is mounted (empty if unknown).
        mount_point: PathBuf,
        /// Why the mount has that class.
        reason: String,
    },

    /// The directory the database file should be in does not exist (it is not created).
    #[error("the directory of the lock database {} does not exist", path.display())]
    NoDirectory {
        /// The database file.
        path: PathBuf,
    },

    /// SQLite could not open the file (permissions, a directory in its place, …).
    #[error("could not open the lock database {}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: Box<rusqlite::Error>,
    },

    /// The file exists but is not an SQLite database (`SQLITE_NOTADB`). Nothing was changed.
    #[error("{} is not an SQLite database", path.display())]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },

    /// The database is damaged: SQLite reported `SQLITE_CORRUPT`, its integrity check failed, or
    /// one of tierlock's tables is missing.
    #[error("the lock database {} is corrupt: {detail}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite or the check said.
        detail: String,
    },

    /// The file is an SQLite database of some other application (it has tables, or another
    /// `application_id`). Nothing was changed: tierlock only initialises an empty database.
    #[error("{} is an SQLite database of another application ({detail}); tierlock needs a file of its own", path.display())]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },

    /// The database was made by a newer tierlock whose schema this version does not know.
    #[error(
        "the lock database {} has schema version {found}; this tierlock knows version {supported}",
        path.display()
    )]
    SchemaVersion {
        /// The database file.
        path: PathBuf,
        /// The version in the file (`PRAGMA user_version`).
        found: i64,
        /// The version this crate writes and reads.
        supported: i64,
    },

    /// SQLite refused to put the database in WAL mode (it stayed in `mode`): the file system
    /// cannot hold the `-shm` shared-memory file, or the database is opened read-only elsewhere.
    #[error("the lock database {} cannot use WAL mode (it stayed in journal mode {mode:?})", path.display())]
    NoWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite reported.
        mode: String,
    },

    /// The database cannot be written: the file or its directory is read-only to this process,
    /// or the file system is mounted read-only (SQLite needs to write the database and create
    /// its `-wal` and `-shm` files beside it).
    #[error("the lock database {} is read-only to this process", path.display())]
    ReadOnly {
        /// The database file.
        path: PathBuf,
    },

    /// Another connection kept the database's write lock for longer than the busy timeout
    /// (tierlock's own transactions hold it for microseconds: look for another program with a
    /// transaction open on the file, or a stopped process that was in the middle of one).
    #[error(
        "the lock database {} stayed locked by another connection for {waited:?} ({operation}{})",
        path.display(),
        name.as_ref().map(|n| format!(" of lock {n:?}")).unwrap_or_default()
    )]
    Busy {
        /// The database file.
        path: PathBuf,
        /// What was being done, e.g. `"acquire"`.
        operation: &'static str,
        /// The lock name, where one was concerned.
        name: Option<String>,
        /// How long this operation waited.
        waited: Duration,
    },

    /// Any other SQLite error.
    #[error(
        "{operation}{} failed on the lock database {}",
        name.as_ref().map(|n| format!(" of lock {n:?}")).unwrap_or_default(),
        path.display()
    )]
    Database {
        /// The database file.
        path: PathBuf,
        /// What was being done, e.g. `"release"`.
        operation: &'static str,
        /// The lock name, where one was concerned.
        name: Option<String>,
        /// SQLite's error.
        #[source]
        source: Box<rusqlite::Error>,
    },

    /// A lease time to live outside the accepted range (10 ms to 1 day).
    #[error("lease time to live {ttl:?} is out of range (10 ms to 1 day)")]
    InvalidTtl {
        /// The rejected time to live.
        ttl: Duration,
    },

    /// The lease was taken over by another process (it was not renewed within its time to live)
    /// or its row was deleted, before this process released it.
    #[error("the lease on lock {name:?} in {} was lost before its release", path.display())]
    LeaseLost {
        /// The database file.
        path: PathBuf,
        /// The lock name.
        name: String,
    },

    /// The provider's database thread is gone (it panicked, or could not be started).
    #[error("the database thread of the lock database {} has stopped", path.display())]
    Stopped {
        /// The database file.
        path: PathBuf,
    },
}

impl SqliteError {
    /// Sorts an SQLite error from `operation` into the typed variants: not a database, corrupt,
    /// read-only, busy; anything else is [`SqliteError::Database`].
    pub(crate) fn from_sqlite(
        path: &Path,
        operation: &'static str,
        name: Option<&str>,
        waited: Duration,
        source: rusqlite::Error,
    ) -> SqliteError {
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => SqliteError::NotADatabase { path },
            Some(ErrorCode::DatabaseCorrupt) => SqliteError::Corrupt {
                path,
                detail: source.to_string(),
            },
            Some(ErrorCode::ReadOnly) => SqliteError::ReadOnly { path },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => SqliteError::Busy {
                path,
                operation,
                name: name.map(str::to_owned),
                waited,
            },
            _ => SqliteError::Database {
                path,
                operation,
                name: name.map(str::to_owned),
                source: Box::new(source),
            },
        }
    }
}
