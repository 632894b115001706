//! The map under the in-process tier: name → entry, split into shards, each a
//! `parking_lot::Mutex` around a `hashbrown::HashTable`.
//!
//! Why not a `DashMap<SmolStr, _>`: its entry API needs an owned key before the lookup, so every
//! acquisition — re-entries and queued waits included — paid for building the key, and it has
//! no way to hash once and reuse the hash. Here a lookup is by `&str` with one hash, and the
//! owned key is built only when an entry is inserted. Re-entry went from about 105 to 70 ns
//! (see `docs/benchmarks.md` in the repository).
//!
//! Each shard's lock is held for a few instructions and never across an `.await`.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;
use parking_lot::{MappedMutexGuard, Mutex, MutexGuard};
use smol_str::SmolStr;

/// Names are chosen by the application, not by an attacker who could flood one bucket, and
/// hashing is on every acquisition: a fast hasher, randomly seeded per map.
type Hasher = foldhash::fast::RandomState;

type Slots<V> = HashTable<(u64, SmolStr, V)>;

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

    fn shard(&self, name: &str) -> (u64, MutexGuard<'_, Slots<V>>) {
        let hash = self.hasher.hash_one(name);
        let index = usize::try_from(hash >> self.shift).unwrap_or(0);
        (hash, self.shards[index].0.lock())
    }

    /// Looks `name` up under its shard's lock and lets `f` act on the slot; if it is vacant and
    /// `f` returns a value, that value is inserted. Returns the entry's key and `f`'s result.
    pub(crate) fn upsert<R>(
        &self,
        name: &str,
        f: impl FnOnce(Slot<'_, V>) -> (Option<V>, R),
    ) -> (SmolStr, R) {
        let (hash, mut slots) = self.shard(name);
        match slots.entry(hash, |s| s.0 == hash && s.1 == name, |s| s.0) {
            TableEntry::Occupied(mut occupied) => {
                let slot = occupied.get_mut();
                let (_, result) = f(Slot::Occupied(&mut slot.2));
                (slot.1.clone(), result)
            }
            TableEntry::Vacant(vacant) => {
                let (value, result) = f(Slot::Vacant);
                let key = SmolStr::new(name);
                if let Some(value) = value {
                    vacant.insert((hash, key.clone(), value));
                }
                (key, result)
            }
        }
    }

    /// The entry for `name`, locked, if there is one.
    pub(crate) fn get_mut(&self, name: &str) -> Option<MappedMutexGuard<'_, V>> {
        let (hash, slots) = self.shard(name);
        MutexGuard::try_map(slots, |slots| {
            slots
                .find_mut(hash, |s| s.0 == hash && s.1 == name)
                .map(|s| &mut s.2)
        })
        .ok()
    }

    /// Runs `f` on the entry for `name` under its shard's lock; removes the entry if `f` returns
    /// true. Returns the removed entry (to drop after the lock is released).
    pub(crate) fn remove_if_mut(
        &self,
        name: &str,
        f: impl FnOnce(&mut V) -> bool,
    ) -> Option<(SmolStr, V)> {
        let (hash, mut slots) = self.shard(name);
        let Ok(mut occupied) = slots.find_entry(hash, |s| s.0 == hash && s.1 == name) else {
            return None;
        };
        if f(&mut occupied.get_mut().2) {
            let ((_, key, value), _) = occupied.remove();
            Some((key, value))
        } else {
            None
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_remove() {
        let map = Map::new();
        let (key, ()) = map.upsert("a", |slot| {
            assert!(matches!(slot, Slot::Vacant));
            (Some(1), ())
        });
        assert_eq!(key, "a");
        map.upsert("a", |slot| match slot {
            Slot::Occupied(v) => {
                *v += 1;
                (None, ())
            }
            Slot::Vacant => panic!("lost the entry"),
        });
        assert_eq!(map.get_mut("a").map(|v| *v), Some(2));
        assert!(map.get_mut("b").is_none());
        // A vacant slot without a value stays vacant.
        map.upsert("b", |_| (None, ()));
        assert_eq!(map.len(), 1);
        assert!(map.remove_if_mut("a", |v| *v == 3).is_none());
        assert_eq!(map.remove_if_mut("a", |v| *v == 2), Some(("a".into(), 2)));
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn many_names_spread_and_come_back() {
        let map = Map::new();
        for i in 0..10_000 {
            map.upsert(&format!("name:{i}"), |_| (Some(i), ()));
        }
        assert_eq!(map.len(), 10_000);
        let mut sum = 0;
        map.for_each(|v| sum += v);
        assert_eq!(sum, (0..10_000).sum::<i32>());
        for i in 0..10_000 {
            assert!(map.remove_if_mut(&format!("name:{i}"), |_| true).is_some());
        }
        assert_eq!(map.len(), 0);
    }
}
