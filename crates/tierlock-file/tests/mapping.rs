//! The name → file mapping: pinned forever, and never a path outside the lock directory.
//!
//! The pinned names were computed once with an independent implementation of the specification
//! in docs/providers/file.md (Python's `hashlib` + `base64.b32encode`); they must never change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use tierlock_core::{LockManager, LockName, Provider};
use tierlock_file::{FileLockMode, FileProvider};

fn file_name(provider: &FileProvider, name: &str) -> String {
    let path = provider.lock_file_path(&LockName::new(name).unwrap());
    assert_eq!(path.parent(), Some(provider.dir()), "{path:?} for {name:?}");
    path.file_name().unwrap().to_str().unwrap().to_owned()
}

#[test]
fn known_names_map_to_pinned_files() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = FileProvider::new(tmp.path()).unwrap();
    let pinned = [
        ("a", "a-zklycewkdo64v6wcggzzui64jwtyn37y.lock"),
        (
            "tenant:42:migrate",
            "tenant_42_migrate-ux34s2gzmd7he6pgbn3cr3wtkcqwzk5c.lock",
        ),
        (
            "job:nightly",
            "job_nightly-w6djkdnnu2q6zgkw5663kb2cpkfrmeqq.lock",
        ),
        (
            "../../etc/passwd",
            "_._.._etc_passwd-g5knnsz2hdqrqxs3hawv6pxt6emk65n7.lock",
        ),
        (
            "/abs/path",
            "_abs_path-nwabq62fiedre67zsxzmggrkskka3ey4.lock",
        ),
        (
            "C:\\Windows\\x",
            "C__Windows_x-mfpne2y3are4ue6dn6oc4qnag56z2pwt.lock",
        ),
        (
            "héllo wörld ☃",
            "h_llo_w_rld__-df5bklnq3hni2kitqjjdzpu7y2iov3jr.lock",
        ),
        (".hidden", "_hidden-c2jedeagvcfkwm3sz4svgz7czs6gaudg.lock"),
        (
            "/ \\ : * ? \" < > |",
            "_________________-nisukgzpmbgmeotmwn4pggfwycgqmxlc.lock",
        ),
        ("Name", "Name-3ti5kir7ooz2szoapy77lw7oh3w473ny.lock"),
        ("name", "name-qkrvg77q3phh53bv22pnyoqyt3tpc7mc.lock"),
    ];
    for (name, expected) in pinned {
        assert_eq!(file_name(&provider, name), expected, "name {name:?}");
    }
    assert_eq!(
        file_name(&provider, &"x".repeat(1024)),
        format!("{}-jgv5mw57p57ebryfkcj62lr725ps6ybp.lock", "x".repeat(40))
    );
}

fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "..",
        ".",
        "../../etc/passwd",
        "/etc/passwd",
        "\\\\server\\share\\x",
        "C:\\Windows\\System32",
        "a/b/c",
        "/ \\ : * ? \" < > |",
        "CON",
        "nul.txt",
        " trailing. ",
        "\u{0}\u{1}\u{7f}",
        "日本語のロック名",
        "emoji 🔒🔑",
        "\u{202e}txt.exe",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.push("x".repeat(1024));
    names.push("/".repeat(1024));
    names.push("é".repeat(512));
    names.push("../".repeat(341));
    names
}

#[test]
fn hostile_names_stay_inside_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = FileProvider::new(tmp.path()).unwrap();
    for name in hostile_names() {
        let file = file_name(&provider, &name);
        assert!(file.len() < 255, "{file}");
        assert!(!file.starts_with('.'), "{file}");
        assert!(
            file.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{file}"
        );
    }
}

#[tokio::test]
async fn hostile_names_lock_files_inside_the_directory() {
    hostile_names_stay_inside(FileLockMode::Flock).await;
}

#[tokio::test]
async fn hostile_names_lease_directories_inside_the_directory() {
    hostile_names_stay_inside(FileLockMode::lease()).await;
}

/// Locks every hostile name once in `mode` and checks what appeared on disk.
async fn hostile_names_stay_inside(mode: FileLockMode) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("locks");
    let provider = FileProvider::builder(&dir).mode(mode).build().unwrap();
    let path_of = |name: &LockName| match mode {
        FileLockMode::Flock => provider.lock_file_path(name),
        _ => provider.lease_dir_path(name),
    };
    let mut expected: Vec<_> = hostile_names()
        .iter()
        .map(|n| path_of(&LockName::new(n).unwrap()))
        .collect();
    expected.push(dir.join(".tierlock-mode"));
    expected.sort();
    let locks = LockManager::new(provider);
    for name in &hostile_names() {
        let guard = locks.lock(name, Duration::from_secs(5)).await.unwrap();
        guard.release().await.unwrap();
    }
    // Only the lock directory appeared next to it, and it holds the mode file and one lock
    // file (flock) or lease directory (lease) per name; request files appear only when a name
    // is contended.
    let beside: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(beside.len(), 1);
    let mut inside = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if entry.path().extension().is_some_and(|e| e == "lease") {
            assert!(kind.is_dir(), "{:?}", entry.path());
            let states: Vec<_> = std::fs::read_dir(entry.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert_eq!(states, ["free.1"], "{:?}", entry.path());
        } else {
            assert!(kind.is_file(), "{:?}", entry.path());
        }
        inside.push(entry.path());
    }
    inside.sort();
    assert_eq!(inside, expected);
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_in_place_of_lock_files_are_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let provider = FileProvider::new(tmp.path().join("locks")).unwrap();
    let name = LockName::new("victim").unwrap();
    let target = tmp.path().join("outside");
    std::os::unix::fs::symlink(&target, provider.lock_file_path(&name)).unwrap();

    let err = provider
        .acquire(&name, Some(Instant::now()))
        .await
        .expect_err("a symbolic link must not be followed");
    let err = err.downcast_ref::<tierlock_file::FileError>().unwrap();
    assert!(
        matches!(err, tierlock_file::FileError::Open { name, .. } if name == "victim"),
        "{err:?}"
    );
    assert!(!Path::new(&target).exists(), "the link target was created");

    // An existing target is not touched either.
    std::fs::write(&target, b"keep").unwrap();
    assert!(provider.acquire(&name, Some(Instant::now())).await.is_err());
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
}
