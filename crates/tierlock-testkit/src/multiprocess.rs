//! Multi-process scenarios: real OS processes running a provider's worker binary (see
//! [`worker`](crate::worker)), driven over stdin/stdout.
//!
//! A provider's test calls each scenario with the path of its worker binary and the arguments
//! that select the provider (for example `["file", "/tmp/locks"]`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long a scenario waits for a worker to say something it should say soon.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A running worker process.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    /// Starts `bin` with the provider arguments followed by the mode arguments.
    ///
    /// # Panics
    ///
    /// If the process cannot be started.
    pub fn spawn(bin: &Path, provider: &[String], mode: &[String]) -> Worker {
        let mut child = Command::new(bin)
            .args(provider)
            .args(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", bin.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
        }
    }

    /// The next line the worker prints, within `patience`.
    ///
    /// # Panics
    ///
    /// If the worker says nothing in time or exits.
    pub async fn line(&mut self, patience: Duration) -> String {
        match tokio::time::timeout(patience, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => panic!("the worker exited: {:?}", self.child.try_wait()),
            Ok(Err(err)) => panic!("reading the worker's output failed: {err}"),
            Err(_) => panic!("the worker said nothing for {patience:?}"),
        }
    }

    /// Waits for a line starting with `prefix` and returns it.
    pub async fn expect(&mut self, prefix: &str, patience: Duration) -> String {
        let line = self.line(patience).await;
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}, worker said {line:?}"
        );
        line
    }

    /// Starts `bin` in `serve` mode on lock `name` and waits until it is ready for commands.
    pub async fn serve(bin: &Path, provider: &[String], name: &str) -> Worker {
        let mut worker = Worker::spawn(bin, provider, &strings(&["serve", name]));
        worker.expect("ready", PATIENCE).await;
        worker
    }

    /// `lock MS` in a serving worker: `Some(line)` (`acquired MS token=T`) if it acquired,
    /// `None` on timeout.
    pub async fn lock(&mut self, timeout_ms: u64) -> Option<String> {
        self.tell(&format!("lock {timeout_ms}")).await;
        let line = self
            .line(PATIENCE + Duration::from_millis(timeout_ms))
            .await;
        if line == "timeout" {
            return None;
        }
        assert!(line.starts_with("acquired"), "{line}");
        Some(line)
    }

    /// [`lock`](Self::lock) in a serving worker whose provider makes fencing tokens: the token.
    ///
    /// # Panics
    ///
    /// If the worker acquired but reported no token.
    pub async fn lock_token(&mut self, timeout_ms: u64) -> Option<u64> {
        let line = self.lock(timeout_ms).await?;
        Some(field(&line, "token").unwrap_or_else(|| panic!("no fencing token: {line}")))
    }

    /// `release` in a serving worker: true if the lock was still held, false if it was lost.
    pub async fn release(&mut self) -> bool {
        self.tell("release").await;
        let line = self.expect("released", PATIENCE).await;
        line == "released"
    }

    /// Tells a holding worker to release (a line on stdin).
    pub async fn tell_release(&mut self) {
        self.tell("release").await;
    }

    /// Writes `line` to the worker's stdin (a command of the `serve` mode).
    pub async fn tell(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin {
            stdin
                .write_all(format!("{line}\n").as_bytes())
                .await
                .expect("writing to the worker failed");
            stdin.flush().await.expect("writing to the worker failed");
        }
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the worker was already reaped")
    }

    /// Sends the worker a signal by name (`STOP`, `CONT`, `KILL`…) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Kills the worker with SIGKILL (no clean-up of any kind) and reaps it.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill failed");
    }

    /// Waits for the worker to exit and checks it succeeded.
    pub async fn finish(mut self) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the worker did not exit")
            .expect("waiting for the worker failed");
        assert!(status.success(), "the worker failed: {status}");
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// 4 processes × 4 tasks × 500 read-sleep-write increments of a counter in a file, under one
/// lock name: the file must end at exactly 8,000.
pub async fn mutual_exclusion(bin: &Path, provider: &[String], scratch: &Path) {
    let providers = vec![provider.to_vec(); 4];
    count_together(bin, &providers, &scratch.join("counter.txt"), 4, 500).await;
}

/// One worker process per entry of `providers` (its provider arguments), each with `tasks`
/// tasks doing `rounds` read-sleep-write increments of the number in `counter` under one lock
/// name: the file must end at exactly the number of increments.
pub async fn count_together(
    bin: &Path,
    providers: &[Vec<String>],
    counter: &Path,
    tasks: u32,
    rounds: u32,
) {
    std::fs::write(counter, "0\n").expect("cannot write the counter file");
    let path = counter.to_string_lossy().into_owned();
    let (tasks_arg, rounds_arg) = (tasks.to_string(), rounds.to_string());
    let workers: Vec<_> = providers
        .iter()
        .map(|provider| {
            Worker::spawn(
                bin,
                provider,
                &strings(&["count", "mp:counter", &path, &tasks_arg, &rounds_arg]),
            )
        })
        .collect();
    for mut worker in workers {
        worker.expect("done", Duration::from_secs(600)).await;
        worker.finish().await;
    }
    let value = std::fs::read_to_string(counter).expect("cannot read the counter file");
    let expected = providers.len() as u64 * u64::from(tasks) * u64::from(rounds);
    assert_eq!(
        value.trim(),
        expected.to_string(),
        "increments were lost: the lock did not exclude"
    );
}

/// How long a fresh worker process on `provider` takes from its start until it has made one
/// `try_lock` and released it: process start plus the provider's connection set-up (TCP, TLS,
/// login, first statements — 0.1–1 s on some servers). Scenario bounds add it to theirs, so that
/// they measure the lock, not the server's session start-up.
pub async fn setup_time(bin: &Path, provider: &[String]) -> Duration {
    let started = Instant::now();
    let mut worker = Worker::spawn(bin, provider, &strings(&["setup", "mp:setup"]));
    worker.expect("setup", PATIENCE).await;
    let took = started.elapsed();
    worker.finish().await;
    took
}

/// A holder process is killed with SIGKILL; a waiting process gets the lock within 1 s plus
/// the measured connection set-up time ([`setup_time`]). Returns how long the waiter took after
/// the kill.
pub async fn killed_holder_is_released(bin: &Path, provider: &[String]) -> Duration {
    let bound = Duration::from_secs(1) + setup_time(bin, provider).await;
    killed_holder_is_released_to(bin, provider, provider, bound).await
}

/// A holder process (provider arguments `holder`) is killed with SIGKILL; a waiting process
/// (`waiter`: another "host", say) gets the lock within `bound` after the kill. Returns how long
/// it took.
pub async fn killed_holder_is_released_to(
    bin: &Path,
    holder: &[String],
    waiter: &[String],
    bound: Duration,
) -> Duration {
    let mut holding = Worker::spawn(bin, holder, &strings(&["hold", "mp:kill", "30000"]));
    holding.expect("waiting", PATIENCE).await;
    holding.expect("acquired", PATIENCE).await;
    let setup = setup_time(bin, waiter).await;
    let mut waiting = Worker::spawn(bin, waiter, &strings(&["hold", "mp:kill", "60000"]));
    waiting.expect("waiting", PATIENCE).await;
    // Give the waiter time to find the lock held and start waiting for real: its sessions may
    // take as long as a fresh process's set-up.
    tokio::time::sleep(Duration::from_millis(300) + setup).await;
    let killed = Instant::now();
    holding.kill().await;
    waiting.expect("acquired", PATIENCE).await;
    let took = killed.elapsed();
    assert!(
        took <= bound,
        "the lock of a killed holder took {took:?} to free (bound {bound:?})"
    );
    waiting.tell_release().await;
    waiting.expect("released", PATIENCE).await;
    waiting.finish().await;
    took
}

/// Process A keeps 4 tasks contending with 100 µs critical sections; process B asks for the
/// lock and must get it within 1 s plus the measured connection set-up time ([`setup_time`]:
/// B is a fresh process, and a waiter costs one session): A hands the external lock over at a
/// turn boundary. Returns how long B waited.
pub async fn busy_process_hands_over(bin: &Path, provider: &[String]) -> Duration {
    let bound = Duration::from_secs(1) + setup_time(bin, provider).await;
    busy_process_hands_over_to(bin, provider, provider, bound).await
}

/// As [`busy_process_hands_over`], with the busy process on provider arguments `busy`, the
/// asking one on `asker`, and the asker's wait bounded by `bound`.
pub async fn busy_process_hands_over_to(
    bin: &Path,
    busy: &[String],
    asker: &[String],
    bound: Duration,
) -> Duration {
    let mut busy = Worker::spawn(
        bin,
        busy,
        &strings(&["contend", "mp:busy", "4", "5", "100"]),
    );
    // Let A get going.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut asking = Worker::spawn(bin, asker, &strings(&["hold", "mp:busy", "30000"]));
    asking.expect("waiting", PATIENCE).await;
    let asked = Instant::now();
    asking.expect("acquired", PATIENCE).await;
    let took = asked.elapsed();
    asking.tell_release().await;
    asking.expect("released", PATIENCE).await;
    asking.finish().await;
    let stats = busy.expect("stats", PATIENCE).await;
    busy.finish().await;
    assert!(
        took <= bound,
        "B waited {took:?} for a busy A ({stats}; bound {bound:?})"
    );
    took
}

/// `rounds` acquisitions alternating between a process on provider arguments `a` and one on
/// `b` (two hosts, say), each releasing before the other takes the lock: every fencing token is
/// larger than the one before.
pub async fn tokens_increase_across_processes(bin: &Path, a: &[String], b: &[String], rounds: u32) {
    let mut a = Worker::serve(bin, a, "mp:tokens").await;
    let mut b = Worker::serve(bin, b, "mp:tokens").await;
    let mut last = 0;
    for i in 0..rounds {
        let worker = if i % 2 == 0 { &mut a } else { &mut b };
        let token = worker.lock_token(30_000).await.expect("acquired");
        assert!(token > last, "acquisition {i}: token {token} after {last}");
        last = token;
        assert!(worker.release().await, "acquisition {i}: the lock was lost");
    }
    a.finish().await;
    b.finish().await;
}

/// A holder process that got fencing token `t` is killed with SIGKILL while a second process
/// waits; the waiter gets a token larger than `t`, and a third process, after the waiter
/// released, a larger one still. Returns the three tokens.
pub async fn tokens_increase_across_a_killed_holder(bin: &Path, provider: &[String]) -> [u64; 3] {
    let mut holding = Worker::spawn(bin, provider, &strings(&["hold", "mp:kill-token", "30000"]));
    holding.expect("waiting", PATIENCE).await;
    let held = holding.expect("acquired", PATIENCE).await;
    let first = field(&held, "token").unwrap_or_else(|| panic!("no fencing token: {held}"));
    let mut waiting = Worker::spawn(bin, provider, &strings(&["hold", "mp:kill-token", "60000"]));
    waiting.expect("waiting", PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    holding.kill().await;
    let took = waiting.expect("acquired", PATIENCE).await;
    let second = field(&took, "token").unwrap_or_else(|| panic!("no fencing token: {took}"));
    assert!(
        second > first,
        "the waiter's token {second} after the killed holder's {first}"
    );
    waiting.tell_release().await;
    assert_eq!(waiting.expect("released", PATIENCE).await, "released");
    waiting.finish().await;
    let mut third = Worker::serve(bin, provider, "mp:kill-token").await;
    let last = third.lock_token(30_000).await.expect("acquired");
    assert!(last > second, "token {last} after {second}");
    assert!(third.release().await);
    third.finish().await;
    [first, second, last]
}

/// The number after `key=` in a worker's line (`acquired 3 token=12` → `token` → 12).
pub fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// Runs the `contend` mode in `processes` processes at once and returns their stats lines.
pub async fn contention(
    bin: &Path,
    provider: &[String],
    processes: usize,
    tasks: u32,
    secs: u64,
    critical_us: u64,
    bypass: bool,
) -> Vec<String> {
    let providers = vec![provider.to_vec(); processes];
    contention_across(bin, &providers, tasks, secs, critical_us, bypass).await
}

/// Runs the `contend` mode in one process per entry of `providers` (its provider arguments)
/// at once and returns their stats lines.
pub async fn contention_across(
    bin: &Path,
    providers: &[Vec<String>],
    tasks: u32,
    secs: u64,
    critical_us: u64,
    bypass: bool,
) -> Vec<String> {
    let mut mode = strings(&["contend", "mp:contend"]);
    mode.extend([tasks.to_string(), secs.to_string(), critical_us.to_string()]);
    if bypass {
        mode.push("bypass".to_owned());
    }
    let workers: Vec<_> = providers
        .iter()
        .map(|provider| Worker::spawn(bin, provider, &mode))
        .collect();
    let mut lines = Vec::new();
    for mut worker in workers {
        lines.push(
            worker
                .expect("stats", Duration::from_secs(secs + 120))
                .await,
        );
        worker.finish().await;
    }
    lines
}
