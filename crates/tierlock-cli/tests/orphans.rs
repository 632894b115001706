//! Soak with real processes: a `tierlock run` killed with SIGKILL must take its command down with
//! it, so that no command goes on running its critical section after the lock was released.
//!
//! Six loops each run `tierlock run --name soak --timeout 30s -- sh -c SECTION` over and over,
//! while a killer sends SIGKILL to one `tierlock` process (never to its command) every 0.5 s: the
//! one whose section is running when there is one, else one of the live ones at random (waiting
//! for the lock, starting its command, releasing). Only one of the six can hold the lock, so a
//! pick among all of them would land mid-section one time in six and prove little.
//!
//! The section appends `enter ID` to a shared log, sleeps 20–50 ms and appends `exit ID`: each
//! line is one `echo`, a shell builtin, so one append (`>>`, `O_APPEND`) by the section's own shell.
//! The killer appends `dead ID` once the killed `tierlock` has been reaped, that is once it is
//! gone (and has released its lock). From the log:
//!
//! * overlaps: sections with both lines and another section's `enter` between them, two holders
//!   at once (a killed section that never writes its `exit` is fine) — must be 0;
//! * ran on: sections whose `exit` comes after their `dead`, commands that went on after their
//!   `tierlock` was gone — must be 0;
//! * killed mid-section: `dead ID` after `enter ID` and before `exit ID` if any — must be at least
//!   one per soak second (40 kills in the default 20 s; about 80% land mid-section), or the soak
//!   proved nothing.
//!
//! When the loops are done, no section shell may still be alive: they are found in /proc by the
//! run's unique id in their command line (`$0`), so a reused pid cannot fool the check.
//!
//! The soak lasts 20 s per provider; `TIERLOCK_SOAK_SECS=60` makes it longer. The file provider
//! always runs; PostgreSQL runs against `TIERLOCK_PG_URL` (see `scripts/pg-start`) and is skipped
//! without it. `cargo test -p tierlock-cli --test orphans -- --nocapture` shows the figures.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::unique_namespace;

const LOOPS: usize = 6;
const KILL_EVERY: Duration = Duration::from_millis(500);
const DEFAULT_SECS: u64 = 20;
const SIGKILL: i32 = 9;

/// `$0` is the section's id, `$1` the log, `$2` how long to sleep.
const SECTION: &str = r#"echo "enter $0" >> "$1"; sleep "$2"; echo "exit $0" >> "$1""#;

/// One soak at a time: they measure what happens under kills on a small machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn killed_tierlock_takes_its_command_along_file() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|err| err.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    let provider = ["--dir".to_owned(), locks.to_str().unwrap().to_owned()];
    soak("file", &provider, dir.path());
}

#[test]
fn killed_tierlock_takes_its_command_along_postgres() {
    let Some(url) = tierlock_testkit::server_url("TIERLOCK_PG_URL") else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|err| err.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let provider = [
        "--url".to_owned(),
        url,
        "--namespace".to_owned(),
        unique_namespace("soak"),
    ];
    soak("postgres", &provider, dir.path());
}

/// What the soak shares between the loops, the killer and the test.
struct Soak {
    /// `--dir D` or `--url U --namespace NS`.
    provider: Vec<String>,
    /// Prefix of every section id of this run, unique across runs.
    tag: String,
    log: PathBuf,
    stop: AtomicBool,
    /// The `tierlock` each loop is running, if any.
    slots: Vec<Mutex<Option<Running>>>,
}

struct Running {
    id: String,
    child: Child,
}

fn soak(label: &str, provider: &[String], dir: &Path) {
    let secs = std::env::var("TIERLOCK_SOAK_SECS")
        .ok()
        .map(|s| s.parse::<u64>().expect("TIERLOCK_SOAK_SECS: whole seconds"))
        .unwrap_or(DEFAULT_SECS);
    let soak = Arc::new(Soak {
        provider: provider.to_vec(),
        tag: unique_namespace("soak"),
        log: dir.join("sections.log"),
        stop: AtomicBool::new(false),
        slots: (0..LOOPS).map(|_| Mutex::new(None)).collect(),
    });
    File::create(&soak.log).unwrap();

    let loops: Vec<_> = (0..LOOPS)
        .map(|k| {
            let soak = Arc::clone(&soak);
            thread::spawn(move || run_loop(&soak, k))
        })
        .collect();
    let killer = {
        let soak = Arc::clone(&soak);
        thread::spawn(move || killer(&soak))
    };
    thread::sleep(Duration::from_secs(secs));
    soak.stop.store(true, Ordering::SeqCst);
    killer.join().unwrap();
    let mut runs = 0;
    let mut failures = Vec::new();
    for handle in loops {
        let (n, failed) = handle.join().unwrap();
        runs += n;
        failures.extend(failed);
    }
    // Any section still running now is an orphan (a section lasts 50 ms at most).
    thread::sleep(Duration::from_millis(200));
    let alive = live_sections(&soak.tag);

    let log = std::fs::read_to_string(&soak.log).unwrap();
    let figures = analyse(&log);
    eprintln!(
        "orphans soak ({label}, {secs} s): {runs} tierlock runs, {} sections entered, {} completed; \
         {} tierlocks killed, {} of them mid-section; {} sections ran on after their tierlock \
         died; {} overlaps; {} section shells alive at the end; {} failed runs",
        figures.entered,
        figures.completed,
        figures.kills,
        figures.mid_section,
        figures.ran_on.len(),
        figures.overlaps.len(),
        alive.len(),
        failures.len(),
    );
    assert!(failures.is_empty(), "tierlock runs failed: {failures:?}");
    assert!(
        figures.overlaps.is_empty(),
        "{} sections had another one enter before they exited, e.g. {:?}",
        figures.overlaps.len(),
        &figures.overlaps[..figures.overlaps.len().min(5)]
    );
    assert!(
        figures.ran_on.is_empty(),
        "{} sections ran on after their tierlock died, e.g. {:?}",
        figures.ran_on.len(),
        &figures.ran_on[..figures.ran_on.len().min(5)]
    );
    assert!(alive.is_empty(), "orphaned sections still alive: {alive:?}");
    let needed = usize::try_from(secs).unwrap();
    assert!(
        figures.mid_section >= needed,
        "only {} tierlocks were killed mid-section (need {needed}): the soak proved too little",
        figures.mid_section
    );
}

/// One loop: `tierlock run` after `tierlock run` until told to stop. Returns the number of runs
/// and the runs that ended other than with the section's 0 or the killer's SIGKILL.
fn run_loop(soak: &Soak, k: usize) -> (usize, Vec<String>) {
    let mut rng = Rng::new(k as u64);
    let mut failures = Vec::new();
    let mut runs = 0;
    while !soak.stop.load(Ordering::SeqCst) {
        runs += 1;
        let id = format!("{}-{k}-{runs}", soak.tag);
        let sleep = format!("0.{:03}", 20 + rng.below(31));
        let child = Command::new(env!("CARGO_BIN_EXE_tierlock"))
            .arg("run")
            .args(&soak.provider)
            .args(["--name", "soak", "--timeout", "30s", "--quiet", "--"])
            .args(["sh", "-c", SECTION, &id])
            .arg(&soak.log)
            .arg(&sleep)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot start tierlock");
        *soak.slots[k].lock().unwrap() = Some(Running { id, child });
        let (id, status) = loop {
            thread::sleep(Duration::from_millis(5));
            let mut slot = soak.slots[k].lock().unwrap();
            let running = slot.as_mut().expect("only this loop empties its slot");
            if let Some(status) = running.child.try_wait().unwrap() {
                let running = slot.take().unwrap();
                break (running.id, status);
            }
        };
        if status.code() != Some(0) && status.signal() != Some(SIGKILL) {
            failures.push(format!("{id}: {status}"));
        }
    }
    (runs, failures)
}

/// Every [`KILL_EVERY`], SIGKILL to the `tierlock` whose section is running, or else to a live
/// one at random; `dead ID` in the log once it is reaped.
fn killer(soak: &Soak) {
    let mut rng = Rng::new(LOOPS as u64);
    let mut tail = LogTail::new(&soak.log);
    while !soak.stop.load(Ordering::SeqCst) {
        thread::sleep(KILL_EVERY);
        let open = tail.open_sections();
        let live: Vec<(usize, String, bool)> = soak
            .slots
            .iter()
            .enumerate()
            .filter_map(|(k, slot)| {
                let slot = slot.lock().unwrap();
                let running = slot.as_ref()?;
                Some((k, running.id.clone(), open.contains(&running.id)))
            })
            .collect();
        let in_section: Vec<_> = live.iter().filter(|(_, _, open)| *open).collect();
        let pool: Vec<_> = if in_section.is_empty() {
            live.iter().collect()
        } else {
            in_section
        };
        if pool.is_empty() {
            continue;
        }
        let (k, id, _) = pool[rng.below(pool.len())];
        let mut slot = soak.slots[*k].lock().unwrap();
        let Some(running) = slot.as_mut().filter(|running| &running.id == id) else {
            continue; // That run ended meanwhile.
        };
        if running.child.try_wait().unwrap().is_some() {
            continue;
        }
        running.child.kill().unwrap();
        let status = running.child.wait().unwrap();
        if status.signal() == Some(SIGKILL) {
            append(&soak.log, &format!("dead {id}\n"));
        }
    }
}

fn append(log: &Path, line: &str) {
    let mut file = OpenOptions::new().append(true).open(log).unwrap();
    file.write_all(line.as_bytes()).unwrap();
}

/// Follows the log as it grows: which sections have entered and not exited.
struct LogTail {
    file: File,
    pending: Vec<u8>,
    open: HashSet<String>,
}

impl LogTail {
    fn new(log: &Path) -> Self {
        LogTail {
            file: File::open(log).unwrap(),
            pending: Vec::new(),
            open: HashSet::new(),
        }
    }

    fn open_sections(&mut self) -> &HashSet<String> {
        // The file's offset stays where the last read ended.
        self.file.read_to_end(&mut self.pending).unwrap();
        // Only whole lines: a line being written is read next time.
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return &self.open;
        };
        let whole: Vec<u8> = self.pending.drain(..=end).collect();
        for line in String::from_utf8_lossy(&whole).lines() {
            match line.split_once(' ') {
                Some(("enter", id)) => {
                    self.open.insert(id.to_owned());
                }
                Some(("exit", id)) => {
                    self.open.remove(id);
                }
                _ => {}
            }
        }
        &self.open
    }
}

#[derive(Debug, Default)]
struct Figures {
    entered: usize,
    completed: usize,
    kills: usize,
    mid_section: usize,
    /// Sections whose `exit` came after their tierlock was reaped.
    ran_on: Vec<String>,
    /// Sections with another section's `enter` between their `enter` and `exit`.
    overlaps: Vec<String>,
}

fn analyse(log: &str) -> Figures {
    let mut figures = Figures::default();
    let mut enter_at = HashMap::new();
    let mut exit_at = HashMap::new();
    let mut dead_at = HashMap::new();
    // Sections entered and not (yet) exited, and whether another one entered since.
    let mut open: Vec<(&str, Option<&str>)> = Vec::new();
    for (i, line) in log.lines().enumerate() {
        let (what, id) = line.split_once(' ').expect("a log line is `what id`");
        match what {
            "enter" => {
                figures.entered += 1;
                for (_, intruder) in &mut open {
                    intruder.get_or_insert(id);
                }
                open.push((id, None));
                enter_at.insert(id, i);
            }
            "exit" => {
                figures.completed += 1;
                if let Some(pos) = open.iter().position(|(open_id, _)| *open_id == id) {
                    if let (_, Some(intruder)) = open.remove(pos) {
                        figures.overlaps.push(format!("{id} (entered: {intruder})"));
                    }
                }
                exit_at.insert(id, i);
            }
            "dead" => {
                figures.kills += 1;
                dead_at.insert(id, i);
            }
            other => panic!("unexpected log line {other:?}"),
        }
    }
    for (id, dead) in dead_at {
        let entered = enter_at.get(id).is_some_and(|&enter| enter < dead);
        let exited = exit_at.get(id).copied();
        if entered && exited.is_none_or(|exit| exit > dead) {
            figures.mid_section += 1;
        }
        if exited.is_some_and(|exit| exit > dead) {
            figures.ran_on.push(id.to_owned());
        }
    }
    figures
}

/// Section shells of this run still alive (zombies have an empty command line and don't count).
fn live_sections(tag: &str) -> Vec<String> {
    let prefix = format!("{tag}-");
    let mut alive = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue; // Gone meanwhile.
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        // sh -c SECTION ID LOG SLEEP
        if args.first() == Some(&&b"sh"[..])
            && args
                .get(3)
                .is_some_and(|id| id.starts_with(prefix.as_bytes()))
        {
            alive.push(format!("pid {pid}: {}", String::from_utf8_lossy(args[3])));
        }
    }
    alive
}

/// splitmix64: enough randomness for picking victims and sleeps.
struct Rng(u64);

impl Rng {
    fn new(stream: u64) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Rng((nanos as u64) ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % n as u64) as usize
    }
}
