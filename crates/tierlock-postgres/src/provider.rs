//! [`PostgresProvider`]: acquisition with `pg_try_advisory_lock` / `pg_advisory_lock`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tierlock_core::held::{Hold, Releases};
use tierlock_core::provider::{BoxFuture, ExternalLock, Provider, RequestMark, WaitStrategy};
use tierlock_core::{BoxError, LockName};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::config::{PostgresProviderBuilder, Settings};
use crate::conn::{Conn, Connections};
use crate::error::PostgresError;
use crate::held::{EarlyRelease, PgLock, PgSession};
use crate::key::{lock_key, request_key, split};
use tierlock_core::announce::Announced;

/// Locks across processes and hosts with PostgreSQL session advisory locks.
///
/// Cloning is cheap and shares the connection pool; [`LockManager`](tierlock_core::LockManager)s
/// built on one provider exclude each other like separate processes would. See the
/// [crate documentation](crate) for how it works and how it fails.
///
/// ```no_run
/// use std::time::Duration;
/// use tierlock_core::LockManager;
/// use tierlock_postgres::PostgresProvider;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let provider = PostgresProvider::connect("postgres://app@db.internal/app").await?;
/// let locks = LockManager::new(provider);
/// let guard = locks.lock("tenant:42:migrate", Duration::from_secs(60)).await?;
/// // ... only one process in the fleet runs this at a time ...
/// guard.release().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresProvider {
    pub(crate) connections: Arc<Connections>,
    pub(crate) settings: Arc<Settings>,
    /// Dropped locks still being unlocked in the background.
    releases: Arc<Releases>,
    /// Waits announced by `Provider::request`.
    announced: Arc<Announced>,
}

/// How long an acquisition may wait on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// One attempt: `pg_try_advisory_lock`.
    Try,
    /// `pg_advisory_lock` under `lock_timeout`.
    Wait(Duration),
    /// `pg_advisory_lock` without a timeout.
    Forever,
}

impl Budget {
    pub(crate) fn from_deadline(deadline: Option<Instant>, now: Instant) -> Budget {
        match deadline {
            None => Budget::Forever,
            Some(deadline) => match deadline.saturating_duration_since(now) {
                left if left.is_zero() => Budget::Try,
                left => Budget::Wait(left),
            },
        }
    }

    /// The `lock_timeout` setting for the wait: whole milliseconds rounded up (never 0, which
    /// would mean "no limit"), capped at PostgreSQL's maximum; `0` waits forever.
    pub(crate) fn lock_timeout(self) -> String {
        let ms = match self {
            Budget::Try | Budget::Forever => 0,
            Budget::Wait(left) => left
                .as_nanos()
                .div_ceil(1_000_000)
                .clamp(1, i32::MAX as u128),
        };
        format!("{ms}ms")
    }
}

impl PostgresProvider {
    /// Starts configuring a provider for the server at `url`: a `postgres://` URL or a
    /// `key=value` connection string as understood by `tokio-postgres` (host, port, user,
    /// password, dbname, sslmode, connect_timeout, keepalives, …).
    ///
    /// ```
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// let provider = PostgresProvider::builder("host=127.0.0.1 user=app dbname=app")
    ///     .namespace("tests")
    ///     .build()?; // no connection is opened until the first lock
    /// assert_eq!(provider.namespace(), "tests");
    /// # Ok::<(), tierlock_postgres::PostgresError>(())
    /// ```
    pub fn builder(url: impl Into<String>) -> PostgresProviderBuilder {
        PostgresProviderBuilder::new(url)
    }

    /// A provider with default settings for the server at `url`, after checking that a
    /// connection can be opened (see [`PostgresProviderBuilder::connect`]).
    ///
    /// # Errors
    ///
    /// As [`PostgresProviderBuilder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<PostgresProvider, PostgresError> {
        PostgresProviderBuilder::new(url).connect().await
    }

    pub(crate) fn from_parts(
        connections: Arc<Connections>,
        settings: Arc<Settings>,
    ) -> PostgresProvider {
        PostgresProvider {
            connections,
            settings,
            releases: Releases::new(),
            announced: Arc::default(),
        }
    }

    #[cfg(test)]
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The namespace lock names live in (see [`PostgresProviderBuilder::namespace`]).
    pub fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    /// The advisory lock key of `name` in this provider's namespace, e.g. to find its holder
    /// in `pg_locks`.
    ///
    /// ```
    /// use tierlock_postgres::{PostgresProvider, lock_key};
    ///
    /// let provider = PostgresProvider::builder("postgres://localhost/app").build()?;
    /// assert_eq!(provider.lock_key("job:nightly"), lock_key("", "job:nightly"));
    /// # Ok::<(), tierlock_postgres::PostgresError>(())
    /// ```
    pub fn lock_key(&self, name: &str) -> i64 {
        lock_key(&self.settings.namespace, name)
    }

    /// The key on which waiters for `name` hold a shared lock (see
    /// [`request_key`](crate::request_key)).
    pub fn request_key(&self, name: &str) -> i64 {
        request_key(&self.settings.namespace, name)
    }

    /// Whether acquisitions take fencing tokens (see [`PostgresProviderBuilder::fencing`]).
    pub fn fencing(&self) -> bool {
        self.settings.fencing.is_some()
    }

    /// Number of idle connections kept for reuse right now.
    pub fn idle_connections(&self) -> usize {
        self.connections.idle_count()
    }

    /// Number of connections (sessions) this provider has opened so far.
    pub fn sessions_opened(&self) -> u64 {
        self.connections.opened()
    }

    pub(crate) async fn warm_up(&self) -> Result<(), PostgresError> {
        let conn = self.connections.open().await?;
        self.connections.put(conn);
        Ok(())
    }

    /// Runs `attempt` on an idle connection, or a new one. An idle connection can have closed
    /// since the pool checked it; if the attempt fails for that reason, its command did not run
    /// and it runs once more on a new connection.
    async fn on_connection<T, F>(&self, attempt: impl Fn(Conn) -> F) -> Result<T, PostgresError>
    where
        F: Future<Output = Result<T, PostgresError>>,
    {
        let (conn, reused) = self.connections.get().await?;
        match attempt(conn).await {
            Err(err) if reused && err.is_closed() => attempt(self.connections.open().await?).await,
            other => other,
        }
    }

    async fn acquire_lock(
        &self,
        name: &LockName,
        deadline: Option<Instant>,
    ) -> Result<Option<PgLock>, PostgresError> {
        // A lock of ours dropped a moment ago may still be unlocking this name.
        let limit = self.settings.command_timeout;
        self.releases.settle(name.as_str(), limit).await;
        let key = self.lock_key(name.as_str());
        // A wait announced by `request` marks itself, in the same statement.
        let mark = self
            .announced
            .contains(name.as_str())
            .then(|| self.request_key(name.as_str()));
        let attempt = move |conn| self.lock_on(conn, name.as_str(), key, mark, deadline);
        let Some(conn) = self.on_connection(attempt).await? else {
            return Ok(None);
        };
        let token = match &self.settings.fencing {
            None => None,
            Some(table) => match table.next_token(&conn, name.as_str(), key, limit).await {
                Ok(token) => Some(token),
                Err(err) => {
                    // Nothing may stay held: unlock (and pool the connection), or close it.
                    let _ = self.session(conn, name, key).unlock().await;
                    return Err(err);
                }
            },
        };
        let session = self.session(conn, name, key);
        let early = session.early.clone();
        let hold =
            Hold::start(session, self.settings.schedule).settle_in(&self.releases, name.clone());
        let releases = Arc::clone(&self.releases);
        Ok(Some(PgLock::new(
            name.clone(),
            token,
            hold,
            (releases, early),
        )))
    }

    /// `conn`, whose session holds `key`, ready for the monitor task.
    fn session(&self, conn: Conn, name: &LockName, key: i64) -> PgSession {
        PgSession {
            conn,
            connections: Arc::clone(&self.connections),
            name: name.clone(),
            key,
            request_key: split(self.request_key(name.as_str())),
            command_timeout: self.settings.command_timeout,
            early: EarlyRelease::default(),
        }
    }

    /// Takes `key` on `conn`'s session, a wait marking its request on `mark` if set. Returns
    /// the connection if granted; otherwise it goes back to the pool. On error or cancellation
    /// the connection is dropped, which closes it.
    async fn lock_on(
        &self,
        conn: Conn,
        name: &str,
        key: i64,
        mark: Option<i64>,
        deadline: Option<Instant>,
    ) -> Result<Option<Conn>, PostgresError> {
        let limit = Some(self.settings.command_timeout);
        let granted = match Budget::from_deadline(deadline, Instant::now()) {
            Budget::Try => {
                let try_lock = conn.with_key::<bool>(&conn.stmts.try_lock, key);
                run(name, "pg_try_advisory_lock", limit, try_lock).await?
            }
            budget => self.wait_on(&conn, name, (key, mark), budget).await?,
        };
        if granted {
            return Ok(Some(conn));
        }
        self.connections.put(conn);
        Ok(None)
    }

    /// `pg_advisory_lock` under `lock_timeout`, marked on request key `mark` if set (see
    /// [`WAIT`](crate::conn::WAIT)), with the 55P03 re-check; leaves the session with no mark
    /// and `lock_timeout` at 0 unless it fails.
    async fn wait_on(
        &self,
        conn: &Conn,
        name: &str,
        (key, mark): (i64, Option<i64>),
        budget: Budget,
    ) -> Result<bool, PostgresError> {
        let limit = Some(self.settings.command_timeout);
        let request = mark.unwrap_or(0);
        let params: [&(dyn ToSql + Sync); 4] =
            [&key, &mark.is_some(), &request, &budget.lock_timeout()];
        // If this future is dropped during the wait, the guard asks the server to cancel the
        // wait, and the dropped connection closes the session: nothing can stay held.
        let cancel = conn.cancel_on_drop(self.connections.connector());
        let bound = match budget {
            Budget::Wait(left) => Some(left + self.settings.command_timeout),
            Budget::Try | Budget::Forever => None,
        };
        let waited = bounded(bound, conn.client.query_one(&conn.stmts.wait, &params)).await;
        let Some(waited) = waited else {
            // No answer in time (the network?): `cancel` fires as it goes out of scope.
            let after = bound.unwrap_or_default();
            return Err(PostgresError::timeout(name, "pg_advisory_lock", after));
        };
        // The command is over: a late cancel request would hit this session's next command.
        cancel.disarm();
        match waited {
            Ok(_) => {}
            // lock_timeout fired, but the lock may have been granted at that very moment (the
            // timeout and the grant race on the server): the next statement asks.
            Err(err) if err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {}
            Err(err) => return Err(PostgresError::query(name, "pg_advisory_lock")(err)),
        }
        let ((c1, o1), (c2, o2)) = (split(key), split(request));
        let params: [&(dyn ToSql + Sync); 5] = [&c1, &o1, &request, &c2, &o2];
        let after = conn.client.query_one(&conn.stmts.after_wait, &params);
        let row = run(name, "checking pg_locks", limit, after).await?;
        row.try_get(0)
            .map_err(PostgresError::query(name, "checking pg_locks"))
    }
}

/// Runs a command within `limit`, mapping its errors.
async fn run<T>(
    name: &str,
    operation: &'static str,
    limit: Option<Duration>,
    command: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, PostgresError> {
    match bounded(limit, command).await {
        Some(result) => result.map_err(PostgresError::query(name, operation)),
        None => Err(PostgresError::timeout(
            name,
            operation,
            limit.unwrap_or_default(),
        )),
    }
}

/// `future`'s output, or `None` if `limit` passed first.
async fn bounded<T>(limit: Option<Duration>, future: impl Future<Output = T>) -> Option<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future).await.ok(),
        None => Some(future.await),
    }
}

impl Provider for PostgresProvider {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn wait_strategy(&self) -> WaitStrategy {
        WaitStrategy::Native
    }

    fn acquire<'a>(
        &'a self,
        name: &'a LockName,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn ExternalLock>>, BoxError>> {
        Box::pin(async move {
            let lock = self.acquire_lock(name, deadline).await?;
            Ok(lock.map(|lock| Box::new(lock) as Box<dyn ExternalLock>))
        })
    }

    /// Announces a wait for `name`: the wait that follows marks the request on its own session,
    /// in the same statement (see the crate documentation). No I/O.
    fn request<'a>(
        &'a self,
        name: &'a LockName,
    ) -> BoxFuture<'a, Result<Option<RequestMark>, BoxError>> {
        let announcement = self.announced.announce(name.as_str());
        Box::pin(std::future::ready(Ok(Some(RequestMark::new(announcement)))))
    }
}

impl fmt::Debug for PostgresProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection settings may contain a password: leave them out.
        f.debug_struct("PostgresProvider")
            .field("namespace", &self.settings.namespace)
            .field("fencing", &self.fencing())
            .field("idle_connections", &self.idle_connections())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_from_deadline() {
        let now = Instant::now();
        assert_eq!(Budget::from_deadline(None, now), Budget::Forever);
        assert_eq!(Budget::from_deadline(Some(now), now), Budget::Try);
        let past = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        assert_eq!(Budget::from_deadline(Some(past), now), Budget::Try);
        let later = now + Duration::from_millis(1500);
        assert_eq!(
            Budget::from_deadline(Some(later), now),
            Budget::Wait(Duration::from_millis(1500))
        );
    }

    #[test]
    fn lock_timeout_rounds_up_and_never_means_forever_by_accident() {
        assert_eq!(Budget::Wait(Duration::from_micros(1)).lock_timeout(), "1ms");
        assert_eq!(
            Budget::Wait(Duration::from_micros(1500)).lock_timeout(),
            "2ms"
        );
        assert_eq!(
            Budget::Wait(Duration::from_millis(250)).lock_timeout(),
            "250ms"
        );
        assert_eq!(Budget::Wait(Duration::MAX).lock_timeout(), "2147483647ms");
        assert_eq!(Budget::Forever.lock_timeout(), "0ms");
    }
}
