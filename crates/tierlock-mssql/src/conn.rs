//! Connections: opening them, the small idle pool, and running one statement with a bound.
//!
//! A connection is an owned [`Client`]. Whoever owns it while a statement runs is the only one
//! who can put it back into the pool, and does so only after the statement completed; a future
//! dropped mid-statement drops the client with it, which closes the socket, ends the session
//! and so frees whatever the session held. A connection that may be out of step with the server
//! is therefore never reused.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::config::Options;
use crate::error::{ConnectError, MssqlError};

/// One connection, one SQL Server session.
pub(crate) type Client = tiberius::Client<Compat<TcpStream>>;

/// Opens a connection: TCP (no delay, keepalive), TLS and login, following one routing
/// redirect (Azure SQL gateways), all within the connect timeout.
pub(crate) async fn connect(
    config: &tiberius::Config,
    options: &Options,
) -> Result<Client, MssqlError> {
    let attempt = async {
        match connect_once(config.clone(), options).await {
            Err(ConnectError::Login(err)) => match *err {
                tiberius::error::Error::Routing { host, port } => {
                    let mut redirected = config.clone();
                    redirected.host(host);
                    redirected.port(port);
                    connect_once(redirected, options).await
                }
                other => Err(ConnectError::Login(Box::new(other))),
            },
            other => other,
        }
    };
    let result = tokio::time::timeout(options.connect_timeout, attempt)
        .await
        .unwrap_or(Err(ConnectError::Timeout(options.connect_timeout)));
    result.map_err(|source| MssqlError::Connect {
        addr: config.get_addr(),
        source,
    })
}

async fn connect_once(
    mut config: tiberius::Config,
    options: &Options,
) -> Result<Client, ConnectError> {
    // Statements are bounded by this crate (a lock wait may last far longer than any fixed
    // per-command timeout), so the driver's own per-round-trip timeout is switched off.
    config.command_timeout(None);
    let tcp = TcpStream::connect(config.get_addr())
        .await
        .map_err(ConnectError::Tcp)?;
    tcp.set_nodelay(true).map_err(ConnectError::Tcp)?;
    if let Some(idle) = options.tcp_keepalive {
        set_tcp_keepalive(&tcp, idle).map_err(ConnectError::Tcp)?;
    }
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .map_err(|err| ConnectError::Login(Box::new(err)))
}

fn set_tcp_keepalive(tcp: &TcpStream, idle: Duration) -> std::io::Result<()> {
    let keepalive = socket2::TcpKeepalive::new().with_time(idle);
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "windows"
    ))]
    let keepalive = keepalive.with_interval(Duration::from_secs(10));
    socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive)
}

/// Idle connections kept for reuse: newest first, bounded, stale ones closed. (Generic only so
/// that tests can use stand-ins for connections.)
pub(crate) struct Pool<C = Client> {
    idle: Mutex<Vec<(C, Instant)>>,
    max: usize,
    idle_timeout: Duration,
}

impl<C> Pool<C> {
    pub(crate) fn new(max: usize, idle_timeout: Duration) -> Self {
        Pool {
            idle: Mutex::new(Vec::with_capacity(max)),
            max,
            idle_timeout,
        }
    }

    /// The most recently returned connection that is not stale.
    pub(crate) fn take(&self) -> Option<C> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.idle.lock();
            loop {
                match idle.pop() {
                    Some((client, since)) if since.elapsed() <= self.idle_timeout => {
                        break Some(client);
                    }
                    Some(old) => stale.push(old),
                    None => break None,
                }
            }
        };
        // Closing sockets outside the lock.
        drop(stale);
        found
    }

    /// Keeps a connection whose last statement completed, if there is room.
    pub(crate) fn put(&self, client: C) {
        let mut idle = self.idle.lock();
        if idle.len() < self.max {
            idle.push((client, Instant::now()));
        }
    }

    /// Number of idle connections.
    pub(crate) fn len(&self) -> usize {
        self.idle.lock().len()
    }
}

/// Why a statement did not produce its row.
#[derive(Debug)]
pub(crate) enum StmtError {
    /// The driver failed: a server error or a broken connection.
    Driver(tiberius::error::Error),
    /// No answer within the bound; the connection is out of step and must be dropped.
    Timeout(Duration),
    /// The statement returned no row, or a NULL where a number was expected.
    NoRow,
}

impl StmtError {
    /// True if the connection cannot be trusted any more: anything but an ordinary server
    /// error (severity 20 and above closes the connection on the server side).
    pub(crate) fn connection_broken(&self) -> bool {
        match self {
            StmtError::Driver(tiberius::error::Error::Server(token)) => token.class() >= 20,
            StmtError::Driver(_) | StmtError::Timeout(_) => true,
            StmtError::NoRow => false,
        }
    }

    pub(crate) fn into_error(self, command: &'static str, name: &str) -> MssqlError {
        let name = name.to_owned();
        match self {
            StmtError::Driver(source) => MssqlError::Command {
                command,
                name,
                source: Box::new(source),
            },
            StmtError::Timeout(after) => MssqlError::CommandTimeout {
                command,
                name,
                after,
            },
            StmtError::NoRow => MssqlError::NoResult { command, name },
        }
    }
}

/// Runs `sql` and reads the first `N` columns of its first row as `int`s, giving up after
/// `bound` (if any). On `Err`, check [`StmtError::connection_broken`] before reusing `client`.
pub(crate) async fn query_ints<const N: usize>(
    client: &mut Client,
    sql: &'static str,
    params: &[&dyn tiberius::ToSql],
    bound: Option<Duration>,
) -> Result<[i32; N], StmtError> {
    let run = async {
        let stream = client.query(sql, params).await?;
        stream.into_row().await
    };
    let row = match bound {
        Some(bound) => tokio::time::timeout(bound, run)
            .await
            .map_err(|_| StmtError::Timeout(bound))?,
        None => run.await,
    }
    .map_err(StmtError::Driver)?
    .ok_or(StmtError::NoRow)?;
    let mut out = [0; N];
    for (index, slot) in out.iter_mut().enumerate() {
        *slot = row
            .try_get::<i32, _>(index)
            .map_err(StmtError::Driver)?
            .ok_or(StmtError::NoRow)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ordinary_server_errors_keep_a_connection() {
        let io = StmtError::Driver(tiberius::error::Error::Io {
            kind: std::io::ErrorKind::ConnectionReset,
            message: "reset".into(),
        });
        assert!(io.connection_broken());
        let protocol = StmtError::Driver(tiberius::error::Error::Protocol("eof".into()));
        assert!(protocol.connection_broken());
        assert!(StmtError::Timeout(Duration::from_secs(1)).connection_broken());
        assert!(!StmtError::NoRow.connection_broken());
    }

    #[test]
    fn statement_errors_name_the_command_and_the_lock() {
        let err =
            StmtError::Timeout(Duration::from_secs(30)).into_error("sp_releaseapplock", "job");
        assert!(matches!(err, MssqlError::CommandTimeout { .. }));
        assert_eq!(
            err.to_string(),
            "sp_releaseapplock for lock \"job\" got no answer from SQL Server within 30s"
        );
        let err = StmtError::Driver(tiberius::error::Error::Protocol("bad token".into()))
            .into_error("sp_getapplock", "job");
        assert_eq!(err.to_string(), "sp_getapplock failed for lock \"job\"");
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("Protocol error: bad token"));
    }

    /// A stand-in connection that records when it is closed.
    struct Fake(u32, std::sync::Arc<Mutex<Vec<u32>>>);

    impl Drop for Fake {
        fn drop(&mut self) {
            self.1.lock().push(self.0);
        }
    }

    #[test]
    fn the_pool_is_bounded_and_newest_first() {
        let closed = std::sync::Arc::new(Mutex::new(Vec::new()));
        let pool = Pool::new(2, Duration::from_secs(60));
        assert!(pool.take().is_none());
        for id in 1..=3 {
            pool.put(Fake(id, closed.clone()));
        }
        assert_eq!(pool.len(), 2);
        assert_eq!(
            *closed.lock(),
            [3],
            "the connection over the bound is closed"
        );
        assert_eq!(pool.take().map(|f| f.0), Some(2));
        assert_eq!(pool.take().map(|f| f.0), Some(1));
        assert!(pool.take().is_none());
    }

    #[test]
    fn stale_connections_are_closed_not_reused() {
        let closed = std::sync::Arc::new(Mutex::new(Vec::new()));
        let pool = Pool::new(4, Duration::ZERO);
        pool.put(Fake(1, closed.clone()));
        pool.put(Fake(2, closed.clone()));
        std::thread::sleep(Duration::from_millis(5));
        assert!(pool.take().is_none());
        assert_eq!(pool.len(), 0);
        let mut ids = closed.lock().clone();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2]);

        let pool = Pool::new(0, Duration::from_secs(60));
        pool.put(Fake(3, closed.clone()));
        assert_eq!(pool.len(), 0, "max 0 disables reuse");
    }
}
