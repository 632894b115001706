//! The map under the in-process tier: name → entry, split into shards, each a mutex around a
//! `hashbrown::HashTable`.
//!
//! Why not a `DashMap<SmolStr, _>`: its entry API needs an owned key before the lookup, so every
//! acquisition — re-entries and queued waits included — paid for building the key, and it has
//! no way to hash once and reuse the hash. Here a lookup is by `&str` with one hash, the owned
//! key is built only when an entry is inserted, and the [`Key`] handed back keeps the hash so
//! that later operations on the entry (release, withdraw) do not hash again. Re-entry went from
//! about 105 to 70 ns with this map (see `docs/benchmarks.md`).
//!
//! Entries are reached only through closures run under the shard's lock: no reference into the
//! map can be held across an `.await`, and each shard's lock is held for a few instructions.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;
use smol_str::SmolStr;

use crate::sync::{Mutex, MutexGuard};

/// Names are chosen by the application, not by an attacker who could flood one bucket, and
/// hashing is on every acquisition: a fast hasher, randomly seeded per map.
type Hasher = foldhash::fast::RandomState;

type Slots<V> = HashTable<(u64, SmolStr, V)>;

/// A name as stored in the map, with its hash: what the tier's handles keep to find the entry
/// again without hashing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    hash: u64,
    name: SmolStr,
}

impl Key {
    pub(crate) fn name(&self) -> &SmolStr {
        &self.name
    }
}

/// One shard, on its own cache lines so that shards do not share them.
#[repr(align(128))]
struct Shard<V>(Mutex<Slots<V>>);

/// A sharded concurrent map from names to `V`.
pub(crate) struct Map<V> {
    shards: Box<[Shard<V>]>,
    hasher: Hasher,
    /// `64 - log2(shards)`: the top bits of the hash pick the shard, the rest the bucket.
    shift: u32,
}

/// What [`Map::upsert`] found.
pub(crate) enum Slot<'a, V> {
    /// No entry: the closure may return one to insert.
    Vacant,
    /// The entry, to update in place.
    Occupied(&'a mut V),
}

impl<V> Map<V> {
    pub(crate) fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let count = (cpus * 4).next_power_of_two().max(4);
        Map {
            shards: (0..count)
                .map(|_| Shard(Mutex::new(HashTable::new())))
                .collect(),
            hasher: Hasher::default(),
            shift: 64 - count.trailing_zeros(),
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Slots<V>> {
        let index = usize::try_from(hash >> self.shift).unwrap_or(0);
        self.shards[index].0.lock()
    }

    /// Looks `name` up under its shard's lock and lets `f` act on the slot; if it is vacant and
    /// `f` returns a value, that value is inserted. Returns the entry's key and `f`'s result.
    pub(crate) fn upsert<R>(
        &self,
        name: &str,
        f: impl FnOnce(Slot<'_, V>) -> (Option<V>, R),
    ) -> (Key, R) {
        let hash = self.hasher.hash_one(name);
        let mut slots = self.shard(hash);
        match slots.entry(hash, |s| s.0 == hash && s.1 == name, |s| s.0) {
            TableEntry::Occupied(mut occupied) => {
                let slot = occupied.get_mut();
                let (_, result) = f(Slot::Occupied(&mut slot.2));
                let name = slot.1.clone();
                (Key { hash, name }, result)
            }
            TableEntry::Vacant(vacant) => {
                let (value, result) = f(Slot::Vacant);
                let name = SmolStr::new(name);
                if let Some(value) = value {
                    vacant.insert((hash, name.clone(), value));
                }
                (Key { hash, name }, result)
            }
        }
    }

    /// Runs `f` on the entry for `key` under its shard's lock, if there is one.
    pub(crate) fn with<R>(&self, key: &Key, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let mut slots = self.shard(key.hash);
        let slot = slots.find_mut(key.hash, |s| s.0 == key.hash && s.1 == key.name)?;
        Some(f(&mut slot.2))
    }

    /// Runs `f` on the entry for `key` under its shard's lock; removes the entry if `f` says so.
    /// Returns `f`'s result and the removed entry (to drop after the lock is released).
    pub(crate) fn remove_if<R>(
        &self,
        key: &Key,
        f: impl FnOnce(&mut V) -> (bool, R),
    ) -> Option<(R, Option<V>)> {
        let mut slots = self.shard(key.hash);
        let Ok(mut occupied) = slots.find_entry(key.hash, |s| s.0 == key.hash && s.1 == key.name)
        else {
            return None;
        };
        let (remove, result) = f(&mut occupied.get_mut().2);
        let removed = remove.then(|| occupied.remove().0.2);
        Some((result, removed))
    }

    /// Number of entries (a sum over the shards, each locked in turn).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.0.lock().len()).sum()
    }

    /// Calls `f` on every entry, one shard at a time.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&V)) {
        for shard in &*self.shards {
            for slot in shard.0.lock().iter() {
                f(&slot.2);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn insert_find_remove() {
        let map = Map::new();
        let (key, ()) = map.upsert("a", |slot| {
            assert!(matches!(slot, Slot::Vacant));
            (Some(1), ())
        });
        assert_eq!(key.name(), "a");
        map.upsert("a", |slot| match slot {
            Slot::Occupied(v) => {
                *v += 1;
                (None, ())
            }
            Slot::Vacant => panic!("lost the entry"),
        });
        assert_eq!(map.with(&key, |v| *v), Some(2));
        // A vacant slot without a value stays vacant.
        let (b, ()) = map.upsert("b", |_| (None, ()));
        assert!(map.with(&b, |_| ()).is_none());
        assert_eq!(map.len(), 1);
        assert_eq!(map.remove_if(&key, |v| (*v == 3, *v)), Some((2, None)));
        assert_eq!(map.remove_if(&key, |v| (*v == 2, ())), Some(((), Some(2))));
        assert_eq!(map.len(), 0);
        assert!(map.remove_if(&key, |_| (true, ())).is_none());
    }

    #[test]
    fn many_names_spread_and_come_back() {
        let map = Map::new();
        let keys: Vec<Key> = (0..10_000)
            .map(|i| map.upsert(&format!("name:{i}"), |_| (Some(i), ())).0)
            .collect();
        assert_eq!(map.len(), 10_000);
        let mut sum = 0;
        map.for_each(|v| sum += v);
        assert_eq!(sum, (0..10_000).sum::<i32>());
        for key in &keys {
            assert!(map.remove_if(key, |_| (true, ())).is_some());
        }
        assert_eq!(map.len(), 0);
    }
}
