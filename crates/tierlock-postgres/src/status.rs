//! [`PostgresProvider::held_locks`]: the advisory locks held right now on the database, read
//! from `pg_locks` (what `tierlock status --url postgres://…` prints).

use std::collections::HashMap;
use std::future::Future;

use tierlock_core::HeldLock;
use tokio_postgres::error::SqlState;

use crate::conn::Conn;
use crate::error::PostgresError;
use crate::provider::PostgresProvider;

/// Granted exclusive advisory locks on a `bigint` key (`objsubid = 1`) in this database, with
/// their holder and the number of sessions waiting for the same key. `classid` holds the key's
/// high 32 bits, `objid` the low ones; `<<` on `bigint` wraps, which rebuilds the signed key.
const HELD: &str = "\
SELECT (l.classid::bigint << 32) | l.objid::bigint AS key, l.pid, \
       coalesce(a.application_name, '') AS app, coalesce(host(a.client_addr), '') AS addr, \
       (SELECT count(*) FROM pg_locks w \
         WHERE w.locktype = 'advisory' AND w.database = l.database AND w.classid = l.classid \
           AND w.objid = l.objid AND w.objsubid = 1 AND w.mode = 'ExclusiveLock' \
           AND NOT w.granted) AS waiters \
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.mode = 'ExclusiveLock' AND l.granted \
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
ORDER BY 1";

impl PostgresProvider {
    /// The advisory locks held right now on this provider's database, by any session, sorted
    /// by key: one query on `pg_locks` (and, with [fencing](crate::PostgresProviderBuilder::fencing)
    /// on, one on the counter table), on a pooled connection. Takes no lock.
    ///
    /// What PostgreSQL can tell:
    ///
    /// * **key**: the 64-bit advisory key in decimal, as [`lock_key`](crate::lock_key) computes
    ///   it and `pg_advisory_lock` takes it. `pg_locks` shows it split in `classid` (high 32
    ///   bits) and `objid` (low 32 bits). The **name** is not recoverable (the key is a hash of
    ///   namespace and name): compare with `provider.lock_key(name)` for names you know.
    /// * **holder**: `pid N` (the backend's process id, for `pg_terminate_backend`), with the
    ///   session's `application_name` and client address where `pg_stat_activity` shows them
    ///   (another role's sessions show no address without `pg_read_all_stats`).
    /// * **waiters**: sessions blocked in `pg_advisory_lock` on the same key.
    /// * **fencing token**: the counter table's value for the key, with fencing on.
    ///
    /// Every exclusive advisory lock on a `bigint` key in the database is listed, whatever
    /// took it: the server cannot tell tierlock's keys, or one namespace's, from another
    /// application's. Request marks (shared locks on [`request_key`](crate::request_key)) and
    /// locks on two `int4` keys are left out.
    ///
    /// ```no_run
    /// use tierlock_postgres::PostgresProvider;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tierlock_postgres::PostgresError> {
    /// let provider = PostgresProvider::connect("postgres://app@db.internal/app").await?;
    /// let nightly = provider.lock_key("job:nightly").to_string();
    /// for held in provider.held_locks().await? {
    ///     let name = if held.key == nightly { "job:nightly" } else { "?" };
    ///     println!("{name} key {} held by {:?}", held.key, held.holder);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`PostgresError::Connect`] / [`ConnectTimeout`](PostgresError::ConnectTimeout) if no
    /// connection can be opened, [`PostgresError::Status`] if a query fails,
    /// [`PostgresError::StatusTimeout`] if the server does not answer within the command
    /// timeout. A missing counter table means no tokens, not an error.
    pub async fn held_locks(&self) -> Result<Vec<HeldLock>, PostgresError> {
        let (conn, reused) = self.connections.get().await?;
        let result = match self.list_on(&conn).await {
            Err(PostgresError::Status { source, .. })
                if reused && (source.is_closed() || conn.client.is_closed()) =>
            {
                // A stale pooled connection: once more on a fresh one.
                drop(conn);
                let conn = self.connections.open().await?;
                let result = self.list_on(&conn).await;
                if result.is_ok() {
                    self.connections.put(conn);
                }
                return result;
            }
            other => other,
        };
        if result.is_ok() {
            self.connections.put(conn);
        }
        result
    }

    async fn list_on(&self, conn: &Conn) -> Result<Vec<HeldLock>, PostgresError> {
        let rows = self
            .bounded("pg_locks", conn.client.query(HELD, &[]))
            .await?;
        let mut keys = Vec::with_capacity(rows.len());
        let mut held = Vec::with_capacity(rows.len());
        for row in &rows {
            let read = |source| PostgresError::Status {
                operation: "pg_locks",
                source,
            };
            let key: i64 = row.try_get("key").map_err(read)?;
            let pid: i32 = row.try_get("pid").map_err(read)?;
            let app: String = row.try_get("app").map_err(read)?;
            let addr: String = row.try_get("addr").map_err(read)?;
            let waiters: i64 = row.try_get("waiters").map_err(read)?;
            let mut holder = format!("pid {pid}");
            if !app.is_empty() {
                holder.push_str(&format!(" ({app})"));
            }
            if !addr.is_empty() {
                holder.push_str(&format!(" from {addr}"));
            }
            keys.push(key);
            held.push(
                HeldLock::new(key.to_string())
                    .with_holder(holder)
                    .with_waiters(u64::try_from(waiters).unwrap_or(0)),
            );
        }
        if let Some(table) = &self.settings.fencing
            && !keys.is_empty()
        {
            let tokens = self.tokens(conn, table.name(), &keys).await?;
            for (lock, key) in held.iter_mut().zip(&keys) {
                if let Some(&token) = tokens.get(key) {
                    *lock = lock.clone().with_fencing_token(token);
                }
            }
        }
        Ok(held)
    }

    /// The counter table's tokens for `keys`; none if the table does not exist.
    async fn tokens(
        &self,
        conn: &Conn,
        table: &str,
        keys: &[i64],
    ) -> Result<HashMap<i64, u64>, PostgresError> {
        // `table` was validated as `[schema.]identifier` when the provider was built.
        let sql = format!("SELECT lock_key, token FROM {table} WHERE lock_key = ANY($1)");
        let rows = match self
            .bounded("the fencing table", conn.client.query(&sql, &[&keys]))
            .await
        {
            Err(PostgresError::Status { source, .. })
                if source.code() == Some(&SqlState::UNDEFINED_TABLE) =>
            {
                return Ok(HashMap::new());
            }
            other => other?,
        };
        let mut tokens = HashMap::with_capacity(rows.len());
        for row in rows {
            let read = |source| PostgresError::Status {
                operation: "the fencing table",
                source,
            };
            let key: i64 = row.try_get(0).map_err(read)?;
            let token: i64 = row.try_get(1).map_err(read)?;
            if let Ok(token) = u64::try_from(token) {
                tokens.insert(key, token);
            }
        }
        Ok(tokens)
    }

    /// `query` bounded by the command timeout.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        query: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, PostgresError> {
        let after = self.settings.command_timeout;
        match tokio::time::timeout(after, query).await {
            Ok(result) => result.map_err(|source| PostgresError::Status { operation, source }),
            Err(_) => Err(PostgresError::StatusTimeout { after }),
        }
    }
}
