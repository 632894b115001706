//! `tierlock doctor --peer`: two doctors on two hosts find each other through the share and
//! prove whether a `flock`, and a lease, taken by one excludes the other.
//!
//! # Rendezvous
//!
//! Each doctor announces itself in `DIR/.tierlock-doctor/` with an empty file
//! `peer.<id>.<beat>` (`id`: 16 random hex digits) that it renames to the next beat about every
//! 100 ms for as long as it runs. Clocks are never compared: another doctor is *live* once its
//! file has been seen under two names. A file left behind by a killed doctor never changes, so
//! it is never paired with. Each doctor waits up to `--timeout` until exactly one other doctor
//! is live; the one with the lower id leads.
//!
//! # The protocol
//!
//! The leader creates `DIR/.tierlock-doctor/pair.<lower id>.<higher id>/`, and the two talk
//! through *step files* in it, named `<step>.<outcome>`, created complete (written under a
//! temporary name, then renamed) and holding a message when the outcome is `failed`:
//!
//! | step | written by | outcome |
//! |---|---|---|
//! | `flock.lead` | the leader, holding an exclusive `flock` on `probe` | `held` or `failed` |
//! | `flock.follow` | the follower, after one non-blocking exclusive `flock` on `probe` | `excluded`, `acquired`, `failed` or `skipped` |
//! | `lease.lead` | the leader, holding the lease `doctor` in `lease/` (ttl 2 s) | `held` or `failed` |
//! | `lease.follow` | the follower, after one `try_lock` of it through its own provider | as `flock.follow` |
//! | `done` | the leader, once it has read `lease.follow` | `read` |
//!
//! The leader releases each lock only after the follower's answer, so `acquired` means that
//! both held the lock at once. The follower keeps its last answer until it sees `done` (or the
//! leader gone). Each wait is bounded by `--timeout`; a peer whose announcement
//! disappears, or stays unchanged for 10 s, has gone away. Both doctors derive the verdict from
//! the same two outcomes, so they print the same lines.
//!
//! # Cleanup
//!
//! Each doctor removes what it created, also when it fails or its peer goes away: its
//! announcement and its step files, and the leader the probe file and the lease directory.
//! Whichever of the two finishes last finds the pair directory empty and removes it.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tierlock::{FileLockMode, FileProvider, LockManager};

use super::{
    DoctorError, Id, Kind, create_file, is_contended, make_dir, read_small, remove_if_empty,
};
use crate::chain;

/// How often a doctor renames its announcement.
const BEAT: Duration = Duration::from_millis(100);

/// How often a waiting doctor looks for its peer's files.
const POLL: Duration = Duration::from_millis(25);

/// How long a paired peer's announcement may stay unchanged before the peer counts as gone.
const PEER_SILENCE: Duration = Duration::from_secs(10);

/// The time to live of the lease the leader holds: short, so a leader that dies mid-check
/// blocks nothing for long (the lease directory is scratch anyway).
const LEASE_TTL: Duration = Duration::from_secs(2);

/// The lock name of the lease check.
const LEASE_NAME: &str = "doctor";

/// The file the `flock` check locks, in the pair directory.
const FLOCK_PROBE: &str = "probe";

/// The lock directory of the lease check, in the pair directory.
const LEASE_DIR: &str = "lease";

/// The announcement files' prefix.
const ANNOUNCEMENT: &str = "peer.";

/// The mode the directory uses, for the verdict.
#[derive(Debug, Clone, Copy)]
pub(super) struct Used {
    pub(super) kind: Kind,
    /// Whether it is recorded in the directory's mode file.
    pub(super) recorded: bool,
}

/// Finds the peer in `rendezvous`, runs the protocol with it and prints the peer's line and the
/// verdict: `Ok(true)` if the mode `used` excludes across the two hosts.
pub(super) async fn prove(
    rendezvous: &Path,
    me: Id,
    timeout: Duration,
    used: Used,
) -> Result<bool, DoctorError> {
    let mut announcer = Announcer::start(rendezvous, me)?;
    let mut watcher = Watcher::new(me);
    eprintln!(
        "tierlock doctor: waiting up to {timeout:?} for `tierlock doctor --peer` on another host \
         (this one is {me})"
    );
    let peer = discover(&mut announcer, &mut watcher, timeout).await?;
    let role = if me < peer { Role::Lead } else { Role::Follow };
    let leads = match role {
        Role::Lead => "this host leads",
        Role::Follow => "the peer leads",
    };
    super::fact(
        "peer",
        format_args!("found (id {peer}, this host's {me}; {leads})"),
    );

    let mut session = Session::start(announcer, watcher, peer, role, timeout)?;
    let flock = match role {
        Role::Lead => lead_flock(&mut session).await?,
        Role::Follow => follow_flock(&mut session).await?,
    };
    let lease = match role {
        Role::Lead => lead_lease(&mut session).await?,
        Role::Follow => follow_lease(&mut session).await?,
    };
    match role {
        Role::Lead => session.post("done", "read", "")?,
        // Removing the last answer before the leader has read it would leave it waiting: wait
        // for its `done`, or for it to go away (it removes `done` as it ends). Either way the
        // verdict is known already, so neither a timeout nor an error here changes it.
        Role::Follow => {
            let _ = session.answer("done").await;
        }
    }
    drop(session);

    println!("flock across the two hosts: {flock}");
    println!("lease across the two hosts: {lease}");
    let (line, safe) = verdict(used, &flock, &lease);
    println!("{line}");
    Ok(safe)
}

/// The error message when no single peer showed up.
pub(super) fn no_peer_message(dir: &Path, waited: Duration, live: usize) -> String {
    let found = match live {
        0 => "no other `tierlock doctor --peer` showed up".to_owned(),
        n => format!("{n} other doctors were running, not exactly one"),
    };
    format!(
        "{found} in {} within {waited:?}: start `tierlock doctor --peer --dir …` on the other host \
         at the same time (or raise --timeout)",
        dir.display()
    )
}

/// Which side of the protocol this doctor plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Takes the locks (the lower id).
    Lead,
    /// Tries to take them while the leader holds them.
    Follow,
}

/// This doctor's announcement, `peer.<id>.<beat>`, renamed at every beat and removed on drop.
#[derive(Debug)]
struct Announcer {
    rendezvous: PathBuf,
    me: Id,
    beat: u64,
    last: Instant,
}

impl Announcer {
    fn start(rendezvous: &Path, me: Id) -> Result<Announcer, DoctorError> {
        let announcer = Announcer {
            rendezvous: rendezvous.to_path_buf(),
            me,
            beat: 0,
            last: Instant::now(),
        };
        let path = announcer.path(0);
        create_file(&path).map_err(|source| DoctorError::Files {
            action: "announce this doctor in",
            path,
            source,
        })?;
        Ok(announcer)
    }

    fn path(&self, beat: u64) -> PathBuf {
        self.rendezvous
            .join(format!("{ANNOUNCEMENT}{}.{beat}", self.me))
    }

    /// Renames the announcement to its next beat if one is due. Failures are left to the next
    /// beat: a peer that sees no change for long gives up on its own.
    fn beat_if_due(&mut self) {
        if self.last.elapsed() < BEAT {
            return;
        }
        self.last = Instant::now();
        let next = self.path(self.beat + 1);
        let moved = match fs::rename(self.path(self.beat), &next) {
            // Someone removed it: announce afresh.
            Err(err) if err.kind() == io::ErrorKind::NotFound => create_file(&next).map(drop),
            other => other,
        };
        if moved.is_ok() {
            self.beat += 1;
        }
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.path(self.beat));
        remove_if_empty(&self.rendezvous);
    }
}

/// The other doctors' announcements, as this one has seen them.
#[derive(Debug)]
struct Watcher {
    me: Id,
    seen: HashMap<Id, Sighting>,
}

#[derive(Debug)]
struct Sighting {
    /// The announcement's name when last seen.
    name: String,
    /// Whether it was ever seen under another name: the doctor is alive.
    changed: bool,
    /// When its name was first seen or last changed.
    since: Instant,
}

/// What became of a paired peer.
#[derive(Debug)]
enum PeerState {
    Live,
    Gone(String),
}

impl Watcher {
    fn new(me: Id) -> Watcher {
        Watcher {
            me,
            seen: HashMap::new(),
        }
    }

    /// Lists `rendezvous` and updates what was seen; forgets announcements that are gone.
    fn look(&mut self, rendezvous: &Path) -> Result<(), DoctorError> {
        let names = list(rendezvous).map_err(|source| DoctorError::Files {
            action: "list",
            path: rendezvous.to_path_buf(),
            source,
        })?;
        let mut current = HashMap::new();
        for name in names {
            if let Some(id) = announcement_id(&name).filter(|id| *id != self.me) {
                current.insert(id, name);
            }
        }
        self.seen.retain(|id, _| current.contains_key(id));
        let now = Instant::now();
        for (id, name) in current {
            match self.seen.get_mut(&id) {
                Some(sighting) if sighting.name != name => {
                    *sighting = Sighting {
                        name,
                        changed: true,
                        since: now,
                    };
                }
                Some(_) => {}
                None => {
                    self.seen.insert(
                        id,
                        Sighting {
                            name,
                            changed: false,
                            since: now,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// The doctors seen alive.
    fn live(&self) -> Vec<Id> {
        self.seen
            .iter()
            .filter(|(_, sighting)| sighting.changed)
            .map(|(id, _)| *id)
            .collect()
    }

    fn state(&self, peer: Id) -> PeerState {
        match self.seen.get(&peer) {
            None => PeerState::Gone("its announcement disappeared".to_owned()),
            Some(sighting) if sighting.since.elapsed() > PEER_SILENCE => PeerState::Gone(format!(
                "its announcement stayed unchanged for {PEER_SILENCE:?}"
            )),
            Some(_) => PeerState::Live,
        }
    }
}

/// The id in an announcement's name, `peer.<id>.<beat>`.
fn announcement_id(name: &str) -> Option<Id> {
    let (id, beat) = name.strip_prefix(ANNOUNCEMENT)?.split_once('.')?;
    beat.parse::<u64>().ok()?;
    Id::parse(id)
}

/// The names in `dir` (none if it does not exist yet); names that are not UTF-8 are skipped.
fn list(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Waits until exactly one other doctor is live, announcing this one meanwhile.
async fn discover(
    announcer: &mut Announcer,
    watcher: &mut Watcher,
    timeout: Duration,
) -> Result<Id, DoctorError> {
    let deadline = Instant::now() + timeout;
    loop {
        announcer.beat_if_due();
        watcher.look(&announcer.rendezvous)?;
        let live = watcher.live();
        if let [peer] = live[..] {
            return Ok(peer);
        }
        if Instant::now() >= deadline {
            return Err(DoctorError::NoPeer {
                dir: announcer.rendezvous.clone(),
                waited: timeout,
                live: live.len(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Two paired doctors: the pair directory, the step files this one posted, and what it needs
/// to keep announcing itself and watching its peer. Dropping it removes this doctor's files.
#[derive(Debug)]
struct Session {
    dir: PathBuf,
    role: Role,
    peer: Id,
    timeout: Duration,
    /// Step files (and their temporary names) this doctor created.
    posted: Vec<PathBuf>,
    watcher: Watcher,
    // Dropped last, after the pair directory's files: it may remove `.tierlock-doctor`.
    announcer: Announcer,
}

impl Session {
    fn start(
        announcer: Announcer,
        watcher: Watcher,
        peer: Id,
        role: Role,
        timeout: Duration,
    ) -> Result<Session, DoctorError> {
        let me = announcer.me;
        let (low, high) = if me < peer { (me, peer) } else { (peer, me) };
        let dir = announcer.rendezvous.join(format!("pair.{low}.{high}"));
        let session = Session {
            dir,
            role,
            peer,
            timeout,
            posted: Vec::new(),
            watcher,
            announcer,
        };
        if role == Role::Lead {
            make_dir(&session.dir).map_err(|source| DoctorError::Files {
                action: "create the pair directory",
                path: session.dir.clone(),
                source,
            })?;
        }
        Ok(session)
    }

    /// Posts this doctor's `outcome` of `step`, with `detail` as the file's contents.
    fn post(&mut self, step: &str, outcome: &str, detail: &str) -> Result<(), DoctorError> {
        let temporary = self.dir.join(format!(".{step}.tmp"));
        let path = self.dir.join(format!("{step}.{outcome}"));
        let error = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| DoctorError::Files {
                action,
                path,
                source,
            }
        };
        self.posted.push(temporary.clone());
        let mut file = create_file(&temporary).map_err(error("create", &temporary))?;
        file.write_all(detail.as_bytes())
            .map_err(error("write", &temporary))?;
        drop(file);
        self.posted.push(path.clone());
        fs::rename(&temporary, &path).map_err(error("rename into place", &path))
    }

    /// Waits for the peer's outcome of `step` (and the file's contents), announcing this doctor
    /// and watching the peer meanwhile.
    async fn answer(&mut self, step: &'static str) -> Result<(String, String), DoctorError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            self.announcer.beat_if_due();
            if let Some(answer) = self.read_step(step)? {
                return Ok(answer);
            }
            self.watcher.look(&self.announcer.rendezvous)?;
            if let PeerState::Gone(why) = self.watcher.state(self.peer) {
                // Its answer may have landed just before it left.
                if let Some(answer) = self.read_step(step)? {
                    return Ok(answer);
                }
                return Err(DoctorError::PeerGone { step, why });
            }
            if Instant::now() >= deadline {
                return Err(DoctorError::StepTimeout {
                    step,
                    waited: self.timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The outcome of `step` and its file's contents, if it has been posted.
    fn read_step(&self, step: &str) -> Result<Option<(String, String)>, DoctorError> {
        let error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DoctorError::Files {
                action: "read",
                path,
                source,
            }
        };
        let prefix = format!("{step}.");
        let names = list(&self.dir).map_err(error(&self.dir))?;
        let Some(outcome) = names.iter().find_map(|name| name.strip_prefix(&prefix)) else {
            return Ok(None);
        };
        let path = self.dir.join(format!("{prefix}{outcome}"));
        let detail = read_small(&path).map_err(error(&path))?;
        Ok(Some((outcome.to_owned(), detail)))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for path in &self.posted {
            let _ = fs::remove_file(path);
        }
        if self.role == Role::Lead {
            let _ = fs::remove_file(self.dir.join(FLOCK_PROBE));
            let _ = fs::remove_dir_all(self.dir.join(LEASE_DIR));
        }
        remove_if_empty(&self.dir);
    }
}

/// What the leader did with a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Take {
    Held,
    Failed(String),
}

impl Take {
    fn post(&self, session: &mut Session, step: &str) -> Result<(), DoctorError> {
        match self {
            Take::Held => session.post(step, "held", ""),
            Take::Failed(why) => session.post(step, "failed", why),
        }
    }

    fn parse((outcome, detail): (String, String)) -> Take {
        match outcome.as_str() {
            "held" => Take::Held,
            "failed" => Take::Failed(detail),
            other => Take::Failed(format!(
                "it answered {other:?}, which this doctor does not know"
            )),
        }
    }
}

/// What the follower's one attempt found while the leader held the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Trial {
    Excluded,
    Acquired,
    Failed(String),
    /// The leader did not hold the lock: nothing to try.
    Skipped,
}

impl Trial {
    fn post(&self, session: &mut Session, step: &str) -> Result<(), DoctorError> {
        match self {
            Trial::Excluded => session.post(step, "excluded", ""),
            Trial::Acquired => session.post(step, "acquired", ""),
            Trial::Failed(why) => session.post(step, "failed", why),
            Trial::Skipped => session.post(step, "skipped", ""),
        }
    }

    fn parse((outcome, detail): (String, String)) -> Trial {
        match outcome.as_str() {
            "excluded" => Trial::Excluded,
            "acquired" => Trial::Acquired,
            "skipped" => Trial::Skipped,
            "failed" => Trial::Failed(detail),
            other => Trial::Failed(format!(
                "it answered {other:?}, which this doctor does not know"
            )),
        }
    }
}

/// Whether a lock taken on one host excluded the other.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Crossing {
    Exclusive,
    NotExclusive,
    Unchecked(String),
}

impl Crossing {
    fn of(take: &Take, trial: &Trial) -> Crossing {
        match (take, trial) {
            (Take::Failed(why), _) => {
                Crossing::Unchecked(format!("the leading host could not take it: {why}"))
            }
            (Take::Held, Trial::Excluded) => Crossing::Exclusive,
            (Take::Held, Trial::Acquired) => Crossing::NotExclusive,
            (Take::Held, Trial::Failed(why)) => {
                Crossing::Unchecked(format!("the following host could not try it: {why}"))
            }
            (Take::Held, Trial::Skipped) => {
                Crossing::Unchecked("the following host did not try it".to_owned())
            }
        }
    }
}

impl fmt::Display for Crossing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Crossing::Exclusive => f.write_str("exclusive"),
            Crossing::NotExclusive => f.write_str("NOT EXCLUSIVE (both held the lock at once)"),
            Crossing::Unchecked(why) => write!(f, "NOT CHECKED ({why})"),
        }
    }
}

/// The last line, and whether the mode the directory uses is safe across the two hosts.
fn verdict(used: Used, flock: &Crossing, lease: &Crossing) -> (String, bool) {
    let (mine, other, other_kind) = match used.kind {
        Kind::Flock => (flock, lease, Kind::Lease),
        Kind::Lease => (lease, flock, Kind::Flock),
    };
    let head = format!("this directory uses {} mode", used.kind);
    let problem = match mine {
        Crossing::Exclusive => return (format!("{head}: safe"), true),
        Crossing::NotExclusive => format!("{} does not exclude across these hosts", used.kind),
        Crossing::Unchecked(_) => format!("{} could not be checked across these hosts", used.kind),
    };
    let advice = match other {
        Crossing::Exclusive if used.recorded => format!(
            "use --mode {other_kind}, after deleting .tierlock-mode with no process using the \
             directory"
        ),
        Crossing::Exclusive => format!("use --mode {other_kind}"),
        _ => "neither mode excludes here: use a database (--url)".to_owned(),
    };
    (format!("{head}: UNSAFE ({problem}); {advice}"), false)
}

/// The leader's `flock` check: hold an exclusive `flock` on the probe file until the follower
/// has tried it.
async fn lead_flock(session: &mut Session) -> Result<Crossing, DoctorError> {
    let probe = session.dir.join(FLOCK_PROBE);
    let held = create_file(&probe)
        .map_err(|err| format!("cannot create {}: {err}", probe.display()))
        .and_then(|file| match fs2::FileExt::try_lock_exclusive(&file) {
            Ok(()) => Ok(file),
            Err(err) => Err(format!("flock failed: {err}")),
        });
    let take = match &held {
        Ok(_) => Take::Held,
        Err(why) => Take::Failed(why.clone()),
    };
    take.post(session, "flock.lead")?;
    let trial = Trial::parse(session.answer("flock.follow").await?);
    // Closing the handle releases the lock.
    drop(held);
    Ok(Crossing::of(&take, &trial))
}

/// The follower's `flock` check: one non-blocking exclusive `flock` on the probe file while the
/// leader holds it.
async fn follow_flock(session: &mut Session) -> Result<Crossing, DoctorError> {
    let take = Take::parse(session.answer("flock.lead").await?);
    let trial = match take {
        Take::Held => try_flock(&session.dir.join(FLOCK_PROBE)),
        Take::Failed(_) => Trial::Skipped,
    };
    trial.post(session, "flock.follow")?;
    Ok(Crossing::of(&take, &trial))
}

/// One non-blocking exclusive `flock` on `path` through a new handle (released at once).
fn try_flock(path: &Path) -> Trial {
    let file = match fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(err) => return Trial::Failed(format!("cannot open {}: {err}", path.display())),
    };
    match fs2::FileExt::try_lock_exclusive(&file) {
        Ok(()) => Trial::Acquired,
        Err(err) if is_contended(&err) => Trial::Excluded,
        Err(err) => Trial::Failed(format!("flock failed: {err}")),
    }
}

/// The lease check's lock manager on this doctor's view of the pair's lease directory.
fn lease_locks(session: &Session) -> Result<LockManager, String> {
    FileProvider::builder(session.dir.join(LEASE_DIR))
        .mode(FileLockMode::Lease { ttl: LEASE_TTL })
        .build()
        .map(LockManager::new)
        .map_err(|err| chain(&err))
}

/// The leader's lease check: hold the lease until the follower has tried it.
async fn lead_lease(session: &mut Session) -> Result<Crossing, DoctorError> {
    let held = match lease_locks(session) {
        Ok(locks) => locks
            .lock(LEASE_NAME, session.timeout)
            .await
            .map_err(|err| chain(&err)),
        Err(why) => Err(why),
    };
    let take = match &held {
        Ok(_) => Take::Held,
        Err(why) => Take::Failed(why.clone()),
    };
    take.post(session, "lease.lead")?;
    let trial = Trial::parse(session.answer("lease.follow").await?);
    if let Ok(guard) = held {
        if let Err(err) = guard.release().await {
            eprintln!(
                "tierlock doctor: warning: releasing the lease: {}",
                chain(&err)
            );
        }
    }
    Ok(Crossing::of(&take, &trial))
}

/// The follower's lease check: one `try_lock` through its own provider while the leader holds
/// the lease.
async fn follow_lease(session: &mut Session) -> Result<Crossing, DoctorError> {
    let take = Take::parse(session.answer("lease.lead").await?);
    let trial = match take {
        Take::Held => try_lease(session).await,
        Take::Failed(_) => Trial::Skipped,
    };
    trial.post(session, "lease.follow")?;
    Ok(Crossing::of(&take, &trial))
}

/// One `try_lock` of the lease (released at once if it was acquired).
async fn try_lease(session: &Session) -> Trial {
    let locks = match lease_locks(session) {
        Ok(locks) => locks,
        Err(why) => return Trial::Failed(why),
    };
    match locks.try_lock(LEASE_NAME).await {
        Ok(Some(guard)) => {
            // Both hold it: report that; a failed release changes nothing about it.
            let _ = guard.release().await;
            Trial::Acquired
        }
        Ok(None) => Trial::Excluded,
        Err(err) => Trial::Failed(chain(&err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_parse() {
        let id = Id(0xabc);
        assert_eq!(announcement_id(&format!("peer.{id}.17")), Some(id));
        assert_eq!(announcement_id(&format!("peer.{id}.x")), None);
        assert_eq!(announcement_id(&format!("run.{id}")), None);
        assert_eq!(announcement_id("peer.abc.1"), None);
    }

    #[test]
    fn only_a_changing_announcement_is_live() {
        let tmp = tempfile::tempdir().unwrap();
        let stale = tmp.path().join(format!("peer.{}.3", Id(1)));
        let live = tmp.path().join(format!("peer.{}.0", Id(2)));
        fs::write(&stale, "").unwrap();
        fs::write(&live, "").unwrap();
        let mut watcher = Watcher::new(Id(3));
        watcher.look(tmp.path()).unwrap();
        assert!(watcher.live().is_empty());
        fs::rename(&live, tmp.path().join(format!("peer.{}.1", Id(2)))).unwrap();
        watcher.look(tmp.path()).unwrap();
        assert_eq!(watcher.live(), vec![Id(2)]);
        assert!(matches!(watcher.state(Id(2)), PeerState::Live));
        fs::remove_file(tmp.path().join(format!("peer.{}.1", Id(2)))).unwrap();
        watcher.look(tmp.path()).unwrap();
        assert!(matches!(watcher.state(Id(2)), PeerState::Gone(_)));
    }

    #[test]
    fn verdicts() {
        let flock = Used {
            kind: Kind::Flock,
            recorded: false,
        };
        let lease = Used {
            kind: Kind::Lease,
            recorded: false,
        };
        let (yes, no) = (Crossing::Exclusive, Crossing::NotExclusive);
        assert_eq!(
            verdict(lease, &no, &yes),
            ("this directory uses lease mode: safe".to_owned(), true)
        );
        let (line, safe) = verdict(flock, &no, &yes);
        assert!(!safe);
        assert!(
            line.contains("UNSAFE") && line.contains("--mode lease"),
            "{line}"
        );
        let (line, _) = verdict(flock, &no, &no);
        assert!(line.contains("--url"), "{line}");
        let unchecked = Crossing::of(&Take::Failed("ENOLCK".to_owned()), &Trial::Skipped);
        assert_eq!(
            unchecked.to_string(),
            "NOT CHECKED (the leading host could not take it: ENOLCK)"
        );
    }
}
