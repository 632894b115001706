//! `tierlock`: run a command while holding a named lock — `flock(1)` across processes and hosts.
//!
//! ```text
//! tierlock run --dir /mnt/share/locks --name nightly-export --timeout 30s -- ./export.sh
//! tierlock run --url postgres://locker@db.internal/app --name nightly-export -- ./export.sh
//! tierlock run --url sqlite:/var/lib/app/locks.db --name nightly-export -- ./export.sh
//! ```
//!
//! Where the lock lives is chosen by exactly one of:
//!
//! * `--dir DIR`: lock files in a directory on a local disk or a network share (no server).
//!   tierlock uses `flock` where the directory's mount is local or forwards locks, and a lease
//!   on any other share (`--verbose` says which, `tierlock doctor` says why; `--mode` and
//!   `--ttl` choose);
//! * `--url URL`: a database server every host reaches — `postgres://…` / `postgresql://…`
//!   (PostgreSQL advisory locks, cargo feature `postgres`), `jdbc:sqlserver://…` or
//!   `mssql:` + an ADO.NET connection string (SQL Server applocks, cargo feature `mssql`),
//!   `redis://…` (keys on one Redis server, cargo feature `redis`); or `file:///dir`, the same
//!   as `--dir`. `--url` is parsed by `tierlock::connect`'s parser: every form and query
//!   parameter of the library (`?namespace=…`, `?ttl=…`, `?mode=…`, `?fencing=…`) works here,
//!   and the flags below override the URL's parameters.
//!   The features are on by default except `mssql` (its driver compiles the aws-lc crypto
//!   library from C sources: build with `--features mssql`); `--namespace NS` scopes the
//!   names on that server, and
//!   `sslmode=require` in a PostgreSQL URL connects with TLS checked against the system's root
//!   certificates. tierlock never echoes the URL (it may hold a password), but command lines
//!   are visible to other local users (`ps`): keep such hosts' users trusted, or give the
//!   database role no rights beyond connecting (advisory locks and applocks need none).
//! * `--url sqlite:PATH` (or `sqlite:///PATH`): a lease in an SQLite database file, for
//!   processes on this host only (cargo feature `sqlite`, on by default): the file is created
//!   with its schema on first use, a file on a network share is refused, `--ttl` sets the
//!   lease's time to live (default 10s), and `sqlite3 PATH 'SELECT * FROM tierlock_holders'`
//!   shows who holds what.
//!
//! The exit code is the command's; when the lock is not acquired in time it is 75
//! (`EX_TEMPFAIL`, configurable with `--conflict-exit-code`) with a message on stderr.
//!
//! The lock is held by the `tierlock` process for as long as the command runs. Ctrl-C goes to
//! the command (tierlock waits for it to exit, then releases); SIGTERM to tierlock stops the
//! command. Unlike `flock(1)`, the lock is not inherited by the command: if tierlock itself dies
//! (SIGKILL, the OOM killer, a crash), the operating system releases the lock at once — the lock
//! file's handle is closed, the database session ends — so the command must not go on. (A
//! lease — `--mode lease`, `--url sqlite:` — outlives a killed tierlock until its `--ttl` runs
//! out instead.)
//!
//! # When tierlock dies
//!
//! On Linux the command is started with a parent-death signal (`prctl(PR_SET_PDEATHSIG)`) of
//! SIGKILL: the kernel kills it as tierlock exits, however tierlock ends. The signal is armed in
//! the new process between `fork` and `exec`, and the process then checks that its parent is
//! still tierlock; if tierlock died before that, the command is never started.
//!
//! * **The window.** The kernel closes a dying process's files (which frees a `--dir` lock)
//!   shortly before it signals its children, in the same exit path: tens of microseconds. On a
//!   2-core Linux 6.18 machine, with a waiter spinning on the lock file, the command ran at most
//!   56 µs past the moment the waiter got the lock, in 14 of 600 kills, and never with a waiter
//!   polling every millisecond. A waiting tierlock polls every 1 to 8 ms, then has to start its
//!   own command (`fork` + `exec`, a millisecond or so), so in practice the old command is dead
//!   before the new one runs: the soak in `tests/orphans.rs` (SIGKILL every 0.5 s to the
//!   tierlock whose command is in its critical section) sees no overlap. With `--url` the server
//!   frees the lock only after it notices the closed connection, later still; in lease mode
//!   (`--dir` on a share that does not forward locks, or `--mode lease`) the dead tierlock's
//!   lease stands for its whole time to live, so there is no window at all. It is no hard
//!   guarantee: a dying tierlock stalled for milliseconds in that exit path (an overloaded
//!   machine) could let the next holder start first.
//! * **Only the command itself.** The signal reaches the process tierlock starts (and what it
//!   `exec`s), not the processes that one starts: `sh -c 'prog &'`, or a shell killed while it
//!   waits for an external program, leaves `prog` running without the lock. Make the command
//!   the program that does the work — `tierlock run … -- prog`, or `sh -c 'setup; exec prog'` —
//!   or have it stop its children itself.
//! * **Set-user-ID programs** (`sudo`, …) and programs with file capabilities lose the signal at
//!   `exec` (the kernel clears it): run `sudo tierlock run -- prog`, not
//!   `tierlock run -- sudo prog`.
//! * **The thread that forks.** The kernel sends the signal when the *thread* that forked the
//!   command exits, not the whole process. tierlock runs a current-thread runtime on its main
//!   thread, so the command is forked by the main thread, which lives exactly as long as the
//!   process; the spawn must never move to another thread (a blocking pool or multi-thread
//!   runtime worker could exit while tierlock lives on, killing the command).
//!
//! On other platforms there is no such signal: if tierlock is killed with SIGKILL, the command
//! keeps running without the lock. Ctrl-C and SIGTERM work as described above everywhere.
//!
//! # Which locks are held
//!
//! `tierlock status --dir DIR` (or `--url URL`, `--json`) lists the locks held right now by any
//! process, with their holder, fencing token, expiry and waiters where the backend can tell;
//! see `src/status.rs` and `docs/status.md`.

// `unsafe` only for `pre_exec` in `die_with_parent` (Linux), allowed there alone.
#![deny(unsafe_code)]

mod doctor;
mod status;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use tierlock::{ConnectOptions, FileMode, LockError, LockManager, parse_duration};

/// Run commands under named locks shared by processes and hosts.
#[derive(Debug, Parser)]
#[command(name = "tierlock", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run COMMAND while holding the lock NAME; exit with the command's exit code.
    ///
    /// Waits up to --timeout for the lock (0 = fail at once if it is held). If the lock is not
    /// acquired in time, prints a message and exits with --conflict-exit-code (75) without
    /// running the command.
    ///
    /// If tierlock itself dies (SIGKILL, the OOM killer), the lock is released at once (a lease,
    /// `--mode lease` or `--url sqlite:`, when its --ttl runs out). On Linux
    /// COMMAND is then killed too (SIGKILL); processes that COMMAND starts are not, so make
    /// COMMAND the program doing the work (`-- prog` or `sh -c 'setup; exec prog'`, not
    /// `sh -c 'prog &'`). A set-user-ID COMMAND such as sudo loses that signal: run
    /// `sudo tierlock run …` instead. On other platforms COMMAND keeps running without the lock.
    #[command(
        after_help = "Examples:\n  tierlock run --dir ./locks --name demo -- sleep 5\n  \
                      tierlock run --dir /mnt/share/locks --name nightly --timeout 0 -- ./job.sh\n  \
                      tierlock run --url \"postgres://locker:$PGPASSWORD@db/app\" --name nightly -- ./job.sh\n  \
                      tierlock run --url 'mssql:server=tcp:db,1433;database=app;user id=locker;password=…' \\\n      \
                      --namespace billing --name nightly -- ./job.sh\n  \
                      tierlock run --url sqlite:/var/lib/app/locks.db --ttl 5s --name nightly -- ./job.sh"
    )]
    Run(RunArgs),

    /// Show how tierlock locks in DIR and check that it works there; with --peer, started on
    /// two hosts at once, prove that a lock taken on one excludes the other.
    ///
    /// Prints the mount DIR is on, its class and why, the mode a provider uses (and the mode
    /// recorded in DIR), whether flock, exclusive create and rename work, the cost of one
    /// acquire/release in each mode and the share's clock offset. Works in
    /// DIR/.tierlock-doctor/ and removes it; never changes the mode recorded in DIR.
    Doctor(doctor::DoctorArgs),

    /// List the locks held right now on DIR or the --url server, by any process.
    ///
    /// Shows each lock's name where the backend keeps it (else the readable part a lock file's
    /// name keeps, ending in …), its holder, fencing token, expiry and waiters where the backend
    /// can tell, and its raw key. Takes no lock and changes nothing. Exits 0, also when nothing
    /// is held.
    #[command(after_help = "Examples:\n  tierlock status --dir /mnt/share/locks\n  \
                      tierlock status --url \"postgres://locker:$PGPASSWORD@db/app\" --json")]
    Status(status::StatusArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    provider: ProviderArgs,

    /// Scope of lock names on the --url server (default ""): only runs with the same namespace
    /// on the same database exclude each other. Not for --dir or sqlite: (use another directory
    /// or database file).
    #[arg(long, value_name = "NS", conflicts_with = "dir")]
    namespace: Option<String>,

    /// The lock name (case-sensitive, 1 to 1024 bytes).
    #[arg(long, short = 'n')]
    name: String,

    /// How long to wait for the lock: 30s, 500ms, 2m, 1h, or 0 for one attempt.
    #[arg(long, short = 't', default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,

    /// Exit code when the lock is not acquired in time.
    #[arg(long, default_value_t = 75, value_parser = clap::value_parser!(u8))]
    conflict_exit_code: u8,

    /// How a --dir lock is kept: `flock` (an OS file lock: fast, but only exclusive across hosts
    /// on a share that forwards locks) or `lease` (a lease renamed by its holder: any share with
    /// an atomic rename). Default: chosen from the directory's mount (`tierlock doctor` shows
    /// which). Every process on one directory must use the same mode. For --dir (or a --url
    /// file:///…).
    #[arg(long, value_enum, value_name = "MODE")]
    mode: Option<ModeArg>,

    /// The lease's time to live (default 10s) with --dir in lease mode (implies --mode lease),
    /// --url sqlite:… or --url redis://…: a holder that dies keeps the lock that long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    ttl: Option<Duration>,

    /// Say on stderr how the lock is kept (for --dir and sqlite: the mount, its class and the
    /// mode).
    #[arg(long, short = 'v')]
    verbose: bool,

    /// Print nothing while waiting (errors are still printed).
    #[arg(long, short = 'q')]
    quiet: bool,

    /// The command to run, and its arguments.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// `--mode`: the file provider's locking mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    /// An OS file lock (flock / LockFileEx) on the name's lock file.
    Flock,
    /// A lease in the name's lease directory.
    Lease,
}

/// Where the lock lives. Exactly one provider is chosen.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ProviderArgs {
    /// Lock directory (local disk or network share) for the file provider; created if missing.
    #[arg(long, short = 'd', value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Database server holding the lock, one of:
    /// postgres://user:password@host:5432/db (or postgresql://; add ?sslmode=require for TLS
    /// checked against the system's root certificates);
    /// jdbc:sqlserver://host:1433;databaseName=db;user=…;password=…;
    /// mssql:server=tcp:host,1433;database=db;user id=…;password=… (ADO.NET);
    /// sqlite:/path/to/locks.db (a lease in an SQLite file: processes on this host only);
    /// redis://:password@host:6379/0; file:///dir (as --dir).
    /// Query parameters namespace=, ttl=, mode=, fencing= set the options (the flags override
    /// them). Every host must use the same database. tierlock never prints it.
    #[arg(long, short = 'u', value_name = "URL")]
    url: Option<String>,
}

/// The `tierlock` command: parses the process's arguments, runs the subcommand and returns
/// its exit code. The binary's `main` is this function; the end-to-end tests of the workspace
/// (`tests/`) build it into a binary of their own.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A current-thread runtime driven by `block_on` below: all of tierlock's work, the spawn of
    // the command included, runs on this main thread. On Linux that is what keeps the command's
    // parent-death signal honest — it fires when the *thread* that forked the command exits (see
    // `die_with_parent`), and the main thread exits with the process. Keep it so: no
    // multi-thread runtime, no spawning from `spawn_blocking`.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the async runtime: {err}")),
    };
    match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Doctor(args) => runtime.block_on(doctor::run(args)),
        Command::Status(args) => runtime.block_on(status::run(args)),
    }
}

impl From<ModeArg> for FileMode {
    fn from(mode: ModeArg) -> FileMode {
        match mode {
            ModeArg::Flock => FileMode::Flock,
            ModeArg::Lease => FileMode::Lease,
        }
    }
}

/// The lock manager `--dir` or `--url` names, with the flags' options: `tierlock::connect`'s
/// parser and builders do the work.
async fn connect(args: &RunArgs) -> Result<LockManager, String> {
    let mut options = match (&args.provider.dir, &args.provider.url) {
        (Some(dir), _) => ConnectOptions::file(dir),
        (None, Some(url)) => url.parse().map_err(|err| chain(&err))?,
        (None, None) => return Err("no provider given (use --dir or --url)".to_owned()),
    };
    if let Some(namespace) = &args.namespace {
        options = options.namespace(namespace);
    }
    if let Some(ttl) = args.ttl {
        options = options.ttl(ttl);
    }
    if let Some(mode) = args.mode {
        options = options.file_lock_mode(mode.into());
    }
    let locks = options.connect().await.map_err(|err| chain(&err))?;
    if args.verbose {
        describe(&locks);
    }
    Ok(locks)
}

/// `--verbose`: where the lock lives, for a directory or an SQLite file.
fn describe(locks: &LockManager) {
    let provider: &dyn std::any::Any = &**locks.provider();
    if let Some(file) = provider.downcast_ref::<tierlock::FileProvider>() {
        eprintln!(
            "tierlock: {} is on {}\ntierlock: mode: {}",
            file.dir().display(),
            file.mount(),
            file.mode()
        );
    }
    #[cfg(feature = "sqlite")]
    if let Some(sqlite) = provider.downcast_ref::<tierlock::SqliteProvider>() {
        eprintln!(
            "tierlock: {} is on {}\ntierlock: SQLite lease, ttl {:?}",
            sqlite.path().display(),
            sqlite.mount(),
            sqlite.ttl()
        );
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("tierlock: {message}");
    ExitCode::from(1)
}

async fn run(args: RunArgs) -> ExitCode {
    let locks = match connect(&args).await {
        Ok(locks) => locks,
        Err(err) => return fail(&err),
    };

    let start = Instant::now();
    let acquire = locks.lock(&args.name, args.timeout);
    tokio::pin!(acquire);
    let announce = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(announce);
    let mut announced = args.quiet;
    let guard = loop {
        tokio::select! {
            result = &mut acquire => break result,
            () = &mut announce, if !announced => {
                announced = true;
                eprintln!(
                    "tierlock: waiting for lock {:?} (held by another process; timeout {:?})",
                    args.name, args.timeout
                );
            }
        }
    };
    let guard = match guard {
        Ok(guard) => guard,
        Err(LockError::Timeout { name, waited }) => {
            eprintln!(
                "tierlock: lock {name:?} is held elsewhere; gave up after {:.1?}",
                waited
            );
            return ExitCode::from(args.conflict_exit_code);
        }
        Err(err) => return fail(&chain(&err)),
    };
    if announced && !args.quiet {
        eprintln!(
            "tierlock: acquired {:?} after {:.1?}",
            args.name,
            start.elapsed()
        );
    }

    let status = run_command(&args.command).await;
    if let Err(err) = guard.release().await {
        eprintln!("tierlock: warning: {}", chain(&err));
    }
    status
}

async fn run_command(command: &[OsString]) -> ExitCode {
    let Some((program, rest)) = command.split_first() else {
        return fail("no command given");
    };
    // Listen for SIGTERM before the command starts, so none is missed.
    let mut terminate = Terminate::new();
    let mut command = tokio::process::Command::new(program);
    command.args(rest);
    #[cfg(target_os = "linux")]
    die_with_parent(&mut command);
    let child = command.spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) => {
            eprintln!("tierlock: cannot run {program:?}: {err}");
            let code = if err.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return ExitCode::from(code);
        }
    };
    // Ctrl-C reaches the command through the terminal's process group; stay alive until the
    // command has exited so the lock is held exactly as long as it runs. A SIGTERM sent to
    // tierlock alone stops the command too.
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = tokio::signal::ctrl_c() => {}
            () = terminate.recv() => {
                eprintln!("tierlock: terminated; stopping {program:?}");
                // The command may already be gone; the wait below tells.
                let _ = child.start_kill();
            }
        }
    };
    match status {
        Ok(status) => ExitCode::from(exit_code(status)),
        Err(err) => fail(&format!("waiting for {program:?} failed: {err}")),
    }
}

/// Makes the kernel kill `command` with SIGKILL when tierlock dies (see "When tierlock dies" in
/// the crate documentation), and fails the spawn if tierlock is already gone by the time the
/// child has armed that.
///
/// Call it, and spawn `command`, from the main thread only: the parent-death signal fires when
/// the thread that forked the child exits.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(command: &mut tokio::process::Command) {
    use rustix::process::{Signal, getpid, getppid, set_parent_process_death_signal};

    debug_assert_eq!(
        std::thread::current().name(),
        Some("main"),
        "the command must be forked by the main thread (PR_SET_PDEATHSIG follows the thread)"
    );
    let tierlock = getpid();
    let arm = move || -> std::io::Result<()> {
        set_parent_process_death_signal(Some(Signal::KILL))?;
        // If tierlock died between fork and prctl, no signal will ever come and the child now
        // has another parent: don't run the command.
        if getppid() != Some(tierlock) {
            return Err(rustix::io::Errno::SRCH.into());
        }
        Ok(())
    };
    // SAFETY: `pre_exec` runs `arm` in the child between `fork` and `exec`, where the child is a
    // copy of a multi-threaded process with only one thread: locks held by the other threads
    // (the allocator's included) are never released there, so only async-signal-safe work is
    // allowed. `arm` makes two system calls, prctl(PR_SET_PDEATHSIG) and getppid (issued
    // directly by rustix's linux_raw backend; on targets where rustix falls back to libc, its
    // thin wrappers, which are async-signal-safe too), compares two integers, and returns
    // `Ok(())` or an `io::Error` made from a raw errno (`from_raw_os_error`: stored inline, no
    // allocation). It takes no lock, allocates nothing, and reads only `tierlock`, a `Copy` pid
    // moved into the closure.
    unsafe {
        command.pre_exec(arm);
    }
}

/// SIGTERM to this process (never fires on platforms without it).
struct Terminate {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Terminate {
    fn new() -> Self {
        Terminate {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// An error and its causes, `outer: inner: innermost`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their cause in their own message: say it once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The shell's convention: the exit code, or 128 + the signal that killed the command.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code & 0xff).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + (signal & 0x7f)).unwrap_or(1);
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
