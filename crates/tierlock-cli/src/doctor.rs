//! `tierlock doctor`: what tierlock knows about a lock directory, and — with `--peer` — proof
//! that its locks exclude across two hosts.
//!
//! The file provider picks its mode from the directory's mount: `flock` where the mount is
//! local or known to forward locks, a lease everywhere else. That choice is a classification of
//! the mount, not a measurement, and on a share tierlock cannot classify (any plain FUSE file
//! system, 9p, virtiofs…) only a test between two hosts can tell whether `flock` crosses them.
//!
//! `doctor --dir D` prints the facts behind the choice, one per line: the mount, its class and
//! why, the mode a provider would use and the mode recorded in `D/.tierlock-mode`. It then checks
//! on this host what each mode relies on — that an exclusive `flock` excludes a second handle,
//! that an exclusive create refuses an existing name, that `rename` moves a name and fails once
//! its source is gone — measures one acquire/release in each mode through a real
//! [`FileProvider`], and reports how far the share's clock (the `mtime` it gives a new file) is
//! from this host's.
//!
//! `doctor --dir D --peer`, started on two hosts at once, also proves exclusion between them
//! through the share (see [`peer`]): one takes a `flock` and then a lease, the other tries to
//! take them, and both print the same verdict on the mode the directory uses.
//!
//! Doctor never changes how the directory is used. It creates `D` if it is missing (as a
//! provider would), works in `D/.tierlock-doctor/`, removes what it created there when it ends
//! (also on errors, Ctrl-C and SIGTERM; a doctor killed otherwise leaves its files, which later
//! runs ignore), and only reads the mode file.

mod peer;

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use tierlock::{FileLockMode, FileProvider, LockManager, Mount};

use crate::{ModeArg, Terminate, chain};

/// `--help` text after the options.
const AFTER_HELP: &str = "\
Exit codes:
  0  the mode DIR uses (recorded in DIR/.tierlock-mode, else --mode, else chosen from the mount)
     excludes across the two hosts; without --peer: every local check that mode relies on passed
  1  it does not (the verdict says UNSAFE and what to use instead), or a local check failed
  2  usage error, or DIR is unusable (not a directory, not writable, a bad .tierlock-mode)
  3  --peer: no live peer within --timeout, or the peer went away before the checks were done

Examples:
  tierlock doctor --dir /mnt/share/locks
  tierlock doctor --dir /mnt/share/locks --peer        # on two hosts at the same time
  tierlock doctor --dir /mnt/share/locks --peer --mode flock";

/// Where doctor works inside the lock directory (its name starts with `.`, as no lock file's
/// does).
const SCRATCH: &str = ".tierlock-doctor";

/// The mode file a provider writes in the lock directory (read, never written, by doctor).
const MODE_FILE: &str = tierlock::MODE_FILE;

/// The permissions of the directories doctor creates: the file provider's default, so that a
/// peer running as another user of the group can work in them.
const DIR_MODE: u32 = tierlock::DEFAULT_DIR_MODE;

/// The permissions of the files doctor creates.
const FILE_MODE: u32 = tierlock::DEFAULT_FILE_MODE;

/// How many acquire/release cycles the cost is the median of.
const COST_CYCLES: usize = 20;

/// How long doctor waits for a mode file whose creator has not written it yet (as a provider
/// does).
const MODE_FILE_PATIENCE: Duration = Duration::from_secs(2);

/// Arguments of `tierlock doctor`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct DoctorArgs {
    /// The lock directory to examine; created if missing, as a provider would.
    #[arg(long, short = 'd', value_name = "DIR")]
    dir: PathBuf,

    /// Also prove exclusion across two hosts: start `tierlock doctor --peer --dir DIR` on two
    /// hosts that mount the share, at the same time. They find each other in
    /// DIR/.tierlock-doctor/, one takes a flock and then a lease, the other tries to take them,
    /// and both print the verdict.
    #[arg(long)]
    peer: bool,

    /// How long --peer waits for the other host, and then for each of its answers.
    #[arg(long, short = 't', value_name = "DURATION", default_value = "60s",
          value_parser = tierlock::parse_duration)]
    timeout: Duration,

    /// The mode you intend to use on DIR (as `tierlock run --mode`). Default: the mode
    /// recorded in DIR, else the one chosen from the mount. A mode recorded in DIR wins: a
    /// provider in the other mode would be refused.
    #[arg(long, value_enum, value_name = "MODE")]
    mode: Option<ModeArg>,
}

/// Runs `tierlock doctor`, printing its findings on stdout and its errors on stderr.
pub(crate) async fn run(args: DoctorArgs) -> ExitCode {
    let mut terminate = Terminate::new();
    // On Ctrl-C or SIGTERM, dropping `examine` removes what it created: its guards clean up
    // when dropped.
    let examined = tokio::select! {
        examined = examine(&args) => examined,
        Ok(()) = tokio::signal::ctrl_c() => {
            eprintln!("tierlock doctor: interrupted");
            return ExitCode::from(130);
        }
        () = terminate.recv() => {
            eprintln!("tierlock doctor: terminated");
            return ExitCode::from(143);
        }
    };
    match examined {
        Ok(true) => ExitCode::from(0),
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("tierlock doctor: {}", chain(&err));
            ExitCode::from(err.exit_code())
        }
    }
}

/// What stopped doctor before it could reach a verdict.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DoctorError {
    /// The lock directory's path exists but is not a directory.
    #[error("{} exists but is not a directory", path.display())]
    NotADirectory { path: PathBuf },

    /// The lock directory is missing and could not be created.
    #[error("cannot create the lock directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Doctor's scratch directory could not be created: the lock directory is not writable.
    #[error("cannot create {} (can this user create files in the lock directory?)", path.display())]
    Scratch {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The mode file exists but cannot be read.
    #[error("cannot read the mode file {}", path.display())]
    ModeFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The mode file names no mode: every provider on the directory is refused.
    #[error(
        "the mode file {} says {word:?}, not flock or lease: every provider on the directory is \
         refused until it is fixed or deleted (with no process using the directory)",
        path.display()
    )]
    BadModeFile { path: PathBuf, word: String },

    /// A file system operation on doctor's own files failed (`--peer`).
    #[error("cannot {action} {}", path.display())]
    Files {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// `--peer`: no single live peer within the timeout.
    #[error("{}", peer::no_peer_message(dir, *waited, *live))]
    NoPeer {
        dir: PathBuf,
        waited: Duration,
        live: usize,
    },

    /// `--peer`: the peer stopped before answering.
    #[error("the peer went away before its answer to step {step} ({why})")]
    PeerGone { step: &'static str, why: String },

    /// `--peer`: the peer did not answer in time.
    #[error("the peer did not answer step {step} within {waited:?}")]
    StepTimeout {
        step: &'static str,
        waited: Duration,
    },
}

impl DoctorError {
    /// The exit code for this error (see [`AFTER_HELP`]).
    fn exit_code(&self) -> u8 {
        match self {
            DoctorError::NoPeer { .. }
            | DoctorError::PeerGone { .. }
            | DoctorError::StepTimeout { .. } => 3,
            _ => 2,
        }
    }
}

/// Prints the facts, runs the checks (and the peer protocol with `--peer`): `Ok(true)` when
/// everything the directory's mode relies on works.
async fn examine(args: &DoctorArgs) -> Result<bool, DoctorError> {
    let dir = std::path::absolute(&args.dir).map_err(|source| DoctorError::CreateDir {
        path: args.dir.clone(),
        source,
    })?;
    let created = ensure_dir(&dir)?;
    let mount = Mount::detect(&dir);
    let modes = Modes::new(&dir, &mount, args.mode.map(Kind::from)).await?;

    let created_note = if created { " (created)" } else { "" };
    fact("directory", format_args!("{}{created_note}", dir.display()));
    fact("mount", describe_mount(&mount));
    fact(
        "class",
        format_args!("{} — {}", mount.class(), mount.reason()),
    );
    fact("mode", modes.chosen());
    fact("recorded", modes.recorded_note());

    let id = Id::random();
    let scratch = Scratch::create(&dir.join(SCRATCH), id)?;
    let local = local_checks(scratch.path(), modes.used()).await;
    let across = if args.peer {
        let used = peer::Used {
            kind: modes.used(),
            recorded: modes.recorded.is_some(),
        };
        peer::prove(&dir.join(SCRATCH), id, args.timeout, used).await?
    } else {
        true
    };
    drop(scratch);
    Ok(local && across)
}

/// Prints one fact: a label, padded, and its value.
fn fact(label: &str, value: impl fmt::Display) {
    let label = format!("{label}:");
    println!("{label:<10} {value}");
}

/// The mount line: type, source, mount point and options.
fn describe_mount(mount: &Mount) -> String {
    if mount.fs_type().is_empty() {
        return "not found (see the class)".to_owned();
    }
    let mut text = format!("{} {}", mount.fs_type(), mount.source());
    if !mount.mount_point().as_os_str().is_empty() {
        text.push_str(&format!(" on {}", mount.mount_point().display()));
    }
    if !mount.options().is_empty() {
        text.push_str(&format!(" ({})", mount.options()));
    }
    text
}

/// Makes sure `dir` is a directory, creating it (and its parents) as the file provider does:
/// with exactly [`DIR_MODE`]. `Ok(true)` if it was created.
fn ensure_dir(dir: &Path) -> Result<bool, DoctorError> {
    let create_error = |source| DoctorError::CreateDir {
        path: dir.to_path_buf(),
        source,
    };
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(false),
        Ok(_) => {
            return Err(DoctorError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(create_error(err)),
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir).map_err(create_error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(create_error)?;
    }
    Ok(true)
}

/// Creates the directory `path` (not its parents) with exactly [`DIR_MODE`]; `Ok(false)` if it
/// already exists.
fn make_dir(path: &Path) -> io::Result<bool> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    match builder.create(path) {
        Ok(()) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                // Best effort: some shares refuse chmod; the server's defaults apply there.
                let _ = fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE));
            }
            Ok(true)
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(err),
    }
}

/// Creates the new file `path` (failing if it exists), readable and writable, with exactly
/// [`FILE_MODE`].
fn create_file(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Best effort, as above.
        let _ = file.set_permissions(fs::Permissions::from_mode(FILE_MODE));
    }
    Ok(file)
}

/// Removes the directory `path` if it is empty (another doctor may still use it).
fn remove_if_empty(path: &Path) {
    let _ = fs::remove_dir(path);
}

/// A random identity of this doctor run: names its files, and orders the two peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Id(u64);

impl Id {
    /// A fresh random id (`RandomState` is seeded from the operating system per process; the
    /// pid and the time make two runs in one process differ too).
    fn random() -> Id {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        if let Ok(since) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            hasher.write_u128(since.as_nanos());
        }
        Id(hasher.finish())
    }

    /// Parses the 16 lowercase hex digits [`Id`] displays as.
    fn parse(text: &str) -> Option<Id> {
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if text.len() != 16 || !text.bytes().all(hex) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(Id)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// This run's scratch directory, `DIR/.tierlock-doctor/run.<id>/`: removed with everything in
/// it when dropped, and `.tierlock-doctor` too if nothing else is left in it.
#[derive(Debug)]
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(rendezvous: &Path, id: Id) -> Result<Scratch, DoctorError> {
        let path = rendezvous.join(format!("run.{id}"));
        let error = |source| DoctorError::Scratch {
            path: path.clone(),
            source,
        };
        // A doctor that just finished may remove the empty `.tierlock-doctor` between our two
        // creations: try again.
        let mut attempts = 3;
        loop {
            attempts -= 1;
            make_dir(rendezvous).map_err(error)?;
            match make_dir(&path) {
                Ok(_) => return Ok(Scratch { path }),
                Err(err) if err.kind() == io::ErrorKind::NotFound && attempts > 0 => {}
                Err(err) => return Err(error(err)),
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
        if let Some(rendezvous) = self.path.parent() {
            remove_if_empty(rendezvous);
        }
    }
}

/// A locking mode, without its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Flock,
    Lease,
}

impl Kind {
    fn of(mode: FileLockMode) -> Kind {
        if mode == FileLockMode::Flock {
            Kind::Flock
        } else {
            Kind::Lease
        }
    }

    /// The mode with default settings.
    fn mode(self) -> FileLockMode {
        match self {
            Kind::Flock => FileLockMode::Flock,
            Kind::Lease => FileLockMode::lease(),
        }
    }

    /// The word of the mode file and of `--mode`.
    fn word(self) -> &'static str {
        match self {
            Kind::Flock => "flock",
            Kind::Lease => "lease",
        }
    }
}

impl From<ModeArg> for Kind {
    fn from(mode: ModeArg) -> Kind {
        match mode {
            ModeArg::Flock => Kind::Flock,
            ModeArg::Lease => Kind::Lease,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// The three sources of a directory's mode, and which one wins.
#[derive(Debug)]
struct Modes {
    /// What [`FileProvider::new`] picks from the mount.
    from_mount: FileLockMode,
    /// `--mode`.
    forced: Option<Kind>,
    /// The mode file's word.
    recorded: Option<Kind>,
}

impl Modes {
    async fn new(dir: &Path, mount: &Mount, forced: Option<Kind>) -> Result<Modes, DoctorError> {
        Ok(Modes {
            from_mount: FileLockMode::for_mount(mount.class()),
            forced,
            recorded: read_mode_file(&dir.join(MODE_FILE)).await?,
        })
    }

    /// The mode the directory uses: recorded, else forced, else chosen from the mount.
    fn used(&self) -> Kind {
        self.recorded
            .or(self.forced)
            .unwrap_or(Kind::of(self.from_mount))
    }

    /// What a provider set up as the user intends would use, and why.
    fn chosen(&self) -> String {
        match self.forced {
            None => format!("{}, chosen from the mount", self.from_mount),
            Some(kind) if kind == Kind::of(self.from_mount) => {
                format!(
                    "{}, forced by --mode (the mount chooses it too)",
                    kind.mode()
                )
            }
            Some(kind) => format!(
                "{}, forced by --mode (the mount alone would choose {})",
                kind.mode(),
                self.from_mount
            ),
        }
    }

    /// The mode file's contents, and whether a provider set up as intended would be refused.
    fn recorded_note(&self) -> String {
        let Some(recorded) = self.recorded else {
            return format!("none yet (the first provider records its mode in {MODE_FILE})");
        };
        let intended = self.forced.unwrap_or(Kind::of(self.from_mount));
        if recorded == intended {
            return format!("{recorded}, in {MODE_FILE}");
        }
        let how = match self.forced {
            Some(_) => format!("a provider set to {intended} (--mode {intended})"),
            None => format!("FileProvider::new, which chooses {intended} from the mount,"),
        };
        format!(
            "{recorded}, in {MODE_FILE}: the directory is used in {recorded} mode; {how} would \
             be refused (use --mode {recorded}, or, with no process using the directory, delete \
             {MODE_FILE})"
        )
    }
}

/// The mode word in the mode file at `path`, `None` if there is no mode file. An empty file
/// is being written by its creator: wait for it a little, as a provider does.
async fn read_mode_file(path: &Path) -> Result<Option<Kind>, DoctorError> {
    let start = Instant::now();
    loop {
        let text = match read_small(path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(DoctorError::ModeFile {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let word = text.lines().next().unwrap_or("").trim();
        if word.is_empty() && start.elapsed() < MODE_FILE_PATIENCE {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        return match word {
            "flock" => Ok(Some(Kind::Flock)),
            "lease" => Ok(Some(Kind::Lease)),
            other => Err(DoctorError::BadModeFile {
                path: path.to_path_buf(),
                word: other.chars().take(40).collect(),
            }),
        };
    }
}

/// The first 4 KiB of a text file.
fn read_small(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    fs::File::open(path)?.take(4096).read_to_string(&mut text)?;
    Ok(text)
}

/// Runs and prints the checks made on this host alone, in `scratch`: whether each check the
/// mode `used` relies on passed.
async fn local_checks(scratch: &Path, used: Kind) -> bool {
    let mut passed = true;
    passed &= report(
        "flock",
        check_flock(&scratch.join("flock")),
        used == Kind::Flock,
        "works on this host (an exclusive lock excludes a second handle)",
    );
    passed &= report(
        "exclusive create",
        check_exclusive_create(&scratch.join("create")),
        true,
        "works (a second create of the name is refused)",
    );
    passed &= report(
        "rename",
        check_rename(scratch),
        used == Kind::Lease,
        "works (and fails once its source name is gone)",
    );
    passed &= report_cost(scratch, used).await;
    fact("clock", describe_clock(&scratch.join("clock")));
    passed
}

/// Prints a check's result; `false` if it failed and `required`.
fn report(label: &str, result: Result<(), String>, required: bool, works: &str) -> bool {
    match result {
        Ok(()) => {
            fact(label, works);
            true
        }
        Err(problem) if required => {
            fact(label, format_args!("FAILS: {problem}"));
            false
        }
        Err(problem) => {
            fact(
                label,
                format_args!("fails: {problem} (this directory's mode does not use it)"),
            );
            true
        }
    }
}

/// One exclusive `flock` on a new file, then a non-blocking attempt through a second handle,
/// which must be refused.
fn check_flock(path: &Path) -> Result<(), String> {
    let first =
        create_file(path).map_err(|err| format!("cannot create {}: {err}", path.display()))?;
    let second = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|err| format!("cannot open {}: {err}", path.display()))?;
    fs2::FileExt::try_lock_exclusive(&first).map_err(|err| format!("cannot lock: {err}"))?;
    match fs2::FileExt::try_lock_exclusive(&second) {
        Ok(()) => Err("a second handle got the lock too (flock excludes nothing here)".to_owned()),
        Err(err) if is_contended(&err) => Ok(()),
        Err(err) => Err(format!("the second handle's attempt failed: {err}")),
    }
    // Closing the handles releases the locks.
}

/// Whether a failed non-blocking `flock` means "held elsewhere".
fn is_contended(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
        || err.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}

/// Creates a new file, then creates it again, which must fail with "already exists".
fn check_exclusive_create(path: &Path) -> Result<(), String> {
    create_file(path).map_err(|err| format!("cannot create {}: {err}", path.display()))?;
    match create_file(path) {
        Ok(_) => Err("a second exclusive create of the same name succeeded".to_owned()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(format!(
            "the second create failed with {err}, not \"already exists\""
        )),
    }
}

/// Renames a file and checks the result: the new name exists, the old one is gone, and a
/// second rename from the old name fails with "not found" (lease mode's compare-and-swap).
fn check_rename(scratch: &Path) -> Result<(), String> {
    let from = scratch.join("rename.1");
    let to = scratch.join("rename.2");
    create_file(&from).map_err(|err| format!("cannot create {}: {err}", from.display()))?;
    fs::rename(&from, &to).map_err(|err| format!("rename failed: {err}"))?;
    if fs::symlink_metadata(&to).is_err() {
        return Err("the new name does not exist after the rename".to_owned());
    }
    if fs::symlink_metadata(&from).is_ok() {
        return Err("the old name still exists after the rename".to_owned());
    }
    match fs::rename(&from, scratch.join("rename.3")) {
        Ok(()) => Err("a rename from a name that is gone succeeded".to_owned()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(format!(
            "a rename from a gone name failed with {err}, not \"not found\""
        )),
    }
}

/// Measures and prints the cost of both modes; `false` if the mode `used` does not work.
async fn report_cost(scratch: &Path, used: Kind) -> bool {
    let mut passed = true;
    let mut parts = Vec::new();
    for kind in [Kind::Flock, Kind::Lease] {
        let dir = scratch.join(format!("cost-{kind}"));
        match median_cycle(&dir, kind.mode()).await {
            Ok(median) => parts.push(format!("{kind} {:.2} ms", median.as_secs_f64() * 1e3)),
            Err(problem) => {
                passed &= kind != used;
                let shout = if kind == used { "FAILS" } else { "fails" };
                parts.push(format!("{kind} {shout} ({problem})"));
            }
        }
    }
    fact(
        "cost",
        format_args!(
            "{} per acquire+release (median of {COST_CYCLES})",
            parts.join(", ")
        ),
    );
    passed
}

/// The median time of [`COST_CYCLES`] zero-timeout `lock` + `release` cycles through a
/// [`LockManager`] on a provider in `mode` on `dir`.
async fn median_cycle(dir: &Path, mode: FileLockMode) -> Result<Duration, String> {
    let provider = FileProvider::builder(dir)
        .mode(mode)
        .build()
        .map_err(|err| chain(&err))?;
    let locks = LockManager::new(provider);
    let mut times = Vec::with_capacity(COST_CYCLES);
    for _ in 0..COST_CYCLES {
        let start = Instant::now();
        let guard = locks
            .lock("doctor", Duration::ZERO)
            .await
            .map_err(|err| chain(&err))?;
        guard.release().await.map_err(|err| chain(&err))?;
        times.push(start.elapsed());
    }
    times.sort();
    times
        .get(times.len() / 2)
        .copied()
        .ok_or_else(|| "no cycle ran".to_owned())
}

/// How far the share's clock is from this host's: the `mtime` of a new file against this
/// host's time just before and just after creating it.
fn describe_clock(path: &Path) -> String {
    match clock_offset(path) {
        Ok(offset) => {
            let how_far = if offset.abs() < 0.05 {
                "0.0 s from".to_owned()
            } else if offset > 0.0 {
                format!("{offset:.1} s ahead of")
            } else {
                format!("{:.1} s behind", -offset)
            };
            format!("the share's clock is {how_far} this host's (lease mode does not depend on it)")
        }
        Err(err) => format!("unknown: cannot read the time of a new file: {err}"),
    }
}

/// The share's clock minus this host's, in seconds (0 when the new file's `mtime` falls between
/// the two readings of this host's clock).
fn clock_offset(path: &Path) -> io::Result<f64> {
    let before = SystemTime::now();
    drop(create_file(path)?);
    let after = SystemTime::now();
    let mtime = fs::metadata(path)?.modified()?;
    Ok(if let Ok(behind) = before.duration_since(mtime) {
        -behind.as_secs_f64()
    } else if let Ok(ahead) = mtime.duration_since(after) {
        ahead.as_secs_f64()
    } else {
        0.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_as_16_hex_digits() {
        let id = Id::random();
        assert_eq!(Id::parse(&id.to_string()), Some(id));
        assert_eq!(Id(1).to_string(), "0000000000000001");
        assert!(Id(1) < Id(0xa0));
        assert_eq!(Id::parse("000000000000000g"), None);
        assert_eq!(Id::parse("+00000000000000f"), None);
        assert_eq!(Id::parse("00000000000000F"), None);
    }

    #[test]
    fn the_recorded_mode_wins() {
        let modes = Modes {
            from_mount: FileLockMode::lease(),
            forced: Some(Kind::Flock),
            recorded: Some(Kind::Lease),
        };
        assert_eq!(modes.used(), Kind::Lease);
        assert!(modes.recorded_note().contains("would be refused"));
        let fresh = Modes {
            recorded: None,
            ..modes
        };
        assert_eq!(fresh.used(), Kind::Flock);
        assert!(fresh.chosen().contains("forced by --mode"));
    }

    #[test]
    fn local_checks_pass_on_a_local_disk() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(check_flock(&tmp.path().join("f")), Ok(()));
        assert_eq!(check_exclusive_create(&tmp.path().join("c")), Ok(()));
        assert_eq!(check_rename(tmp.path()), Ok(()));
        assert!(clock_offset(&tmp.path().join("t")).unwrap().abs() < 1.0);
    }
}
