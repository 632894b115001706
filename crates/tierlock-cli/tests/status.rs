//! `tierlock status`: a lock held by another process (a `tierlock run`) is listed, as a table
//! and as JSON, without disturbing it; after its release the listing is empty.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../tierlock-mssql/tests/support/fake_tds.rs"]
mod fake_tds;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{output, stderr};

fn status(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tierlock"));
    cmd.arg("status").args(args);
    cmd
}

fn stdout(cmd: Command) -> String {
    let out = output(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// A `tierlock run` holding `name` in `dir` until `dir/release` exists.
fn hold(dir: &Path, mode: &str, name: &str) -> Child {
    let mut provider = vec!["--dir".to_owned(), dir.display().to_string()];
    provider.extend(["--mode".to_owned(), mode.to_owned()]);
    hold_on(&provider, dir, name)
}

/// A `tierlock run PROVIDER… --name NAME` holding the lock until `scratch/release` exists.
fn hold_on(provider: &[String], scratch: &Path, name: &str) -> Child {
    let marker = scratch.join(format!("{name}.held"));
    let release = scratch.join("release");
    let script = format!(
        "touch '{}'; while [ ! -e '{}' ]; do sleep 0.02; done",
        marker.display(),
        release.display()
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tierlock"));
    cmd.arg("run")
        .args(provider)
        .args(["--name", name, "--", "sh", "-c", &script]);
    common::spawn_holder(cmd, &marker)
}

/// The rows of `tierlock status ARGS --json`.
fn rows(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = args.to_vec();
    all.push("--json");
    let json: serde_json::Value = serde_json::from_str(&stdout(status(&all))).unwrap();
    json.as_array().unwrap().clone()
}

#[test]
fn postgres_lists_a_holder_in_another_process() {
    let Some(url) = tierlock_testkit::server_url("TIERLOCK_PG_URL") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ns = common::unique_namespace("status");
    let key = tierlock::postgres_lock_key(&ns, "nightly").to_string();
    let provider = [
        "--url".to_owned(),
        url.clone(),
        "--namespace".to_owned(),
        ns,
    ];
    let mut holder = KillOnDrop(hold_on(&provider, tmp.path(), "nightly"));
    let pid = format!("pid {}", holder.0.id());

    let held = rows(&["--url", &url]);
    let row = held
        .iter()
        .find(|row| row["key"] == key.as_str())
        .unwrap_or_else(|| panic!("{key} not in {held:?}"));
    assert_eq!(row["name"], serde_json::Value::Null);
    let holder_text = row["holder"].as_str().unwrap();
    // The session's backend, not the tierlock process.
    assert!(
        holder_text.starts_with("pid ") && holder_text != pid,
        "{row}"
    );
    assert_eq!(row["waiters"], 0);
    let table = stdout(status(&["--url", &url]));
    assert!(table.lines().any(|line| line.ends_with(&key)), "{table}");

    std::fs::write(tmp.path().join("release"), b"").unwrap();
    assert!(holder.0.wait().unwrap().success());
    let held = rows(&["--url", &url]);
    assert!(
        !held.iter().any(|row| row["key"] == key.as_str()),
        "{held:?}"
    );
}

/// Whether a zero-timeout `tierlock run` finds `name` held (exit 75) rather than running.
fn still_held(dir: &Path, mode: &str, name: &str) -> bool {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tierlock"));
    cmd.args(["run", "--dir"]).arg(dir).args([
        "--mode",
        mode,
        "--name",
        name,
        "--timeout",
        "0",
        "--",
        "true",
    ]);
    let out = output(cmd);
    match out.status.code() {
        Some(75) => true,
        Some(0) => false,
        other => panic!("tierlock run: {other:?}: {}", stderr(&out)),
    }
}

/// Kills the holder if the test fails before it is released.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn lists_a_holder_in_another_process(mode: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let locks = tmp.path().join("locks");
    let dir = locks.to_str().unwrap();
    // Nothing there yet (not even the directory): empty, exit 0, nothing created.
    assert_eq!(stdout(status(&["--dir", dir])), "no locks held\n");
    assert_eq!(stdout(status(&["--dir", dir, "--json"])), "[]\n");
    assert!(!locks.exists());

    std::fs::create_dir(&locks).unwrap();
    let mut holder = KillOnDrop(hold(&locks, mode, "nightly-export"));
    let pid = format!("pid {}", holder.0.id());

    let table = stdout(status(&["--dir", dir]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("NAME"), "{table}");
    assert!(lines[1].starts_with("nightly-export "), "{table}");
    if mode == "lease" || cfg!(target_os = "linux") {
        assert!(lines[1].contains(&pid), "{table}");
    }
    let json: serde_json::Value = serde_json::from_str(&stdout(status(&[
        "--url",
        &format!("file://{dir}"),
        "--json",
    ])))
    .unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["name"], "nightly-export");
    assert_eq!(rows[0]["fencing_token"], 1);
    let ext = if mode == "lease" { ".lease" } else { ".lock" };
    assert!(rows[0]["key"].as_str().unwrap().ends_with(ext), "{json}");

    // The holder is not disturbed: after many listings it still holds the lock (a zero-timeout
    // run gets 75), and it is still running.
    for _ in 0..20 {
        stdout(status(&["--dir", dir]));
    }
    assert!(still_held(&locks, mode, "nightly-export"));
    assert!(holder.0.try_wait().unwrap().is_none());

    std::fs::write(locks.join("release"), b"").unwrap();
    let start = Instant::now();
    assert!(holder.0.wait().unwrap().success());
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(stdout(status(&["--dir", dir])), "no locks held\n");
    assert_eq!(stdout(status(&["--dir", dir, "--json"])), "[]\n");
    assert!(!still_held(&locks, mode, "nightly-export"));
}

#[test]
fn flock_mode_lists_a_holder_in_another_process() {
    lists_a_holder_in_another_process("flock");
}

#[test]
fn lease_mode_lists_a_holder_in_another_process() {
    lists_a_holder_in_another_process("lease");
}

#[test]
fn memory_and_bad_urls_fail_with_a_message() {
    let out = output(status(&["--url", "memory:"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("one process"), "{}", stderr(&out));
    let out = output(status(&["--url", "nope"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a lock URL"), "{}", stderr(&out));
}

#[test]
fn redis_lists_a_holder_in_another_process() {
    let Some(url) = tierlock_testkit::server_url("TIERLOCK_REDIS_URL") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ns = common::unique_namespace("status");
    let provider = [
        "--url".to_owned(),
        url.clone(),
        "--namespace".to_owned(),
        ns.clone(),
    ];
    let mut holder = KillOnDrop(hold_on(&provider, tmp.path(), "nightly"));

    let held = rows(&["--url", &url, "--namespace", &ns]);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["name"], "nightly");
    assert_eq!(held[0]["key"], format!("tierlock:{ns}:{{n:nightly}}:lock"));
    assert!(held[0]["expires_in_ms"].as_u64().unwrap() > 0, "{held:?}");
    assert!(held[0]["fencing_token"].as_u64().is_some(), "{held:?}");
    // The same namespace in the URL.
    let held = rows(&["--url", &format!("{url}?namespace={ns}")]);
    assert_eq!(held.len(), 1, "{held:?}");

    std::fs::write(tmp.path().join("release"), b"").unwrap();
    assert!(holder.0.wait().unwrap().success());
    assert!(rows(&["--url", &url, "--namespace", &ns]).is_empty());
}

#[test]
fn sqlite_lists_a_holder_in_another_process() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("locks.db");
    let url = format!("sqlite:{}", db.display());
    assert!(rows(&["--url", &url]).is_empty());
    assert!(!db.exists(), "the listing created the database");
    let provider = ["--url".to_owned(), url.clone()];
    let mut holder = KillOnDrop(hold_on(&provider, tmp.path(), "job:nightly"));
    let pid = format!("pid {}", holder.0.id());

    let held = rows(&["--url", &url]);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["name"], "job:nightly");
    assert!(
        held[0]["holder"].as_str().unwrap().starts_with(&pid),
        "{held:?}"
    );
    assert_eq!(held[0]["fencing_token"], 1);
    assert!(held[0]["expires_in_ms"].as_u64().unwrap() > 0, "{held:?}");
    let table = stdout(status(&["--url", &url]));
    assert!(
        table.lines().nth(1).unwrap().starts_with("job:nightly "),
        "{table}"
    );

    std::fs::write(tmp.path().join("release"), b"").unwrap();
    assert!(holder.0.wait().unwrap().success());
    assert!(rows(&["--url", &url]).is_empty());
}

/// SQL Server against the fake TDS server of tierlock-mssql's tests, run in this process; the
/// holder and the listings are separate `tierlock` processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_server_lists_a_holder_in_another_process() {
    let server = fake_tds::FakeServer::start().await;
    let url = format!("mssql:{}", server.connection_string());
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tmp.path().to_path_buf();
    let provider = [
        "--url".to_owned(),
        url.clone(),
        "--namespace".to_owned(),
        "app:".to_owned(),
    ];
    let mut holder =
        tokio::task::spawn_blocking(move || KillOnDrop(hold_on(&provider, &scratch, "nightly")))
            .await
            .unwrap();
    let list = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            rows(&args)
        })
    };
    let args = vec![
        "--url".to_owned(),
        url.clone(),
        "--namespace".to_owned(),
        "app:".to_owned(),
    ];
    let held = list(args.clone()).await.unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["name"], "nightly");
    let spid = server.locks()[0].spid;
    assert_eq!(held[0]["holder"], format!("session {spid}"));
    assert!(
        held[0]["key"]
            .as_str()
            .unwrap()
            .starts_with("0:[app:nightly]:(")
    );
    assert_eq!(held[0]["waiters"], 0);
    // Without the namespace, the whole resource is the name (as a provider without one
    // would name it); with another, it is only a hint.
    let held = list(vec!["--url".to_owned(), url.clone()]).await.unwrap();
    assert_eq!(held[0]["name"], "app:nightly");
    let held = list(vec![
        "--url".to_owned(),
        url.clone(),
        "--namespace".to_owned(),
        "other:".to_owned(),
    ])
    .await
    .unwrap();
    assert_eq!(held[0]["name"], serde_json::Value::Null);
    assert_eq!(held[0]["name_hint"], "app:nightly");

    std::fs::write(tmp.path().join("release"), b"").unwrap();
    let status = tokio::task::spawn_blocking(move || holder.0.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    assert!(list(args).await.unwrap().is_empty());
}
