//! The file provider's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::marker::MARKER;

/// An error of the [`FileProvider`](crate::FileProvider).
///
/// Construction errors ([`NotADirectory`](FileError::NotADirectory),
/// [`CreateDir`](FileError::CreateDir), [`NotWritable`](FileError::NotWritable),
/// [`ModeMismatch`](FileError::ModeMismatch), [`ModeFile`](FileError::ModeFile),
/// [`InvalidTtl`](FileError::InvalidTtl)) come from
/// [`FileProvider::new`](crate::FileProvider::new) and
/// [`FileProviderBuilder::build`](crate::FileProviderBuilder::build). The others come from the
/// [`Provider`](tierlock_core::Provider) methods, boxed inside
/// [`LockError::Provider`](tierlock_core::LockError::Provider); get them back with
/// `downcast_ref::<FileError>()` on its `source`.
///
/// "The lock is held elsewhere" is never an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The lock directory's path exists but is not a directory.
    #[error("lock directory {} exists but is not a directory", path.display())]
    NotADirectory {
        /// The path given as the lock directory.
        path: PathBuf,
    },

    /// The lock directory did not exist and could not be created, or its metadata could not
    /// be read.
    #[error("could not create the lock directory {}", path.display())]
    CreateDir {
        /// The lock directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The lock directory exists but this process cannot create files in it (permissions, a
    /// read-only mount).
    #[error("cannot create files in the lock directory {}", path.display())]
    NotWritable {
        /// The lock directory.
        path: PathBuf,
        /// The operating system's error from the attempt to create a file there.
        #[source]
        source: io::Error,
    },

    /// A lock or request file could not be opened or created (permissions; a symbolic link or
    /// a directory in its place, which is never followed).
    #[error("could not open {} for lock {name:?}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The lock name.
        name: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The operating system refused to lock a file for a reason other than "held elsewhere".
    /// On a network share, `ENOLCK` means the share has no working lock service.
    #[error("could not lock {} for lock {name:?}", path.display())]
    Lock {
        /// The file.
        path: PathBuf,
        /// The lock name.
        name: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The lock file holds something other than a fencing counter (flock mode), so the next
    /// token cannot be known. The lock was not taken. Nothing but tierlock should write to lock
    /// files; an empty file counts as zero.
    #[error("lock file {} for lock {name:?} holds no fencing counter but {content:?}", path.display())]
    FenceCounter {
        /// The lock file.
        path: PathBuf,
        /// The lock name.
        name: String,
        /// The start of what the file holds.
        content: String,
    },

    /// A file system operation on a name's lease directory failed (lease mode): listing it,
    /// creating it, or renaming its state file.
    #[error("lease directory {} for lock {name:?} failed", path.display())]
    Lease {
        /// The lease directory.
        path: PathBuf,
        /// The lock name.
        name: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A name's lease directory holds something tierlock does not write (lease mode): it is a
    /// symbolic link or not a directory, or it has no state file, or several, or one whose name
    /// does not parse. Nothing was changed; the name cannot be locked until a person repairs or
    /// removes the directory (with no process using it).
    #[error("lease directory {} for lock {name:?} is not usable: {problem}", path.display())]
    LeaseState {
        /// The lease directory.
        path: PathBuf,
        /// The lock name.
        name: String,
        /// What is wrong.
        problem: LeaseProblem,
    },

    /// A lease this process held was taken over by another process (its holder did not renew it
    /// within its time to live) before it could be released.
    #[error("the lease on lock {name:?} in {} was lost before its release", path.display())]
    LeaseLost {
        /// The lease directory.
        path: PathBuf,
        /// The lock name.
        name: String,
    },

    /// The lock directory is used in another locking mode than this provider's: processes in
    /// `flock` mode and in lease mode would not exclude each other, so mixing them is refused.
    /// The mode is recorded in the directory's `.tierlock-mode` file by the first provider
    /// that uses it.
    #[error(
        "lock directory {} is used in {recorded:?} mode (recorded in {MARKER}), this provider is set to {configured:?} mode",
        dir.display()
    )]
    ModeMismatch {
        /// The lock directory.
        dir: PathBuf,
        /// The mode this provider was built with: `"flock"` or `"lease"`.
        configured: &'static str,
        /// What the directory's mode file says.
        recorded: String,
    },

    /// The directory's mode file could not be read or created.
    #[error("could not read or create the mode file {}", path.display())]
    ModeFile {
        /// The mode file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A lease time to live outside the accepted range (10 ms to 1 day).
    #[error("lease time to live {ttl:?} is out of range (10 ms to 1 day)")]
    InvalidTtl {
        /// The rejected time to live.
        ttl: std::time::Duration,
    },

    /// The operating system refused to unlock a lock file. The lock is released anyway when
    /// its handle is closed, which happens right after.
    #[error("could not unlock {} for lock {name:?}", path.display())]
    Unlock {
        /// The file.
        path: PathBuf,
        /// The lock name.
        name: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The status listing ([`held_locks`](crate::status::held_locks)) could not read the lock
    /// directory, a lease directory or the kernel's lock table.
    #[error("could not read {} for the status listing", path.display())]
    Status {
        /// The directory or file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// What is wrong with a lease directory. See [`FileError::LeaseState`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseProblem {
    /// The path is a symbolic link, which is never followed.
    Symlink,
    /// The path is not a directory.
    NotADirectory,
    /// The directory has no state file (`free.*` or `held.*`).
    NoState,
    /// The directory has several state files.
    SeveralStates(Vec<String>),
    /// A state file's name does not parse.
    Unparsable(String),
}

impl fmt::Display for LeaseProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseProblem::Symlink => f.write_str("it is a symbolic link"),
            LeaseProblem::NotADirectory => f.write_str("it is not a directory"),
            LeaseProblem::NoState => f.write_str("it has no state file"),
            LeaseProblem::SeveralStates(names) => {
                write!(f, "it has several state files: {}", names.join(", "))
            }
            LeaseProblem::Unparsable(file) => write!(f, "state file {file:?} does not parse"),
        }
    }
}
