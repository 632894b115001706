//! Errors returned by the lock manager and by providers.

use std::fmt;
use std::time::Duration;

/// A boxed error from a provider's backend (an I/O error, a database error, …).
///
/// Providers define their own typed errors and box them; the manager wraps them in
/// [`LockError::Provider`] together with the provider's kind and the lock name, so callers can
/// still `downcast_ref` to the backend's error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a lock name was rejected. See [`LockError::InvalidName`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidNameReason {
    /// The name is the empty string.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) bytes of UTF-8.
    TooLong {
        /// Length of the rejected name in bytes.
        len: usize,
        /// The largest length accepted.
        max: usize,
    },
}

impl fmt::Display for InvalidNameReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidNameReason::Empty => f.write_str("a lock name must not be empty"),
            InvalidNameReason::TooLong { len, max } => {
                write!(
                    f,
                    "a lock name is at most {max} bytes of UTF-8, this one has {len}"
                )
            }
        }
    }
}

/// The error type of every fallible operation of a [`LockManager`](crate::LockManager).
///
/// Each variant carries the lock name it concerns, so a log line built from the error alone says
/// which lock failed and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock was not acquired within the timeout; nothing is held.
    #[error("timed out after {waited:?} waiting for lock {name:?}")]
    Timeout {
        /// The lock name.
        name: String,
        /// How long the call waited before giving up.
        waited: Duration,
    },

    /// The name cannot be used as a lock name; nothing was attempted.
    #[error("invalid lock name {}: {reason}", NamePreview(name))]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: InvalidNameReason,
    },

    /// The provider (the external tier) failed. Nothing is held: the name is free for the next
    /// attempt.
    #[error("{provider} provider failed for lock {name:?}")]
    Provider {
        /// The provider's kind, as given by [`Provider::kind`](crate::Provider::kind).
        provider: &'static str,
        /// The lock name.
        name: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },

    /// The external lock was lost while it was held (its connection broke, its lease expired):
    /// another process may have held the lock during part of the critical section.
    #[error("lock {name:?} was lost while it was held")]
    Lost {
        /// The lock name.
        name: String,
    },

    /// An internal invariant of tierlock's in-process tier was found broken: a bug in tierlock,
    /// please report it. Nothing is held (the external lock taken meanwhile was released).
    /// Debug builds panic at the breach instead (a `debug_assert!`); release builds never hand
    /// out a lock whose state they cannot vouch for.
    #[error("tierlock bug: {invariant} (lock {name:?}); nothing is held")]
    Internal {
        /// The lock name.
        name: String,
        /// What was found broken.
        invariant: &'static str,
    },
}

impl LockError {
    /// The lock name the error concerns.
    pub fn name(&self) -> &str {
        match self {
            LockError::Timeout { name, .. }
            | LockError::InvalidName { name, .. }
            | LockError::Provider { name, .. }
            | LockError::Lost { name }
            | LockError::Internal { name, .. } => name,
        }
    }

    /// True for [`LockError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, LockError::Timeout { .. })
    }
}

/// Displays a name, shortened when it is too long to be useful in a message.
struct NamePreview<'a>(&'a str);

impl fmt::Display for NamePreview<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        if self.0.len() <= SHOWN {
            return write!(f, "{:?}", self.0);
        }
        let mut end = SHOWN;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{:?}… ({} bytes)", &self.0[..end], self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_in_messages() {
        let name = "é".repeat(600);
        let err = LockError::InvalidName {
            name: name.clone(),
            reason: InvalidNameReason::TooLong {
                len: name.len(),
                max: 1024,
            },
        };
        let text = err.to_string();
        assert!(text.len() < 300, "{text}");
        assert!(text.contains("1200 bytes"), "{text}");
        assert_eq!(err.name(), name);
    }
}
