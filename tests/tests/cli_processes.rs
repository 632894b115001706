//! The `tierlock` command across processes, as a user runs it: several `tierlock run`
//! processes started at once on one lock (a lock directory, an SQLite file, a PostgreSQL or
//! Redis server) each run a command that writes `start I`, sleeps, and writes `end I` to one
//! log; the log must show the commands one after another. The control runs them under
//! different names and must see them overlap — proof that the check can fail.
//!
//! The command is `tierlock_cli::main` built into this package's `e2e-tierlock` binary (the
//! same code as the `tierlock` binary of `crates/tierlock-cli`). PostgreSQL and Redis run
//! against `TIERLOCK_PG_URL` / `TIERLOCK_REDIS_URL` (skipped without them, unless
//! `TIERLOCK_REQUIRE_SERVERS` requires them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{unique, with_param};

const PROCESSES: usize = 3;

/// Starts `PROCESSES` `tierlock run` processes at once, process `i` on lock `names[i]` with
/// `lock_args` (`--dir D` or `--url U`), each holding it for `hold_secs`; waits for all of them
/// (each gives up after 120 s) and returns the log's lines.
fn run_together(lock_args: &[&str], names: &[String], hold_secs: &str, log: &Path) -> Vec<String> {
    let script = format!(
        "echo \"start $0\" >> '{log}'; sleep {hold_secs}; echo \"end $0\" >> '{log}'",
        log = log.display()
    );
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_e2e-tierlock"))
                .arg("run")
                .args(lock_args)
                .args(["--name", &names[i], "--timeout", "120s", "--"])
                .args(["sh", "-c", &script, &i.to_string()])
                .stdout(Stdio::null())
                .spawn()
                .expect("cannot start tierlock")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "a tierlock run failed");
    }
    let text = std::fs::read_to_string(log).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2 * PROCESSES, "{lines:?}");
    lines
}

/// How many times a command started while another one was running.
fn overlaps(lines: &[String]) -> usize {
    let mut running = 0usize;
    let mut overlaps = 0;
    for line in lines {
        if line.starts_with("start ") {
            if running > 0 {
                overlaps += 1;
            }
            running += 1;
        } else {
            running -= 1;
        }
    }
    overlaps
}

/// The processes on one lock `lock_args` take turns: each `start I` is followed by `end I`.
fn take_turns(lock_args: &[&str], scratch: &Path) {
    let log = scratch.join("log");
    let names = vec!["e2e:turns".to_owned(); PROCESSES];
    let lines = run_together(lock_args, &names, "0.3", &log);
    for pair in lines.chunks(2) {
        let who = pair[0].strip_prefix("start ").expect("a start line");
        assert_eq!(
            pair[1],
            format!("end {who}"),
            "commands overlapped: {lines:?}"
        );
    }
    assert_eq!(overlaps(&lines), 0, "{lines:?}");
}

/// [`take_turns`] on the server named by `var`, in a namespace of its own; skipped (or failed,
/// see `TIERLOCK_REQUIRE_SERVERS`) without it.
fn take_turns_on_server(var: &str) {
    let Some(url) = tierlock_testkit::server_url(var) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let url = with_param(&url, &format!("namespace={}", unique("cli")));
    take_turns(&["--url", &url], tmp.path());
}

#[test]
fn runs_on_one_lock_directory_take_turns() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("locks");
    take_turns(&["--dir", dir.to_str().unwrap()], tmp.path());
}

#[test]
fn runs_on_one_sqlite_file_take_turns() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", tmp.path().join("locks.db").display());
    take_turns(&["--url", &url], tmp.path());
}

#[test]
fn runs_on_one_postgres_server_take_turns() {
    take_turns_on_server("TIERLOCK_PG_URL");
}

#[test]
fn runs_on_one_redis_server_take_turns() {
    take_turns_on_server("TIERLOCK_REDIS_URL");
}

/// The control: on different names nothing orders the commands, and the check sees it.
#[test]
fn runs_under_different_names_overlap() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("locks");
    let names: Vec<String> = (0..PROCESSES).map(|i| format!("e2e:free:{i}")).collect();
    let log = tmp.path().join("log");
    let lines = run_together(&["--dir", dir.to_str().unwrap()], &names, "3", &log);
    assert!(
        overlaps(&lines) > 0,
        "commands on different names never overlapped: the check cannot fail ({lines:?})"
    );
}
