//! Helpers shared by the CLI tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Runs `cmd` to completion.
pub fn output(mut cmd: Command) -> Output {
    cmd.output().expect("cannot run tierlock")
}

/// What the run printed on stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The script a holder runs: touch `marker` once the lock is held, then sleep `secs`.
pub fn holder_script(marker: &Path, secs: u32) -> String {
    format!("touch '{}'; sleep {secs}", marker.display())
}

/// Starts `cmd` (a `tierlock run` of [`holder_script`]) and waits until it holds the lock.
pub fn spawn_holder(mut cmd: Command, marker: &Path) -> Child {
    let child = cmd
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot start the holder");
    let start = Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the holder never got the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// A namespace (or other tag) no other test run uses.
pub fn unique_namespace(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("cli-{test}-{}-{nanos}", std::process::id())
}
