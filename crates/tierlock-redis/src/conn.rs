//! The command connection: one multiplexed connection per provider, shared by every lock,
//! waiter and watchdog of it, replaced when it breaks.
//!
//! This is a small connection manager of our own rather than `redis::aio::ConnectionManager`,
//! which keeps returning the error of a failed reconnection that was not an I/O error (a
//! refused password, say) forever. Here a connection that failed in any way that concerns the
//! connection is dropped from the slot, and the next command opens a new one: one connection
//! attempt at a time, each bounded by the command timeout.

use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RetryMethod};

/// A shared connection and the number of the connection it is, to report it broken.
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) conn: MultiplexedConnection,
    generation: u64,
}

pub(crate) struct Connector {
    client: redis::Client,
    config: AsyncConnectionConfig,
    slot: Mutex<Option<Conn>>,
    next_generation: Mutex<u64>,
    connecting: tokio::sync::Mutex<()>,
}

impl Connector {
    pub(crate) fn new(client: redis::Client, timeout: Duration) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            // Every command is bounded by the caller (a deadline, the lease, the command
            // timeout), which knows the right bound better.
            .set_response_timeout(None);
        Connector {
            client,
            config,
            slot: Mutex::new(None),
            next_generation: Mutex::new(0),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The current connection, opening one if there is none. Callers bound the wait.
    pub(crate) async fn get(&self) -> redis::RedisResult<Conn> {
        if let Some(conn) = self.slot.lock().clone() {
            return Ok(conn);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(conn) = self.slot.lock().clone() {
            return Ok(conn);
        }
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let generation = {
            let mut next = self.next_generation.lock();
            *next += 1;
            *next
        };
        let conn = Conn { conn, generation };
        *self.slot.lock() = Some(conn.clone());
        Ok(conn)
    }

    /// Reports that `conn` failed with `err`; drops it from the slot if the error concerns the
    /// connection (not, say, a script error), so the next command reconnects.
    pub(crate) fn failed(&self, conn: &Conn, err: &redis::RedisError) {
        if is_connection_error(err) {
            self.broken(conn);
        }
    }

    /// Drops `conn` from the slot (unless it was replaced already). Commands in flight on it
    /// still complete: its other clones keep it open until they are gone.
    pub(crate) fn broken(&self, conn: &Conn) {
        let mut slot = self.slot.lock();
        if slot
            .as_ref()
            .is_some_and(|c| c.generation == conn.generation)
        {
            *slot = None;
        }
    }
}

/// Whether `err` says the connection is unusable (broken, refused, timed out, unauthenticated).
pub(crate) fn is_connection_error(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.retry_method(),
            RetryMethod::Reconnect | RetryMethod::ReconnectFromInitialConnections
        )
}

/// Whether a waiting acquisition should try again after `err` rather than give up: connection
/// trouble, or a server that asks to retry (loading its data set after a restart, a busy
/// script, `TRYAGAIN`).
pub(crate) fn is_transient(err: &redis::RedisError) -> bool {
    is_connection_error(err) || !matches!(err.retry_method(), RetryMethod::NoRetry)
}
