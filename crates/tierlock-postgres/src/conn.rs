//! Connections and the idle ones kept for reuse.
//!
//! A [`Conn`] is one PostgreSQL session: a `tokio_postgres::Client`, the task that drives its
//! socket, and the statements this crate prepares on it. Dropping a `Conn` *aborts* that task,
//! which closes the socket at once; the server then ends the session and frees every advisory
//! lock it held. That is the safety net for cancellation: a `Conn` that was in the middle of a
//! command when its future was dropped is simply dropped, never reused. Only a connection that is
//! known to be clean — no lock held, no command in flight — goes back to the idle pool (core's
//! [`IdlePool`], whose rules these are) with [`Connections::put`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tierlock_core::Latch;
use tierlock_core::pool::{IdlePool, PooledConnection};
use tokio::task::AbortHandle;
use tokio_postgres::types::{FromSqlOwned, ToSql, Type};
use tokio_postgres::{CancelToken, Client, Config, NoTls, Statement};

use crate::error::PostgresError;

/// How connections are made: TLS or not.
#[derive(Clone)]
pub(crate) enum Connector {
    /// Plain TCP (or a Unix socket).
    Plain,
    /// TLS through rustls.
    #[cfg(feature = "rustls")]
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

/// The statements every connection prepares once, so that each lock command is one round trip.
pub(crate) struct Statements {
    pub try_lock: Statement,
    pub unlock: Statement,
    /// The wait, marked or not: see [`WAIT`].
    pub wait: Statement,
    /// After a wait: see [`AFTER_WAIT`].
    pub after_wait: Statement,
    /// Whether another session of this database holds a shared lock on `(classid, objid)`.
    pub requested: Statement,
}

/// The wait, in one statement: sets `lock_timeout` to `$4`, takes the shared request mark on
/// key `$3` if `$2` (one attempt), then waits for the exclusive lock on key `$1`. The subquery
/// (kept apart by `OFFSET 0`) yields its row before the outer target list runs, so the mark is
/// taken an instant before the wait is queued, on the same session. Returns whether it marked.
pub(crate) const WAIT: &str = "SELECT m.marked, pg_advisory_lock($1) FROM (SELECT \
     set_config('lock_timeout', $4, false) AS lock_timeout, \
     CASE WHEN $2 THEN pg_try_advisory_lock_shared($3) ELSE false END AS marked OFFSET 0) AS m";

/// After a wait, granted or timed out (55P03), in one statement: whether this session holds the
/// exclusive lock `($1, $2)` (the timeout and the grant race on the server), the release of its
/// request mark on key `$3` (`($4, $5)` in `pg_locks`) if it holds one, and `lock_timeout` back
/// to 0. The session then holds at most the lock.
pub(crate) const AFTER_WAIT: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
     AND pid = pg_backend_pid() AND classid = $1 AND objid = $2 AND objsubid = 1 \
     AND mode = 'ExclusiveLock' AND granted), \
     (SELECT count(pg_advisory_unlock_shared($3)) FROM pg_locks WHERE locktype = 'advisory' \
     AND pid = pg_backend_pid() AND classid = $4 AND objid = $5 AND objsubid = 1 \
     AND mode = 'ShareLock' AND granted), \
     set_config('lock_timeout', '0', false)";

const REQUESTED: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND classid = $1 AND objid = $2 AND objsubid = 1 AND mode = 'ShareLock' AND granted \
     AND pid <> pg_backend_pid())";

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
        let key = &[Type::INT8][..];
        let split = &[Type::OID, Type::OID][..];
        let wait = &[Type::INT8, Type::BOOL, Type::INT8, Type::TEXT][..];
        let after = &[Type::OID, Type::OID, Type::INT8, Type::OID, Type::OID][..];
        let (try_lock, unlock, wait, after_wait, requested) = tokio::try_join!(
            client.prepare_typed("SELECT pg_try_advisory_lock($1)", key),
            client.prepare_typed("SELECT pg_advisory_unlock($1)", key),
            client.prepare_typed(WAIT, wait),
            client.prepare_typed(AFTER_WAIT, after),
            client.prepare_typed(REQUESTED, split),
        )?;
        Ok(Statements {
            try_lock,
            unlock,
            wait,
            after_wait,
            requested,
        })
    }
}

/// What every new session runs once.
const SESSION_SETUP: &str = "SET statement_timeout = 0; \
     SELECT set_config('synchronous_commit', 'local', false) \
     WHERE current_setting('synchronous_commit') = 'off'";

/// Makes the server check, every `ms` while a command runs, that the client is still there
/// (PostgreSQL 14 and later; skipped on older servers), so that a waiter whose process died
/// leaves the lock queue instead of being granted the lock. On a server platform that cannot
/// check (the setting must stay 0 there) it fails, and the failure is ignored.
fn client_check(ms: u128) -> String {
    format!(
        "SELECT set_config('client_connection_check_interval', '{ms}ms', false) \
         WHERE current_setting('server_version_num')::int >= 140000"
    )
}

/// One PostgreSQL session. Dropping it closes the socket (see the module documentation).
pub(crate) struct Conn {
    pub client: Client,
    pub stmts: Statements,
    /// Raised when the connection's socket task has ended (server closed the session, network
    /// failure): observed by the lost-lock monitor and by the pool.
    pub closed: Latch,
    task: AbortHandle,
    /// False once the connection may be closed politely (it holds nothing).
    abort_on_drop: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.abort_on_drop {
            self.task.abort();
        }
    }
}

impl PooledConnection for Conn {
    fn is_closed(&self) -> bool {
        self.closed.is_raised()
    }

    /// A clean connection the pool lets go: the driver says goodbye to the server.
    fn close(mut self) {
        self.abort_on_drop = false;
    }
}

impl Conn {
    /// Opens and prepares a new session, within `limit`; with `check` set, the server checks
    /// that often whether the client is still there while a command runs.
    pub(crate) async fn open(
        config: &Config,
        connector: &Connector,
        limit: Duration,
        check: Option<Duration>,
    ) -> Result<Conn, PostgresError> {
        let open = async {
            let connect_err = |source| PostgresError::Connect { source };
            let (client, task, closed) = match connector {
                Connector::Plain => {
                    let (client, connection) = config.connect(NoTls).await.map_err(connect_err)?;
                    let (task, closed) = drive(connection);
                    (client, task, closed)
                }
                #[cfg(feature = "rustls")]
                Connector::Rustls(tls) => {
                    let (client, connection) =
                        config.connect(tls.clone()).await.map_err(connect_err)?;
                    let (task, closed) = drive(connection);
                    (client, task, closed)
                }
            };
            // From here on, a failure drops the client and aborts its task.
            let task = AbortOnDrop {
                handle: task,
                armed: true,
            };
            let check = async {
                if let Some(every) = check {
                    // Unsupported where it fails: nothing to do about it.
                    let _ = client.batch_execute(&client_check(every.as_millis())).await;
                }
                Ok(())
            };
            let (stmts, (), ()) = tokio::try_join!(
                Statements::prepare(&client),
                // The only long command is pg_advisory_lock, bounded by its own lock_timeout.
                // A fencing token must be durable before it is handed out: a crash must not
                // hand it out again. (A stricter setting, e.g. remote_apply, is left alone.)
                client.batch_execute(SESSION_SETUP),
                check,
            )
            .map_err(connect_err)?;
            Ok(Conn {
                client,
                stmts,
                closed,
                task: task.disarm(),
                abort_on_drop: true,
            })
        };
        tokio::time::timeout(limit, open)
            .await
            .map_err(|_| PostgresError::ConnectTimeout { after: limit })?
    }

    /// Runs a prepared one-row, one-column command and returns the value.
    pub(crate) async fn one<T: FromSqlOwned>(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<T, tokio_postgres::Error> {
        self.client.query_one(statement, params).await?.try_get(0)
    }

    /// [`one`](Self::one) with a single `bigint` key parameter.
    pub(crate) async fn with_key<T: FromSqlOwned>(
        &self,
        statement: &Statement,
        key: i64,
    ) -> Result<T, tokio_postgres::Error> {
        self.one(statement, &[&key]).await
    }

    /// [`one`](Self::one) with a key split into `pg_locks`' `(classid, objid)`.
    pub(crate) async fn with_split<T: FromSqlOwned>(
        &self,
        statement: &Statement,
        (classid, objid): (u32, u32),
    ) -> Result<T, tokio_postgres::Error> {
        self.one(statement, &[&classid, &objid]).await
    }

    /// A guard that, if dropped armed, asks the server to cancel the command this session is
    /// running (a backend blocked in `pg_advisory_lock` does not notice a closed socket).
    pub(crate) fn cancel_on_drop(&self, connector: &Connector) -> CancelOnDrop {
        CancelOnDrop(Some((self.client.cancel_token(), connector.clone())))
    }
}

/// Spawns the task that drives a connection's socket; the latch is raised when it ends.
fn drive<F>(connection: F) -> (AbortHandle, Latch)
where
    F: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    let closed = Latch::new();
    // Raised when the task ends for any reason: the connection finished, failed, or the task
    // was aborted (the `Conn` was dropped) or dropped with its runtime.
    let raise = RaiseOnDrop(closed.clone());
    let task = tokio::spawn(async move {
        let _raise = raise;
        // The error itself reaches the next command on this client; here only the end counts.
        let _ = connection.await;
    });
    (task.abort_handle(), closed)
}

struct RaiseOnDrop(Latch);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.raise();
    }
}

/// Aborts a connection task unless disarmed (used while a connection is being set up).
struct AbortOnDrop {
    handle: AbortHandle,
    armed: bool,
}

impl AbortOnDrop {
    fn disarm(mut self) -> AbortHandle {
        self.armed = false;
        self.handle.clone()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.handle.abort();
        }
    }
}

/// See [`Conn::cancel_on_drop`].
pub(crate) struct CancelOnDrop(Option<(CancelToken, Connector)>);

impl CancelOnDrop {
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some((token, connector)) = self.0.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // No runtime: the closed socket ends the session once the wait is over.
        };
        runtime.spawn(async move {
            // Best effort: if it fails, the session still ends when its wait is over.
            let _ = match connector {
                Connector::Plain => token.cancel_query(NoTls).await,
                #[cfg(feature = "rustls")]
                Connector::Rustls(tls) => token.cancel_query(tls).await,
            };
        });
    }
}

/// How to open connections, and the idle ones kept for reuse.
pub(crate) struct Connections {
    config: Config,
    connector: Connector,
    connect_timeout: Duration,
    client_check: Option<Duration>,
    idle: IdlePool<Conn>,
    opened: AtomicU64,
}

impl Connections {
    pub(crate) fn new(
        config: Config,
        connector: Connector,
        (connect_timeout, client_check): (Duration, Option<Duration>),
        max_idle: usize,
        idle_timeout: Option<Duration>,
    ) -> Connections {
        Connections {
            config,
            connector,
            connect_timeout,
            client_check,
            idle: IdlePool::new(max_idle, idle_timeout),
            opened: AtomicU64::new(0),
        }
    }

    pub(crate) fn connector(&self) -> &Connector {
        &self.connector
    }

    /// An idle connection if there is one that is still open (`true`: reused, it may have gone
    /// stale since), else a new one.
    pub(crate) async fn get(&self) -> Result<(Conn, bool), PostgresError> {
        match self.idle.take() {
            Some(conn) => Ok((conn, true)),
            None => Ok((self.open().await?, false)),
        }
    }

    /// A new connection, bypassing the idle ones.
    pub(crate) async fn open(&self) -> Result<Conn, PostgresError> {
        let conn = Conn::open(
            &self.config,
            &self.connector,
            self.connect_timeout,
            self.client_check,
        )
        .await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// Connections opened so far.
    pub(crate) fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Returns a clean connection (no lock held, no command in flight) for reuse.
    pub(crate) fn put(&self, conn: Conn) {
        self.idle.put(conn);
    }

    /// Number of idle connections.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::split;
    use tokio_postgres::error::SqlState;

    /// The server, if `TIERLOCK_PG_URL` is set (skipped, or failed if required, otherwise).
    fn server() -> Option<Config> {
        tierlock_testkit::server_url("TIERLOCK_PG_URL").map(|url| url.parse().unwrap())
    }

    fn pool(config: Config, max_idle: usize) -> Connections {
        let timeouts = (Duration::from_secs(10), Some(Duration::from_secs(1)));
        Connections::new(config, Connector::Plain, timeouts, max_idle, None)
    }

    /// `(granted, unmarked)` after a wait of `conn` on `key` with request key `request`.
    async fn after_wait(conn: &Conn, key: i64, request: i64) -> (bool, i64) {
        let ((c1, o1), (c2, o2)) = (split(key), split(request));
        let row = conn
            .client
            .query_one(&conn.stmts.after_wait, &[&c1, &o1, &request, &c2, &o2])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    /// The marked wait takes the mark on its own session before it queues, the holder's probe
    /// sees it (and never its own), and the statement after the wait withdraws it and tells a
    /// grant from a timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_marked_wait_and_the_pg_locks_checks_see_the_right_sessions() {
        let Some(config) = server() else { return };
        let pool = pool(config, 4);
        let (a, b) = (pool.open().await.unwrap(), pool.open().await.unwrap());
        let key = crate::lock_key("conn-tests", &format!("{:?}", std::time::Instant::now()));
        let request = key.wrapping_add(1);
        assert!(a.with_key::<bool>(&a.stmts.try_lock, key).await.unwrap());
        assert!(
            !a.with_split::<bool>(&a.stmts.requested, split(request))
                .await
                .unwrap()
        );

        // b waits 300 ms, marked: a sees the mark while b waits.
        let params: [&(dyn ToSql + Sync); 4] = [&key, &true, &request, &"300ms"];
        let wait = b.client.query_one(&b.stmts.wait, &params);
        let probe = async {
            let started = std::time::Instant::now();
            while !a
                .with_split::<bool>(&a.stmts.requested, split(request))
                .await
                .unwrap()
            {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "never saw the mark"
                );
            }
        };
        let (waited, ()) = tokio::join!(wait, probe);
        let err = waited.unwrap_err();
        assert_eq!(err.code(), Some(&SqlState::LOCK_NOT_AVAILABLE), "{err}");
        assert_eq!(after_wait(&b, key, request).await, (false, 1));
        assert!(
            !a.with_split::<bool>(&a.stmts.requested, split(request))
                .await
                .unwrap()
        );
        let timeout: String = b
            .client
            .query_one("SHOW lock_timeout", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(timeout, "0");

        // A session's own mark is not a request.
        let own: bool = a
            .client
            .query_one("SELECT pg_try_advisory_lock_shared($1)", &[&request])
            .await
            .unwrap()
            .get(0);
        assert!(own);
        assert!(
            !a.with_split::<bool>(&a.stmts.requested, split(request))
                .await
                .unwrap()
        );
        assert_eq!(after_wait(&a, key, request).await, (true, 1));

        // Unlocked: b's marked wait is granted at once; an unmarked one leaves no mark either.
        assert!(a.with_key::<bool>(&a.stmts.unlock, key).await.unwrap());
        let row = b
            .client
            .query_one(&b.stmts.wait, &[&key, &true, &request, &"1000ms"])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "marked");
        assert_eq!(after_wait(&b, key, request).await, (true, 1));
        assert!(b.with_key::<bool>(&b.stmts.unlock, key).await.unwrap());
        let row = b
            .client
            .query_one(&b.stmts.wait, &[&key, &false, &request, &"1000ms"])
            .await
            .unwrap();
        assert!(!row.get::<_, bool>(0), "not marked");
        assert_eq!(after_wait(&b, key, request).await, (true, 0));
        assert!(b.with_key::<bool>(&b.stmts.unlock, key).await.unwrap());
        assert!(!b.with_key::<bool>(&b.stmts.unlock, key).await.unwrap());
    }

    /// Sessions check that their client is still there (PostgreSQL 14 and later).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_check_for_a_vanished_client() {
        let Some(config) = server() else { return };
        let conn = pool(config, 1).open().await.unwrap();
        let show =
            async |sql: &str| -> String { conn.client.query_one(sql, &[]).await.unwrap().get(0) };
        let version = show("SHOW server_version_num").await;
        if version.parse::<u32>().unwrap() >= 140_000 {
            assert_eq!(show("SHOW client_connection_check_interval").await, "1s");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_keeps_at_most_max_idle_and_drops_closed_connections() {
        let Some(config) = server() else { return };
        let pool = pool(config, 1);
        let (a, b) = (pool.open().await.unwrap(), pool.open().await.unwrap());
        pool.put(a);
        pool.put(b);
        assert_eq!(pool.idle_count(), 1);
        let (reused, was_idle) = pool.get().await.unwrap();
        assert!(was_idle);
        // A connection whose socket task ended is not kept.
        reused.task.abort();
        tokio::time::timeout(Duration::from_secs(10), reused.closed.wait())
            .await
            .unwrap();
        pool.put(reused);
        assert_eq!(pool.idle_count(), 0);
    }
}
