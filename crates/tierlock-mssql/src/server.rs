//! [`ServerKind`]: SQL Server, or Babelfish for PostgreSQL (the engine behind Aurora
//! PostgreSQL's SQL Server compatibility), told apart once per provider on its first connection,
//! and what the provider does differently on Babelfish.
//!
//! Measured on Babelfish 4.2.0, and handled here:
//!
//! | Babelfish | SQL Server | the provider on Babelfish |
//! |---|---|---|
//! | `@LockTimeout = 0` on a held lock returns `-999` | `-1` | never sends `0`: `1` ms instead, and a `-1` or `-999` answer to it is a refusal |
//! | each refused request leaks error state in its session; about the 5th refusal in one session crashes the server (every session ends, every lock drops) | harmless | a session that had a request refused is closed, never reused |
//! | resources are cut at 255 bytes of UTF-8 | 255 UTF-16 code units | resources are kept within 255 bytes ([`map_resource_utf8`](crate::map_resource_utf8)) |
//! | releasing a lock that is not held raises an error | error 1223 and `-999` | either is [`MssqlError::NotHeld`](crate::MssqlError::NotHeld) |
//! | a wait that was granted returns `0`, never `1` | `1` after waiting | (both mean granted) |
//!
//! Detection: `SERVERPROPERTY('Babelfish')` is 1 there and NULL on SQL Server, and `@@VERSION`
//! begins with `Babelfish for PostgreSQL`; either counts.

use std::time::Duration;

use crate::conn::{Conn, StmtError, query_ints};
use crate::sql::LockWait;

/// Which server a provider talks to (see [`MssqlProvider::server_kind`](crate::MssqlProvider::server_kind)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerKind {
    /// Microsoft SQL Server or Azure SQL.
    SqlServer,
    /// Babelfish for PostgreSQL (Aurora PostgreSQL with SQL Server compatibility).
    Babelfish,
}

/// `1` on Babelfish, `0` elsewhere.
pub(crate) const DETECT_SQL: &str = "SELECT CAST(CASE WHEN CAST(SERVERPROPERTY('Babelfish') AS int) = 1 \
OR @@VERSION LIKE N'Babelfish for PostgreSQL%' THEN 1 ELSE 0 END AS int);";

/// Server error 1223: "Cannot release the application lock … because it is not currently held."
const NOT_HELD: u32 = 1223;

impl ServerKind {
    /// Asks the server on `conn` which kind it is.
    pub(crate) async fn detect(conn: &mut Conn, bound: Duration) -> Result<ServerKind, StmtError> {
        let [babelfish] = query_ints::<1>(conn, DETECT_SQL, &[], Some(bound)).await?;
        Ok(if babelfish == 1 {
            ServerKind::Babelfish
        } else {
            ServerKind::SqlServer
        })
    }

    /// The `@LockTimeout` to send for `wait`: Babelfish gets 1 ms instead of 0.
    pub(crate) fn lock_timeout(self, wait: LockWait) -> i32 {
        match (self, wait.ms) {
            (ServerKind::Babelfish, 0) => 1,
            (_, ms) => ms,
        }
    }

    /// The `@LockTimeout` of a request mark: a single attempt (the mark only conflicts with an
    /// exclusive lock on the request resource, which nothing takes).
    pub(crate) fn mark_timeout(self) -> i32 {
        self.lock_timeout(LockWait {
            ms: 0,
            clamped: false,
        })
    }

    /// Whether a return code of `sp_getapplock` sent `@LockTimeout = sent_ms` means "not
    /// granted in time": `-1`, and on Babelfish `-999` for a single attempt.
    pub(crate) fn is_refusal(self, code: i32, sent_ms: i32) -> bool {
        code == -1 || (self == ServerKind::Babelfish && code == -999 && sent_ms <= 1)
    }

    /// Whether a session whose request was refused must be closed rather than reused.
    pub(crate) fn retires_refused_sessions(self) -> bool {
        self == ServerKind::Babelfish
    }
}

/// Whether `err` says that the released lock was not held: error 1223 on SQL Server, an error
/// with the same message on Babelfish.
pub(crate) fn is_not_held(err: &StmtError) -> bool {
    match err {
        StmtError::Driver(tiberius::error::Error::Server(token)) => {
            token.code() == NOT_HELD
                || token
                    .message()
                    .to_ascii_lowercase()
                    .contains("because it is not currently held")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn babelfish_never_gets_a_zero_timeout() {
        let zero = LockWait {
            ms: 0,
            clamped: false,
        };
        let long = LockWait {
            ms: 2_500,
            clamped: false,
        };
        assert_eq!(ServerKind::SqlServer.lock_timeout(zero), 0);
        assert_eq!(ServerKind::Babelfish.lock_timeout(zero), 1);
        assert_eq!(ServerKind::Babelfish.lock_timeout(long), 2_500);
        assert_eq!(ServerKind::SqlServer.mark_timeout(), 0);
        assert_eq!(ServerKind::Babelfish.mark_timeout(), 1);
    }

    #[test]
    fn refusals_by_server() {
        assert!(ServerKind::SqlServer.is_refusal(-1, 0));
        assert!(!ServerKind::SqlServer.is_refusal(-999, 0));
        assert!(ServerKind::Babelfish.is_refusal(-999, 1));
        assert!(!ServerKind::Babelfish.is_refusal(-999, 5_000));
        assert!(ServerKind::Babelfish.is_refusal(-1, 5_000));
        assert!(ServerKind::Babelfish.retires_refused_sessions());
        assert!(!ServerKind::SqlServer.retires_refused_sessions());
    }

    #[test]
    fn the_detection_statement_is_exactly_this() {
        assert_eq!(
            DETECT_SQL,
            "SELECT CAST(CASE WHEN CAST(SERVERPROPERTY('Babelfish') AS int) = 1 OR @@VERSION \
             LIKE N'Babelfish for PostgreSQL%' THEN 1 ELSE 0 END AS int);"
        );
    }
}
