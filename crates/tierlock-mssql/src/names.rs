//! Lock name → `sp_getapplock` resource name, tierlock's own mapping (the default
//! [`Naming::Tierlock`](crate::Naming::Tierlock); see [`naming`](crate::Naming) for the other).
//!
//! `@Resource` is `nvarchar(255)`: at most 255 UTF-16 code units, compared as binary (so
//! case-sensitive whatever the database collation), and a longer string would be silently
//! *truncated* by SQL Server — two long names sharing their first 255 characters would then
//! share one lock. So the mapping is:
//!
//! 1. `full = namespace + name` (the namespace is a plain prefix, see
//!    [`MssqlProviderBuilder::namespace`](crate::MssqlProviderBuilder::namespace));
//! 2. if `full` is at most [`MAX_RESOURCE_UNITS`] UTF-16 code units, it is the resource,
//!    unchanged;
//! 3. otherwise the resource is the longest prefix of `full` that fits in
//!    [`HASHED_PREFIX_UNITS`] code units (never splitting a surrogate pair), then `#`, then the
//!    64 lowercase hex digits of SHA-256 over the UTF-8 bytes of `full` — at most 255 units.
//!
//! Babelfish stores `nvarchar` as UTF-8 and cuts resources at 255 *bytes*, so there
//! ([`map_resource_utf8`]) the same rule counts UTF-8 bytes instead of UTF-16 code units: a name
//! of at most 255 bytes is unchanged, a longer one becomes a prefix of at most 190 bytes, `#` and
//! the same hash. (Every UTF-16 code unit is at least one UTF-8 byte, so such a resource also
//! fits SQL Server's limit.) Up to 255 bytes both rules give the same resource.
//!
//! The request resource of a name (see the crate docs) is the mapping of
//! `namespace + name + REQUEST_SUFFIX` by the same rule.
//!
//! The mapping is a pure function of its input, identical on every platform and version of
//! this crate (tests pin known pairs); changing it would let two versions miss each other's locks.

use std::borrow::Cow;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// The longest `@Resource` SQL Server keeps, in UTF-16 code units (`nvarchar(255)`); Babelfish
/// keeps as many UTF-8 bytes.
pub const MAX_RESOURCE_UNITS: usize = 255;

/// Length of the hash part of a hashed resource: SHA-256 in lowercase hex.
const HASH_HEX_LEN: usize = 64;

/// The room left for the readable prefix of a hashed resource, in UTF-16 code units (UTF-8
/// bytes on Babelfish): `255 - 1 ('#') - 64 (hex digits)`.
pub const HASHED_PREFIX_UNITS: usize = MAX_RESOURCE_UNITS - 1 - HASH_HEX_LEN;

/// Appended to `namespace + name` to make the request resource that waiters hold `Shared`.
pub const REQUEST_SUFFIX: &str = "#tierlock-request";

/// Maps a full (namespaced) lock name to its `@Resource` on SQL Server.
///
/// ```
/// use tierlock_mssql::map_resource;
///
/// assert_eq!(map_resource("tenant:42:migrate"), "tenant:42:migrate");
/// let long = "x".repeat(300);
/// let mapped = map_resource(&long);
/// assert_eq!(mapped.encode_utf16().count(), 255);
/// assert!(mapped.starts_with(&"x".repeat(190)));
/// ```
pub fn map_resource(full: &str) -> Cow<'_, str> {
    map_within(full, char::len_utf16)
}

/// Maps a full (namespaced) lock name to its `@Resource` on Babelfish: as [`map_resource`],
/// counting UTF-8 bytes instead of UTF-16 code units.
///
/// ```
/// use tierlock_mssql::{map_resource, map_resource_utf8};
///
/// let short = "é".repeat(127); // 254 bytes
/// assert_eq!(map_resource_utf8(&short), short);
/// let long = "é".repeat(200); // 200 units but 400 bytes
/// assert_eq!(map_resource(&long), long);
/// let mapped = map_resource_utf8(&long);
/// assert_eq!(mapped.len(), 95 * 2 + 1 + 64);
/// ```
pub fn map_resource_utf8(full: &str) -> Cow<'_, str> {
    map_within(full, char::len_utf8)
}

/// The mapping, measuring lengths with `len` (code units or bytes per character).
fn map_within(full: &str, len: fn(char) -> usize) -> Cow<'_, str> {
    if full.chars().map(len).sum::<usize>() <= MAX_RESOURCE_UNITS {
        return Cow::Borrowed(full);
    }
    let mut out = String::with_capacity(HASHED_PREFIX_UNITS * 2 + 1 + HASH_HEX_LEN);
    let mut used = 0;
    for c in full.chars() {
        used += len(c);
        if used > HASHED_PREFIX_UNITS {
            break;
        }
        out.push(c);
    }
    out.push('#');
    for byte in Sha256::digest(full.as_bytes()) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    Cow::Owned(out)
}

/// Length in UTF-16 code units, the unit of `nvarchar` lengths.
#[cfg(test)]
pub(crate) fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_resource(namespace: &str, name: &str) -> String {
        map_resource(&format!("{namespace}{name}")).into_owned()
    }

    fn request_resource(namespace: &str, name: &str) -> String {
        map_resource(&format!("{namespace}{name}{REQUEST_SUFFIX}")).into_owned()
    }

    #[test]
    fn short_names_pass_through_unchanged() {
        for name in [
            "a",
            "tenant:42:migrate",
            "Name",
            "name",
            "spaces and ; quotes '\"",
        ] {
            assert_eq!(map_resource(name), name);
            assert!(matches!(map_resource(name), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn case_is_preserved() {
        assert_ne!(map_resource("Order:7"), map_resource("order:7"));
    }

    #[test]
    fn boundary_255_passes_256_is_hashed() {
        let at = "x".repeat(255);
        assert_eq!(map_resource(&at), at);
        let over = "x".repeat(256);
        let mapped = map_resource(&over);
        assert_ne!(mapped, over);
        assert_eq!(utf16_len(&mapped), 255);
        assert_eq!(&mapped[..190], &over[..190]);
        assert_eq!(&mapped[190..191], "#");
    }

    /// Known name → resource pairs. The hex digests were computed outside this crate
    /// (`printf '%s' NAME | sha256sum`); if this test fails, the mapping changed and processes
    /// running different versions would no longer exclude each other.
    #[test]
    fn pinned_hashed_forms() {
        let pins = [
            (
                "x".repeat(300),
                format!(
                    "{}#0d4e2ca9e9cbced7a7a5380eb29e1a3783b9b6d0db72de36a1051038e1c1fbc7",
                    "x".repeat(190)
                ),
            ),
            (
                format!("a{}", "😀".repeat(128)),
                format!(
                    "a{}#8cfe1501086c98ecb71dd74b8ddf01aa9da77fe7d21066879b810bf0989505a2",
                    "😀".repeat(94)
                ),
            ),
            (
                format!("tenant:{}", "é".repeat(508)), // 1023 bytes of UTF-8, 515 units
                format!(
                    "tenant:{}#2484a7501c7e63493a2e753f8da9cac3f06854c85c8f9dbdc00de3ae6fb6a804",
                    "é".repeat(183)
                ),
            ),
        ];
        for (name, resource) in pins {
            assert_eq!(map_resource(&name), resource);
        }
        // The request resource of a 239-character name no longer fits with its suffix.
        assert_eq!(
            request_resource("ns:", &"r".repeat(239)),
            format!(
                "ns:{}#a361be71a240886776b7222c6b6aa81603ebb4686875f3bbc8f07895978c1e1a",
                "r".repeat(187)
            )
        );
    }

    #[test]
    fn surrogate_pairs_count_two_units_and_are_never_split() {
        // U+1F600 is two UTF-16 code units (four UTF-8 bytes).
        let fits = "😀".repeat(127); // 254 units
        assert_eq!(map_resource(&fits), fits);
        let fits_exactly = format!("a{}", "😀".repeat(127)); // 255 units
        assert_eq!(map_resource(&fits_exactly), fits_exactly);

        let over = format!("a{}", "😀".repeat(128)); // 257 units
        let mapped = map_resource(&over);
        // 'a' + 94 emoji = 189 units; one more emoji would make 191 > 190.
        let expected_prefix = format!("a{}#", "😀".repeat(94));
        assert!(mapped.starts_with(&expected_prefix), "{mapped}");
        assert_eq!(utf16_len(&mapped), 189 + 1 + 64);

        let even = "😀".repeat(128); // 256 units
        let mapped = map_resource(&even);
        assert!(mapped.starts_with(&format!("{}#", "😀".repeat(95))));
        assert_eq!(utf16_len(&mapped), 255);
    }

    #[test]
    fn distinct_long_names_with_a_common_prefix_stay_distinct() {
        let a = format!("{}a", "p".repeat(400));
        let b = format!("{}b", "p".repeat(400));
        assert_ne!(map_resource(&a), map_resource(&b));
        assert_eq!(map_resource(&a), map_resource(&a.clone()));
    }

    #[test]
    fn namespace_is_applied_before_the_length_rule() {
        let name = "n".repeat(250);
        assert_eq!(lock_resource("", &name), name);
        let namespaced = lock_resource("ns:123456:", &name); // 260 units in all
        assert_eq!(utf16_len(&namespaced), 255);
        assert!(namespaced.starts_with("ns:123456:nnn"));
        assert_eq!(
            namespaced,
            map_resource(&format!("ns:123456:{name}")).into_owned()
        );
    }

    #[test]
    fn request_resources_fit_and_differ_from_lock_resources() {
        for len in [1, 200, 238, 239, 255, 256, 1024] {
            let name = "r".repeat(len);
            let lock = lock_resource("ns:", &name);
            let request = request_resource("ns:", &name);
            assert_ne!(lock, request, "len {len}");
            assert!(utf16_len(&request) <= MAX_RESOURCE_UNITS, "len {len}");
            assert!(utf16_len(&lock) <= MAX_RESOURCE_UNITS, "len {len}");
        }
        assert_eq!(request_resource("ns:", "job"), "ns:job#tierlock-request");
    }

    /// Babelfish's rule counts bytes: pinned pairs (hex digests from `sha256sum`).
    #[test]
    fn pinned_utf8_forms() {
        assert_eq!(map_resource_utf8(&"x".repeat(255)), "x".repeat(255));
        let pins = [
            (
                "x".repeat(256),
                format!(
                    "{}#85e62acd750c4eb56b7b6a1d66dca5bfaac5f062608a1a893410d0288936c09a",
                    "x".repeat(190)
                ),
            ),
            (
                "é".repeat(200),
                format!(
                    "{}#df20b2aa6262e99e133aa7f3614be707d35c4155d17e2aa7cbb49da555a454c3",
                    "é".repeat(95)
                ),
            ),
            (
                "ü".repeat(128), // 128 units: unchanged on SQL Server
                format!(
                    "{}#a5aa7de3af1582471f7b83bbccd73be797100efc0a833161b6eae9e825837900",
                    "ü".repeat(95)
                ),
            ),
        ];
        for (name, resource) in pins {
            assert_eq!(map_resource_utf8(&name), resource);
            assert!(resource.len() <= MAX_RESOURCE_UNITS);
        }
        assert_eq!(map_resource(&"ü".repeat(128)), "ü".repeat(128));
        // Up to 255 bytes both rules agree.
        let both = format!("ns:{}", "é".repeat(126));
        assert_eq!(map_resource(&both), map_resource_utf8(&both));
    }
}
