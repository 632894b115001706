//! [`FileProviderBuilder`] and [`FileLockMode`]: how a provider is set up, and the checks made
//! on its directory before it is used.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::FileError;
use crate::lease::Leases;
use crate::mount::{Mount, MountClass};
use crate::provider::FileProvider;
use crate::{DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, marker};

/// How a [`FileProvider`] makes a name exclusive across processes and hosts.
///
/// Every process using one directory must use the same mode: the first provider on a
/// directory records its mode there, and a provider set to the other mode is refused with
/// [`FileError::ModeMismatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileLockMode {
    /// An exclusive OS lock (`flock` on Unix, `LockFileEx` on Windows) on the name's lock file.
    /// Fast (a few system calls), released by the OS the instant a holder dies — and only as
    /// good as the file system's locking: on a share whose locks stay local to each client,
    /// hosts do not exclude each other at all.
    Flock,
    /// A lease on the name: a state file renamed by its holder every `ttl / 3`, which a waiter
    /// takes over after seeing it unchanged for a whole `ttl` by its own clock. Works on any
    /// share where `rename` is atomic (NFSv3+, SMB2+, most FUSE file systems), needs no clock
    /// agreement between hosts, reports a lost lease, and makes fencing tokens; a holder that
    /// dies keeps the name for up to `ttl`.
    Lease {
        /// How long a lease stands without renewal. See [`FileLockMode::DEFAULT_TTL`].
        ttl: Duration,
    },
}

impl FileLockMode {
    /// The default lease time to live, 10 s: a crashed holder blocks the name for at most that
    /// long (plus a waiter's poll), while a live holder renews every 3.3 s and tolerates a
    /// share that stalls for about 6 s before it counts its lease as lost. One rename per
    /// held name every 3.3 s costs a share nothing.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

    /// Lease mode with the default time to live.
    pub const fn lease() -> Self {
        FileLockMode::Lease {
            ttl: Self::DEFAULT_TTL,
        }
    }

    /// The mode [`FileProvider::new`] picks for a directory on a mount of class `class`:
    /// [`Flock`](FileLockMode::Flock) where `flock` is known to exclude every process that can
    /// reach the directory (a local file system, or a share that forwards locks), a
    /// [lease](FileLockMode::lease) everywhere else.
    ///
    /// ```
    /// use tierlock_file::{FileLockMode, MountClass};
    ///
    /// assert_eq!(FileLockMode::for_mount(MountClass::Local), FileLockMode::Flock);
    /// assert_eq!(FileLockMode::for_mount(MountClass::Unknown), FileLockMode::lease());
    /// ```
    pub fn for_mount(class: MountClass) -> Self {
        match class {
            MountClass::Local | MountClass::ForwardsLocks => FileLockMode::Flock,
            _ => FileLockMode::lease(),
        }
    }

    /// `"flock"` or `"lease"`: the word recorded in the directory's mode file.
    pub fn as_str(&self) -> &'static str {
        match self {
            FileLockMode::Flock => "flock",
            FileLockMode::Lease { .. } => "lease",
        }
    }
}

impl fmt::Display for FileLockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileLockMode::Flock => f.write_str("flock"),
            FileLockMode::Lease { ttl } => write!(f, "lease (ttl {ttl:?})"),
        }
    }
}

/// The accepted lease times to live.
const TTL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(86_400);

/// Settings for a [`FileProvider`]; from [`FileProvider::builder`].
#[derive(Debug, Clone)]
pub struct FileProviderBuilder {
    dir: PathBuf,
    dir_mode: u32,
    file_mode: u32,
    initial: Duration,
    max: Duration,
    mode: Option<FileLockMode>,
    fencing: bool,
}

impl FileProviderBuilder {
    pub(crate) fn new(dir: &Path) -> Self {
        FileProviderBuilder {
            dir: dir.to_path_buf(),
            dir_mode: DEFAULT_DIR_MODE,
            file_mode: DEFAULT_FILE_MODE,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(8),
            mode: None,
            fencing: true,
        }
    }

    /// The permission bits of the lock directory if the provider creates it (default
    /// [`DEFAULT_DIR_MODE`], `0o770`), and of the lease directories it creates. Set exactly,
    /// regardless of the umask, on the directory itself; missing parents get it masked by the
    /// umask. An existing directory is left as is. Ignored on platforms other than Unix.
    ///
    /// ```
    /// use tierlock_file::FileProvider;
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// // One group shares the directory; others may not even list it.
    /// let provider = FileProvider::builder(tmp.path().join("locks"))
    ///     .dir_mode(0o750)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dir_mode(mut self, mode: u32) -> Self {
        self.dir_mode = mode;
        self
    }

    /// The permission bits of the files the provider creates (default [`DEFAULT_FILE_MODE`],
    /// `0o660`), set exactly regardless of the umask. Every process using the directory needs
    /// read and write access to them. Ignored on platforms other than Unix.
    ///
    /// ```
    /// use tierlock_file::FileProvider;
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = FileProvider::builder(tmp.path())
    ///     .file_mode(0o600) // one user only
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn file_mode(mut self, mode: u32) -> Self {
        self.file_mode = mode;
        self
    }

    /// The polling back-off while waiting for a lock held elsewhere: the first pause, doubling
    /// up to `max` (defaults 1 ms and 8 ms). Each attempt is a few system calls; on a network
    /// share each is a round trip to the server, so a larger back-off may suit it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_file::FileProvider;
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = FileProvider::builder(tmp.path())
    ///     .poll(Duration::from_millis(20), Duration::from_millis(250)) // a share across a WAN
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll(mut self, initial: Duration, max: Duration) -> Self {
        self.initial = initial;
        self.max = max.max(initial);
        self
    }

    /// Forces a locking mode instead of the one chosen from the directory's mount (see
    /// [`FileLockMode::for_mount`]): [`FileLockMode::Flock`] on a share you know forwards locks
    /// although tierlock cannot tell (`tierlock doctor --peer` proves it), or a lease anywhere,
    /// e.g. for its fencing tokens and lost signal.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_file::{FileLockMode, FileProvider};
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = FileProvider::builder(tmp.path())
    ///     .mode(FileLockMode::Lease { ttl: Duration::from_secs(30) })
    ///     .build()?;
    /// assert_eq!(provider.mode(), FileLockMode::Lease { ttl: Duration::from_secs(30) });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mode(mut self, mode: FileLockMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Whether acquisitions make fencing tokens (default `true`). In flock mode a token costs a
    /// read and a write of the lock file per external acquisition (about 1 µs on a local disk,
    /// two round trips on a share); `false` saves them and `guard.fencing_token()` is `None`.
    /// Lease mode's tokens are part of its state file's name and cost nothing: it always makes
    /// them. Processes without tokens may share a directory with processes that make them:
    /// the tokens still strictly increase among those.
    ///
    /// ```
    /// use tierlock_file::{FileLockMode, FileProvider};
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = FileProvider::builder(tmp.path())
    ///     .mode(FileLockMode::Flock)
    ///     .fencing(false)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fencing(mut self, on: bool) -> Self {
        self.fencing = on;
        self
    }

    /// Creates the directory if needed, checks that files can be created in it, classifies its
    /// mount, picks the mode, checks it against the mode the directory is used in (recording
    /// it if it is the first use), and returns the provider.
    ///
    /// # Errors
    ///
    /// [`FileError::NotADirectory`], [`FileError::CreateDir`], [`FileError::NotWritable`],
    /// [`FileError::InvalidTtl`], [`FileError::ModeMismatch`] or [`FileError::ModeFile`].
    ///
    /// ```
    /// use tierlock_file::{FileError, FileProvider};
    ///
    /// # let tmp = tempfile::tempdir()?;
    /// let provider = FileProvider::builder(tmp.path().join("locks")).build()?; // made if missing
    /// println!("{} on {:?}", provider.mode(), provider.mount().class());
    /// let file = tmp.path().join("a-file");
    /// std::fs::write(&file, "")?;
    /// assert!(matches!(
    ///     FileProvider::builder(&file).build(),
    ///     Err(FileError::NotADirectory { .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<FileProvider, FileError> {
        let dir = std::path::absolute(&self.dir).map_err(|source| FileError::CreateDir {
            path: self.dir.clone(),
            source,
        })?;
        ensure_dir(&dir, self.dir_mode)?;
        check_writable(&dir)?;
        let mount = Mount::detect(&dir);
        let mode = self
            .mode
            .unwrap_or_else(|| FileLockMode::for_mount(mount.class()));
        let leases = match mode {
            FileLockMode::Flock => None,
            FileLockMode::Lease { ttl } if TTL_RANGE.contains(&ttl) => {
                Some(Leases::new(ttl, self.dir_mode, self.file_mode, self.max))
            }
            FileLockMode::Lease { ttl } => return Err(FileError::InvalidTtl { ttl }),
        };
        marker::check(&dir, mode.as_str(), self.file_mode)?;
        Ok(FileProvider {
            dir,
            file_mode: self.file_mode,
            initial: self.initial,
            max: self.max,
            mode,
            mount,
            fencing: self.fencing,
            leases,
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
