//! The file provider for [tierlock](https://docs.rs/tierlock): named locks shared through lock
//! files in one directory, on a local disk or on a network share mounted by several hosts.
//!
//! It is tierlock's embedded default: no server to run, nothing to configure but a directory.
//!
//! # How it works
//!
//! * Each lock name maps to one file in the directory, `<prefix>-<hash>.lock`: a readable
//!   prefix of the name and 32 base32 characters of its SHA-256. The mapping is the same in
//!   every process, on every platform, forever, and can never leave the directory (see
//!   `docs/providers/file.md` for the exact specification, or
//!   [`FileProvider::lock_file_path`]).
//! * Acquiring opens that file (creating it if needed, never following a symbolic link) and
//!   makes one non-blocking attempt at an exclusive OS lock on the open handle (`flock` on
//!   Unix, `LockFileEx` on Windows, through `fs2`). Every acquisition opens its own handle, so
//!   two managers in one process exclude each other just like two processes do.
//! * The OS lock lives as long as the handle: releasing closes it, and if the process dies,
//!   crashed or killed, the OS releases it at once.
//! * Waiting is polling: the [`LockManager`](tierlock_core::LockManager) retries with capped,
//!   jittered back-off (1 ms doubling up to 8 ms by default, see
//!   [`FileProviderBuilder::poll`]).
//! * While a process waits, it holds a *shared* lock on the companion request file
//!   `<prefix>-<hash>.req`. At each turn boundary where a local waiter could take over, the
//!   holder probes it with a non-blocking exclusive attempt (opening it at the first probe of
//!   the hold); when that fails, another process is waiting, and the holder hands the lock back
//!   instead of passing it to its next local waiter.
//! * Files are never deleted: a directory holds one empty lock file per distinct name ever
//!   locked, and one empty request file per name ever contended.
//!
//! # When to use it
//!
//! When processes on one host, or on hosts that mount the same share, must exclude each other
//! and there is no database or Redis to lean on — or to start with before there is. Network
//! shares need working byte-range locking (NFSv4, or NFSv3 with `lockd`; SMB): on a `nolock`
//! NFS mount locks only exclude processes of the same host.
//!
//! # Failure behaviour
//!
//! Construction fails with a [`FileError`] if the directory cannot be created or written.
//! Each acquisition is a few system calls made inline, without a blocking thread: on a slow
//! network share one attempt blocks its runtime worker for about one round trip. A file that
//! cannot be opened or locked (permissions, a symbolic link in its place, `ENOLCK` on a share
//! without lock service) is a [`LockError::Provider`](tierlock_core::LockError::Provider)
//! carrying a [`FileError`], never a timeout. Lock files must not be deleted while processes
//! use the directory: a process could then lock a file that no longer has a name.
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
//! guard.release().await?;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![forbid(unsafe_code)]

mod error;
mod files;
mod mapping;
mod mount;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tierlock_core::provider::BoxFuture;
use tierlock_core::{BoxError, ExternalLock, LockName, Provider, RequestMark, WaitStrategy};

pub use error::FileError;
use files::FileLock;
pub use mount::{Mount, MountClass};

/// Default mode of a lock directory that the provider creates: owner and group.
pub const DEFAULT_DIR_MODE: u32 = 0o770;

/// Default mode of the lock and request files the provider creates: owner and group.
pub const DEFAULT_FILE_MODE: u32 = 0o660;

/// How many times [`Provider::request`] retries its shared lock while holders probe the file.
const REQUEST_TRIES: u32 = 20;

/// A [`Provider`] that locks names through lock files in one directory.
///
/// One provider per directory per process is enough; share it (`Arc`, or one
/// [`LockManager`](tierlock_core::LockManager) cloned app-wide). Managers on the same directory,
/// in this process or others, exclude each other. See the [crate documentation](crate).
///
/// ```
/// use std::time::Duration;
/// use tierlock_core::LockManager;
/// use tierlock_file::FileProvider;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let tmp = tempfile::tempdir()?;
/// let a = LockManager::new(FileProvider::new(tmp.path())?);
/// let b = LockManager::new(FileProvider::new(tmp.path())?); // as if in another process
///
/// let held = a.lock("job:nightly", Duration::from_secs(5)).await?;
/// assert!(b.try_lock("job:nightly").await?.is_none());
/// drop(held);
/// assert!(b.try_lock("job:nightly").await?.is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FileProvider {
    dir: PathBuf,
    file_mode: u32,
    initial: Duration,
    max: Duration,
}

impl FileProvider {
    /// A provider on `dir` with default settings, creating the directory (and its parents) with
    /// mode [`DEFAULT_DIR_MODE`] if it does not exist. A relative path is made absolute against
    /// the current directory now.
    ///
    /// # Errors
    ///
    /// [`FileError::NotADirectory`], [`FileError::CreateDir`] or [`FileError::NotWritable`].
    ///
    /// ```
    /// use tierlock_file::{FileError, FileProvider};
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = FileProvider::new(tmp.path().join("locks"))?;
    /// assert!(tmp.path().join("locks").is_dir());
    ///
    /// let file = tmp.path().join("not-a-dir");
    /// std::fs::write(&file, b"")?;
    /// assert!(matches!(FileProvider::new(&file), Err(FileError::NotADirectory { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(dir: impl AsRef<Path>) -> Result<Self, FileError> {
        Self::builder(dir).build()
    }

    /// A builder to set the modes of created files and the polling back-off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_file::FileProvider;
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = FileProvider::builder(tmp.path().join("locks"))
    ///     .dir_mode(0o700)
    ///     .file_mode(0o600)
    ///     .poll(Duration::from_millis(5), Duration::from_millis(50)) // a slow network share
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(dir: impl AsRef<Path>) -> FileProviderBuilder {
        FileProviderBuilder {
            dir: dir.as_ref().to_path_buf(),
            dir_mode: DEFAULT_DIR_MODE,
            file_mode: DEFAULT_FILE_MODE,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(8),
        }
    }

    /// The lock directory, as an absolute path.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock file that stands for `name`: always directly inside [`dir`](Self::dir).
    /// Its request file has the same stem and the extension `.req`.
    ///
    /// ```
    /// use tierlock_core::LockName;
    /// use tierlock_file::FileProvider;
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = FileProvider::new(tmp.path())?;
    /// let path = provider.lock_file_path(&LockName::new("../../etc/passwd")?);
    /// assert_eq!(path.parent(), Some(provider.dir()));
    /// assert_eq!(
    ///     path.file_name().and_then(|f| f.to_str()),
    ///     Some("_._.._etc_passwd-g5knnsz2hdqrqxs3hawv6pxt6emk65n7.lock"),
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock_file_path(&self, name: &LockName) -> PathBuf {
        self.dir.join(mapping::lock_file_name(name.as_str()))
    }

    fn request_file_path(&self, name: &LockName) -> PathBuf {
        self.dir.join(mapping::request_file_name(name.as_str()))
    }

    fn open(&self, path: &Path, name: &LockName) -> Result<std::fs::File, FileError> {
        files::open(path, self.file_mode).map_err(|source| FileError::Open {
            path: path.to_path_buf(),
            name: name.to_string(),
            source,
        })
    }

    /// One non-blocking attempt; `Ok(None)` when held elsewhere.
    fn try_acquire(&self, name: &LockName) -> Result<Option<FileLock>, FileError> {
        let lock_path = self.lock_file_path(name);
        let lock = self.open(&lock_path, name)?;
        let acquired = files::try_exclusive(&lock).map_err(|source| FileError::Lock {
            path: lock_path.clone(),
            name: name.to_string(),
            source,
        })?;
        Ok(acquired.then(|| FileLock::new(lock, lock_path, name.clone(), self.file_mode)))
    }

    /// Takes a shared lock on the request file, retrying briefly while a holder's probe (a
    /// momentary exclusive lock) is in the way. `Ok(None)` if probes kept it busy throughout:
    /// the wait then goes on without the hand-off signal.
    async fn mark_request(&self, name: &LockName) -> Result<Option<RequestMark>, FileError> {
        let path = self.request_file_path(name);
        let file = self.open(&path, name)?;
        for _ in 0..REQUEST_TRIES {
            let marked = files::try_shared(&file).map_err(|source| FileError::Lock {
                path: path.clone(),
                name: name.to_string(),
                source,
            })?;
            if marked {
                return Ok(Some(RequestMark::new(file)));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        Ok(None)
    }
}

impl Provider for FileProvider {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn wait_strategy(&self) -> WaitStrategy {
        WaitStrategy::Poll {
            initial: self.initial,
            max: self.max,
        }
    }

    /// One non-blocking attempt, whatever the deadline (the manager polls).
    fn acquire<'a>(
        &'a self,
        name: &'a LockName,
        _deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn ExternalLock>>, BoxError>> {
        let result = match self.try_acquire(name) {
            Ok(lock) => Ok(lock.map(|lock| Box::new(lock) as Box<dyn ExternalLock>)),
            Err(err) => Err(Box::new(err) as BoxError),
        };
        Box::pin(std::future::ready(result))
    }

    fn request<'a>(
        &'a self,
        name: &'a LockName,
    ) -> BoxFuture<'a, Result<Option<RequestMark>, BoxError>> {
        Box::pin(async move {
            self.mark_request(name)
                .await
                .map_err(|err| Box::new(err) as BoxError)
        })
    }
}

/// Settings for a [`FileProvider`]; from [`FileProvider::builder`].
#[derive(Debug, Clone)]
pub struct FileProviderBuilder {
    dir: PathBuf,
    dir_mode: u32,
    file_mode: u32,
    initial: Duration,
    max: Duration,
}

impl FileProviderBuilder {
    /// The permission bits of the lock directory if the provider creates it (default
    /// [`DEFAULT_DIR_MODE`], `0o770`). Set exactly, regardless of the umask, on the directory
    /// itself; missing parents get it masked by the umask. An existing directory is left as is.
    /// Ignored on platforms other than Unix.
    pub fn dir_mode(mut self, mode: u32) -> Self {
        self.dir_mode = mode;
        self
    }

    /// The permission bits of the lock and request files the provider creates (default
    /// [`DEFAULT_FILE_MODE`], `0o660`), set exactly regardless of the umask. Every process
    /// using the directory needs read and write access to them. Ignored on platforms other
    /// than Unix.
    pub fn file_mode(mut self, mode: u32) -> Self {
        self.file_mode = mode;
        self
    }

    /// The polling back-off while waiting for a lock held elsewhere: the first pause, doubling
    /// up to `max` (defaults 1 ms and 8 ms). Each attempt is a few system calls; on a network
    /// share each is a round trip to the server, so a larger back-off may suit it.
    pub fn poll(mut self, initial: Duration, max: Duration) -> Self {
        self.initial = initial;
        self.max = max.max(initial);
        self
    }

    /// Creates the directory if needed, checks that files can be created in it, and returns
    /// the provider.
    ///
    /// # Errors
    ///
    /// [`FileError::NotADirectory`], [`FileError::CreateDir`] or [`FileError::NotWritable`].
    pub fn build(self) -> Result<FileProvider, FileError> {
        let dir = std::path::absolute(&self.dir).map_err(|source| FileError::CreateDir {
            path: self.dir.clone(),
            source,
        })?;
        ensure_dir(&dir, self.dir_mode)?;
        check_writable(&dir)?;
        Ok(FileProvider {
            dir,
            file_mode: self.file_mode,
            initial: self.initial,
            max: self.max,
        })
    }
}

/// Makes sure `dir` is a directory, creating it with `mode` if it is missing.
fn ensure_dir(dir: &Path, mode: u32) -> Result<(), FileError> {
    let create_error = |source| FileError::CreateDir {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(FileError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(create_error(err)),
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, mode);
    match builder.create(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            return Err(FileError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        Err(err) => return Err(create_error(err)),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(create_error)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    Ok(())
}

/// Creates and removes a probe file: the only reliable test (ACLs, read-only mounts, root
/// squashing on NFS). Its name starts with `.`, which no lock file does.
fn check_writable(dir: &Path) -> Result<(), FileError> {
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let probe = dir.join(format!(
        ".tierlock-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match created {
        Ok(file) => {
            drop(file);
            // A leftover probe is harmless; failing to remove it does not make the directory
            // unusable.
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(source) => Err(FileError::NotWritable {
            path: dir.to_path_buf(),
            source,
        }),
    }
}
