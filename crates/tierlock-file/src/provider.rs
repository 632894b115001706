//! [`FileProvider`]: the [`Provider`] implementation, dispatching to flock or lease mode.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tierlock_core::provider::BoxFuture;
use tierlock_core::{BoxError, ExternalLock, LockName, Provider, RequestMark, WaitStrategy};

use crate::builder::{FileLockMode, FileProviderBuilder};
use crate::error::FileError;
use crate::flock::{self, FileLock};
use crate::lease::Leases;
use crate::mapping;
use crate::mount::{Mount, MountClass};

/// How many times [`Provider::request`] retries its shared lock while holders probe the file.
const REQUEST_TRIES: u32 = 20;

/// A [`Provider`] that locks names through files in one directory.
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
pub struct FileProvider {
    pub(crate) dir: PathBuf,
    pub(crate) file_mode: u32,
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    pub(crate) mode: FileLockMode,
    pub(crate) mount: Mount,
    /// Whether flock mode keeps a fencing counter in the lock files.
    pub(crate) fencing: bool,
    /// Set in lease mode.
    pub(crate) leases: Option<Leases>,
}

impl FileProvider {
    /// A provider on `dir` with default settings, creating the directory (and its parents) with
    /// mode [`DEFAULT_DIR_MODE`](crate::DEFAULT_DIR_MODE) if it does not exist. A relative path
    /// is made absolute against the current directory now.
    ///
    /// The locking mode follows the directory's mount ([`FileLockMode::for_mount`]): `flock`
    /// on a local file system or a share known to forward locks, a lease on any other; never
    /// `flock` where it may not exclude other hosts.
    ///
    /// # Errors
    ///
    /// Those of [`FileProviderBuilder::build`].
    ///
    /// ```
    /// use tierlock_file::{FileError, FileProvider};
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = FileProvider::new(tmp.path().join("locks"))?;
    /// assert!(tmp.path().join("locks").is_dir());
    /// println!("{provider:?}"); // the mode, and the mount it was chosen from
    ///
    /// let file = tmp.path().join("not-a-dir");
    /// std::fs::write(&file, b"")?;
    /// assert!(matches!(FileProvider::new(&file), Err(FileError::NotADirectory { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(dir: impl AsRef<Path>) -> Result<Self, FileError> {
        Self::builder(dir).build()
    }

    /// A builder to set the mode, the modes of created files and the polling back-off.
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
        FileProviderBuilder::new(dir.as_ref())
    }

    /// The lock directory, as an absolute path.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The locking mode: chosen from the mount, or forced with [`FileProviderBuilder::mode`].
    ///
    /// ```
    /// use tierlock_file::{FileLockMode, FileProvider, MountClass};
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = FileProvider::new(tmp.path())?;
    /// assert_eq!(provider.mode(), FileLockMode::for_mount(provider.mount().class()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mode(&self) -> FileLockMode {
        self.mode
    }

    /// The mount the directory lives on, as classified when the provider was built.
    pub fn mount(&self) -> &Mount {
        &self.mount
    }

    /// The lock file that stands for `name` in flock mode: always directly inside
    /// [`dir`](Self::dir). Its request file has the same stem and the extension `.req`.
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

    /// The lease directory that stands for `name` in lease mode: always directly inside
    /// [`dir`](Self::dir), the lock file's stem with the extension `.lease`.
    pub fn lease_dir_path(&self, name: &LockName) -> PathBuf {
        self.dir.join(mapping::lease_dir_name(name.as_str()))
    }

    fn request_file_path(&self, name: &LockName) -> PathBuf {
        self.dir.join(mapping::request_file_name(name.as_str()))
    }

    fn open(&self, path: &Path, name: &LockName) -> Result<std::fs::File, FileError> {
        flock::open(path, self.file_mode).map_err(|source| FileError::Open {
            path: path.to_path_buf(),
            name: name.to_string(),
            source,
        })
    }

    /// One non-blocking attempt in flock mode; `Ok(None)` when held elsewhere.
    fn try_flock(&self, name: &LockName) -> Result<Option<FileLock>, FileError> {
        let lock_path = self.lock_file_path(name);
        let lock = self.open(&lock_path, name)?;
        let lock_error = |source| FileError::Lock {
            path: lock_path.clone(),
            name: name.to_string(),
            source,
        };
        if !flock::try_exclusive(&lock).map_err(lock_error)? {
            return Ok(None);
        }
        if !self.fencing {
            return Ok(Some(FileLock::new(
                lock,
                lock_path.clone(),
                name.clone(),
                self.file_mode,
                None,
                self.max,
            )));
        }
        // Local file systems share one page cache; the kernel clients of shares that forward
        // locks (NFS, CIFS, cluster file systems) make taking a lock a cache coherency point.
        // Anything else (flock forced on a FUSE file system, say) may serve stale data.
        let fresh = !matches!(
            self.mount.class(),
            MountClass::Local | MountClass::ForwardsLocks
        );
        let token = match flock::bump_counter(&lock, &lock_path, fresh) {
            Ok(Ok(token)) => Some(token),
            // Dropping `lock` on the way out releases the OS lock.
            Ok(Err(content)) => {
                return Err(FileError::FenceCounter {
                    path: lock_path.clone(),
                    name: name.to_string(),
                    content,
                });
            }
            Err(source) => return Err(lock_error(source)),
        };
        Ok(Some(FileLock::new(
            lock,
            lock_path.clone(),
            name.clone(),
            self.file_mode,
            token,
            self.max,
        )))
    }

    /// Takes a shared lock on the request file, retrying briefly while a holder's probe (a
    /// momentary exclusive lock) is in the way. `Ok(None)` if probes kept it busy throughout:
    /// the wait then goes on without the hand-off signal.
    async fn mark_request(&self, name: &LockName) -> Result<Option<RequestMark>, FileError> {
        let path = self.request_file_path(name);
        let file = self.open(&path, name)?;
        for _ in 0..REQUEST_TRIES {
            let marked = flock::try_shared(&file).map_err(|source| FileError::Lock {
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
        Box::pin(async move {
            let acquired = match &self.leases {
                None => self
                    .try_flock(name)
                    .map(|lock| lock.map(|lock| Box::new(lock) as Box<dyn ExternalLock>)),
                Some(leases) => leases
                    .try_acquire(&self.dir, self.lease_dir_path(name), name)
                    .map(|lock| lock.map(|lock| Box::new(lock) as Box<dyn ExternalLock>)),
            };
            acquired.map_err(|err| Box::new(err) as BoxError)
        })
    }

    fn request<'a>(
        &'a self,
        name: &'a LockName,
    ) -> BoxFuture<'a, Result<Option<RequestMark>, BoxError>> {
        Box::pin(async move {
            let marked = match &self.leases {
                None => self.mark_request(name).await,
                Some(leases) => leases
                    .request(&self.dir, self.lease_dir_path(name), name)
                    .map(Some),
            };
            marked.map_err(|err| Box::new(err) as BoxError)
        })
    }
}

impl fmt::Debug for FileProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileProvider")
            .field("dir", &self.dir)
            .field("mode", &self.mode)
            .field("fencing", &(self.fencing || self.leases.is_some()))
            .field("mount", &format_args!("{}", self.mount))
            .field("poll", &(self.initial, self.max))
            .finish()
    }
}
