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

    /// A builder option is out of range (see
    /// [`PostgresProviderBuilder::build`](crate::PostgresProviderBuilder::build)).
    #[error("invalid PostgreSQL provider option {option}: {reason}")]
    Option {
        /// The option's name.
        option: &'static str,
        /// What is wrong with the value.
        reason: &'static str,
    },

    /// The URL says `sslmode=require`, but this build has no TLS: the crate's `rustls` feature
    /// is off. Nothing was tried.
    #[error(
        "sslmode=require, but this build of tierlock-postgres has no TLS (cargo feature `rustls`)"
    )]
    TlsNotBuilt,

    /// The URL says `sslmode=require` and no [`tls`](crate::PostgresProviderBuilder::tls)
    /// configuration was given, but none could be made from the system's root certificates.
    #[error("sslmode=require: {reason}")]
    Tls {
        /// What is missing, e.g. trusted root certificates.
        reason: String,
    },

    /// Opening a connection (TCP, TLS, authentication) or preparing it failed.
    #[error("could not open a PostgreSQL connection")]
    Connect {
        /// The driver's or the server's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// Opening a connection took longer than the connect timeout.
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

    /// The lock was lost while it was held: its connection closed or stopped answering (the
    /// server then frees the lock with the session), so there was nothing left to release.
    #[error("the PostgreSQL session holding lock {name:?} was lost")]
    Lost {
        /// The lock name.
        name: String,
    },

    /// With fencing on, the lock was granted but its fencing token could not be taken from the
    /// counter table (missing and not creatable, no permission, the connection broke, …). The
    /// lock was released: nothing is held.
    #[error("could not take a fencing token for lock {name:?} from table {table}")]
    Fencing {
        /// The lock name.
        name: String,
        /// The counter table, as configured.
        table: String,
        /// What failed: the upsert, or the table's creation.
        #[source]
        source: Box<PostgresError>,
    },

    /// The fencing counter table holds a value that is not a positive token (it was edited by
    /// hand): the next token cannot be trusted to be larger than every earlier one.
    #[error("the fencing counter of lock {name:?} holds {value}, not a positive token")]
    InvalidToken {
        /// The lock name.
        name: String,
        /// What the table holds.
        value: i64,
    },

    /// `pg_advisory_unlock` reported that the session did not hold the lock it was releasing:
    /// the lock had been lost (this should not happen while the connection is intact).
    #[error("lock {name:?} was no longer held by its session when it was released")]
    NotHeld {
        /// The lock name.
        name: String,
    },

    /// The status listing ([`PostgresProvider::held_locks`](crate::PostgresProvider::held_locks))
    /// could not read `pg_locks` (or the fencing table).
    #[error("listing the advisory locks held on the server failed ({operation})")]
    Status {
        /// What was being read.
        operation: &'static str,
        /// The driver's or the server's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// The status listing got no answer within the command timeout.
    #[error("listing the advisory locks held on the server got no answer within {after:?}")]
    StatusTimeout {
        /// The limit that was exceeded.
        after: Duration,
    },
}

impl PostgresError {
    /// True if the error says that the connection was already closed (a stale pooled
    /// connection), or that the server ended the session as the command arrived (a FATAL error:
    /// `pg_terminate_backend`, a shutdown): either way the session is gone with anything the
    /// command might have taken, and the command may be retried on a fresh connection.
    pub(crate) fn is_closed(&self) -> bool {
        let PostgresError::Query { source, .. } = self else {
            return false;
        };
        source.is_closed()
            || source.as_db_error().is_some_and(|db| {
                matches!(
                    db.parsed_severity(),
                    Some(
                        tokio_postgres::error::Severity::Fatal
                            | tokio_postgres::error::Severity::Panic
                    )
                )
            })
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
