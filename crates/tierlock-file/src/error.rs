//! The file provider's error type.

use std::io;
use std::path::PathBuf;

/// An error of the [`FileProvider`](crate::FileProvider).
///
/// Construction errors ([`NotADirectory`](FileError::NotADirectory),
/// [`CreateDir`](FileError::CreateDir), [`NotWritable`](FileError::NotWritable)) come from
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
}
