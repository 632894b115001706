//! The request signal in lease mode: files a waiting process keeps alive in the lease
//! directory, and the holder's view of them.
//!
//! A waiter creates `req.<ttl_ms>.<id>.<n>` and renames it to `n + 1` every `ttl / 3` while it
//! waits; dropping the mark deletes it. The holder lists the directory (in the background, see
//! `held.rs`) and counts a request file as live while its name is younger than the waiter's
//! `ttl` by the holder's own clock; a name older than that belongs to a waiter that died, and
//! the holder deletes it (only that name, so a live waiter that renamed it meanwhile is not
//! affected; a waiter whose file was deleted creates a new one).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::state::{self, REQUEST};

/// A waiter's request file, kept alive until dropped.
pub(crate) struct RequestFile {
    shared: Arc<Shared>,
    refresher: tokio::task::JoinHandle<()>,
}

struct Shared {
    dir: PathBuf,
    ttl: Duration,
    id: u64,
    file_mode: u32,
    /// The request's current beat, or `None` once the mark is dropped.
    beat: Mutex<Option<u64>>,
}

impl Shared {
    fn file_name(&self, beat: u64) -> String {
        format!("{REQUEST}.{}.{:016x}.{beat}", self.ttl.as_millis(), self.id)
    }

    fn create(&self, beat: u64) -> io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, self.file_mode);
        options.open(self.dir.join(self.file_name(beat))).map(drop)
    }

    /// Renames the request file to its next beat, or creates it again if the holder deleted it.
    fn refresh(&self) {
        let mut beat = self.beat.lock();
        let Some(current) = *beat else { return };
        let next = current + 1;
        let refreshed =
            match state::swap(&self.dir, &self.file_name(current), &self.file_name(next)) {
                Ok(true) => true,
                Ok(false) => self.create(next).is_ok(),
                Err(_) => false,
            };
        if refreshed {
            *beat = Some(next);
        }
    }
}

impl RequestFile {
    /// Creates the request file in the lease directory `dir` and starts refreshing it.
    pub(crate) fn create(dir: &Path, ttl: Duration, file_mode: u32) -> io::Result<RequestFile> {
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            ttl,
            id: state::random_u64(),
            file_mode,
            beat: Mutex::new(Some(0)),
        });
        shared.create(0)?;
        let refresher = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                let mut ticks = tokio::time::interval(ttl / 3);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    let shared = Arc::clone(&shared);
                    // A slow share must not hold up a runtime worker.
                    if tokio::task::spawn_blocking(move || shared.refresh())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(RequestFile { shared, refresher })
    }
}

impl Drop for RequestFile {
    fn drop(&mut self) {
        self.refresher.abort();
        if let Some(beat) = self.shared.beat.lock().take() {
            // Gone already if the holder found it stale; a leftover is deleted by a holder later.
            let _ = fs::remove_file(self.shared.dir.join(self.shared.file_name(beat)));
        }
    }
}

/// The holder's view of the request files of its lease directory.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    /// Request file name → when this holder first saw it.
    seen: HashMap<String, Instant>,
}

impl Requests {
    /// Updates the view from a listing of the lease directory `dir`; returns whether a live
    /// request is among them. Deletes request files that stayed unchanged for their `ttl`.
    pub(crate) fn update(&mut self, dir: &Path, names: Vec<String>) -> bool {
        let now = Instant::now();
        let mut live = false;
        let mut seen = HashMap::with_capacity(names.len());
        for name in names {
            let since = self.seen.get(&name).copied().unwrap_or(now);
            let ttl = request_ttl(&name);
            if ttl.is_some_and(|ttl| now.duration_since(since) < ttl) {
                live = true;
                seen.insert(name, since);
            } else {
                // Its waiter stopped refreshing it (or it is not tierlock's): remove it.
                let _ = fs::remove_file(dir.join(&name));
            }
        }
        self.seen = seen;
        live
    }
}

/// The `ttl` in a request file name `req.<ttl_ms>.<id>.<n>`, if it parses.
fn request_ttl(name: &str) -> Option<Duration> {
    let mut fields = name.split('.');
    if fields.next() != Some(REQUEST) {
        return None;
    }
    let ttl = fields.next()?.parse().ok().map(Duration::from_millis)?;
    let id = fields.next()?;
    let beat = fields.next()?;
    let valid = id.len() == 16
        && u64::from_str_radix(id, 16).is_ok()
        && beat.parse::<u64>().is_ok()
        && fields.next().is_none();
    valid.then_some(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_names_parse() {
        assert_eq!(
            request_ttl("req.3000.00000000000000ff.12"),
            Some(Duration::from_secs(3))
        );
        for bad in [
            "req",
            "req.x.00000000000000ff.1",
            "req.1.ff.1",
            "req.1.00000000000000ff",
            "req.1.00000000000000ff.1.2",
            "held.1.00000000000000ff.1",
        ] {
            assert_eq!(request_ttl(bad), None, "{bad}");
        }
    }

    #[test]
    fn stale_and_foreign_request_files_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let live = "req.60000.00000000000000aa.0";
        let stale = "req.1.00000000000000bb.0";
        let foreign = "req.junk";
        for name in [live, stale, foreign] {
            fs::write(tmp.path().join(name), b"").unwrap();
        }
        let mut requests = Requests::default();
        let names = || state::list(tmp.path()).unwrap().requests;
        assert!(requests.update(tmp.path(), names()), "a fresh name is live");
        std::thread::sleep(Duration::from_millis(5));
        assert!(requests.update(tmp.path(), names()));
        assert!(tmp.path().join(live).exists());
        assert!(!tmp.path().join(stale).exists(), "unchanged for its ttl");
        assert!(!tmp.path().join(foreign).exists());
    }
}
