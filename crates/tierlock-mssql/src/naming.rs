//! [`Naming`]: which rule turns a lock name into its `@Resource`, including the one .NET's
//! DistributedLock uses, so that Rust and .NET processes can exclude each other.

use std::borrow::Cow;

use base64::Engine as _;
use sha2::{Digest, Sha512};

use crate::names::{MAX_RESOURCE_UNITS, REQUEST_SUFFIX, map_resource, map_resource_utf8};
use crate::server::ServerKind;

/// Length of DistributedLock's hash part: Base64 (with padding) of the 64 bytes of SHA-512.
const DISTRIBUTED_LOCK_HASH_LEN: usize = 88;

/// How many UTF-16 code units of a long name DistributedLock keeps before its hash: `255 - 88`.
pub const DISTRIBUTED_LOCK_PREFIX_UNITS: usize = MAX_RESOURCE_UNITS - DISTRIBUTED_LOCK_HASH_LEN;

/// The rule that maps `namespace + name` to the `@Resource` of `sp_getapplock` (see
/// [`MssqlProviderBuilder::naming`](crate::MssqlProviderBuilder::naming)).
///
/// Both rules pass a name of at most 255 UTF-16 code units through unchanged; they differ only
/// for longer names.
///
/// ```
/// use tierlock_mssql::{Naming, ServerKind};
///
/// let long = "x".repeat(300);
/// let ours = Naming::Tierlock.resource(ServerKind::SqlServer, &long);
/// let dotnet = Naming::DistributedLock.resource(ServerKind::SqlServer, &long);
/// assert!(ours.starts_with(&format!("{}#", "x".repeat(190))));
/// assert!(dotnet.starts_with(&"x".repeat(167)));
/// assert!(dotnet.ends_with("=="));
/// assert_eq!(Naming::Tierlock.resource(ServerKind::SqlServer, "job"), "job");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Naming {
    /// tierlock's mapping (the default): a longer name becomes a prefix of 190 units, `#` and
    /// the SHA-256 of the name in hex ([`map_resource`]); on Babelfish lengths are counted in
    /// UTF-8 bytes, its own limit ([`map_resource_utf8`]).
    #[default]
    Tierlock,
    /// The mapping of .NET's DistributedLock (`Medallion.Threading.SqlServer.SqlDistributedLock`,
    /// without `exactName`): a longer name becomes its first 167 UTF-16 code units followed by
    /// the Base64 (standard alphabet, padded) of SHA-512 over its UTF-8 bytes
    /// ([`distributed_lock_resource`]). Use it so that a Rust process and a .NET process
    /// locking the same name exclude each other; see the crate documentation for what else
    /// must match. It is the same on Babelfish (both sides must send the same string).
    DistributedLock,
}

impl Naming {
    /// The `@Resource` for `full` (namespace and name) on a server of `kind`.
    pub fn resource(self, kind: ServerKind, full: &str) -> Cow<'_, str> {
        match (self, kind) {
            (Naming::Tierlock, ServerKind::Babelfish) => map_resource_utf8(full),
            (Naming::Tierlock, _) => map_resource(full),
            (Naming::DistributedLock, _) => distributed_lock_resource(full),
        }
    }

    /// The resource that holds the lock `name` in `namespace`.
    pub(crate) fn lock_resource(self, kind: ServerKind, namespace: &str, name: &str) -> String {
        self.resource(kind, &format!("{namespace}{name}"))
            .into_owned()
    }

    /// The resource that waiters for `name` in `namespace` hold `Shared`.
    pub(crate) fn request_resource(self, kind: ServerKind, namespace: &str, name: &str) -> String {
        self.resource(kind, &format!("{namespace}{name}{REQUEST_SUFFIX}"))
            .into_owned()
    }
}

/// DistributedLock's resource for `full`: unchanged up to 255 UTF-16 code units, otherwise the
/// first [`DISTRIBUTED_LOCK_PREFIX_UNITS`] code units and the Base64 of SHA-512 over the UTF-8
/// bytes of `full` (255 code units in all).
///
/// .NET cuts the prefix by code units, so it can split a surrogate pair; the lone high surrogate
/// left at its end is sent by Microsoft.Data.SqlClient (which encodes with `Encoding.Unicode`)
/// as U+FFFD, and so it is here. (.NET Framework's `System.Data.SqlClient` copied the raw code
/// unit instead: for such names, and only those, the two would not meet.)
///
/// ```
/// use tierlock_mssql::distributed_lock_resource;
///
/// assert_eq!(distributed_lock_resource("job:nightly"), "job:nightly");
/// let name = "x".repeat(300);
/// assert_eq!(
///     distributed_lock_resource(&name),
///     format!(
///         "{}DcJArkOxjurO9NfY1kuUWt5DyYm3JNfHBiqAKfM0PKoyK5+/Qtn/DNqY89esWlYMohmy5zzAQfNwUt+k6ErmJA==",
///         "x".repeat(167)
///     )
/// );
/// ```
pub fn distributed_lock_resource(full: &str) -> Cow<'_, str> {
    let units: Vec<u16> = full.encode_utf16().collect();
    if units.len() <= MAX_RESOURCE_UNITS {
        return Cow::Borrowed(full);
    }
    let mut out = String::from_utf16_lossy(&units[..DISTRIBUTED_LOCK_PREFIX_UNITS]);
    base64::engine::general_purpose::STANDARD
        .encode_string(Sha512::digest(full.as_bytes()), &mut out);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::utf16_len;

    /// Pairs computed outside this crate with Python (`hashlib.sha512`, `base64.b64encode`, the
    /// prefix cut from the UTF-16LE encoding and decoded with `errors='replace'`), the way
    /// DistributedLock's `ToSafeName` builds them. If this fails, Rust and .NET processes no
    /// longer meet on long names.
    #[test]
    fn pinned_distributed_lock_forms() {
        let pins = [
            (
                "x".repeat(300),
                "x".repeat(167),
                "DcJArkOxjurO9NfY1kuUWt5DyYm3JNfHBiqAKfM0PKoyK5+/Qtn/DNqY89esWlYMohmy5zzAQfNwUt+k6ErmJA==",
            ),
            (
                "x".repeat(256),
                "x".repeat(167),
                "A3SOHbN+Zq/qt/fpO9dxauQ3kVj8wfeEbknAYembWJG1Xuf4CL0Dmx3u+dAWHzkFMdjQhlRnlAXtiH7ZMFjjsg==",
            ),
            (
                "é".repeat(300),
                "é".repeat(167),
                "BDwqAsKGB/uTMeRHTYP4gjJFNQVmrNmv+TWp55KXhHxYiYVj4whpNg0bNLHg8Nh3ZFU8v9eLSH1fHy5nwIWzXA==",
            ),
            (
                format!("tenant:{}", "ü".repeat(250)),
                format!("tenant:{}", "ü".repeat(160)),
                "dohTTe/I8QWNZYczF+1JrgMQVpOuAxOFYMyJHJr3lfiWMsQI7Z0GzvAgJPQq0qyscwnhSTLEfUbiqSjHoLKHVw==",
            ),
            // 167 units end inside a surrogate pair: the lone half is sent as U+FFFD.
            (
                "😀".repeat(128),
                format!("{}\u{FFFD}", "😀".repeat(83)),
                "VxvXciDvGRPyHeL/r95UDcvCS/x+74ynrolqle2SUvai98GkxhEMHxLCZ7HecLd9aFtf016OJsI9QmZQr8P+tg==",
            ),
        ];
        for (name, prefix, hash) in pins {
            let mapped = distributed_lock_resource(&name);
            assert_eq!(mapped, format!("{prefix}{hash}"));
            assert_eq!(utf16_len(&mapped), MAX_RESOURCE_UNITS);
        }
    }

    #[test]
    fn up_to_255_units_pass_through_unchanged_on_both_servers() {
        for name in ["a", "Job:7", &"x".repeat(255), &"😀".repeat(127)] {
            for kind in [ServerKind::SqlServer, ServerKind::Babelfish] {
                assert_eq!(Naming::DistributedLock.resource(kind, name), name);
                assert!(matches!(
                    Naming::DistributedLock.resource(kind, name),
                    Cow::Borrowed(_)
                ));
            }
        }
        assert_ne!(distributed_lock_resource(&"x".repeat(256)), "x".repeat(256));
    }

    #[test]
    fn request_resources_follow_the_naming() {
        let kind = ServerKind::SqlServer;
        let long = "n".repeat(250);
        let request = Naming::DistributedLock.request_resource(kind, "", &long);
        assert_eq!(
            request,
            distributed_lock_resource(&format!("{long}{REQUEST_SUFFIX}"))
        );
        assert_ne!(
            request,
            Naming::DistributedLock.lock_resource(kind, "", &long)
        );
        assert_eq!(
            Naming::Tierlock.lock_resource(ServerKind::Babelfish, "ns:", &"é".repeat(200)),
            map_resource_utf8(&format!("ns:{}", "é".repeat(200)))
        );
    }
}
