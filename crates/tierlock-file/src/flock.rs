//! Flock mode: opening and locking lock files, the fencing counter kept in them, and the held
//! lock handed to the manager.
//!
//! Every acquisition opens its own handle, so two acquisitions in one process, even through
//! one provider, never share an open file description: `flock` locks (and `LockFileEx` locks on
//! Windows) belong to the open file, so they exclude each other just like two processes do.
//!
//! The fencing counter is the lock file's content: empty (zero) or a decimal number and a
//! newline. The holder reads it and writes it back one higher right after taking the lock, and
//! before anyone can see the lock as held, so every acquisition gets a larger token than the one
//! before it, on every host that shares the directory and across crashes of processes (not of
//! a local disk's host: the write is not synced).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tierlock_core::provider::BoxFuture;
use tierlock_core::{BoxError, ExternalLock, LockName};
use tokio::task::AbortHandle;

use crate::error::FileError;
use crate::mapping::REQUEST_EXT;

/// `FILE_FLAG_OPEN_REPARSE_POINT`: open a symbolic link or junction itself, not its target.
#[cfg(windows)]
const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;

/// Read-write access (exclusive `flock` emulation on NFS needs a writable handle) and never
/// following a symbolic link in the last path component.
fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        options.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    }
    options
}

/// Opens `path`, creating it with exactly `mode` (not masked by the umask) if it is missing.
///
/// The common case (the file exists) is a single `open`. A symbolic link in its place fails
/// with `ELOOP` instead of being followed.
pub(crate) fn open(path: &Path, mode: u32) -> io::Result<File> {
    #[cfg(not(unix))]
    let _ = mode;
    for _ in 0..3 {
        match options().open(path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let mut create = options();
        create.create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut create, mode);
        match create.open(path) {
            Ok(file) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    // Best effort: some shares (SMB) refuse chmod; the file works regardless.
                    let _ = file.set_permissions(std::fs::Permissions::from_mode(mode));
                }
                return Ok(file);
            }
            // Another process created it between our two opens: open it normally.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
    }
    options().open(path)
}

fn is_contended(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
        || err.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}

/// One non-blocking attempt at an exclusive lock: `Ok(false)` when held elsewhere.
pub(crate) fn try_exclusive(file: &File) -> io::Result<bool> {
    loop {
        return match fs2::FileExt::try_lock_exclusive(file) {
            Ok(()) => Ok(true),
            Err(err) if is_contended(&err) => Ok(false),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => Err(err),
        };
    }
}

/// One non-blocking attempt at a shared lock: `Ok(false)` when held exclusively elsewhere.
pub(crate) fn try_shared(file: &File) -> io::Result<bool> {
    loop {
        return match fs2::FileExt::try_lock_shared(file) {
            Ok(()) => Ok(true),
            Err(err) if is_contended(&err) => Ok(false),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => Err(err),
        };
    }
}

/// A name held by this process: an exclusive lock on the lock file, and the watch on its
/// request file.
#[derive(Debug)]
pub(crate) struct FileLock {
    /// Holds the exclusive lock; closing it releases the lock.
    lock: File,
    lock_path: PathBuf,
    name: LockName,
    token: Option<u64>,
    requests: RequestWatch,
}

impl FileLock {
    /// A held lock on the lock file `lock_path`, opened as `lock`, with fencing token `token`
    /// (`None` when the provider keeps no counter).
    /// Once asked for requests, it probes the request file every `probe_every`.
    pub(crate) fn new(
        lock: File,
        lock_path: PathBuf,
        name: LockName,
        file_mode: u32,
        token: Option<u64>,
        probe_every: Duration,
    ) -> Self {
        let requests = RequestWatch {
            file_mode,
            every: probe_every,
            probe: OnceLock::new(),
        };
        FileLock {
            lock,
            lock_path,
            name,
            token,
            requests,
        }
    }
}

impl ExternalLock for FileLock {
    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>> {
        let result = fs2::FileExt::unlock(&self.lock).map_err(|source| {
            Box::new(FileError::Unlock {
                path: self.lock_path.clone(),
                name: self.name.to_string(),
                source,
            }) as BoxError
        });
        // Closing the handles releases the lock even if the unlock call failed.
        drop(self);
        Box::pin(std::future::ready(result))
    }

    fn drop_releases(&self) -> bool {
        true
    }

    /// The last answer of the background probe, which the first call of a hold starts (no
    /// file is touched here: the manager calls this with a shard lock held).
    fn is_requested(&self) -> bool {
        self.requests.poll(&self.lock_path)
    }

    fn fencing_token(&self) -> Option<u64> {
        self.token
    }
}

/// The request file of a held name, probed in the background once the holder has local
/// waiters. Most holds end without a local waiter, never start the probe, and cost no more
/// system calls than a bare `open + flock + unlock + close`.
#[derive(Debug)]
struct RequestWatch {
    file_mode: u32,
    every: Duration,
    /// The running probe and its last answer; nothing is allocated until the first poll.
    probe: OnceLock<(AbortHandle, Arc<AtomicBool>)>,
}

impl RequestWatch {
    /// Starts the probe of the request file beside `lock_path` if it is not running (and a
    /// runtime is at hand); returns its last answer, `false` until it has one.
    fn poll(&self, lock_path: &Path) -> bool {
        if let Some((_, requested)) = self.probe.get() {
            return requested.load(Ordering::Acquire);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let requested = Arc::new(AtomicBool::new(false));
        let task = runtime.spawn(probe(
            lock_path.with_extension(REQUEST_EXT),
            self.file_mode,
            self.every,
            Arc::clone(&requested),
        ));
        if let Err((extra, _)) = self.probe.set((task.abort_handle(), requested)) {
            extra.abort();
        }
        false
    }
}

impl Drop for RequestWatch {
    fn drop(&mut self) {
        if let Some((task, _)) = self.probe.get() {
            task.abort();
        }
    }
}

/// Probes the request file every `every`, on a blocking thread (a round trip on a share).
async fn probe(path: PathBuf, file_mode: u32, every: Duration, requested: Arc<AtomicBool>) {
    let path = Arc::new(path);
    let mut file = None;
    loop {
        let job = {
            let path = Arc::clone(&path);
            tokio::task::spawn_blocking(move || probe_once(file, &path, file_mode))
        };
        let Ok((kept, answer)) = job.await else {
            return;
        };
        file = kept;
        if let Some(answer) = answer {
            requested.store(answer, Ordering::Release);
        }
        tokio::time::sleep(every).await;
    }
}

/// One `flock(LOCK_EX | LOCK_NB)` on the request file (opening it the first time, unlocking at
/// once if it succeeded): it fails exactly while some waiter holds its shared lock on the file.
/// `None` if the file cannot be opened or locked: cannot tell, so the holder keeps the lock
/// rather than hand it back on a guess.
fn probe_once(file: Option<File>, path: &Path, file_mode: u32) -> (Option<File>, Option<bool>) {
    let file = match file {
        Some(file) => file,
        None => match open(path, file_mode) {
            Ok(file) => file,
            Err(_) => return (None, None),
        },
    };
    let answer = match try_exclusive(&file) {
        Ok(true) => {
            // Ignoring a failure here is safe: closing the handle would release it too.
            let _ = fs2::FileExt::unlock(&file);
            Some(false)
        }
        Ok(false) => Some(true),
        Err(_) => None,
    };
    (Some(file), answer)
}

/// The width of the counter in a lock file: 20 digits hold every `u64`.
const COUNTER_DIGITS: usize = 20;

/// What a lock file's content says: the last fencing token handed out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Counter {
    /// The value (an empty file is zero).
    Value(u64),
    /// Something else: the start of it.
    Garbage(String),
}

/// Parses a lock file's content.
pub(crate) fn parse_counter(content: &[u8]) -> Counter {
    let text = std::str::from_utf8(content).unwrap_or("");
    let digits = text.strip_suffix('\n').unwrap_or(text);
    if content.is_empty() {
        return Counter::Value(0);
    }
    match digits.parse() {
        Ok(value) if digits.bytes().all(|b| b.is_ascii_digit()) => Counter::Value(value),
        _ => Counter::Garbage(
            String::from_utf8_lossy(&content[..content.len().min(40)]).into_owned(),
        ),
    }
}

/// Reads the counter of the locked file and writes it back one higher; returns the new value,
/// or the start of the file's content if it holds no counter.
///
/// `file` is the handle that holds the lock. Where another host may have written the counter
/// and this host's cache of the file may be stale (a client that does not revalidate its cache
/// when it takes a lock, e.g. FUSE; NFS and CIFS do), `fresh` reads and writes through a new
/// handle instead: opening a file revalidates its cached data (FUSE drops it), and the lock is
/// the other handle's, so closing this one does not release it. On Windows the locked handle is always
/// used: a byte-range lock blocks other handles' reads.
///
/// Two system calls on the common path (`pread`, `pwrite`), no allocation.
pub(crate) fn bump_counter(
    file: &File,
    path: &Path,
    fresh: bool,
) -> io::Result<Result<u64, String>> {
    let reopened;
    let mut handle = file;
    if fresh && cfg!(unix) {
        reopened = options().open(path)?;
        handle = &reopened;
    }
    let mut content = [0u8; 64];
    let len = read_start(handle, &mut content)?;
    let last = match parse_counter(&content[..len]) {
        Counter::Value(value) => value,
        Counter::Garbage(text) => return Ok(Err(text)),
    };
    let next = last.saturating_add(1);
    let mut record = [b'0'; COUNTER_DIGITS + 1];
    record[COUNTER_DIGITS] = b'\n';
    let mut rest = next;
    for digit in record[..COUNTER_DIGITS].iter_mut().rev() {
        // `rest % 10` is below 10: the cast cannot truncate.
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    write_start(handle, &record)?;
    Ok(Ok(next))
}

/// Reads the start of `file` into `buf` (until it is full or the file ends).
fn read_start(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        #[cfg(unix)]
        let read = std::os::unix::fs::FileExt::read_at(file, &mut buf[len..], len as u64);
        #[cfg(windows)]
        let read = std::os::windows::fs::FileExt::seek_read(file, &mut buf[len..], len as u64);
        match read {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(len)
}

/// Writes `data` at the start of `file`.
fn write_start(file: &File, data: &[u8]) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, data, 0)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < data.len() {
            match std::os::windows::fs::FileExt::seek_write(file, &data[done..], done as u64) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse() {
        assert_eq!(parse_counter(b""), Counter::Value(0));
        assert_eq!(parse_counter(b"00000000000000000042\n"), Counter::Value(42));
        assert_eq!(parse_counter(b"7"), Counter::Value(7));
        for bad in [
            &b"x"[..],
            b"-1\n",
            b"+1\n",
            b" 1\n",
            b"1\n\n",
            b"99999999999999999999\n",
        ] {
            assert!(matches!(parse_counter(bad), Counter::Garbage(_)), "{bad:?}");
        }
    }

    #[test]
    fn the_counter_is_bumped_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.lock");
        let file = open(&path, 0o600).unwrap();
        for expected in 1..=12 {
            assert_eq!(
                bump_counter(&file, &path, expected % 2 == 0).unwrap(),
                Ok(expected)
            );
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "00000000000000000012\n"
        );
        std::fs::write(&path, b"junk").unwrap();
        assert_eq!(
            bump_counter(&file, &path, false).unwrap(),
            Err("junk".to_owned())
        );
    }
}
