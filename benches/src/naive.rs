//! The naive keyed locks users write by hand: a `DashMap` of per-name tokio mutexes.
//!
//! A small copy of the baselines of `crates/tierlock-core/benches/common/mod.rs`: the core's
//! microbenches keep theirs (with more variants and hashers) next to the code they measure.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// A concurrent map of per-name tokio mutexes, with std's default (SipHash) hasher.
#[derive(Debug, Default)]
pub struct NaiveKeyed {
    map: DashMap<String, Arc<Mutex<()>>>,
}

impl NaiveKeyed {
    /// An empty map.
    pub fn new() -> Self {
        NaiveKeyed::default()
    }

    /// A shared `get` first (no allocation when the name exists), insert if missing.
    fn mutex(&self, name: &str) -> Arc<Mutex<()>> {
        if let Some(mutex) = self.map.get(name) {
            return Arc::clone(&mutex);
        }
        Arc::clone(&self.map.entry(name.to_owned()).or_default())
    }

    /// Variant A: get-then-insert, and the entry is never removed (the map keeps every name
    /// ever locked: removing one safely needs the bookkeeping tierlock does).
    pub async fn lock_a(&self, name: &str) -> OwnedMutexGuard<()> {
        self.mutex(name).lock_owned().await
    }

    /// Variant C: A, plus removal of the entry on unlock when nobody else holds its `Arc` (the
    /// usual fix for the leak; `remove_if` runs under the shard's write lock).
    pub async fn lock_c<'a>(&'a self, name: &'a str) -> CleanupGuard<'a> {
        let guard = self.mutex(name).lock_owned().await;
        CleanupGuard {
            map: &self.map,
            name,
            guard: Some(guard),
        }
    }

    /// The number of names in the map.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The guard of variant C: unlocks, then removes the entry if it is unused.
#[derive(Debug)]
pub struct CleanupGuard<'a> {
    map: &'a DashMap<String, Arc<Mutex<()>>>,
    name: &'a str,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for CleanupGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.map
            .remove_if(self.name, |_, mutex| Arc::strong_count(mutex) == 1);
    }
}
