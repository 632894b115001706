//! The name → file mapping. It is part of the on-disk format: every process on every host and
//! every version of tierlock must map a name to the same file, so **never change it**.
//!
//! `stem(name)` is
//!
//! 1. the first [`PREFIX_CHARS`] Unicode scalar values of the name, each ASCII letter, digit,
//!    `.`, `_` or `-` kept as is and every other character replaced by `_`; a `.` in first
//!    position also becomes `_` (no hidden files);
//! 2. then `-`;
//! 3. then the first [`HASH_BYTES`] bytes of the SHA-256 of the name's UTF-8 bytes, in RFC 4648
//!    base32, lowercase, without padding (32 characters).
//!
//! The lock file is `stem + ".lock"`, the request file `stem + ".req"` (flock mode), the lease
//! directory `stem + ".lease"` (lease mode). The result contains only `[A-Za-z0-9._-]`, never
//! starts with `.`, and is at most 40 + 1 + 32 + 6 = 79 bytes long, so it is a single path
//! component on every platform and never leaves the directory.

use sha2::{Digest, Sha256};

/// How many characters of the name make the readable prefix.
pub(crate) const PREFIX_CHARS: usize = 40;

/// How many bytes of the SHA-256 digest go into the file name (160 bits).
pub(crate) const HASH_BYTES: usize = 20;

/// Extension of lock files.
pub(crate) const LOCK_EXT: &str = "lock";

/// Extension of request files.
pub(crate) const REQUEST_EXT: &str = "req";

/// Extension of lease directories.
pub(crate) const LEASE_EXT: &str = "lease";

/// The lock file's name for `name`.
pub(crate) fn lock_file_name(name: &str) -> String {
    with_extension(stem(name), LOCK_EXT)
}

/// The request file's name for `name`.
pub(crate) fn request_file_name(name: &str) -> String {
    with_extension(stem(name), REQUEST_EXT)
}

/// The lease directory's name for `name`.
pub(crate) fn lease_dir_name(name: &str) -> String {
    with_extension(stem(name), LEASE_EXT)
}

fn with_extension(mut stem: String, extension: &str) -> String {
    stem.push('.');
    stem.push_str(extension);
    stem
}

/// The file stem for `name` (see the module documentation).
pub(crate) fn stem(name: &str) -> String {
    let mut stem = String::with_capacity(PREFIX_CHARS + 1 + 32 + 1 + LOCK_EXT.len());
    for (i, c) in name.chars().take(PREFIX_CHARS).enumerate() {
        let keep =
            (c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) && !(i == 0 && c == '.');
        stem.push(if keep { c } else { '_' });
    }
    stem.push('-');
    let digest = Sha256::digest(name.as_bytes());
    push_base32(&digest[..HASH_BYTES], &mut stem);
    stem
}

/// Appends `bytes` in RFC 4648 base32 (lowercase alphabet, no padding) to `out`.
pub(crate) fn push_base32(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut buffer: u16 = 0;
    let mut bits = 0u32;
    for &byte in bytes {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[usize::from((buffer >> bits) & 31)]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            ALPHABET[usize::from((buffer << (5 - bits)) & 31)],
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base32(bytes: &[u8]) -> String {
        let mut out = String::new();
        push_base32(bytes, &mut out);
        out
    }

    #[test]
    fn base32_matches_rfc_4648_test_vectors() {
        // RFC 4648 section 10, lowercased and without padding.
        let vectors = [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ];
        for (input, expected) in vectors {
            assert_eq!(base32(input.as_bytes()), expected, "input {input:?}");
        }
        assert_eq!(base32(&[0xff; 5]), "77777777");
        assert_eq!(base32(&[0; 5]), "aaaaaaaa");
    }

    #[test]
    fn prefix_rules() {
        let s = stem(".hidden/../x");
        assert!(s.starts_with("_hidden_.._x-"), "{s}");
        let s = stem("a.b_c-D9");
        assert!(s.starts_with("a.b_c-D9-"), "{s}");
        let s = stem("héllo wörld");
        assert!(s.starts_with("h_llo_w_rld-"), "{s}");
        let long = "y".repeat(1000);
        let s = stem(&long);
        assert_eq!(s.len(), PREFIX_CHARS + 1 + 32);
        assert!(s.starts_with(&"y".repeat(PREFIX_CHARS)));
    }

    #[test]
    fn hash_part_is_32_base32_chars_of_the_full_name() {
        let a = stem(&"z".repeat(50));
        let b = stem(&"z".repeat(51));
        assert_eq!(a[..PREFIX_CHARS], b[..PREFIX_CHARS]);
        assert_ne!(
            a, b,
            "names differing after the prefix map to different files"
        );
        let hash = &a[PREFIX_CHARS + 1..];
        assert_eq!(hash.len(), 32);
        assert!(
            hash.bytes().all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7')),
            "{hash}"
        );
    }
}
