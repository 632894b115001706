//! The T-SQL this provider sends, the meaning of `sp_getapplock`'s return codes, and the
//! arithmetic that turns a deadline into `@LockTimeout`.
//!
//! Every statement runs through tiberius's parameterised `query` (`sp_executesql`), so names are
//! never spliced into SQL text: `@P1` is the resource (`nvarchar`), `@P2` the timeout (`int`).
//! A stored procedure's return status is read with `DECLARE @r int; EXEC @r = …; SELECT @r`.

use std::time::{Duration, Instant};

use tierlock_core::options::{OptionError, sql_table_name};

/// Takes the exclusive session lock on `@P1`, waiting up to `@P2` ms (`-1`: no limit, `0`: one
/// attempt). Returns one row: the return code and the session id (`@@SPID`).
pub(crate) const ACQUIRE_SQL: &str = "DECLARE @r int; \
EXEC @r = sp_getapplock @Resource = @P1, @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = @P2; \
SELECT @r, CAST(@@SPID AS int);";

/// The marked wait: takes the shared session lock on the request resource `@P3` (one attempt,
/// `@P4` ms), waits up to `@P2` ms for the exclusive session lock on `@P1`, then releases the
/// mark — all in one batch on one session, so the mark becomes visible to the holder only an
/// instant before the wait is queued, and goes with the wait. Returns one row: the lock's return
/// code, the session id and the mark's return code.
pub(crate) const MARKED_WAIT_SQL: &str = "DECLARE @m int, @r int; \
EXEC @m = sp_getapplock @Resource = @P3, @LockMode = 'Shared', @LockOwner = 'Session', @LockTimeout = @P4; \
EXEC @r = sp_getapplock @Resource = @P1, @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = @P2; \
IF @m >= 0 EXEC sp_releaseapplock @Resource = @P3, @LockOwner = 'Session'; \
SELECT @r, CAST(@@SPID AS int), @m;";

/// Releases this session's lock on `@P1`.
/// Returns one row: the return code (`0` on success).
pub(crate) const RELEASE_SQL: &str = "DECLARE @r int; \
EXEC @r = sp_releaseapplock @Resource = @P1, @LockOwner = 'Session'; \
SELECT @r;";

/// Whether this session could take `@P1` exclusively right now: `1` yes, `0` no — run by the
/// holder on the request resource, `0` means another session holds a request mark.
pub(crate) const PROBE_SQL: &str =
    "SELECT CAST(APPLOCK_TEST('public', @P1, 'Exclusive', 'Session') AS int);";

/// The keepalive round trip, when request probing is switched off.
pub(crate) const KEEPALIVE_SQL: &str = "SELECT 1;";

/// The fencing counter table unless the builder names another.
pub(crate) const DEFAULT_FENCE_TABLE: &str = "dbo.tierlock_fence";

/// Server error 208: "Invalid object name" — the counter table does not exist.
pub(crate) const INVALID_OBJECT_NAME: u32 = 208;

/// Server error 2714: "There is already an object named … in the database" — another session
/// created the counter table at the same moment.
pub(crate) const OBJECT_EXISTS: u32 = 2714;

/// A validated fencing counter table, and the statements that use it.
///
/// The counter advance, run by the holder's session right after `sp_getapplock` granted the
/// lock (`@P1` is the resource the lock is held on):
///
/// ```sql
/// MERGE dbo.tierlock_fence WITH (HOLDLOCK) AS f
/// USING (SELECT @P1 AS resource) AS s ON f.resource = s.resource
/// WHEN MATCHED THEN UPDATE SET token = f.token + 1
/// WHEN NOT MATCHED THEN INSERT (resource, token) VALUES (s.resource, 1)
/// OUTPUT CAST(inserted.token AS bigint);
/// ```
///
/// One statement, atomic in its own autocommit transaction. `HOLDLOCK` (serializable) makes the
/// match and the insert one step even for a resource that has no row yet, so two sessions can
/// never both insert `1`; the applock already keeps every other holder of the resource away.
/// `OUTPUT` returns the value written.
#[derive(Debug, Clone)]
pub(crate) struct FenceTable {
    pub(crate) name: String,
    pub(crate) advance: String,
    pub(crate) create: String,
}

impl FenceTable {
    /// Accepts `table` or `schema.table` (see [`sql_table_name`]), each part at most 128
    /// characters (SQL Server's identifier limit).
    pub(crate) fn parse(name: &str) -> Result<FenceTable, OptionError> {
        sql_table_name("fencing_table", name, 128)?;
        Ok(FenceTable {
            name: name.to_owned(),
            advance: format!(
                "MERGE {name} WITH (HOLDLOCK) AS f \
                 USING (SELECT @P1 AS resource) AS s ON f.resource = s.resource \
                 WHEN MATCHED THEN UPDATE SET token = f.token + 1 \
                 WHEN NOT MATCHED THEN INSERT (resource, token) VALUES (s.resource, 1) \
                 OUTPUT CAST(inserted.token AS bigint);"
            ),
            create: format!(
                "IF OBJECT_ID(N'{name}', N'U') IS NULL \
                 CREATE TABLE {name} (\
                 resource nvarchar(255) COLLATE Latin1_General_100_BIN2 NOT NULL PRIMARY KEY, \
                 token bigint NOT NULL);"
            ),
        })
    }
}

/// What a return code of `sp_getapplock` means.
///
/// ```
/// use tierlock_mssql::AppLockOutcome;
///
/// assert_eq!(AppLockOutcome::from_code(0), AppLockOutcome::Granted);
/// assert_eq!(AppLockOutcome::from_code(-1), AppLockOutcome::TimedOut);
/// assert!(AppLockOutcome::from_code(1).is_granted());
/// assert_eq!(AppLockOutcome::from_code(7), AppLockOutcome::Unexpected(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppLockOutcome {
    /// `0`: granted at once.
    Granted,
    /// `1`: granted after waiting for incompatible locks to be released.
    GrantedAfterWait,
    /// `-1`: not granted within `@LockTimeout` — the lock is held elsewhere.
    TimedOut,
    /// `-2`: the request was cancelled (for example by the server or an administrator).
    Cancelled,
    /// `-3`: the request was chosen as a deadlock victim.
    DeadlockVictim,
    /// `-999`: parameter validation or another call error.
    ParameterError,
    /// Any other value, which the documentation does not define.
    Unexpected(i32),
}

impl AppLockOutcome {
    /// Interprets a return code of `sp_getapplock`.
    pub fn from_code(code: i32) -> Self {
        match code {
            0 => AppLockOutcome::Granted,
            1 => AppLockOutcome::GrantedAfterWait,
            -1 => AppLockOutcome::TimedOut,
            -2 => AppLockOutcome::Cancelled,
            -3 => AppLockOutcome::DeadlockVictim,
            -999 => AppLockOutcome::ParameterError,
            other => AppLockOutcome::Unexpected(other),
        }
    }

    /// True for `0` and `1`: the lock is held by the session.
    pub fn is_granted(self) -> bool {
        matches!(
            self,
            AppLockOutcome::Granted | AppLockOutcome::GrantedAfterWait
        )
    }
}

/// The `@LockTimeout` for one `sp_getapplock` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LockWait {
    /// Milliseconds to wait: `-1` without limit, `0` for a single attempt.
    pub(crate) ms: i32,
    /// True when the remaining budget exceeded `i32::MAX` ms (about 24.8 days) and was cut: a
    /// `-1` return then does not mean the deadline passed, and the caller waits again.
    pub(crate) clamped: bool,
}

impl LockWait {
    /// The wait for `deadline` as seen at `now`: no deadline waits without limit, a passed
    /// deadline makes one attempt, anything else waits the remaining time rounded *up* to whole
    /// milliseconds, so the server never gives up before the deadline.
    pub(crate) fn until(deadline: Option<Instant>, now: Instant) -> Self {
        let Some(deadline) = deadline else {
            return LockWait {
                ms: -1,
                clamped: false,
            };
        };
        let left = deadline
            .saturating_duration_since(now)
            .as_nanos()
            .div_ceil(1_000_000);
        match i32::try_from(left) {
            Ok(ms) => LockWait { ms, clamped: false },
            Err(_) => LockWait {
                ms: i32::MAX,
                clamped: true,
            },
        }
    }

    /// How long the client waits for the server's answer before it gives the connection up:
    /// the server-side wait plus `margin`, or no bound for an unlimited wait.
    pub(crate) fn client_bound(self, margin: Duration) -> Option<Duration> {
        u64::try_from(self.ms)
            .ok()
            .map(|ms| Duration::from_millis(ms).saturating_add(margin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_exactly_these() {
        assert_eq!(
            ACQUIRE_SQL,
            "DECLARE @r int; EXEC @r = sp_getapplock @Resource = @P1, @LockMode = 'Exclusive', \
             @LockOwner = 'Session', @LockTimeout = @P2; SELECT @r, CAST(@@SPID AS int);"
        );
        assert_eq!(
            MARKED_WAIT_SQL,
            "DECLARE @m int, @r int; EXEC @m = sp_getapplock @Resource = @P3, @LockMode = 'Shared', \
             @LockOwner = 'Session', @LockTimeout = @P4; EXEC @r = sp_getapplock @Resource = @P1, \
             @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = @P2; IF @m >= 0 EXEC \
             sp_releaseapplock @Resource = @P3, @LockOwner = 'Session'; SELECT @r, \
             CAST(@@SPID AS int), @m;"
        );
        assert_eq!(
            RELEASE_SQL,
            "DECLARE @r int; EXEC @r = sp_releaseapplock @Resource = @P1, @LockOwner = 'Session'; \
             SELECT @r;"
        );
        assert_eq!(
            PROBE_SQL,
            "SELECT CAST(APPLOCK_TEST('public', @P1, 'Exclusive', 'Session') AS int);"
        );
        assert_eq!(KEEPALIVE_SQL, "SELECT 1;");
    }

    #[test]
    fn fencing_statements_are_exactly_these() {
        let table = FenceTable::parse(DEFAULT_FENCE_TABLE).unwrap();
        assert_eq!(
            table.advance,
            "MERGE dbo.tierlock_fence WITH (HOLDLOCK) AS f USING (SELECT @P1 AS resource) AS s \
             ON f.resource = s.resource WHEN MATCHED THEN UPDATE SET token = f.token + 1 \
             WHEN NOT MATCHED THEN INSERT (resource, token) VALUES (s.resource, 1) \
             OUTPUT CAST(inserted.token AS bigint);"
        );
        assert_eq!(
            table.create,
            "IF OBJECT_ID(N'dbo.tierlock_fence', N'U') IS NULL CREATE TABLE dbo.tierlock_fence (\
             resource nvarchar(255) COLLATE Latin1_General_100_BIN2 NOT NULL PRIMARY KEY, \
             token bigint NOT NULL);"
        );
        assert!(FenceTable::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn statements_never_splice_values() {
        for sql in [ACQUIRE_SQL, MARKED_WAIT_SQL, RELEASE_SQL, PROBE_SQL] {
            assert!(sql.contains("@Resource = @P1") || sql.contains("'public', @P1,"));
            assert!(!sql.contains("{}"));
            // Every applock call names the session as owner: the lock outlives the batch.
            assert!(sql.contains("'Session'"), "{sql}");
        }
    }

    #[test]
    fn return_codes_map_to_distinct_outcomes() {
        let cases = [
            (0, AppLockOutcome::Granted, true),
            (1, AppLockOutcome::GrantedAfterWait, true),
            (-1, AppLockOutcome::TimedOut, false),
            (-2, AppLockOutcome::Cancelled, false),
            (-3, AppLockOutcome::DeadlockVictim, false),
            (-999, AppLockOutcome::ParameterError, false),
            (2, AppLockOutcome::Unexpected(2), false),
            (-4, AppLockOutcome::Unexpected(-4), false),
            (i32::MIN, AppLockOutcome::Unexpected(i32::MIN), false),
        ];
        for (code, outcome, granted) in cases {
            assert_eq!(AppLockOutcome::from_code(code), outcome, "code {code}");
            assert_eq!(outcome.is_granted(), granted, "code {code}");
        }
    }

    #[test]
    fn no_deadline_waits_without_limit_and_without_client_bound() {
        let now = Instant::now();
        let wait = LockWait::until(None, now);
        assert_eq!(
            wait,
            LockWait {
                ms: -1,
                clamped: false
            }
        );
        assert_eq!(wait.client_bound(Duration::from_secs(30)), None);
    }

    #[test]
    fn passed_deadline_is_a_single_attempt() {
        let now = Instant::now();
        for deadline in [now, now - Duration::from_secs(5)] {
            let wait = LockWait::until(Some(deadline), now);
            assert_eq!(wait.ms, 0);
            assert!(!wait.clamped);
            assert_eq!(
                wait.client_bound(Duration::from_secs(30)),
                Some(Duration::from_secs(30))
            );
        }
        // Any time left, however little, is waited for: rounded up to a whole millisecond.
        let wait = LockWait::until(Some(now + Duration::from_nanos(1)), now);
        assert_eq!(wait.ms, 1);
    }

    #[test]
    fn remaining_budget_in_whole_milliseconds_rounded_up() {
        let now = Instant::now();
        let wait = LockWait::until(Some(now + Duration::from_millis(2_500)), now);
        assert_eq!(wait.ms, 2_500);
        let wait = LockWait::until(Some(now + Duration::from_micros(1_001)), now);
        assert_eq!(wait.ms, 2);
        assert_eq!(
            LockWait::until(Some(now + Duration::from_millis(2_500)), now)
                .client_bound(Duration::from_secs(30)),
            Some(Duration::from_millis(32_500))
        );
    }

    #[test]
    fn huge_budgets_are_clamped_to_i32() {
        let now = Instant::now();
        let at_limit = now + Duration::from_millis(i32::MAX as u64);
        assert_eq!(
            LockWait::until(Some(at_limit), now),
            LockWait {
                ms: i32::MAX,
                clamped: false
            }
        );
        let beyond = now + Duration::from_millis(i32::MAX as u64 + 1);
        assert_eq!(
            LockWait::until(Some(beyond), now),
            LockWait {
                ms: i32::MAX,
                clamped: true
            }
        );
        let far = now + Duration::from_secs(100 * 365 * 24 * 3600);
        assert!(LockWait::until(Some(far), now).clamped);
    }
}
