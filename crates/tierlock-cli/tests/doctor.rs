//! `tierlock doctor`, run as users run it: on a local directory, alone with `--peer`, and as a
//! `--peer` pair on the two "hosts" of `scripts/rig` (those tests are skipped unless
//! `TIERLOCK_RIG` names a mounted rig).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{output, stderr};
use tierlock_testkit::rig::{Rig, Share};

fn doctor(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tierlock"));
    cmd.arg("doctor").arg("--dir").arg(dir).args(args);
    cmd
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The names in `dir`.
fn contents(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn on_a_local_directory_every_check_passes_and_nothing_is_left_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("locks");
    let out = output(doctor(&dir, &[]));
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{said}{}", stderr(&out));
    assert!(said.contains("class:     local"), "{said}");
    assert!(said.contains("mode:      flock"), "{said}");
    for fact in [
        "directory:",
        "mount:",
        "flock:     works",
        "exclusive create: works",
        "rename:    works",
        "cost:      flock ",
        "clock:",
    ] {
        assert!(said.contains(fact), "no {fact:?} in\n{said}");
    }
    // The directory is created, as a provider would, and holds nothing of doctor's: no
    // scratch directory and no mode file.
    assert!(dir.is_dir());
    assert_eq!(contents(&dir), Vec::<String>::new());
}

#[test]
fn the_mode_file_is_read_and_never_written() {
    let tmp = tempfile::tempdir().unwrap();
    let mode_file = tmp.path().join(".tierlock-mode");
    std::fs::write(&mode_file, "lease\n").unwrap();
    let out = output(doctor(tmp.path(), &["--mode", "flock"]));
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{said}{}", stderr(&out));
    assert!(said.contains("recorded:  lease"), "{said}");
    assert!(said.contains("would be refused"), "{said}");
    assert_eq!(std::fs::read_to_string(&mode_file).unwrap(), "lease\n");
    assert_eq!(contents(tmp.path()), vec![".tierlock-mode"]);

    std::fs::write(&mode_file, "bogus\n").unwrap();
    let out = output(doctor(tmp.path(), &[]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bogus"), "{}", stderr(&out));
}

#[test]
fn a_path_that_is_not_a_directory_is_unusable() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, "").unwrap();
    let out = output(doctor(&file, &[]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
}

#[test]
fn alone_with_peer_it_gives_up_with_3_and_a_stale_announcement_is_no_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let rendezvous = tmp.path().join(".tierlock-doctor");
    std::fs::create_dir(&rendezvous).unwrap();
    // What a doctor killed mid-wait leaves: an announcement that never changes again.
    let stale = "peer.0000000000000001.7";
    std::fs::write(rendezvous.join(stale), "").unwrap();

    let start = Instant::now();
    let out = output(doctor(tmp.path(), &["--peer", "--timeout", "1s"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(stderr(&out).contains("no other"), "{}", stderr(&out));
    // Its own files are gone; the stale one is not its to remove.
    assert_eq!(contents(&rendezvous), vec![stale]);
}

/// Starts `tierlock doctor --peer` on `a` and on `b` at the same time and waits for both.
fn peer_pair(a: &Path, b: &Path, extra: &[&str]) -> (Output, Output) {
    let mut args = vec!["--peer", "--timeout", "30s"];
    args.extend_from_slice(extra);
    let spawn = |dir: &Path| {
        doctor(dir, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start tierlock doctor")
    };
    let (a, b) = (spawn(a), spawn(b));
    (a.wait_with_output().unwrap(), b.wait_with_output().unwrap())
}

/// The verdict lines, which both sides must print alike.
fn verdict(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter(|line| {
            line.starts_with("flock across")
                || line.starts_with("lease across")
                || line.starts_with("this directory uses")
        })
        .map(str::to_owned)
        .collect()
}

/// Runs a pair on `share` and checks what both sides agree on: their exit code (returned) and
/// verdict lines (returned), and that the share holds nothing of theirs afterwards.
fn agreed(rig: &Rig, share: Share, label: &str, extra: &[&str]) -> (Option<i32>, Vec<String>) {
    let pair = rig.pair(share, label);
    let (a, b) = peer_pair(&pair.a, &pair.b, extra);
    let show = |out: &Output| format!("{}{}", stdout(out), stderr(out));
    let (shown_a, shown_b) = (show(&a), show(&b));
    assert_eq!(
        a.status.code(),
        b.status.code(),
        "A:\n{shown_a}\nB:\n{shown_b}"
    );
    assert_eq!(verdict(&a).len(), 3, "A:\n{shown_a}\nB:\n{shown_b}");
    assert_eq!(verdict(&a), verdict(&b), "A:\n{shown_a}\nB:\n{shown_b}");
    let leads = [&shown_a, &shown_b]
        .iter()
        .filter(|shown| shown.contains("this host leads"))
        .count();
    assert_eq!(leads, 1, "A:\n{shown_a}\nB:\n{shown_b}");
    assert_eq!(contents(&pair.backing), Vec::<String>::new());
    (a.status.code(), verdict(&a))
}

#[test]
fn forced_flock_on_a_share_whose_locks_stay_local_is_unsafe() {
    let Some(rig) = Rig::get() else { return };
    let (code, verdict) = agreed(
        &rig,
        Share::LocalOnlyLocks,
        "doctor-flock",
        &["--mode", "flock"],
    );
    assert_eq!(
        verdict[0],
        "flock across the two hosts: NOT EXCLUSIVE (both held the lock at once)"
    );
    assert!(
        verdict[2].starts_with("this directory uses flock mode: UNSAFE"),
        "{verdict:?}"
    );
    assert!(verdict[2].contains("--mode lease"), "{verdict:?}");
    assert_eq!(code, Some(1));
}

#[test]
fn the_lease_chosen_on_such_a_share_is_safe() {
    let Some(rig) = Rig::get() else { return };
    let (code, verdict) = agreed(&rig, Share::LocalOnlyLocks, "doctor-lease", &[]);
    assert_eq!(
        verdict,
        [
            "flock across the two hosts: NOT EXCLUSIVE (both held the lock at once)",
            "lease across the two hosts: exclusive",
            "this directory uses lease mode: safe",
        ]
    );
    assert_eq!(code, Some(0));
}

#[test]
fn flock_on_a_share_that_forwards_locks_is_safe() {
    let Some(rig) = Rig::get() else { return };
    let (code, verdict) = agreed(
        &rig,
        Share::ForwardsLocks,
        "doctor-fwd",
        &["--mode", "flock"],
    );
    assert_eq!(
        verdict,
        [
            "flock across the two hosts: exclusive",
            "lease across the two hosts: exclusive",
            "this directory uses flock mode: safe",
        ]
    );
    assert_eq!(code, Some(0));
}
