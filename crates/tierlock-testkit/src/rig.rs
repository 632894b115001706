//! The two-host rig: one backing directory mounted several times through FUSE by
//! `scripts/rig`, so that processes using different mounts play different hosts sharing a
//! network share.
//!
//! Tests call [`Rig::get`], which reads `TIERLOCK_RIG` and prints that the test was skipped when
//! it is unset (or fails when `TIERLOCK_REQUIRE_SERVERS` demands the rig, as `scripts/test`
//! does once it mounted it).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable `scripts/rig start` sets: the rig's root directory.
pub const RIG_VAR: &str = "TIERLOCK_RIG";

/// A mounted rig.
#[derive(Debug, Clone)]
pub struct Rig {
    root: PathBuf,
}

/// Which pair of mounts stands for the two hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// `hostA` / `hostB`: a share whose locks stay local to each client.
    LocalOnlyLocks,
    /// `fwdA` / `fwdB`: a share that forwards locks to its server.
    ForwardsLocks,
}

/// One fresh directory on the share, as each "host" sees it.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The directory through host A's mount.
    pub a: PathBuf,
    /// The same directory through host B's mount.
    pub b: PathBuf,
    /// The same directory on the backing file system (for planting files and for data the
    /// tests keep beside the locks, like counters).
    pub backing: PathBuf,
}

impl Rig {
    /// The rig, or `None` after printing that the calling test is skipped.
    ///
    /// # Panics
    ///
    /// If the rig is required (see [`crate::server_url`]) but not set up.
    pub fn get() -> Option<Rig> {
        crate::server_url(RIG_VAR).map(|root| Rig {
            root: PathBuf::from(root),
        })
    }

    /// A new, empty directory on the share, named after `label`, seen through both mounts of
    /// `share`.
    ///
    /// # Panics
    ///
    /// If the directory cannot be created.
    pub fn pair(&self, share: Share, label: &str) -> Pair {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let sub = format!(
            "{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let backing = self.root.join("backing").join(&sub);
        std::fs::create_dir_all(&backing)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", backing.display()));
        let (a, b) = match share {
            Share::LocalOnlyLocks => ("hostA", "hostB"),
            Share::ForwardsLocks => ("fwdA", "fwdB"),
        };
        Pair {
            a: self.root.join(a).join(&sub),
            b: self.root.join(b).join(&sub),
            backing,
        }
    }
}
