//! The naive keyed locks users write by hand: a `DashMap` of per-name tokio mutexes — the
//! baselines of every in-process comparison (the summary and the tier's microbenches).

use std::hash::BuildHasher;
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The naive keyed lock: a concurrent map of per-name tokio mutexes, with the hasher `S`.
///
/// Entries are never removed by variants A and B: removing one safely needs the bookkeeping
/// tierlock does (a waiter may hold a clone of the `Arc`), so the map keeps every name ever
/// locked. Variant C removes them.
pub struct NaiveKeyed<S = std::collections::hash_map::RandomState> {
    map: DashMap<String, Arc<Mutex<()>>, S>,
}

impl<S: BuildHasher + Clone> std::fmt::Debug for NaiveKeyed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NaiveKeyed")
            .field("names", &self.map.len())
            .finish()
    }
}

impl<S: BuildHasher + Clone + Default> Default for NaiveKeyed<S> {
    fn default() -> Self {
        NaiveKeyed {
            map: DashMap::with_hasher(S::default()),
        }
    }
}

impl<S: BuildHasher + Clone + Default> NaiveKeyed<S> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Variant A: a shared `get` first (no allocation when the name exists), insert if missing.
    pub fn mutex_get_then_insert(&self, name: &str) -> Arc<Mutex<()>> {
        if let Some(mutex) = self.map.get(name) {
            return Arc::clone(&mutex);
        }
        Arc::clone(&self.map.entry(name.to_owned()).or_default())
    }

    /// Variant B: the entry API (allocates the `String` key on every call).
    pub fn mutex_entry(&self, name: &str) -> Arc<Mutex<()>> {
        Arc::clone(&self.map.entry(name.to_owned()).or_default())
    }

    /// Locks `name` with variant A; the lock is released when the guard is dropped.
    pub async fn lock_a(&self, name: &str) -> OwnedMutexGuard<()> {
        self.mutex_get_then_insert(name).lock_owned().await
    }

    /// Locks `name` with variant B.
    pub async fn lock_b(&self, name: &str) -> OwnedMutexGuard<()> {
        self.mutex_entry(name).lock_owned().await
    }

    /// Variant C: A, plus removal of the entry on unlock when nobody else holds its `Arc` (the
    /// usual fix for the leak; `remove_if` runs under the shard's write lock, so no clone can
    /// be taken meanwhile). This does the same map work as tierlock: insert and remove.
    pub async fn lock_c<'a>(&'a self, name: &'a str) -> CleanupGuard<'a, S> {
        let guard = self.mutex_get_then_insert(name).lock_owned().await;
        CleanupGuard {
            map: &self.map,
            name,
            guard: Some(guard),
        }
    }

    /// Names in the map.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The naive keyed lock with std's default (SipHash) hasher, as most users would write it.
pub type NaiveStd = NaiveKeyed;
/// The naive keyed lock with the hasher tierlock uses, to separate hashing from the rest.
pub type NaiveFold = NaiveKeyed<foldhash::fast::RandomState>;

/// The guard of variant C: unlocks, then removes the entry if it is unused.
pub struct CleanupGuard<'a, S: BuildHasher + Clone> {
    map: &'a DashMap<String, Arc<Mutex<()>>, S>,
    name: &'a str,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<S: BuildHasher + Clone> std::fmt::Debug for CleanupGuard<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleanupGuard")
            .field("name", &self.name)
            .finish()
    }
}

impl<S: BuildHasher + Clone> Drop for CleanupGuard<'_, S> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.map
            .remove_if(self.name, |_, mutex| Arc::strong_count(mutex) == 1);
    }
}
