//! Lock names → 64-bit advisory lock keys.
//!
//! PostgreSQL advisory locks are identified by a `bigint`. A lock name (up to 1,024 bytes) and
//! the provider's namespace are mapped to one with SHA-256:
//!
//! ```text
//! lock key    = first 8 bytes, big-endian, as i64, of SHA-256("tierlock:lock:"    ‖ N ‖ ":" ‖ namespace ‖ ":" ‖ name)
//! request key = first 8 bytes, big-endian, as i64, of SHA-256("tierlock:request:" ‖ N ‖ ":" ‖ namespace ‖ ":" ‖ name)
//! ```
//!
//! where `N` is the namespace's length in bytes, written in decimal (so that namespace `"a:b"`
//! with name `"c"` and namespace `"a"` with name `"b:c"` stay different), and strings are UTF-8.
//! The mapping is part of the provider's contract: every process and every version of this
//! crate computes the same key, and the crate's tests pin known pairs.
//!
//! The same key can be computed in SQL, e.g. to find a lock in `pg_locks`:
//!
//! ```sql
//! SELECT ('x' || left(encode(sha256(convert_to(
//!            format('tierlock:lock:%s:%s:%s', octet_length(:'ns'), :'ns', :'name'), 'UTF8')),
//!          'hex'), 16))::bit(64)::bigint;
//! ```
//!
//! In `pg_locks` a `bigint` advisory key appears split in two: `classid` holds the high 32 bits
//! and `objid` the low 32 bits (both as unsigned `oid`), with `objsubid = 1`.

use sha2::{Digest, Sha256};

/// The advisory lock key that excludes holders of `name` in `namespace`.
///
/// ```
/// use tierlock_postgres::lock_key;
///
/// let key = lock_key("", "tenant:42:migrate");
/// assert_eq!(key, lock_key("", "tenant:42:migrate")); // stable
/// assert_ne!(key, lock_key("staging", "tenant:42:migrate")); // namespaces are independent
/// ```
pub fn lock_key(namespace: &str, name: &str) -> i64 {
    derive("lock", namespace, name)
}

/// The advisory lock key on which processes waiting for `name` in `namespace` hold a shared
/// lock, so that its holder can see that it is requested.
///
/// ```
/// use tierlock_postgres::{lock_key, request_key};
///
/// assert_ne!(request_key("", "job:nightly"), lock_key("", "job:nightly"));
/// ```
pub fn request_key(namespace: &str, name: &str) -> i64 {
    derive("request", namespace, name)
}

fn derive(purpose: &str, namespace: &str, name: &str) -> i64 {
    let mut hasher = Sha256::new();
    hasher.update(b"tierlock:");
    hasher.update(purpose.as_bytes());
    hasher.update(b":");
    hasher.update(namespace.len().to_string().as_bytes());
    hasher.update(b":");
    hasher.update(namespace.as_bytes());
    hasher.update(b":");
    hasher.update(name.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// How a `bigint` advisory key shows in `pg_locks`: `(classid, objid)`, with `objsubid = 1`.
pub(crate) fn split(key: i64) -> (u32, u32) {
    let bits = key as u64;
    ((bits >> 32) as u32, bits as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_matches_pg_locks() {
        // Values read from pg_locks after `SELECT pg_advisory_lock(-1234567890123456789)`.
        assert_eq!(
            split(-1_234_567_890_123_456_789),
            (4_007_522_059, 2_182_512_363)
        );
        assert_eq!(split(42), (0, 42));
        assert_eq!(split(-1), (u32::MAX, u32::MAX));
    }

    #[test]
    fn namespace_length_prefix_keeps_splits_apart() {
        assert_ne!(lock_key("a:b", "c"), lock_key("a", "b:c"));
        assert_ne!(lock_key("", "x"), lock_key("x", ""));
    }
}
