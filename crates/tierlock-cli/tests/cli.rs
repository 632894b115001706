//! The `tierlock` binary, run as users run it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{holder_script, output, spawn_holder, stderr};

fn tierlock(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tierlock"));
    cmd.arg("run").arg("--dir").arg(dir).args(args);
    cmd
}

/// Starts a holder that touches `marker` once it holds the lock, then sleeps `secs`.
fn hold(dir: &Path, name: &str, marker: &Path, secs: u32) -> std::process::Child {
    let script = holder_script(marker, secs);
    spawn_holder(
        tierlock(dir, &["--name", name, "--", "sh", "-c", &script]),
        marker,
    )
}

#[test]
fn runs_the_command_and_returns_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let out = output(tierlock(
        dir.path(),
        &["--name", "demo", "--", "sh", "-c", "echo hi; exit 3"],
    ));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
}

#[test]
fn zero_timeout_fails_at_once_with_75_while_held() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("held");
    let mut holder = hold(dir.path(), "busy", &marker, 5);
    let out = output(tierlock(
        dir.path(),
        &["--name", "busy", "--timeout", "0", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("held elsewhere"), "{}", stderr(&out));
    let out = output(tierlock(
        dir.path(),
        &[
            "--name",
            "busy",
            "--timeout",
            "0",
            "--conflict-exit-code",
            "9",
            "--",
            "true",
        ],
    ));
    assert_eq!(out.status.code(), Some(9));
    // Another name is independent.
    let out = output(tierlock(
        dir.path(),
        &["--name", "other", "--timeout", "0", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn a_second_run_waits_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("held");
    let mut holder = hold(dir.path(), "queue", &marker, 2);
    let out = output(tierlock(
        dir.path(),
        &["--name", "queue", "--timeout", "60s", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("waiting for lock \"queue\""),
        "{}",
        stderr(&out)
    );
    assert!(
        holder.wait().unwrap().success(),
        "the holder's command failed"
    );
}

#[test]
fn bad_input_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = output(tierlock(dir.path(), &["--name", "", "--", "true"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid lock name"),
        "{}",
        stderr(&out)
    );

    let out = output(tierlock(
        dir.path(),
        &["--name", "x", "--timeout", "5 parsecs", "--", "true"],
    ));
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap reports usage errors with 2"
    );

    // Numbers are digits and one `.`: no exponent, no sign.
    for timeout in ["1e3", "-1", "inf"] {
        let out = output(tierlock(
            dir.path(),
            &["--name", "x", "--timeout", timeout, "--", "true"],
        ));
        assert_eq!(out.status.code(), Some(2), "--timeout {timeout}");
    }

    let out = output(tierlock(
        dir.path(),
        &["--name", "x", "--", "/nonexistent/program"],
    ));
    assert_eq!(out.status.code(), Some(127));

    let file = dir.path().join("plain-file");
    std::fs::write(&file, "").unwrap();
    let out = output(tierlock(&file, &["--name", "x", "--", "true"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).is_empty());
}

#[test]
fn help_explains_run() {
    let out = Command::new(env!("CARGO_BIN_EXE_tierlock"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--dir",
        "--url",
        "postgres://",
        "jdbc:sqlserver://",
        "mssql:",
        "--namespace",
        "--name",
        "--timeout",
        "--conflict-exit-code",
        "75",
        "exec prog",
    ] {
        assert!(help.contains(needle), "help lacks {needle}: {help}");
    }
}

#[test]
fn sigterm_stops_the_command_and_frees_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("held");
    let mut holder = hold(dir.path(), "term", &marker, 60);
    let status = Command::new("kill")
        .args(["-TERM", &holder.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = holder.wait().unwrap().code();
    assert_eq!(code, Some(128 + 9), "the command was not stopped");
    let out = output(tierlock(
        dir.path(),
        &["--name", "term", "--timeout", "10s", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// SIGKILL to tierlock frees the lock at once; on Linux the command must die with it.
#[cfg(target_os = "linux")]
#[test]
fn sigkill_to_tierlock_kills_the_command_on_linux() {
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!(
        "echo $$ > '{}'.tmp; mv '{0}'.tmp '{0}'; exec sleep 60",
        pid_file.display()
    );
    let mut holder = tierlock(dir.path(), &["--name", "orphan", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !pid_file.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let pid = pid.trim();
    holder.kill().unwrap(); // SIGKILL to tierlock only.
    holder.wait().unwrap();
    // The command is `sleep 60` until it dies (a zombie or a reaped process has no command line).
    let cmdline = format!("/proc/{pid}/cmdline");
    let start = Instant::now();
    while std::fs::read(&cmdline).is_ok_and(|c| c == b"sleep\x0060\x00") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the command (pid {pid}) outlived its tierlock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
