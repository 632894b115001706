//! `tierlock run --url …`: the database providers from the command line. The parsing of URLs
//! is `tierlock::ConnectOptions`'s, tested in the facade; these tests check that the command
//! passes its flags and the facade's errors through.
//!
//! The PostgreSQL cases run against the server in `TIERLOCK_PG_URL` (see `scripts/pg-start`), the
//! Redis case against `TIERLOCK_REDIS_URL` (`scripts/redis-start`); they are skipped without
//! their server (they fail instead when `TIERLOCK_REQUIRE_SERVERS` asks for it). The rest needs
//! no server (the SQLite cases use a file in a temporary directory).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command};

use common::{holder_script, output, spawn_holder, stderr, unique_namespace};

fn tierlock(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tierlock"));
    cmd.args(["run", "--url", url]).args(args);
    cmd
}

/// Starts a holder that touches `marker` once it holds the lock, then sleeps a minute.
fn hold(url: &str, namespace: &str, name: &str, marker: &Path) -> Child {
    let script = holder_script(marker, 60);
    let args = [
        "--namespace",
        namespace,
        "--name",
        name,
        "--",
        "sh",
        "-c",
        &script,
    ];
    spawn_holder(tierlock(url, &args), marker)
}

/// SIGTERM stops the holder's command; tierlock then releases and exits.
fn stop(mut holder: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &holder.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(holder.wait().unwrap().code(), Some(128 + 9));
}

#[test]
fn postgres_zero_timeout_conflicts_and_namespaces_are_independent() {
    let Some(url) = tierlock_testkit::server_url("TIERLOCK_PG_URL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ns = unique_namespace("conflict");
    let other_ns = format!("{ns}-other");
    let holder = hold(&url, &ns, "job", &dir.path().join("held"));

    let out = output(tierlock(
        &url,
        &[
            "--namespace",
            &ns,
            "--name",
            "job",
            "--timeout",
            "0",
            "--",
            "true",
        ],
    ));
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("held elsewhere"), "{}", stderr(&out));

    let out = output(tierlock(
        &url,
        &[
            "--namespace",
            &other_ns,
            "--name",
            "job",
            "--timeout",
            "0",
            "--",
            "true",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    stop(holder);
    let out = output(tierlock(
        &url,
        &[
            "--namespace",
            &ns,
            "--name",
            "job",
            "--timeout",
            "10s",
            "--",
            "true",
        ],
    ));
    assert_eq!(
        out.status.code(),
        Some(0),
        "the lock stayed held: {}",
        stderr(&out)
    );
}

#[test]
fn postgresql_scheme_runs_the_command_and_returns_its_code() {
    let Some(url) = tierlock_testkit::server_url("TIERLOCK_PG_URL") else {
        return;
    };
    let url = url.replacen("postgres://", "postgresql://", 1);
    assert!(url.starts_with("postgresql://"), "unexpected URL form");
    let ns = unique_namespace("scheme");
    let out = output(tierlock(
        &url,
        &[
            "--namespace",
            &ns,
            "--name",
            "x",
            "--",
            "sh",
            "-c",
            "echo ok; exit 4",
        ],
    ));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

/// `sslmode=require` verifies the server certificate against the roots in `SSL_CERT_FILE`:
/// with scripts/pg-start's CA it connects, with no trusted CA it is refused.
#[test]
fn postgres_sslmode_require_checks_the_certificate() {
    let Some(url) = tierlock_testkit::server_url("TIERLOCK_PG_URL") else {
        return;
    };
    let Ok(ca) = std::env::var("TIERLOCK_PG_TLS_CA") else {
        eprintln!("skipped: TIERLOCK_PG_TLS_CA not set (the server has no TLS)");
        return;
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}sslmode=require");
    let ns = unique_namespace("tls");
    let args = ["--namespace", ns.as_str(), "--name", "x", "--", "true"];

    let mut trusted = tierlock(&url, &args);
    trusted.env("SSL_CERT_FILE", &ca).env_remove("SSL_CERT_DIR");
    let out = output(trusted);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let empty = tempfile::NamedTempFile::new().unwrap();
    let mut untrusted = tierlock(&url, &args);
    untrusted
        .env("SSL_CERT_FILE", empty.path())
        .env_remove("SSL_CERT_DIR");
    let out = output(untrusted);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn unreachable_server_fails_without_showing_the_password() {
    let cases = [
        ("postgres://locker:hunter2@127.0.0.1:1/app", "PostgreSQL"),
        (
            "mssql:server=tcp:127.0.0.1,1;user id=locker;password=hunter2",
            "",
        ),
        (
            "jdbc:sqlserver://127.0.0.1:1;user=locker;password=hunter2",
            "",
        ),
    ];
    for (url, needle) in cases {
        let out = output(tierlock(
            url,
            &["--name", "x", "--timeout", "0", "--", "true"],
        ));
        assert_eq!(out.status.code(), Some(1), "{url}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{url}: {}", stderr(&out));
        assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    }
}

#[test]
fn unknown_schemes_are_refused() {
    for (url, needle) in [
        ("mysql://locker:hunter2@db/app", "unknown scheme \"mysql\""),
        ("sqlserver://locker:hunter2@db/app", "jdbc:sqlserver://"),
        ("locker-hunter2", "not a lock URL"),
    ] {
        let out = output(tierlock(url, &["--name", "x", "--", "true"]));
        assert_eq!(out.status.code(), Some(1), "{url}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{url}: {}", stderr(&out));
        assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    }
}

/// tierlock's parameters in the URL: a namespace for the server (the holder's namespace comes
/// from the URL, the contender's from `--namespace`: they meet on the same lock).
#[test]
fn postgres_namespace_in_the_url_is_the_flags_namespace() {
    let Some(url) = tierlock_testkit::server_url("TIERLOCK_PG_URL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ns = unique_namespace("urlns");
    let separator = if url.contains('?') { '&' } else { '?' };
    let url_with_ns = format!("{url}{separator}namespace={ns}");
    let script = holder_script(&dir.path().join("held"), 60);
    let holder = spawn_holder(
        tierlock(&url_with_ns, &["--name", "job", "--", "sh", "-c", &script]),
        &dir.path().join("held"),
    );
    let out = output(tierlock(
        &url,
        &[
            "--namespace",
            &ns,
            "--name",
            "job",
            "--timeout",
            "0",
            "--",
            "true",
        ],
    ));
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    stop(holder);
}

#[test]
fn file_url_takes_the_mode_from_its_query_or_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    let url = format!("file://{}?mode=lease&ttl=3s", locks.display());
    let out = output(tierlock(&url, &["--name", "x", "--verbose", "--", "true"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mode: lease (ttl 3s)"),
        "{}",
        stderr(&out)
    );
    // The flag overrides the URL's ttl.
    let out = output(tierlock(
        &url,
        &["--name", "x", "--verbose", "--ttl", "4s", "--", "true"],
    ));
    assert!(
        stderr(&out).contains("mode: lease (ttl 4s)"),
        "{}",
        stderr(&out)
    );
    // The directory is recorded in lease mode now: flock is refused.
    let out = output(tierlock(
        &url.replace("?mode=lease&ttl=3s", ""),
        &["--name", "x", "--mode", "flock", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot set up the file provider"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dir_and_url_together_are_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    let url = "postgres://locker:hunter2@db/app";
    let url_first = tierlock(url, &["--dir", dir, "--name", "x", "--", "true"]);
    let mut dir_first = Command::new(env!("CARGO_BIN_EXE_tierlock"));
    dir_first.args([
        "run", "--dir", dir, "--url", url, "--name", "x", "--", "true",
    ]);
    for cmd in [url_first, dir_first] {
        let out = output(cmd);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("cannot be used with"),
            "{}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    }
}

#[test]
fn namespace_with_dir_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = output({
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tierlock"));
        cmd.args(["run", "--dir"]).arg(dir.path()).args([
            "--namespace",
            "ns",
            "--name",
            "x",
            "--",
            "true",
        ]);
        cmd
    });
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--namespace"), "{}", stderr(&out));
}

/// Starts a holder of `name` in the SQLite file behind `url` that touches `marker` once it
/// holds the lock, then sleeps a minute.
fn hold_sqlite(url: &str, name: &str, marker: &Path) -> Child {
    let script = holder_script(marker, 60);
    spawn_holder(
        tierlock(url, &["--name", name, "--", "sh", "-c", &script]),
        marker,
    )
}

#[test]
fn sqlite_file_conflicts_are_seen_and_the_table_says_who_holds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locks.db");
    let url = format!("sqlite:{}", db.display());
    let holder = hold_sqlite(&url, "job", &dir.path().join("held"));

    let out = output(tierlock(
        &url,
        &["--name", "job", "--timeout", "0", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("held elsewhere"), "{}", stderr(&out));

    // Another name in the same file, in the URL form with three slashes, and --verbose.
    let url3 = format!("sqlite://{}", db.display());
    assert!(url3.starts_with("sqlite:///"));
    let out = output(tierlock(
        &url3,
        &["--name", "other", "--verbose", "--ttl", "2s", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("local"), "{}", stderr(&out));
    assert!(stderr(&out).contains("ttl 2s"), "{}", stderr(&out));

    let sqlite3 = rusqlite::Connection::open(&db).unwrap();
    let (name, pid): (String, u32) = sqlite3
        .query_row("SELECT name, pid FROM tierlock_holders", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((name.as_str(), pid), ("job", holder.id()));

    stop(holder);
    let out = output(tierlock(
        &url,
        &["--name", "job", "--timeout", "10s", "--", "true"],
    ));
    assert_eq!(
        out.status.code(),
        Some(0),
        "the lock stayed held: {}",
        stderr(&out)
    );
}

#[test]
fn sqlite_refuses_a_foreign_file_a_namespace_and_a_host() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not a database at all, ".repeat(50)).unwrap();
    let cases = [
        (
            format!("sqlite:{}", notes.display()),
            vec![],
            "not an SQLite database",
        ),
        (
            format!("sqlite:{}", dir.path().join("x.db").display()),
            vec!["--namespace", "ns"],
            "namespace is not for SQLite",
        ),
        (
            "sqlite://db-host/locks.db".to_owned(),
            vec![],
            "sqlite:/path/to.db",
        ),
        (
            "postgres://locker:hunter2@127.0.0.1:1/app".to_owned(),
            vec!["--ttl", "5s"],
            "ttl is not for PostgreSQL",
        ),
    ];
    for (url, extra, needle) in cases {
        let mut args = extra.clone();
        args.extend(["--name", "x", "--", "true"]);
        let out = output(tierlock(&url, &args));
        assert_eq!(out.status.code(), Some(1), "{url}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{url}: {}", stderr(&out));
    }
}

#[test]
fn redis_zero_timeout_conflicts_namespaces_and_unreachable_servers() {
    let Some(url) = tierlock_testkit::server_url("TIERLOCK_REDIS_URL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ns = unique_namespace("redis");
    let other_ns = format!("{ns}-other");
    let holder = hold(&url, &ns, "job", &dir.path().join("held"));
    let attempt = |ns: &str, timeout: &str| {
        output(tierlock(
            &url,
            &[
                "--namespace",
                ns,
                "--name",
                "job",
                "--timeout",
                timeout,
                "--",
                "true",
            ],
        ))
    };
    let out = attempt(&ns, "0");
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("held elsewhere"), "{}", stderr(&out));
    let out = attempt(&other_ns, "0");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stop(holder);
    let out = attempt(&ns, "10s");
    assert_eq!(out.status.code(), Some(0), "stayed held: {}", stderr(&out));

    let out = output(tierlock(
        "redis://locker:hunter2@127.0.0.1:1/0",
        &["--name", "x", "--timeout", "0", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("Redis"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
}
