//! The file provider for [tierlock](https://docs.rs/tierlock): named locks shared through files
//! in one directory, on a local disk or on a network share mounted by several hosts.
//!
//! It is tierlock's embedded default: no server to run, nothing to configure but a directory.
//!
//! # Two modes, chosen from the mount
//!
//! A file lock (`flock`) excludes other hosts only if the share forwards locks to its server;
//! on many shares (NFS with `nolock`, CIFS with `nobrl`, sshfs, rclone, s3fs…) each client keeps
//! its locks to itself, and two hosts would both hold one lock without a word. So
//! [`FileProvider::new`] looks at the mount the directory lives on ([`Mount`]) and picks:
//!
//! * **[`FileLockMode::Flock`]** on a local file system or a share known to forward locks: each
//!   name maps to a lock file, `<prefix>-<hash>.lock`, and an acquisition is one non-blocking
//!   attempt at an exclusive OS lock on a freshly opened handle (`flock` on Unix, `LockFileEx`
//!   on Windows, through `fs2`). The OS releases it the instant the handle closes or the process
//!   dies. The lock file holds the name's fencing counter, bumped under the lock.
//! * **[`FileLockMode::Lease`]** everywhere else (mounts tierlock does not recognise
//!   included): each name maps to a lease directory, `<prefix>-<hash>.lease`, holding one state
//!   file that the holder renames every `ttl / 3`; a waiter takes a lease over only after seeing
//!   it unchanged for a whole `ttl` by its own clock, so hosts need no clock agreement. It needs
//!   only an atomic `rename`, reports a lost lease ([`LockGuard::lost`]), and its fencing
//!   tokens survive every crash.
//!
//! The choice is visible ([`FileProvider::mode`], `Debug`, `tierlock doctor`) and can be forced
//! ([`FileProviderBuilder::mode`]). All processes on a directory must use the same mode: the
//! first records it in the directory (`.tierlock-mode`) and a provider set to the other mode is
//! refused ([`FileError::ModeMismatch`]).
//!
//! In both modes the mapping from names to files is the same in every process, on every
//! platform, forever, and never leaves the directory (see `docs/providers/file.md` in the
//! repository, or [`FileProvider::lock_file_path`]); waiting is polling with the manager's
//! capped, jittered back-off (1 ms doubling up to 8 ms by default, see
//! [`FileProviderBuilder::poll`]); and a waiting process marks its interest so a busy holder
//! hands the lock over at its next turn boundary (a shared lock on `<stem>.req` in flock mode,
//! a request file renewed in the lease directory in lease mode). Files are never deleted.
//!
//! [`LockGuard::lost`]: tierlock_core::LockGuard::lost
//!
//! # When to use it
//!
//! When processes on one host, or on hosts that mount the same share, must exclude each other
//! and there is no database or Redis to lean on — or to start with before there is.
//!
//! # Failure behaviour
//!
//! Construction fails with a [`FileError`] if the directory cannot be created or written, or
//! is used in the other mode. Each acquisition is a few system calls made inline, without a
//! blocking thread: on a slow network share one attempt blocks its runtime worker for a few
//! round trips (the lease monitor's renewals run on blocking threads). A file that cannot be
//! opened, locked or renamed (permissions, a symbolic link in its place, `ENOLCK` on a share
//! without lock service) is a [`LockError::Provider`](tierlock_core::LockError::Provider)
//! carrying a [`FileError`], never a timeout. Files must not be deleted while processes use the
//! directory.
//!
//! ```
//! use std::time::Duration;
//! use tierlock_core::LockManager;
//! use tierlock_file::FileProvider;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! # let dir = tmp.path().join("locks");
//! let locks = LockManager::new(FileProvider::new(&dir)?); // e.g. "/mnt/share/locks"
//! let guard = locks.lock("tenant:42:migrate", Duration::from_secs(60)).await?;
//! // ... only one process on every host sharing the directory gets here at a time ...
//! println!("fencing token {:?}", guard.fencing_token());
//! guard.release().await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod builder;
mod error;
mod flock;
mod lease;
mod mapping;
mod marker;
mod mount;
mod provider;
pub mod status;

pub use builder::{FileLockMode, FileProviderBuilder};
pub use error::{FileError, LeaseProblem};
pub use marker::MARKER as MODE_FILE;
pub use mount::{Mount, MountClass};
pub use provider::FileProvider;

/// Default mode of a lock directory that the provider creates: owner and group.
pub const DEFAULT_DIR_MODE: u32 = 0o770;

/// Default mode of the files the provider creates: owner and group.
pub const DEFAULT_FILE_MODE: u32 = 0o660;
