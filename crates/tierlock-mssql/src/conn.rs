//! Connections: opening them, telling whether an idle one was closed, and running one statement
//! with a bound.
//!
//! A connection is an owned [`Conn`]. Whoever owns it while a statement runs is the only one
//! who can put it back into the idle pool (core's
//! [`IdlePool`](tierlock_core::pool::IdlePool), whose rules these are), and does so only after
//! the statement completed; a future dropped mid-statement drops the connection with it, which
//! closes the socket, ends the session and so frees whatever the session held. A connection
//! that may be out of step with the server is therefore never reused.

use std::io::ErrorKind;
use std::net::TcpStream as StdTcpStream;
use std::time::Duration;

use tierlock_core::pool::PooledConnection;
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::config::Options;
use crate::error::{ConnectError, MssqlError};

/// The driver's client on one connection.
pub(crate) type Client = tiberius::Client<Compat<TcpStream>>;

/// One connection, one SQL Server session: the driver's client, and a second handle on the
/// same socket that only ever peeks, to tell whether the server closed an idle connection.
/// Dropping it closes both handles, and so the socket.
pub(crate) struct Conn {
    pub(crate) client: Client,
    watch: StdTcpStream,
    /// Set when the session must not be reused, though it is clean (on Babelfish, a session
    /// that had a request refused): it is closed instead of pooled.
    pub(crate) retired: bool,
}

impl PooledConnection for Conn {
    /// A non-blocking peek at the socket: end of stream means the server closed it (killed
    /// session, restart, idle-connection killer that sent a FIN); bytes waiting on an idle
    /// connection mean it is out of step; either way it must not be reused.
    fn is_closed(&self) -> bool {
        peer_closed(&self.watch)
    }
}

/// See [`Conn::is_closed`]; `socket` must be non-blocking.
fn peer_closed(socket: &StdTcpStream) -> bool {
    let mut byte = [0u8; 1];
    match socket.peek(&mut byte) {
        Err(err) if err.kind() == ErrorKind::WouldBlock => false,
        Ok(_) | Err(_) => true,
    }
}

/// Opens a connection: TCP (no delay, keepalive), TLS and login, following one routing
/// redirect (Azure SQL gateways), all within the connect timeout.
pub(crate) async fn connect(
    config: &tiberius::Config,
    options: &Options,
) -> Result<Conn, MssqlError> {
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
) -> Result<Conn, ConnectError> {
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
    // A second handle on the socket for `is_closed`, non-blocking so that a peek never waits.
    let std = tcp.into_std().map_err(ConnectError::Tcp)?;
    let watch = std.try_clone().map_err(ConnectError::Tcp)?;
    watch.set_nonblocking(true).map_err(ConnectError::Tcp)?;
    let tcp = TcpStream::from_std(std).map_err(ConnectError::Tcp)?;
    let client = tiberius::Client::connect(config, tcp.compat_write())
        .await
        .map_err(|err| ConnectError::Login(Box::new(err)))?;
    Ok(Conn {
        client,
        watch,
        retired: false,
    })
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
/// `bound` (if any). On `Err`, check [`StmtError::connection_broken`] before reusing `conn`.
pub(crate) async fn query_ints<const N: usize>(
    conn: &mut Conn,
    sql: &str,
    params: &[&dyn tiberius::ToSql],
    bound: Option<Duration>,
) -> Result<[i32; N], StmtError> {
    query_values::<i32, N>(conn, sql, params, bound).await
}

/// [`query_ints`] for one `bigint`.
pub(crate) async fn query_bigint(
    conn: &mut Conn,
    sql: &str,
    params: &[&dyn tiberius::ToSql],
    bound: Option<Duration>,
) -> Result<i64, StmtError> {
    let [value] = query_values::<i64, 1>(conn, sql, params, bound).await?;
    Ok(value)
}

/// Runs a statement that returns no rows, within `bound`.
pub(crate) async fn execute(conn: &mut Conn, sql: &str, bound: Duration) -> Result<(), StmtError> {
    let run = conn.client.execute(sql, &[]);
    match tokio::time::timeout(bound, run).await {
        Ok(result) => result.map(drop).map_err(StmtError::Driver),
        Err(_) => Err(StmtError::Timeout(bound)),
    }
}

async fn query_values<T, const N: usize>(
    conn: &mut Conn,
    sql: &str,
    params: &[&dyn tiberius::ToSql],
    bound: Option<Duration>,
) -> Result<[T; N], StmtError>
where
    T: for<'a> tiberius::FromSql<'a> + Copy + Default,
{
    let run = async {
        let stream = conn.client.query(sql, params).await?;
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
    let mut out = [T::default(); N];
    for (index, slot) in out.iter_mut().enumerate() {
        *slot = row
            .try_get::<T, _>(index)
            .map_err(StmtError::Driver)?
            .ok_or(StmtError::NoRow)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peek_tells_an_open_idle_socket_from_a_closed_or_out_of_step_one() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = StdTcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let watch = client.try_clone().unwrap();
        watch.set_nonblocking(true).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert!(!peer_closed(&watch), "an open, quiet connection");
        server.write_all(b"x").unwrap();
        let waiting = std::time::Instant::now();
        while !peer_closed(&watch) {
            assert!(
                waiting.elapsed() < Duration::from_secs(5),
                "the byte never arrived"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Peeking consumed nothing: the byte is still there for the owner of the socket.
        let mut byte = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &client, &mut byte).unwrap(), 1);
        assert!(!peer_closed(&watch));
        drop(server);
        let waiting = std::time::Instant::now();
        while !peer_closed(&watch) {
            assert!(
                waiting.elapsed() < Duration::from_secs(5),
                "the close never arrived"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

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
}
