//! Lock name → Redis keys: [`key_names`] and [`KeyNames`].

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// The longest name kept readable in its keys, in bytes; longer names are hashed.
pub const READABLE_MAX: usize = 64;

/// The Redis keys, and the pub/sub channel, that hold one lock name.
///
/// Every key of a name is `PREFIX{ID}:SUFFIX`, where `ID` identifies the name:
///
/// * `n:NAME` when the name is at most [`READABLE_MAX`] bytes of ASCII letters, digits and
///   `. _ : / @ + -` — the common `job:nightly` or `tenant/42` kind, readable in `redis-cli` and
///   free of the glob characters of `SCAN MATCH`;
/// * `h:HEX` otherwise (longer names, spaces, quotes, braces, control characters, non-ASCII):
///   `HEX` is the first 16 bytes of the SHA-256 of the name's UTF-8 bytes, as 32 lower-case hex
///   digits, i.e. `printf %s "$NAME" | sha256sum | cut -c1-32`.
///
/// The two forms cannot meet (`n:` and `h:`), names differing only in case stay distinct, and
/// two hashed names share keys only on a 128-bit collision (about n²/2¹²⁹ for n names). The
/// braces make `ID` the key's hash tag, so all keys of one name fall in one cluster slot, as the
/// provider's Lua scripts require.
///
/// ```
/// let keys = tierlock_redis::key_names("tierlock:", "job:nightly");
/// assert_eq!(keys.lock, "tierlock:{n:job:nightly}:lock");
/// assert_eq!(keys.fence, "tierlock:{n:job:nightly}:fence");
/// assert_eq!(keys.waiters, "tierlock:{n:job:nightly}:wait");
/// assert_eq!(keys.channel, "tierlock:{n:job:nightly}:free");
///
/// let hashed = tierlock_redis::key_names("tierlock:", "order 7");
/// assert_eq!(hashed.lock, "tierlock:{h:0fc89f8ae19394b48debd6353bb9ad33}:lock");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct KeyNames {
    /// The lock itself: a string holding the holder's random token, with the lease's expiry.
    pub lock: String,
    /// The fencing counter: the last fencing token handed out for the name.
    pub fence: String,
    /// The waiters' marks: a sorted set of waiter ids scored by their expiry (server time, ms).
    pub waiters: String,
    /// The pub/sub channel on which a release is announced to waiters.
    pub channel: String,
}

/// The keys of lock `name` under `prefix` (see [`KeyNames`] for the mapping).
pub fn key_names(prefix: &str, name: &str) -> KeyNames {
    let mut base = String::with_capacity(prefix.len() + 5 + READABLE_MAX.max(34));
    base.push_str(prefix);
    base.push('{');
    if is_readable(name) {
        base.push_str("n:");
        base.push_str(name);
    } else {
        base.push_str("h:");
        let digest = Sha256::digest(name.as_bytes());
        for byte in &digest[..16] {
            // Writing to a String cannot fail.
            let _ = write!(base, "{byte:02x}");
        }
    }
    base.push('}');
    let with = |suffix: &str| format!("{base}:{suffix}");
    KeyNames {
        lock: with("lock"),
        fence: with("fence"),
        waiters: with("wait"),
        channel: with("free"),
    }
}

fn is_readable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= READABLE_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:_/@+-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_and_hashed_names() {
        let k = key_names("p:", "tenant/42:migrate");
        assert_eq!(k.lock, "p:{n:tenant/42:migrate}:lock");
        // Case matters.
        assert_ne!(key_names("", "Case").lock, key_names("", "case").lock);
        for hashed in ["a b", "{x}", "x*", "ключ", "a\nb", "\"q\""] {
            assert!(
                key_names("", hashed).lock.starts_with("{h:"),
                "{hashed:?} must be hashed"
            );
        }
        let long = "x".repeat(READABLE_MAX + 1);
        let k = key_names("", &long);
        assert_eq!(k.lock.len(), "{h:}:lock".len() + 32);
        assert!(
            key_names("", &"x".repeat(READABLE_MAX))
                .lock
                .starts_with("{n:")
        );
    }

    #[test]
    fn hash_is_pinned() {
        // printf %s 'order 7' | sha256sum | cut -c1-32
        assert_eq!(
            key_names("", "order 7").lock,
            "{h:0fc89f8ae19394b48debd6353bb9ad33}:lock"
        );
    }
}
