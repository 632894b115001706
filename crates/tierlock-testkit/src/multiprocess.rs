//! Multi-process scenarios: real OS processes running a provider's worker binary (see
//! [`worker`](crate::worker)), driven over stdin/stdout.
//!
//! A provider's test calls each scenario with the path of its worker binary and the arguments
//! that select the provider (for example `["file", "/tmp/locks"]`).

use std::path::{Path, PathBuf};
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

    /// Tells a holding worker to release (a line on stdin).
    pub async fn tell_release(&mut self) {
        if let Some(stdin) = &mut self.stdin {
            stdin
                .write_all(b"release\n")
                .await
                .expect("writing to the worker failed");
            stdin.flush().await.expect("writing to the worker failed");
        }
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
    let counter: PathBuf = scratch.join("counter.txt");
    std::fs::write(&counter, "0\n").expect("cannot write the counter file");
    let path = counter.to_string_lossy().into_owned();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            Worker::spawn(
                bin,
                provider,
                &strings(&["count", "mp:counter", &path, "4", "500"]),
            )
        })
        .collect();
    for mut worker in workers {
        worker.expect("done", Duration::from_secs(600)).await;
        worker.finish().await;
    }
    let value = std::fs::read_to_string(&counter).expect("cannot read the counter file");
    assert_eq!(
        value.trim(),
        "8000",
        "increments were lost: the lock did not exclude"
    );
}

/// A holder process is killed with SIGKILL; a waiting process gets the lock within 1 s.
/// Returns how long the waiter took after the kill.
pub async fn killed_holder_is_released(bin: &Path, provider: &[String]) -> Duration {
    let mut holder = Worker::spawn(bin, provider, &strings(&["hold", "mp:kill", "30000"]));
    holder.expect("waiting", PATIENCE).await;
    holder.expect("acquired", PATIENCE).await;
    let mut waiter = Worker::spawn(bin, provider, &strings(&["hold", "mp:kill", "60000"]));
    waiter.expect("waiting", PATIENCE).await;
    // Give the waiter time to find the lock held and start waiting for real.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    holder.kill().await;
    waiter.expect("acquired", PATIENCE).await;
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(1),
        "the lock of a killed holder took {took:?} to free"
    );
    waiter.tell_release().await;
    waiter.expect("released", PATIENCE).await;
    waiter.finish().await;
    took
}

/// Process A keeps 4 tasks contending with 100 µs critical sections; process B asks for the
/// lock and must get it within 1 s: A hands the external lock over at a turn boundary.
/// Returns how long B waited.
pub async fn busy_process_hands_over(bin: &Path, provider: &[String]) -> Duration {
    let mut busy = Worker::spawn(
        bin,
        provider,
        &strings(&["contend", "mp:busy", "4", "5", "100"]),
    );
    // Let A get going.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut asker = Worker::spawn(bin, provider, &strings(&["hold", "mp:busy", "30000"]));
    asker.expect("waiting", PATIENCE).await;
    let asked = Instant::now();
    asker.expect("acquired", PATIENCE).await;
    let took = asked.elapsed();
    asker.tell_release().await;
    asker.expect("released", PATIENCE).await;
    asker.finish().await;
    let stats = busy.expect("stats", PATIENCE).await;
    busy.finish().await;
    assert!(
        took <= Duration::from_secs(1),
        "B waited {took:?} for a busy A ({stats})"
    );
    took
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
    let mut mode = strings(&["contend", "mp:contend"]);
    mode.extend([tasks.to_string(), secs.to_string(), critical_us.to_string()]);
    if bypass {
        mode.push("bypass".to_owned());
    }
    let workers: Vec<_> = (0..processes)
        .map(|_| Worker::spawn(bin, provider, &mode))
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
