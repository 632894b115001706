//! [`RedisError`]: what can go wrong talking to Redis.

use std::time::Duration;

/// An error of the Redis provider.
///
/// The lock manager wraps it in `LockError::Provider` (downcast the source to this type to
/// inspect it). Variants about a lock carry its name (the tierlock name, not the Redis key: see
/// [`key_names`](crate::key_names)); the driver's error, `redis::RedisError`, is the
/// [`source`](std::error::Error::source) where there is one. "Held by someone else" is never an
/// error: `acquire` returns `Ok(None)` for that.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The URL could not be parsed (it is not repeated here: it may hold a password).
    #[error("invalid Redis URL")]
    Config {
        /// The driver's error.
        #[source]
        source: redis::RedisError,
    },

    /// A builder option is out of range.
    #[error("invalid Redis provider option {option}: {reason}")]
    Option {
        /// The option's name.
        option: &'static str,
        /// What is wrong with the value.
        reason: &'static str,
    },

    /// [`connect`](crate::RedisProviderBuilder::connect) could not reach the server (TCP,
    /// authentication, or the first `PING`).
    #[error("could not connect to Redis at {addr}")]
    Connect {
        /// `host:port` (or the socket path) as configured; never the password.
        addr: String,
        /// The driver's error.
        #[source]
        source: redis::RedisError,
    },

    /// A command for a lock failed: the connection broke, the server was unreachable or
    /// refused the command (a read-only replica, an ACL, a full memory).
    #[error("{operation} failed for lock {name:?}")]
    Command {
        /// The lock name.
        name: String,
        /// What was being done (`"acquire"`, `"release"`, `"renew"`, …).
        operation: &'static str,
        /// The driver's or the server's error.
        #[source]
        source: redis::RedisError,
    },

    /// The server did not answer a command for a lock in time.
    #[error("{operation} for lock {name:?} got no answer from Redis within {after:?}")]
    CommandTimeout {
        /// The lock name.
        name: String,
        /// What was being done.
        operation: &'static str,
        /// The limit that was exceeded.
        after: Duration,
    },

    /// The lock's key no longer held this holder's token when it was released or renewed: it
    /// expired (the holder could not renew it in time) or the server lost it (a restart without
    /// persistence, a failover), and another process may have taken the lock since.
    #[error("lock {name:?} was lost: its Redis key expired or was taken over")]
    Lost {
        /// The lock name.
        name: String,
    },

    /// The status listing ([`RedisProvider::held_locks`](crate::RedisProvider::held_locks))
    /// failed: the connection broke or the server refused a command (an ACL without `SCAN`).
    #[error("listing the locks held on Redis failed ({operation})")]
    Status {
        /// What was being done (`"SCAN"`, `"TIME"`, `"PTTL"`).
        operation: &'static str,
        /// The driver's or the server's error.
        #[source]
        source: redis::RedisError,
    },

    /// The status listing got no answer within the command timeout.
    #[error("listing the locks held on Redis got no answer within {after:?}")]
    StatusTimeout {
        /// The limit that was exceeded.
        after: Duration,
    },
}
