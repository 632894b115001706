//! The `tierlock` command on two "hosts" sharing one directory: the FUSE mounts of
//! `scripts/rig` (skipped unless `TIERLOCK_RIG` names a mounted rig).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{holder_script, output, spawn_holder, stderr};
use tierlock_testkit::rig::{Rig, Share};

fn tierlock(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tierlock"));
    cmd.arg("run").arg("--dir").arg(dir).args(args);
    cmd
}

/// Host A holds `job` while host B tries it once: B's exit code and stdout.
fn second_host_tries(a: &Path, b: &Path, extra: &[&str], marker: &Path) -> (Option<i32>, String) {
    let mut args = vec!["--name", "job"];
    args.extend_from_slice(extra);
    let script = holder_script(marker, 5);
    let mut holder_args = args.clone();
    holder_args.extend(["--", "sh", "-c", &script]);
    let mut holder = spawn_holder(tierlock(a, &holder_args), marker);
    let mut try_args = args;
    try_args.extend([
        "--timeout",
        "0",
        "--",
        "echo",
        "ran while the other host held job",
    ]);
    let out = output(tierlock(b, &try_args));
    holder.kill().unwrap();
    holder.wait().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_second_host_is_refused_on_a_share_whose_locks_stay_local() {
    let Some(rig) = Rig::get() else { return };
    let pair = rig.pair(Share::LocalOnlyLocks, "cli-repro");
    let (code, stdout) = second_host_tries(&pair.a, &pair.b, &[], &pair.backing.join("m"));
    assert_eq!(code, Some(75), "host B ran: {stdout:?}");
    assert_eq!(stdout, "");
}

#[test]
fn forced_flock_on_such_a_share_is_what_lease_mode_prevents() {
    // What `--mode flock` means on a share that keeps locks local: both hosts run. (The rig
    // really is such a share; the test above would catch a regression.)
    let Some(rig) = Rig::get() else { return };
    let pair = rig.pair(Share::LocalOnlyLocks, "cli-flock");
    let flock = ["--mode", "flock"];
    let (code, stdout) = second_host_tries(&pair.a, &pair.b, &flock, &pair.backing.join("m"));
    assert_eq!(code, Some(0));
    assert_eq!(stdout, "ran while the other host held job\n");
}

#[test]
fn flock_mode_on_a_share_that_forwards_locks_refuses_the_second_host() {
    let Some(rig) = Rig::get() else { return };
    let pair = rig.pair(Share::ForwardsLocks, "cli-fwd");
    let flock = ["--mode", "flock"];
    let (code, stdout) = second_host_tries(&pair.a, &pair.b, &flock, &pair.backing.join("m"));
    assert_eq!(code, Some(75), "host B ran: {stdout:?}");
}

#[test]
fn verbose_says_how_the_lock_is_kept_and_modes_cannot_be_mixed() {
    let Some(rig) = Rig::get() else { return };
    let pair = rig.pair(Share::LocalOnlyLocks, "cli-verbose");
    let out = output(tierlock(
        &pair.a,
        &["--name", "v", "--verbose", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("unknown"), "{said}");
    assert!(said.contains("mode: lease (ttl 10s)"), "{said}");
    let out = output(tierlock(
        &pair.b,
        &["--name", "v", "--mode", "flock", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(".tierlock-mode"), "{}", stderr(&out));
}

#[cfg(unix)]
#[test]
fn planted_lease_directories_are_typed_errors_on_both_hosts_and_nothing_outside_is_written() {
    let Some(rig) = Rig::get() else { return };
    let pair = rig.pair(Share::LocalOnlyLocks, "cli-planted");
    // A provider on the backing directory, in the mode the hosts use, names the lease
    // directories; plant things there.
    let provider = tierlock::FileProvider::builder(&pair.backing)
        .mode(tierlock::FileLockMode::lease())
        .build()
        .unwrap();
    let lease_dir = |name: &str| provider.lease_dir_path(&tierlock::LockName::new(name).unwrap());
    let outside = pair.backing.with_extension("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("free.7"), b"").unwrap();
    std::os::unix::fs::symlink(&outside, lease_dir("linked")).unwrap();
    std::fs::create_dir(lease_dir("scribbled")).unwrap();
    std::fs::write(lease_dir("scribbled").join("held.zzz"), b"").unwrap();
    for host in [&pair.a, &pair.b] {
        for (name, says) in [
            ("linked", "symbolic link"),
            ("scribbled", "\"held.zzz\" does not parse"),
        ] {
            let out = output(tierlock(host, &["--name", name, "--", "true"]));
            assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
            assert!(stderr(&out).contains(says), "{}", stderr(&out));
        }
    }
    let outside_now: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside_now, ["free.7"]);
}
