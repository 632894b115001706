//! Acquisition: [`MssqlProvider::lock`], one `sp_getapplock` batch on a pooled (or new)
//! connection — plain, or marked when a wait was announced — and the fencing token.

use std::sync::Arc;
use std::time::Instant;

use tierlock_core::LockName;

use crate::conn::{Conn, StmtError, execute, query_bigint, query_ints};
use crate::error::MssqlError;
use crate::held::{EarlyRelease, MssqlLock, MssqlSession, unlock};
use crate::provider::MssqlProvider;
use crate::server::ServerKind;
use crate::sql::{
    ACQUIRE_SQL, AppLockOutcome, FenceTable, INVALID_OBJECT_NAME, LockWait, MARKED_WAIT_SQL,
    OBJECT_EXISTS,
};

/// What one `sp_getapplock` batch answered.
#[derive(Debug, Clone, Copy)]
struct Answer {
    code: i32,
    session_id: i32,
    /// The request mark's return code, for a marked wait.
    mark: Option<i32>,
    /// The `@LockTimeout` sent.
    sent_ms: i32,
    /// The budget was longer than `@LockTimeout` can express.
    clamped: bool,
}

impl MssqlProvider {
    /// Takes the lock `name` on a dedicated connection, waiting on the server until `deadline`
    /// (`None`: without limit; a passed deadline: one attempt). `Ok(None)` means the lock is
    /// held elsewhere and was not obtained in time.
    ///
    /// If a wait for `name` was announced ([`Provider::request`](tierlock_core::Provider::request),
    /// as a [`LockManager`](tierlock_core::LockManager) does before it waits), the wait marks
    /// its request in the same batch on the same session (see the crate documentation).
    ///
    /// This is what [`Provider::acquire`](tierlock_core::Provider::acquire) does, with the
    /// concrete handle type; most code uses a `LockManager` instead.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the connection it was using, so a lock the server granted
    /// just then (and a fencing upsert in flight) is freed with the session.
    ///
    /// # Errors
    ///
    /// Connection failures, server errors, and `sp_getapplock` failures other than a timeout
    /// ([`MssqlError::Cancelled`], [`MssqlError::DeadlockVictim`],
    /// [`MssqlError::ParameterError`], [`MssqlError::Unexpected`]); with fencing on,
    /// [`MssqlError::Fencing`] (the lock was released).
    pub async fn lock(
        &self,
        name: &LockName,
        deadline: Option<Instant>,
    ) -> Result<Option<MssqlLock>, MssqlError> {
        let shared = &self.shared;
        // A lock of ours dropped a moment ago may still be releasing this name: wait for it,
        // so the name is free and its connection back in the pool.
        let limit = shared.options.command_timeout;
        shared.releases.settle(name.as_str(), limit).await;
        let kind = self.warm_up().await?;
        let (namespace, naming) = (self.namespace(), self.naming());
        let resource = naming.lock_resource(kind, namespace, name.as_str());
        let waits = deadline.is_none_or(|deadline| Instant::now() < deadline);
        let mark = (waits && shared.announced.contains(name.as_str()))
            .then(|| naming.request_resource(kind, namespace, name.as_str()));
        loop {
            let (mut conn, answer) = self
                .attempt(name, kind, &resource, mark.as_deref(), deadline)
                .await?;
            if answer.mark.is_some_and(|code| code < 0) && kind.retires_refused_sessions() {
                conn.retired = true;
            }
            if outcome(kind, &answer, name)? {
                return self
                    .hold(conn, name, resource, answer.session_id)
                    .await
                    .map(Some);
            }
            if kind.retires_refused_sessions() {
                conn.retired = true;
            }
            shared.put(conn);
            // Wait again if the budget was longer than `@LockTimeout` can express, or if the
            // server gave up before the deadline by its own clock.
            let early = deadline.is_some_and(|deadline| Instant::now() < deadline);
            if !(answer.clamped || early) {
                return Ok(None);
            }
        }
    }

    /// `conn` was granted the lock: takes the fencing token if fencing is on, and hands the
    /// connection to the held lock's monitor task.
    async fn hold(
        &self,
        mut conn: Conn,
        name: &LockName,
        resource: String,
        session_id: i32,
    ) -> Result<MssqlLock, MssqlError> {
        let shared = &self.shared;
        let token = match &shared.fence {
            None => None,
            Some(table) => match self.next_token(table, &mut conn, name, &resource).await {
                Ok(token) => Some(token),
                Err(err) => {
                    // Nothing may stay held: release (and pool the connection), or close it.
                    if unlock(shared, &mut conn, &resource, name.as_str())
                        .await
                        .is_ok()
                    {
                        shared.put(conn);
                    }
                    return Err(err);
                }
            },
        };
        let session = MssqlSession {
            conn,
            shared: Arc::clone(shared),
            name: name.clone(),
            request_resource: self.request_resource_name(name.as_str()),
            resource,
            early: EarlyRelease::default(),
        };
        Ok(MssqlLock::start(session, session_id, token))
    }

    /// Runs one `sp_getapplock` batch on a pooled (or new) connection. A reused connection
    /// that turns out broken is dropped and the batch runs once more on a new one: a broken
    /// connection's session is gone and holds nothing. The wait is computed once the connection
    /// is ready, so connecting uses up part of the budget.
    async fn attempt(
        &self,
        name: &LockName,
        kind: ServerKind,
        resource: &str,
        mark: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<(Conn, Answer), MssqlError> {
        let shared = &self.shared;
        let mut reuse = true;
        loop {
            let pooled = if reuse { shared.pool.take() } else { None };
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => shared.open().await?,
            };
            let wait = LockWait::until(deadline, Instant::now());
            let ms = kind.lock_timeout(wait);
            let bound = LockWait { ms, ..wait }.client_bound(shared.options.command_timeout);
            let answered = match mark {
                None => query_ints::<2>(&mut conn, ACQUIRE_SQL, &[&resource, &ms], bound)
                    .await
                    .map(|[code, session_id]| (code, session_id, None)),
                Some(request) => {
                    let mark_ms = kind.mark_timeout();
                    let params: [&dyn tiberius::ToSql; 4] = [&resource, &ms, &request, &mark_ms];
                    query_ints::<3>(&mut conn, MARKED_WAIT_SQL, &params, bound)
                        .await
                        .map(|[code, session_id, mark]| (code, session_id, Some(mark)))
                }
            };
            match answered {
                Ok((code, session_id, mark)) => {
                    let answer = Answer {
                        code,
                        session_id,
                        mark,
                        sent_ms: ms,
                        clamped: wait.clamped,
                    };
                    return Ok((conn, answer));
                }
                Err(err @ StmtError::Driver(_)) if reused && err.connection_broken() => {
                    drop(conn);
                    reuse = false;
                }
                // Should the server raise error 1205 instead of returning -3.
                Err(StmtError::Driver(err)) if err.is_deadlock() => {
                    return Err(MssqlError::DeadlockVictim {
                        name: name.as_str().to_owned(),
                    });
                }
                // Dropping the connection frees anything the statement might have taken.
                Err(err) => return Err(err.into_error("sp_getapplock", name.as_str())),
            }
        }
    }

    /// Advances the fencing counter of `resource` on `conn`, whose session has just been
    /// granted the lock, creating the table first if it does not exist.
    async fn next_token(
        &self,
        table: &FenceTable,
        conn: &mut Conn,
        name: &LockName,
        resource: &str,
    ) -> Result<u64, MssqlError> {
        let name = name.as_str();
        let fencing = |source| MssqlError::Fencing {
            name: name.to_owned(),
            table: table.name.clone(),
            source: Box::new(source),
        };
        let bound = self.shared.short_bound();
        let advance =
            async |conn: &mut Conn| query_bigint(conn, &table.advance, &[&resource], bound).await;
        let token = match advance(conn).await {
            Err(StmtError::Driver(err)) if err.code() == Some(INVALID_OBJECT_NAME) => {
                let limit = self.shared.options.command_timeout;
                match execute(conn, &table.create, limit).await {
                    Ok(()) => {}
                    // Created by another session at the same moment.
                    Err(StmtError::Driver(err)) if err.code() == Some(OBJECT_EXISTS) => {}
                    Err(err) => {
                        return Err(fencing(err.into_error("creating the fencing table", name)));
                    }
                }
                advance(conn).await
            }
            other => other,
        }
        .map_err(|err| fencing(err.into_error("the fencing counter advance", name)))?;
        u64::try_from(token)
            .ok()
            .filter(|token| *token > 0)
            .ok_or_else(|| {
                fencing(MssqlError::InvalidToken {
                    name: name.to_owned(),
                    value: token,
                })
            })
    }
}

/// `Ok(true)` granted, `Ok(false)` not granted in time, `Err` for the failure codes. The caller
/// drops the connection on `Err`, which frees anything an undocumented code might have left
/// held.
fn outcome(kind: ServerKind, answer: &Answer, name: &LockName) -> Result<bool, MssqlError> {
    if kind.is_refusal(answer.code, answer.sent_ms) {
        return Ok(false);
    }
    let name = || name.as_str().to_owned();
    match AppLockOutcome::from_code(answer.code) {
        AppLockOutcome::Granted | AppLockOutcome::GrantedAfterWait => Ok(true),
        AppLockOutcome::TimedOut => Ok(false),
        AppLockOutcome::Cancelled => Err(MssqlError::Cancelled { name: name() }),
        AppLockOutcome::DeadlockVictim => Err(MssqlError::DeadlockVictim { name: name() }),
        AppLockOutcome::ParameterError => Err(MssqlError::ParameterError { name: name() }),
        AppLockOutcome::Unexpected(code) => Err(MssqlError::Unexpected { name: name(), code }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: i32, sent_ms: i32) -> Answer {
        Answer {
            code,
            session_id: 51,
            mark: None,
            sent_ms,
            clamped: false,
        }
    }

    #[test]
    fn failure_codes_are_errors_naming_the_lock() {
        let name = LockName::new("order:7").unwrap();
        let sql = ServerKind::SqlServer;
        assert!(outcome(sql, &answer(0, 0), &name).unwrap());
        assert!(outcome(sql, &answer(1, 0), &name).unwrap());
        assert!(!outcome(sql, &answer(-1, 0), &name).unwrap());
        let errors = [
            (-2, "cancelled (return code -2)"),
            (-3, "deadlock victim (return code -3)"),
            (-999, "(return code -999)"),
            (42, "undocumented code 42"),
        ];
        for (code, text) in errors {
            let err = outcome(sql, &answer(code, 0), &name).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(text), "{message}");
            assert!(message.contains("\"order:7\""), "{message}");
        }
        assert!(matches!(
            outcome(sql, &answer(-3, 0), &name),
            Err(MssqlError::DeadlockVictim { .. })
        ));
    }

    #[test]
    fn babelfish_refuses_a_single_attempt_with_minus_999() {
        let name = LockName::new("job").unwrap();
        let babelfish = ServerKind::Babelfish;
        assert!(!outcome(babelfish, &answer(-999, 1), &name).unwrap());
        assert!(!outcome(babelfish, &answer(-1, 1), &name).unwrap());
        assert!(outcome(babelfish, &answer(0, 1), &name).unwrap());
        // A -999 to a real wait is still an error.
        assert!(matches!(
            outcome(babelfish, &answer(-999, 5_000), &name),
            Err(MssqlError::ParameterError { .. })
        ));
    }
}
