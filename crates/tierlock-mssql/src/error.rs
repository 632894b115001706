//! [`MssqlError`]: everything that can go wrong talking to SQL Server.

use std::time::Duration;

/// An error of the SQL Server provider.
///
/// Variants about a lock carry its name (the tierlock name, not the mapped resource: see
/// [`MssqlProvider::resource_name`](crate::MssqlProvider::resource_name)) and, where there is one,
/// the driver's error as `source`. "Held elsewhere" is never an error: `acquire` returns
/// `Ok(None)` for that.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MssqlError {
    /// The connection string could not be parsed.
    #[error("invalid SQL Server connection string")]
    Config {
        /// The parser's error.
        #[source]
        source: Box<tiberius::error::Error>,
    },

    /// A builder option is out of range.
    #[error("invalid SQL Server provider option {option}: {reason}")]
    Option {
        /// The option's name.
        option: &'static str,
        /// What is wrong with the value.
        reason: &'static str,
    },

    /// No connection could be opened (TCP, TLS or login).
    #[error("could not connect to SQL Server at {addr}")]
    Connect {
        /// `host:port` as configured.
        addr: String,
        /// Why.
        #[source]
        source: ConnectError,
    },

    /// A statement failed: the server reported an error or the connection broke.
    #[error("{command} failed for lock {name:?}")]
    Command {
        /// Which statement (`sp_getapplock`, `sp_releaseapplock`, …).
        command: &'static str,
        /// The lock name.
        name: String,
        /// The driver's error.
        #[source]
        source: Box<tiberius::error::Error>,
    },

    /// The server did not answer within the client-side bound; the connection was closed, which
    /// ends its session and frees anything it held.
    #[error("{command} for lock {name:?} got no answer from SQL Server within {after:?}")]
    CommandTimeout {
        /// Which statement.
        command: &'static str,
        /// The lock name.
        name: String,
        /// The bound that elapsed.
        after: Duration,
    },

    /// A statement returned no row where one was expected (a driver or server anomaly).
    #[error("{command} for lock {name:?} returned no result row")]
    NoResult {
        /// Which statement.
        command: &'static str,
        /// The lock name.
        name: String,
    },

    /// `sp_getapplock` returned `-2`: the lock request was cancelled.
    #[error("sp_getapplock request for lock {name:?} was cancelled (return code -2)")]
    Cancelled {
        /// The lock name.
        name: String,
    },

    /// `sp_getapplock` returned `-3`: the request was chosen as a deadlock victim.
    #[error(
        "sp_getapplock request for lock {name:?} was chosen as a deadlock victim (return code -3)"
    )]
    DeadlockVictim {
        /// The lock name.
        name: String,
    },

    /// `sp_getapplock` returned `-999`: parameter validation or another call error.
    #[error("sp_getapplock rejected the request for lock {name:?} (return code -999)")]
    ParameterError {
        /// The lock name.
        name: String,
    },

    /// `sp_getapplock` returned a code its documentation does not define.
    #[error("sp_getapplock returned undocumented code {code} for lock {name:?}")]
    Unexpected {
        /// The lock name.
        name: String,
        /// The return code.
        code: i32,
    },

    /// `sp_releaseapplock` found that the session did not hold the lock (SQL Server's error
    /// 1223, or Babelfish's error with the same message): it had been released behind the
    /// provider's back. Nothing is held.
    #[error("lock {name:?} was not held by its session when it was released")]
    NotHeld {
        /// The lock name.
        name: String,
    },

    /// `sp_releaseapplock` returned a failure code; the connection was closed, which frees the
    /// lock anyway.
    #[error("sp_releaseapplock returned {code} for lock {name:?}")]
    ReleaseFailed {
        /// The lock name.
        name: String,
        /// The return code.
        code: i32,
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
        /// What failed: the counter advance, or the table's creation.
        #[source]
        source: Box<MssqlError>,
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

    /// The connection holding the lock broke (or was killed) while the lock was held.
    #[error("the SQL Server session holding lock {name:?} was lost")]
    Lost {
        /// The lock name.
        name: String,
    },

    /// The status listing ([`MssqlProvider::held_locks`](crate::MssqlProvider::held_locks))
    /// could not read `sys.dm_tran_locks` (without `VIEW SERVER STATE`, SQL Server refuses it
    /// with error 300; Babelfish does not have the view).
    #[error("listing the applocks held on SQL Server failed")]
    Status {
        /// The driver's error.
        #[source]
        source: Box<tiberius::error::Error>,
    },

    /// The status listing got no answer within the command timeout.
    #[error("listing the applocks held on SQL Server got no answer within {after:?}")]
    StatusTimeout {
        /// The limit that was exceeded.
        after: std::time::Duration,
    },
}

/// Why a connection could not be opened: see [`MssqlError::Connect`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The TCP connection failed.
    #[error("TCP connection failed")]
    Tcp(#[source] std::io::Error),
    /// The TDS pre-login, TLS handshake or login failed.
    #[error("TDS handshake or login failed")]
    Login(#[source] Box<tiberius::error::Error>),
    /// Opening the connection took longer than the connect timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The statement that tells SQL Server from Babelfish failed on the provider's first
    /// connection.
    #[error("could not tell SQL Server from Babelfish")]
    Detect(#[source] Box<tiberius::error::Error>),
}
