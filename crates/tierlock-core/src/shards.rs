//! The map under the in-process tier: name → entry, split into shards, each a mutex around a
//! `hashbrown::HashTable`.
//!
//! Why not a `DashMap<SmolStr, _>`: its entry API needs an owned key before the lookup, so every
//! acquisition — re-entries and queued waits included — paid for building the key, and it has
//! no way to hash once and reuse the hash. Here a lookup is by `&str` with one hash, the owned
//! key is built only when an entry is inserted, and the [`Key`] handed back keeps the hash so
//! that later operations on the entry (release, withdraw) do not hash again. Re-entry went from
//! about 105 to 70 ns with this map (see `docs/benchmarks.md` in the repository).
//!
//! Entries are reached only through closures run under the shard's lock: no reference into the
//! map can be held across an `.await`, and each shard's lock is held for a few instructions.
//!
//! # Idle entries
//!
//! An entry that goes [idle](Live::is_live) (nobody holds or awaits its name) may stay in the
//! map, so that the next acquisition of a busy name updates it in place instead of building a
//! key and inserting: that is what makes an uncontended acquisition as cheap as the naive keyed
//! lock's lookup. Idle entries are bounded: each shard counts its idle entries, and when they
//! outnumber both [`IDLE_PER_SHARD`] and the shard's live entries, one sweep removes them all.
//! So idle entries never exceed `IDLE_PER_SHARD` per shard or the live entries, whichever is
//! larger, and the sweeps cost O(1) per release, amortized. [`Map::len`] counts live entries
//! only: a million distinct names acquired and released leave a length of 0 and at most
//! `IDLE_PER_SHARD` entries per shard behind.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;
use smol_str::SmolStr;

use crate::sync::{Mutex, MutexGuard};

/// Names are chosen by the application, not by an attacker who could flood one bucket, and
/// hashing is on every acquisition: a fast hasher, randomly seeded per map.
type Hasher = foldhash::fast::RandomState;

/// Idle entries a shard keeps at least before it sweeps them (see the module docs).
pub(crate) const IDLE_PER_SHARD: usize = 8;

/// Whether an entry is in use; idle entries are kept for reuse and swept (module docs).
pub(crate) trait Live {
    fn is_live(&self) -> bool;
}

/// A shard's entries, and how many of them are idle.
struct Slots<V> {
    table: HashTable<(u64, SmolStr, V)>,
    idle: usize,
}

impl<V: Live> Slots<V> {
    /// Accounts for an entry that was live (`was`) and now is `is`; sweeps if idle entries
    /// are now too many.
    fn settle(&mut self, was: bool, is: bool) {
        match (was, is) {
            (true, false) => {
                self.idle += 1;
                if self.idle > IDLE_PER_SHARD && self.idle > self.table.len() - self.idle {
                    self.table.retain(|slot| slot.2.is_live());
                    self.idle = 0;
                }
            }
            (false, true) => self.idle -= 1,
            _ => {}
        }
    }
}

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

    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    /// Moves the key out, leaving an empty one (of no name) in its place.
    pub(crate) fn take(&mut self) -> Key {
        std::mem::replace(
            self,
            Key {
                hash: 0,
                name: SmolStr::default(),
            },
        )
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

/// The name of an entry [`Map::upsert`] found, from which its [`Key`] can be made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Named<'a> {
    hash: u64,
    name: &'a SmolStr,
}

impl Named<'_> {
    pub(crate) fn key(&self) -> Key {
        Key {
            hash: self.hash,
            name: self.name.clone(),
        }
    }
}

/// What [`Map::upsert`] found.
pub(crate) enum Slot<'a, V> {
    /// No entry: the closure may return one to insert.
    Vacant,
    /// The entry, to update in place, and its name.
    Occupied(&'a mut V, Named<'a>),
}

impl<V: Live> Map<V> {
    pub(crate) fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let count = (cpus * 4).next_power_of_two().max(4);
        Map {
            shards: (0..count)
                .map(|_| {
                    Shard(Mutex::new(Slots {
                        table: HashTable::new(),
                        idle: 0,
                    }))
                })
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
        let slots = &mut *slots;
        match slots
            .table
            .entry(hash, |s| s.0 == hash && s.1 == name, |s| s.0)
        {
            TableEntry::Occupied(mut occupied) => {
                let (_, name, value) = occupied.get_mut();
                let was = value.is_live();
                let (_, result) = f(Slot::Occupied(value, Named { hash, name }));
                let is = value.is_live();
                let name = name.clone();
                slots.settle(was, is);
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
        let slots = &mut *slots;
        let slot = slots.table.find_mut(key.hash, |s| {
            s.0 == key.hash && s.1.as_str() == key.name.as_str()
        })?;
        let was = slot.2.is_live();
        let result = f(&mut slot.2);
        let is = slot.2.is_live();
        slots.settle(was, is);
        Some(result)
    }

    /// Runs `f` under its shard's lock on the entry with hash `hash` for which `is` holds, if
    /// there is one: a lookup by identity rather than by name.
    pub(crate) fn find<R>(
        &self,
        hash: u64,
        is: impl Fn(&V) -> bool,
        f: impl FnOnce(&mut V) -> R,
    ) -> Option<R> {
        let mut slots = self.shard(hash);
        let slots = &mut *slots;
        let slot = slots.table.find_mut(hash, |s| s.0 == hash && is(&s.2))?;
        let was = slot.2.is_live();
        let result = f(&mut slot.2);
        let is = slot.2.is_live();
        slots.settle(was, is);
        Some(result)
    }

    /// Number of live entries (a sum over the shards, each locked in turn).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let slots = shard.0.lock();
                slots.table.len() - slots.idle
            })
            .sum()
    }

    /// Number of entries, idle ones included.
    #[cfg(all(test, not(loom)))]
    fn stored(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.0.lock().table.len())
            .sum()
    }

    /// Calls `f` on every live entry, one shard at a time.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&V)) {
        for shard in &*self.shards {
            for slot in shard.0.lock().table.iter() {
                if slot.2.is_live() {
                    f(&slot.2);
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A test value: live while positive.
    impl Live for i32 {
        fn is_live(&self) -> bool {
            *self > 0
        }
    }

    #[test]
    fn insert_find_update() {
        let map = Map::new();
        let (key, ()) = map.upsert("a", |slot| {
            assert!(matches!(slot, Slot::Vacant));
            (Some(1), ())
        });
        assert_eq!(key.name(), "a");
        map.upsert("a", |slot| match slot {
            Slot::Occupied(v, named) => {
                assert_eq!(named.key().name(), "a");
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
        // Idle: kept, but not counted; live again when reused.
        map.with(&key, |v| *v = 0);
        assert_eq!((map.len(), map.stored()), (0, 1));
        map.upsert("a", |slot| match slot {
            Slot::Occupied(v, _) => {
                *v = 5;
                (None, ())
            }
            Slot::Vacant => panic!("the idle entry was not kept"),
        });
        assert_eq!((map.len(), map.stored()), (1, 1));
    }

    #[test]
    fn idle_entries_stay_bounded() {
        let map = Map::new();
        let shards = map.shards.len();
        for i in 0..100_000 {
            let (key, ()) = map.upsert(&format!("name:{i}"), |_| (Some(1), ()));
            map.with(&key, |v| *v = 0);
        }
        assert_eq!(map.len(), 0);
        assert!(
            map.stored() <= shards * IDLE_PER_SHARD,
            "{} idle entries kept in {shards} shards",
            map.stored()
        );
        let mut live = 0;
        map.for_each(|_| live += 1);
        assert_eq!(live, 0);
    }

    #[test]
    fn idle_entries_are_bounded_by_the_live_ones() {
        let map = Map::new();
        let held: Vec<Key> = (0..1_000)
            .map(|i| map.upsert(&format!("held:{i}"), |_| (Some(1), ())).0)
            .collect();
        for i in 0..10_000 {
            let (key, ()) = map.upsert(&format!("name:{i}"), |_| (Some(1), ()));
            map.with(&key, |v| *v = 0);
        }
        assert_eq!(map.len(), 1_000);
        assert!(map.stored() <= 2 * 1_000 + map.shards.len() * IDLE_PER_SHARD);
        let mut sum = 0;
        map.for_each(|v| sum += v);
        assert_eq!(sum, 1_000);
        for key in &held {
            assert_eq!(map.with(key, |v| *v), Some(1));
        }
    }
}
