//! The state of a lease directory, encoded in the *name* of its one state file, and the
//! compare-and-swap that changes it.
//!
//! A lease directory holds exactly one state file, from its creation on:
//!
//! * `free.<token>` — nobody holds the lock; `token` is the last fencing token handed out;
//! * `held.<token>.<beat>.<ttl_ms>.<owner>.<pid>.<host>` — held with fencing token `token` by
//!   the lease `owner` (16 hex digits, random per acquisition) of process `pid` on `host`, which
//!   renews it every `ttl_ms / 3` by counting `beat` up.
//!
//! Every change is a `rename` of the state file from the name the changer saw to a new name.
//! `rename` is atomic on the server of every share that supports it (NFSv3+, SMB2+, FUSE back
//! ends on a local disk), and it fails with `ENOENT` when the source name is gone. Because no
//! name ever comes back (tokens and beats only grow, owners are random), a rename from a name is
//! a compare-and-swap on the whole state: exactly one of several processes renaming the same
//! name succeeds, and a rename can never undo a change it did not see. The file's contents are
//! never read, so stale data caches on a share cannot mislead anyone; a stale *directory
//! listing* can only make a process try a rename that then fails.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

/// Prefix of a free state.
const FREE: &str = "free";
/// Prefix of a held state.
const HELD: &str = "held";
/// Prefix of a request file (see `request.rs`).
pub(crate) const REQUEST: &str = "req";

/// A parsed state file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Nobody holds the lock.
    Free {
        /// The last fencing token handed out (0 before the first acquisition).
        token: u64,
    },
    /// Somebody holds the lock.
    Held(Held),
}

/// A held lease, as named by its state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) token: u64,
    pub(crate) beat: u64,
    pub(crate) ttl: Duration,
    pub(crate) owner: u64,
    pub(crate) pid: u32,
    pub(crate) host: String,
}

impl Held {
    /// The state file's name.
    pub(crate) fn file_name(&self) -> String {
        let mut name = String::with_capacity(96);
        // Writing to a String cannot fail.
        let _ = write!(
            name,
            "{HELD}.{}.{}.{}.{:016x}.{}.{}",
            self.token,
            self.beat,
            self.ttl.as_millis(),
            self.owner,
            self.pid,
            self.host
        );
        name
    }

    /// The same lease, renewed once.
    pub(crate) fn next_beat(&self) -> Held {
        Held {
            beat: self.beat + 1,
            ..self.clone()
        }
    }
}

/// The name of the free state with `token`.
pub(crate) fn free_name(token: u64) -> String {
    format!("{FREE}.{token}")
}

/// Parses a directory entry: `None` if it is not a state file at all (a request file, or
/// something else), `Some(Err(()))` if it claims to be one but does not parse.
pub(crate) fn parse(file_name: &str) -> Option<Result<State, ()>> {
    let (kind, rest) = file_name.split_once('.')?;
    match kind {
        FREE => Some(
            rest.parse()
                .map(|token| State::Free { token })
                .map_err(drop),
        ),
        HELD => Some(parse_held(rest).ok_or(()).map(State::Held)),
        _ => None,
    }
}

fn parse_held(rest: &str) -> Option<Held> {
    let mut fields = rest.splitn(6, '.');
    let token = fields.next()?.parse().ok()?;
    let beat = fields.next()?.parse().ok()?;
    let ttl = Duration::from_millis(fields.next()?.parse().ok()?);
    let owner = fields.next()?;
    if owner.len() != 16 {
        return None;
    }
    let owner = u64::from_str_radix(owner, 16).ok()?;
    let pid = fields.next()?.parse().ok()?;
    let host = fields.next()?;
    if !host.bytes().all(is_host_byte) {
        return None;
    }
    Some(Held {
        token,
        beat,
        ttl,
        owner,
        pid,
        host: host.to_owned(),
    })
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// This host's name, reduced to `[A-Za-z0-9-]` and 63 bytes, for the state file names (a hint
/// for people; the owner id is what identifies a lease). Empty if unknown.
pub(crate) fn host_name() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let raw = raw.trim();
    // The first label only: dots separate the fields of a state file name.
    let label = raw.split('.').next().unwrap_or("");
    label
        .bytes()
        .filter(|&b| is_host_byte(b))
        .take(63)
        .map(char::from)
        .collect()
}

/// What a lease directory holds.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// State files: the name, and what it parses to.
    pub(crate) states: Vec<(String, Result<State, ()>)>,
    /// Request files.
    pub(crate) requests: Vec<String>,
}

/// Lists a lease directory (entries that are neither state nor request files are ignored).
pub(crate) fn list(dir: &Path) -> io::Result<Listing> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some(state) = parse(&name) {
            listing.states.push((name, state));
        } else if name.starts_with(REQUEST) && name.as_bytes().get(REQUEST.len()) == Some(&b'.') {
            listing.requests.push(name);
        }
    }
    Ok(listing)
}

/// Renames `dir/from` to `dir/to`: `Ok(true)` if this call made the change, `Ok(false)` if
/// `from` was gone (someone else changed the state first).
///
/// A rename that fails with `ENOENT` although `to` exists afterwards is counted as done: on NFS
/// a retransmitted `RENAME` whose first transmission succeeded reports `ENOENT`, and no other
/// process ever creates `to` (names never come back).
pub(crate) fn swap(dir: &Path, from: &str, to: &str) -> io::Result<bool> {
    let target = dir.join(to);
    match fs::rename(dir.join(from), &target) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => match fs::symlink_metadata(&target) {
            Ok(_) => Ok(true),
            Err(_) => Ok(false),
        },
        Err(err) => Err(err),
    }
}

/// A random 64-bit number, different in every call and every process (for lease owner and
/// request ids; not for cryptography).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    // `RandomState` is seeded from the operating system's random source per process.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> Held {
        Held {
            token: 42,
            beat: 7,
            ttl: Duration::from_millis(10_000),
            owner: 0x00ab_cdef_0123_4567,
            pid: 4321,
            host: "web-1".to_owned(),
        }
    }

    #[test]
    fn names_round_trip() {
        let h = held();
        assert_eq!(h.file_name(), "held.42.7.10000.00abcdef01234567.4321.web-1");
        assert_eq!(parse(&h.file_name()), Some(Ok(State::Held(h.clone()))));
        let empty_host = Held {
            host: String::new(),
            ..held()
        };
        assert_eq!(
            parse(&empty_host.file_name()),
            Some(Ok(State::Held(empty_host)))
        );
        assert_eq!(free_name(9), "free.9");
        assert_eq!(parse("free.9"), Some(Ok(State::Free { token: 9 })));
        assert_eq!(h.next_beat().beat, 8);
        assert_eq!(h.next_beat().token, 42);
    }

    #[test]
    fn garbage_is_told_apart() {
        for bad in [
            "free.",
            "free.x",
            "free.-1",
            "held.1",
            "held.1.2.3.4.5.6",
            "held.1.2.3.00abcdef01234567.5.bad.host",
            "held.1.2.3.00abcdef01234567.5.h/x",
            "held.1.2.3.zzzzzzzzzzzzzzzz.5.h",
        ] {
            assert_eq!(parse(bad), Some(Err(())), "{bad}");
        }
        for other in ["req.1.2.3", "freeze", "x", "", ".hidden"] {
            assert_eq!(parse(other), None, "{other}");
        }
    }

    #[test]
    fn host_names_are_safe_in_file_names() {
        let host = host_name();
        assert!(host.len() <= 63);
        assert!(host.bytes().all(is_host_byte), "{host}");
    }

    #[test]
    fn swap_is_a_compare_and_swap() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("free.0"), b"").unwrap();
        assert!(swap(tmp.path(), "free.0", "free.1").unwrap());
        assert!(
            !swap(tmp.path(), "free.0", "free.2").unwrap(),
            "the source is gone"
        );
        assert!(
            swap(tmp.path(), "free.0", "free.1").unwrap(),
            "the target exists: a retransmitted rename that did happen"
        );
        let listing = list(tmp.path()).unwrap();
        assert_eq!(listing.states.len(), 1);
    }

    #[test]
    fn random_numbers_differ() {
        let a: std::collections::HashSet<u64> = (0..1000).map(|_| random_u64()).collect();
        assert_eq!(a.len(), 1000);
    }
}
