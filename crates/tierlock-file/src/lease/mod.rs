//! Lease mode: exclusion on any share where `rename` is atomic, with no agreement between the
//! hosts' clocks and no byte-range locking at all.
//!
//! Each name has a *lease directory* `<stem>.lease` in the lock directory holding exactly one
//! state file, `free.<token>` or `held.<token>.<beat>.<ttl_ms>.<owner>.<pid>.<host>`, and every
//! change of state is a rename of that file from the name the changer saw (a compare-and-swap,
//! see `state.rs`):
//!
//! * **acquire** a free lease: `free.<t>` → `held.<t+1>.0.…` (fencing token `t + 1`);
//! * **renew** (the holder, every `ttl / 3`): `held.<t>.<b>.…` → `held.<t>.<b+1>.…`;
//! * **release**: `held.<t>.<b>.…` → `free.<t>`;
//! * **break** a stale lease: a waiter that has seen the *same* `held` name for a whole `ttl`
//!   (the longer of the holder's and its own) by its own monotonic clock renames exactly that
//!   name to `held.<t+1>.0.…` of its own. If the holder renewed meanwhile, the name is gone
//!   and the rename fails: a fresh lease is never broken. If two waiters break at once, one
//!   rename wins and the other finds its source gone.
//!
//! A holder that cannot renew within 9/10 of its `ttl` (the share hangs, the process was
//! stopped) raises its lost signal; one whose renewal finds its name gone was broken and raises
//! it too. Fencing tokens grow by one at every acquisition and every break, because both are
//! renames from the previous token; they survive crashes and releases (the directory is never
//! deleted).
//!
//! Cost in file system operations (each a round trip on a share): a free acquisition lists the
//! directory and renames (an `lstat`, a `readdir`, a `rename`); a release is one `rename`; a
//! holder renames once every `ttl / 3`; a waiting process lists the directory at every poll.

mod held;
mod request;
pub(crate) mod state;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tierlock_core::{LockName, RequestMark};

pub(crate) use held::LeaseLock;
use request::RequestFile;
use state::{Held, State};

use crate::error::{FileError, LeaseProblem};

/// The lease mode of one provider: its settings and what its waiters have seen.
#[derive(Debug)]
pub(crate) struct Leases {
    ttl: Duration,
    host: String,
    pid: u32,
    dir_mode: u32,
    file_mode: u32,
    /// How often a holder with local waiters lists its lease directory for requests.
    scan_every: Duration,
    /// Per lease directory, the held state this process's waiters saw and since when.
    seen: Mutex<HashMap<PathBuf, Seen>>,
}

#[derive(Debug)]
struct Seen {
    state: String,
    since: Instant,
    /// When a waiter last looked (entries nobody looks at any more are dropped).
    touched: Instant,
    window: Duration,
}

/// How many observations are kept before those nobody looks at any more are dropped.
const SEEN_SWEEP: usize = 1024;

impl Leases {
    pub(crate) fn new(ttl: Duration, dir_mode: u32, file_mode: u32, scan_every: Duration) -> Self {
        Leases {
            ttl,
            scan_every,
            host: state::host_name(),
            pid: std::process::id(),
            dir_mode,
            file_mode,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// One attempt at the lease of `name`, whose lease directory is `dir` inside `lock_dir`:
    /// `Ok(None)` while another process holds it and it is not (yet) stale.
    pub(crate) fn try_acquire(
        &self,
        lock_dir: &Path,
        dir: PathBuf,
        name: &LockName,
    ) -> Result<Option<LeaseLock>, FileError> {
        self.prepare(lock_dir, &dir, name)?;
        let (current, state) = read_state(&dir, name)?;
        let next = match state {
            State::Free { token } => self.new_held(token + 1),
            State::Held(held) => {
                let window = held.ttl.max(self.ttl);
                if !self.unchanged_for(&dir, &current, window) {
                    return Ok(None);
                }
                self.new_held(held.token + 1)
            }
        };
        let started = Instant::now();
        let swapped = state::swap(&dir, &current, &next.file_name())
            .map_err(|source| lease_error(&dir, name, source))?;
        if !swapped {
            return Ok(None);
        }
        self.seen.lock().remove(&dir);
        Ok(Some(LeaseLock::start(
            dir,
            name.clone(),
            next,
            started,
            self.scan_every,
        )))
    }

    /// Marks this process's interest in `name` with a request file in its lease directory.
    pub(crate) fn request(
        &self,
        lock_dir: &Path,
        dir: PathBuf,
        name: &LockName,
    ) -> Result<RequestMark, FileError> {
        self.prepare(lock_dir, &dir, name)?;
        RequestFile::create(&dir, self.ttl, self.file_mode)
            .map(RequestMark::new)
            .map_err(|source| lease_error(&dir, name, source))
    }

    fn new_held(&self, token: u64) -> Held {
        Held {
            token,
            beat: 0,
            ttl: self.ttl,
            owner: state::random_u64(),
            pid: self.pid,
            host: self.host.clone(),
        }
    }

    /// Whether this process has seen `state` in `dir`, and nothing else since, for `window`.
    fn unchanged_for(&self, dir: &Path, state: &str, window: Duration) -> bool {
        let now = Instant::now();
        let mut seen = self.seen.lock();
        if let Some(seen) = seen.get_mut(dir).filter(|seen| seen.state == state) {
            seen.touched = now;
            return now.duration_since(seen.since) >= window;
        }
        if seen.len() >= SEEN_SWEEP {
            seen.retain(|_, s| now.duration_since(s.touched) < s.window * 2);
        }
        seen.insert(
            dir.to_path_buf(),
            Seen {
                state: state.to_owned(),
                since: now,
                touched: now,
                window,
            },
        );
        false
    }

    /// Makes sure `dir` is a real directory (never a symbolic link) holding a state file,
    /// creating it with `free.0` if it does not exist.
    fn prepare(&self, lock_dir: &Path, dir: &Path, name: &LockName) -> Result<(), FileError> {
        let problem = |problem| FileError::LeaseState {
            path: dir.to_path_buf(),
            name: name.to_string(),
            problem,
        };
        match fs::symlink_metadata(dir) {
            Ok(meta) if meta.file_type().is_symlink() => Err(problem(LeaseProblem::Symlink)),
            Ok(meta) if !meta.is_dir() => Err(problem(LeaseProblem::NotADirectory)),
            Ok(_) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => self
                .create(lock_dir, dir)
                .map_err(|source| lease_error(dir, name, source)),
            Err(source) => Err(lease_error(dir, name, source)),
        }
    }

    /// Creates the lease directory with its first state file in one step: a populated
    /// temporary directory renamed into place, so no process ever sees it empty.
    fn create(&self, lock_dir: &Path, dir: &Path) -> io::Result<()> {
        let tmp = lock_dir.join(format!(".tierlock-new-{:016x}", state::random_u64()));
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, self.dir_mode);
        builder.create(&tmp)?;
        let first = tmp.join(state::free_name(0));
        let placed = fs::File::create_new(&first)
            .and_then(|_| set_mode(&tmp, self.dir_mode))
            .and_then(|()| fs::rename(&tmp, dir));
        if placed.is_ok() {
            return Ok(());
        }
        // Another process created it first (the rename found it there), or a real failure.
        let _ = fs::remove_file(&first);
        let _ = fs::remove_dir(&tmp);
        match fs::symlink_metadata(dir) {
            Ok(_) => Ok(()),
            Err(_) => placed,
        }
    }
}

/// Sets a directory's permission bits exactly (the umask narrows `mkdir`'s).
fn set_mode(dir: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (dir, mode);
        Ok(())
    }
}

/// The one state file of `dir`: its name and what it says. A listing taken while another
/// process renames the file may show it under neither or both names, so a listing without
/// exactly one is taken again, twice, before it counts as damage.
fn read_state(dir: &Path, name: &LockName) -> Result<(String, State), FileError> {
    let mut tries = 0;
    loop {
        let listing = state::list(dir).map_err(|source| lease_error(dir, name, source))?;
        let mut states = listing.states;
        let problem = match states.len() {
            1 => match states.pop() {
                Some((file, Ok(state))) => return Ok((file, state)),
                Some((file, Err(()))) => LeaseProblem::Unparsable(file),
                None => LeaseProblem::NoState,
            },
            0 => LeaseProblem::NoState,
            _ => LeaseProblem::SeveralStates(states.into_iter().map(|(file, _)| file).collect()),
        };
        tries += 1;
        if tries == 3 || matches!(problem, LeaseProblem::Unparsable(_)) {
            return Err(FileError::LeaseState {
                path: dir.to_path_buf(),
                name: name.to_string(),
                problem,
            });
        }
    }
}

fn lease_error(dir: &Path, name: &LockName, source: io::Error) -> FileError {
    FileError::Lease {
        path: dir.to_path_buf(),
        name: name.to_string(),
        source,
    }
}
