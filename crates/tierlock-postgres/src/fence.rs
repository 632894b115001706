//! Fencing tokens: a counter per lock key in a small table, advanced by the holder's session
//! right after the lock is granted.
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS public.tierlock_fence (
//!     lock_key bigint PRIMARY KEY,  -- the advisory lock key (tierlock_postgres::lock_key)
//!     token    bigint NOT NULL      -- the last token handed out
//! );
//! INSERT INTO public.tierlock_fence AS f (lock_key, token) VALUES ($1, 1)
//!     ON CONFLICT (lock_key) DO UPDATE SET token = f.token + 1
//!     RETURNING token;
//! ```
//!
//! The upsert runs in its own (autocommit) transaction on the session that holds the advisory
//! lock, so only the holder ever advances a key's row: the values it returns strictly increase
//! from one holder to the next, across processes and across holders that died (a holder killed
//! before its upsert committed never saw its number). The session runs with
//! `synchronous_commit = on`, so a token is durable before it is handed out.
//!
//! The key is the lock key rather than the name: it is exactly what the advisory lock excludes
//! on, it includes the namespace, and it keeps the row small whatever the name's length.

use std::time::Duration;

use tierlock_core::options::{OptionError, sql_table_name};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use crate::conn::Conn;
use crate::error::PostgresError;

/// The counter table unless the builder names another.
pub(crate) const DEFAULT_TABLE: &str = "public.tierlock_fence";

/// A validated counter table name, and the statements that use it.
#[derive(Debug, Clone)]
pub(crate) struct FenceTable {
    name: String,
    create: String,
    upsert: String,
}

impl FenceTable {
    /// Accepts `table` or `schema.table` (see [`sql_table_name`]), each part at most 63 bytes
    /// (PostgreSQL's identifier limit).
    pub(crate) fn parse(name: &str) -> Result<FenceTable, OptionError> {
        sql_table_name("fencing_table", name, 63)?;
        Ok(FenceTable {
            name: name.to_owned(),
            create: format!(
                "CREATE TABLE IF NOT EXISTS {name} (lock_key bigint PRIMARY KEY, token bigint NOT NULL)"
            ),
            upsert: format!(
                "INSERT INTO {name} AS f (lock_key, token) VALUES ($1, 1) \
                 ON CONFLICT (lock_key) DO UPDATE SET token = f.token + 1 RETURNING token"
            ),
        })
    }

    /// The table's name, as configured.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Advances the counter of `key` on `conn`, whose session holds the lock, and returns the
    /// new token. If the table does not exist it is created (`CREATE TABLE IF NOT EXISTS`) and
    /// the upsert runs once more. Each statement is bounded by `limit`.
    pub(crate) async fn next_token(
        &self,
        conn: &Conn,
        name: &str,
        key: i64,
        limit: Duration,
    ) -> Result<u64, PostgresError> {
        let fencing = |source| PostgresError::Fencing {
            name: name.to_owned(),
            table: self.name.clone(),
            source: Box::new(source),
        };
        let token = match self.upsert(conn, name, key, limit).await {
            Err(err) if code(&err) == Some(&SqlState::UNDEFINED_TABLE) => {
                self.create(conn, name, limit).await.map_err(fencing)?;
                self.upsert(conn, name, key, limit).await
            }
            other => other,
        }
        .map_err(fencing)?;
        u64::try_from(token)
            .ok()
            .filter(|token| *token > 0)
            .ok_or_else(|| {
                fencing(PostgresError::InvalidToken {
                    name: name.to_owned(),
                    value: token,
                })
            })
    }

    async fn upsert(
        &self,
        conn: &Conn,
        name: &str,
        key: i64,
        limit: Duration,
    ) -> Result<i64, PostgresError> {
        // One round trip: an unnamed statement with its parameter type given.
        let upsert = async {
            conn.client
                .query_typed_one(&self.upsert, &[(&key, Type::INT8)])
                .await?
                .try_get::<_, i64>(0)
        };
        match tokio::time::timeout(limit, upsert).await {
            Ok(result) => result.map_err(PostgresError::query(name, "the fencing upsert")),
            Err(_) => Err(PostgresError::timeout(name, "the fencing upsert", limit)),
        }
    }

    /// Creates the table; a concurrent creation by another session is success.
    async fn create(&self, conn: &Conn, name: &str, limit: Duration) -> Result<(), PostgresError> {
        let create = conn.client.batch_execute(&self.create);
        match tokio::time::timeout(limit, create).await {
            Ok(Ok(())) => Ok(()),
            // Two sessions creating the table at once: one of them may trip over the other's
            // catalog entries (the table's row type: 42710, or a unique index of the catalog:
            // 23505) instead of seeing "already exists" (42P07).
            Ok(Err(err))
                if matches!(
                    err.code(),
                    Some(
                        &SqlState::DUPLICATE_TABLE
                            | &SqlState::DUPLICATE_OBJECT
                            | &SqlState::UNIQUE_VIOLATION
                    )
                ) =>
            {
                Ok(())
            }
            Ok(Err(err)) => Err(PostgresError::query(name, "creating the fencing table")(
                err,
            )),
            Err(_) => Err(PostgresError::timeout(
                name,
                "creating the fencing table",
                limit,
            )),
        }
    }
}

/// The SQLSTATE of a query error.
fn code(err: &PostgresError) -> Option<&SqlState> {
    match err {
        PostgresError::Query { source, .. } => source.code(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_put_the_table_in_as_written() {
        let table = FenceTable::parse("locks.fence").unwrap();
        assert_eq!(table.name, "locks.fence");
        assert_eq!(
            table.upsert,
            "INSERT INTO locks.fence AS f (lock_key, token) VALUES ($1, 1) \
             ON CONFLICT (lock_key) DO UPDATE SET token = f.token + 1 RETURNING token"
        );
        assert_eq!(
            table.create,
            "CREATE TABLE IF NOT EXISTS locks.fence (lock_key bigint PRIMARY KEY, token bigint NOT NULL)"
        );
        assert!(FenceTable::parse(DEFAULT_TABLE).is_ok());
        assert!(FenceTable::parse(&"x".repeat(64)).is_err());
    }
}
