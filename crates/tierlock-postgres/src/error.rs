//! The provider's error type.

use std::time::Duration;

/// What went wrong talking to PostgreSQL.
///
/// The lock manager wraps it in `LockError::Provider` (downcast the source to this type to
/// inspect it); the database's own error, with its SQLSTATE and message, is this error's
/// [`source`](std::error::Error::source). "Held by someone else" is never an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The connection string or URL could not be parsed.
    #[error("invalid PostgreSQL connection string")]
    Config {
        /// The parser's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// Opening a connection (TCP, TLS, authentication) or preparing it failed.
    #[error("could not open a PostgreSQL connection")]
    Connect {
        /// The driver's or the server's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// Opening a connection took longer than the command timeout.
    #[error("opening a PostgreSQL connection took longer than {after:?}")]
    ConnectTimeout {
        /// The limit that was exceeded.
        after: Duration,
    },

    /// A command for a lock failed (the connection broke, the server refused, …).
    #[error("{operation} failed for lock {name:?}")]
    Query {
        /// The lock name.
        name: String,
        /// What was being done, e.g. `"pg_try_advisory_lock"`.
        operation: &'static str,
        /// The driver's or the server's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// The server did not answer a command for a lock in time: the connection is presumed dead
    /// and has been closed (which frees whatever it held).
    #[error("{operation} for lock {name:?} got no answer within {after:?}")]
    CommandTimeout {
        /// The lock name.
        name: String,
        /// What was being done.
        operation: &'static str,
        /// The limit that was exceeded.
        after: Duration,
    },

    /// `pg_advisory_unlock` reported that the session did not hold the lock it was releasing:
    /// the lock had been lost (this should not happen while the connection is intact).
    #[error("lock {name:?} was no longer held by its session when it was released")]
    NotHeld {
        /// The lock name.
        name: String,
    },
}

impl PostgresError {
    /// True if the error says that the connection was already closed (a stale pooled
    /// connection): the command was not run and may be retried on a fresh connection.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self, PostgresError::Query { source, .. } if source.is_closed())
    }

    /// Makes a [`PostgresError::Query`] from a driver error (for `map_err`).
    pub(crate) fn query<'a>(
        name: &'a str,
        operation: &'static str,
    ) -> impl FnOnce(tokio_postgres::Error) -> Self + 'a {
        move |source| PostgresError::Query {
            name: name.to_owned(),
            operation,
            source,
        }
    }

    /// Makes a [`PostgresError::CommandTimeout`].
    pub(crate) fn timeout(name: &str, operation: &'static str, after: Duration) -> Self {
        PostgresError::CommandTimeout {
            name: name.to_owned(),
            operation,
            after,
        }
    }
}
